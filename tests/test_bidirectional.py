"""The GTE bidirectional loss and the symmetric loss against naive per-row oracles and the peer library."""
import math

import pytest
import torch

import train_bidirectional as tb
import train_mnr


def s(x, y, scale):
    return scale * torch.nn.functional.cosine_similarity(x, y, dim=0)


def bidirectional_oracle(q, d, negatives, scale=20.0):
    """For each query i, one log-sum-exp over the four directions, written out term by term."""
    B = len(q)
    docs = [d[j] for j in range(B)] + [n[j] for n in negatives for j in range(B)]
    owner = [j % B for j in range(len(docs))]  # which query each document belongs to
    losses = []
    for i in range(B):
        terms = [s(q[i], doc, scale) for doc in docs]  # q_i -> every document
        terms += [s(q[i], q[j], scale) for j in range(B) if j != i]  # q_i -> every other query
        terms += [s(q[j], d[i], scale) for j in range(B)]  # every query -> d_i
        terms += [s(d[i], doc, scale) for doc, o in zip(docs, owner) if o != i]  # d_i -> other queries' docs
        losses.append(torch.logsumexp(torch.stack(terms), 0) - s(q[i], d[i], scale))
    return torch.stack(losses).mean()


def symmetric_oracle(q, d, negatives, scale=20.0):
    B = len(q)
    docs = [d[j] for j in range(B)] + [n[j] for n in negatives for j in range(B)]
    losses = []
    for i in range(B):
        forward = torch.logsumexp(torch.stack([s(q[i], doc, scale) for doc in docs]), 0) - s(q[i], d[i], scale)
        backward = torch.logsumexp(torch.stack([s(q[j], d[i], scale) for j in range(B)]), 0) - s(q[i], d[i], scale)
        losses.append((forward + backward) / 2)
    return torch.stack(losses).mean()


def embeddings(k, B=6, D=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    make = lambda: torch.randn(B, D, generator=g, dtype=torch.float64, requires_grad=True)  # noqa: E731
    return make(), make(), [make() for _ in range(k)]


@pytest.mark.parametrize("k", [0, 1, 2])
@pytest.mark.parametrize("loss_fn,oracle", [(tb.bidirectional_loss, bidirectional_oracle),
                                            (tb.symmetric_loss, symmetric_oracle)])
def test_loss_and_gradients_equal_naive_loop(loss_fn, oracle, k):
    q, d, negs = embeddings(k)
    ours = loss_fn(q, d, negs if k > 1 else (negs[0] if k else None), scale=20.0)
    ref = oracle(q, d, negs)
    assert ours.item() == pytest.approx(ref.item(), abs=1e-10)
    inputs = [q, d, *negs]
    g_ours = torch.autograd.grad(ours, inputs)
    g_ref = torch.autograd.grad(ref, inputs)
    for a, b in zip(g_ours, g_ref):
        assert torch.allclose(a, b, atol=1e-10)
        assert a.abs().sum() > 0  # every input, hard negatives included, gets a gradient


def test_more_documents_than_queries_keeps_shapes_right():
    """Two hard-negative columns make 3B documents against B queries: where the reviewed draft transposed
    the q->d block into a (3B, B) matrix. Here the loss must equal the oracle with B = 3, k = 2."""
    q, d, negs = embeddings(2, B=3)
    assert tb.bidirectional_loss(q, d, negs).item() == pytest.approx(bidirectional_oracle(q, d, negs).item(), abs=1e-10)


def test_self_terms_are_masked_with_zero_gradient(monkeypatch):
    """Record every similarity block; the q_i->q_i entries and d_i->(own documents) entries get no gradient,
    while the entries around them do."""
    blocks = []
    real = tb.cos_sim

    def recording(a, b):
        out = real(a, b)
        out.retain_grad()
        blocks.append(out)
        return out

    monkeypatch.setattr(tb, "cos_sim", recording)
    B = 4
    q, d, negs = embeddings(1, B=B)
    tb.bidirectional_loss(q, d, negs).backward()
    qd, qq, dq, dd = blocks  # the order the loss computes them in
    eye = torch.eye(B, dtype=torch.bool)
    assert (qq.grad[eye] == 0).all() and (qq.grad[~eye] != 0).all()
    own = torch.cat([eye, eye], dim=1)  # d_i's own positive and its own hard negative
    assert (dd.grad[own] == 0).all() and (dd.grad[~own] != 0).all()
    assert (qd.grad != 0).all() and (dq.grad != 0).all()


def test_hand_computed_value():
    """Two orthogonal pairs, queries equal to their documents: every cross term is cos 0, the positive is 1.
    Per query: logsumexp over {20 (own doc), 0 (other doc), 0 (other query), 20 (q_i->d_i again, d->q),
    0 (q_j->d_i), 0 (d_i->other doc)} minus 20 = log(2 e^20 + 4) - 20."""
    q = torch.eye(2, dtype=torch.float64)
    expected = math.log(2 * math.exp(20) + 4) - 20
    assert tb.bidirectional_loss(q, q.clone()).item() == pytest.approx(expected, abs=1e-12)
    # Symmetric: each direction is log(e^20 + 1) - 20.
    assert tb.symmetric_loss(q, q.clone()).item() == pytest.approx(math.log(math.exp(20) + 1) - 20, abs=1e-12)


@pytest.mark.parametrize("k", [0, 1, 2])
def test_equal_to_sentence_transformers(minilm_path, k):
    st = pytest.importorskip("sentence_transformers")
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    model = st.SentenceTransformer(str(minilm_path), device="cpu")
    q, d, negs = embeddings(k)
    q, d, negs = q.detach().float(), d.detach().float(), [n.detach().float() for n in negs]
    gte = MultipleNegativesRankingLoss(model, directions=("query_to_doc", "query_to_query", "doc_to_query", "doc_to_doc"),
                                       partition_mode="joint")
    sym = MultipleNegativesRankingLoss(model, directions=("query_to_doc", "doc_to_query"), partition_mode="per_direction")
    assert tb.bidirectional_loss(q, d, negs).item() == pytest.approx(
        gte.compute_loss_from_embeddings([q, d, *negs], None).item(), abs=1e-5)
    assert tb.symmetric_loss(q, d, negs).item() == pytest.approx(
        sym.compute_loss_from_embeddings([q, d, *negs], None).item(), abs=1e-5)


@pytest.mark.parametrize("loss_fn", [tb.bidirectional_loss, tb.symmetric_loss, train_mnr.mnr_loss])
def test_split_over_processes_averages_to_the_whole_batch(loss_fn, monkeypatch):
    """What data parallel relies on: two processes, each with its own 3 queries against the whole batch's
    documents, its own rows first (as distributed.gather orders them), average to the loss of the whole batch, so
    N processes with b rows each train like one with N*b. The all-gather of the queries is played by returning
    every query, the process's own first."""
    q, d, negs = embeddings(1, B=6)
    whole = loss_fn(q, d, negs)
    halves = []
    for start in (0, 3):
        def own_first(x):
            return torch.roll(x, -start, dims=0)
        monkeypatch.setattr(tb.distributed, "gather", lambda x: own_first(q))
        halves.append(loss_fn(q[start:start + 3], own_first(d), [own_first(n) for n in negs]))
    assert (halves[0] + halves[1]).item() / 2 == pytest.approx(whole.item(), abs=1e-12)
    # Without the reordering the second process would score its queries against the first one's positives.
    assert loss_fn(q[3:], d, negs).item() != pytest.approx(halves[1].item(), abs=1e-6)
