"""`train_mnr.mnr_loss` against the tutorial's row-by-row loop, hand-computed values, autograd, and
sentence-transformers' MultipleNegativesRankingLoss."""
import math

import pytest
import torch

import train_mnr


def oracle_loss(anchor, positive, negatives=(), scale=20.0):
    """The tutorial's loop: one CosineSimilarity row per anchor against every candidate, then cross-entropy."""
    candidates = torch.cat([positive, *negatives])  # positives first, then each hard-negative column
    cos = torch.nn.CosineSimilarity()
    scores = torch.stack([cos(a_i.reshape(1, -1), candidates) for a_i in anchor]) * scale
    return torch.nn.CrossEntropyLoss()(scores, torch.tensor(range(len(anchor))))


def random_batch(k, B=6, D=10, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(B, D, generator=g, dtype=dtype) for _ in range(2 + k)]


def call(a, p, negs, form, scale=20.0):
    """Call the product loss with hard negatives given as None, one tensor, or a list."""
    if form == "none":
        return train_mnr.mnr_loss(a, p, scale=scale)
    if form == "tensor":
        return train_mnr.mnr_loss(a, p, negs[0], scale=scale)
    return train_mnr.mnr_loss(a, p, list(negs), scale=scale)


CASES = [(0, "none"), (1, "tensor"), (1, "list"), (2, "list")]


@pytest.mark.parametrize("k,form", CASES)
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-6), (torch.float32, 1e-5)])
@pytest.mark.parametrize("scale", [20.0, 1.0, 50.0])
def test_equals_row_by_row_oracle(k, form, dtype, tol, scale):
    a, p, *negs = random_batch(k, dtype=dtype)
    got = call(a, p, negs, form, scale)
    want = oracle_loss(a, p, negs, scale)
    assert got.shape == ()
    assert torch.allclose(got, want, atol=tol, rtol=tol), (got.item(), want.item())


def test_hard_negatives_change_the_loss():
    # The oracle comparison above would also pass if the loss ignored negatives and the oracle had a bug
    # of the same kind; here, a hard negative equal to the anchor must make the loss strictly larger.
    a, p = random_batch(0)
    assert train_mnr.mnr_loss(a, p, a.clone()) > train_mnr.mnr_loss(a, p) + 0.1


def test_known_value_orthogonal_anchors_equal_positives():
    # B=2: anchor i scores 20 on its own positive (cos 1) and 0 on the other (cos 0).
    a = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], dtype=torch.float64)
    want = math.log(1 + math.exp(-20.0))  # -log(e^20 / (e^20 + e^0)), the same for both rows
    got = train_mnr.mnr_loss(a, a.clone())
    assert got.item() == pytest.approx(want, rel=1e-6, abs=0)
    # Vector lengths must not matter (cosine, not dot product).
    got_scaled = train_mnr.mnr_loss(3.0 * a, 0.5 * a)
    assert got_scaled.item() == pytest.approx(want, rel=1e-6, abs=0)


@pytest.mark.parametrize("B", [2, 5])
@pytest.mark.parametrize("k", [0, 1, 2])
def test_known_value_all_candidates_identical(B, k):
    # Every score is equal, so each row is a uniform softmax over B*(1+k) candidates.
    v = torch.tensor([[0.3, -1.2, 2.0, 0.7]], dtype=torch.float64)
    a = torch.randn(B, 4, dtype=torch.float64)
    candidates = [v.repeat(B, 1) for _ in range(1 + k)]
    got = train_mnr.mnr_loss(a, candidates[0], candidates[1:] or None)
    assert got.item() == pytest.approx(math.log(B * (1 + k)), rel=1e-9)


@pytest.mark.parametrize("k,form", CASES)
def test_gradients_flow_and_match_oracle(k, form):
    leaves = [t.requires_grad_() for t in random_batch(k)]
    a, p, *negs = leaves
    got = torch.autograd.grad(call(a, p, negs, form), leaves)
    want = torch.autograd.grad(oracle_loss(a, p, negs), leaves)
    for name, g, w in zip(["anchor", "positive"] + [f"negative{i}" for i in range(k)], got, want):
        assert torch.isfinite(g).all(), name
        assert g.abs().sum() > 0, f"no gradient reaches the {name}"
        assert torch.allclose(g, w, atol=1e-10, rtol=1e-7), name


@pytest.fixture(scope="module")
def st_loss():
    pytest.importorskip("sentence_transformers")
    try:
        from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    except ImportError:
        from sentence_transformers.losses import MultipleNegativesRankingLoss

    # The loss only stores the model (for its `forward`); compute_loss_from_embeddings never touches it.
    return MultipleNegativesRankingLoss(torch.nn.Identity(), scale=20.0)


@pytest.mark.parametrize("k,form", CASES)
def test_equals_sentence_transformers(st_loss, k, form):
    a, p, *negs = random_batch(k, B=8, D=16, dtype=torch.float32, seed=k)
    got = call(a, p, negs, form)
    want = st_loss.compute_loss_from_embeddings([a, p, *negs], labels=None)
    assert torch.allclose(got, want, atol=1e-5, rtol=1e-5), (got.item(), want.item())
