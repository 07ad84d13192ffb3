"""matryoshka.py against a naive sum of the plain loss and against sentence-transformers' MatryoshkaLoss; the
evaluators' --truncate-dim against SentenceTransformer(folder, truncate_dim=D) with the library's evaluators."""
import gzip
import itertools
import json

import pytest
import torch
import torch.nn.functional as F

import evaluate_retrieval
import evaluate_sts
from conftest import run_script, write_tsv
from mnr.matryoshka import matryoshka_loss

B, D = 8, 16
DIMS = [16, 8, 4, 2]
NLI_COLUMNS = ("premise", "hypothesis", "label")


def naive_mnr(anchor, positive, negatives=None, scale=20.0):
    """The plain MNR loss, written out: scaled cosine of each anchor with every candidate, its own positive
    (column i) the right answer."""
    candidates = torch.cat([positive, *(negatives or [])])  # (B*(1+k), d)
    scores = F.normalize(anchor, dim=1) @ F.normalize(candidates, dim=1).T * scale  # (B, B*(1+k))
    return F.cross_entropy(scores, torch.arange(len(anchor)))


def random_batch(k, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(B, D, generator=g, dtype=dtype, requires_grad=True) for _ in range(2 + k)]


def negatives_arg(negs):
    return negs or None  # no hard negatives: None, as the training loop passes it


@pytest.mark.parametrize("weights", [None, [1.0, 0.5, 0.25, 2.0]])
@pytest.mark.parametrize("k", [0, 1, 2])
def test_equals_naive_sum(k, weights):
    a, p, *negs = random_batch(k, seed=k)
    got = matryoshka_loss(naive_mnr, DIMS, weights)(a, p, negatives_arg(negs), 20.0)
    want = sum(w * naive_mnr(a[:, :d], p[:, :d], [n[:, :d] for n in negs], 20.0)
               for d, w in zip(DIMS, weights or [1.0] * len(DIMS)))
    assert got.item() == pytest.approx(want.item(), abs=1e-12)
    leaves = [a, p, *negs]
    for g, w in zip(torch.autograd.grad(got, leaves), torch.autograd.grad(want, leaves)):
        assert g.abs().sum() > 0
        assert torch.allclose(g, w, atol=1e-12, rtol=1e-10)
    # one cut of the full width is the plain loss; the order of the cuts does not matter
    assert matryoshka_loss(naive_mnr, [D])(a, p, negatives_arg(negs)).item() == pytest.approx(
        naive_mnr(a, p, negs).item(), abs=1e-12)
    reversed_loss = matryoshka_loss(naive_mnr, DIMS[::-1], None if weights is None else weights[::-1])
    assert reversed_loss(a, p, negatives_arg(negs)).item() == pytest.approx(got.item(), abs=1e-12)


def test_keywords_reach_the_loss():
    calls = []

    def recording_loss(anchor, positive, negatives=None, scale=20.0, **kw):
        calls.append((anchor.shape[1], positive.shape[1], negatives and [n.shape[1] for n in negatives], scale, kw))
        return anchor.sum()

    a, p, n = random_batch(1)
    matryoshka_loss(recording_loss, [8, 4], [1, 3])(a[:3], p, [n], 7.0, label_offset=3, exclude="x")
    assert calls == [(8, 8, [8], 7.0, {"label_offset": 3, "exclude": "x"}),
                     (4, 4, [4], 7.0, {"label_offset": 3, "exclude": "x"})]
    calls.clear()
    matryoshka_loss(recording_loss, [4])(a, p)
    assert calls == [(4, 4, None, 20.0, {})]


@pytest.mark.parametrize("dims,weights,match", [
    ([], None, "positive integers"), ([8, 0], None, "positive integers"), ([-4], None, "positive integers"),
    ([8.0], None, "positive integers"), ([True], None, "positive integers"),
    ([8, 4], [1.0], "1 Matryoshka weights for 2 dimensions")])
def test_bad_dims_and_weights(dims, weights, match):
    with pytest.raises(ValueError, match=match):
        matryoshka_loss(naive_mnr, dims, weights)


def test_dimension_above_the_embeddings():
    a, p = random_batch(0)
    loss = matryoshka_loss(naive_mnr, [D + 1, 4])
    with pytest.raises(ValueError, match=f"dimension {D + 1} is larger than the embeddings' {D} dimensions"):
        loss(a, p)


# ---- against sentence-transformers' MatryoshkaLoss ----------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_st(tiny_model_dir):
    """A real SentenceTransformer built from its public modules (the tiny BERT + mean pooling), in eval mode so
    both losses see the same embeddings, and in float64 so that the two computations agree to rounding far below
    any real difference: MatryoshkaLoss drives it exactly as it drives any model it trains."""
    st = pytest.importorskip("sentence_transformers")
    try:
        from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    except ImportError:  # sentence-transformers < 6
        from sentence_transformers.models import Pooling, Transformer
    encoder = Transformer(tiny_model_dir, max_seq_length=32)
    width = getattr(encoder, "get_embedding_dimension", None) or encoder.get_word_embedding_dimension  # 6.x renamed it
    model = st.SentenceTransformer(modules=[encoder, Pooling(width(), "mean")],
                                   device="cpu")
    return model.double().eval()


TEXTS = [["a man plays a guitar", "two dogs run on the beach", "a child reads a book", "a woman cooks dinner"],
         ["someone plays music", "animals are outside", "a kid is reading", "a person makes food"],
         ["a man sleeps", "the dogs are asleep indoors", "a child swims", "nobody is cooking"],
         ["a cat sits on a mat", "it is raining in the city", "the market is busy", "a train leaves"]]


def parameter_grads(model, loss):
    model.zero_grad(set_to_none=True)
    loss.backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("weights", [None, [1.0, 0.5, 0.25, 2.0]])
@pytest.mark.parametrize("k", [0, 1, 2])
def test_equals_sentence_transformers(tiny_st, k, weights):
    """Ours (matryoshka_loss around mnr_loss) against MatryoshkaLoss(MultipleNegativesRankingLoss) on the same
    model and texts: the same loss and the same gradient on every weight of the model."""
    try:
        from sentence_transformers.sentence_transformer.losses import MatryoshkaLoss, MultipleNegativesRankingLoss
    except ImportError:  # sentence-transformers < 6
        from sentence_transformers.losses import MatryoshkaLoss, MultipleNegativesRankingLoss

    from train_mnr import mnr_loss  # here, not at the top: train_mnr may be mid-rewrite while this file is not
    dims = [d for d in DIMS if d <= tiny_st.get_embedding_dimension()]
    columns = [tiny_st.tokenize(texts) for texts in TEXTS[:2 + k]]
    st_loss = MatryoshkaLoss(tiny_st, MultipleNegativesRankingLoss(tiny_st), dims, weights)
    want = st_loss([dict(c) for c in columns], None)
    want_grads = parameter_grads(tiny_st, want)
    a, p, *negs = [tiny_st(dict(c))["sentence_embedding"] for c in columns]
    got = matryoshka_loss(mnr_loss, dims, weights)(a, p, negatives_arg(negs), 20.0)
    got_grads = parameter_grads(tiny_st, got)
    assert got.item() == pytest.approx(want.item(), abs=1e-12)
    assert got_grads.keys() == want_grads.keys() and len(got_grads) > 0
    for name, g in got_grads.items():
        assert torch.allclose(g, want_grads[name], atol=1e-10, rtol=1e-9), name


# ---- --truncate-dim in the evaluators ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def minilm_st(minilm_path):
    st = pytest.importorskip("sentence_transformers")
    return lambda truncate_dim: st.SentenceTransformer(str(minilm_path), device="cpu", truncate_dim=truncate_dim)


@pytest.fixture(scope="module")
def minilm_encoder(minilm_path):
    return evaluate_sts.load_encoder(str(minilm_path))


@pytest.mark.parametrize("truncate_dim", [None, 384, 32])
def test_sts_truncate_equals_sentence_transformers(minilm_st, minilm_encoder, sts_dir, truncate_dim):
    from sentence_transformers.sentence_transformer.evaluation import EmbeddingSimilarityEvaluator
    pairs, gold = evaluate_sts.load_sts(sts_dir, "dev")
    pairs, gold = pairs[:300], gold[:300]
    got = evaluate_sts.evaluate(minilm_encoder, pairs, gold, truncate_dim=truncate_dim)
    evaluator = EmbeddingSimilarityEvaluator([a for a, _ in pairs], [b for _, b in pairs], gold,
                                             similarity_fn_names=["cosine"])
    want = evaluator(minilm_st(truncate_dim))
    assert got["spearman"] == pytest.approx(want["spearman_cosine"], abs=1e-6)
    assert got["pearson"] == pytest.approx(want["pearson_cosine"], abs=1e-6)


def test_sts_truncation_changes_the_score(minilm_encoder, sts_dir):
    pairs, gold = evaluate_sts.load_sts(sts_dir, "dev")
    pairs, gold = pairs[:300], gold[:300]
    full = evaluate_sts.evaluate(minilm_encoder, pairs, gold)
    assert evaluate_sts.evaluate(minilm_encoder, pairs, gold, truncate_dim=384) == full
    assert evaluate_sts.evaluate(minilm_encoder, pairs, gold, truncate_dim=16)["spearman"] != full["spearman"]


@pytest.fixture(scope="module")
def small_retrieval_task(snli_test_file, tmp_path_factory):
    """The first 600 rows of SNLI test (about 200 premises, 600 hypotheses) as a retrieval task."""
    with gzip.open(snli_test_file, "rt", encoding="utf-8") as f:
        lines = list(itertools.islice(f, 601))  # the header and 600 rows
    path = tmp_path_factory.mktemp("retrieval") / "small.tsv"
    path.write_text("".join(lines), encoding="utf-8")
    return evaluate_retrieval.load_nli_retrieval(str(path))


@pytest.mark.parametrize("truncate_dim", [None, 32])
def test_retrieval_truncate_equals_sentence_transformers(minilm_st, minilm_encoder, small_retrieval_task,
                                                         truncate_dim):
    from sentence_transformers.sentence_transformer.evaluation import InformationRetrievalEvaluator
    task = small_retrieval_task
    # Zero-padded ids: the library breaks score ties by id as a string, ours by corpus index; the same order.
    queries = {f"q{i:05d}": q for i, q in enumerate(task["queries"])}
    corpus = {f"d{i:05d}": d for i, d in enumerate(task["corpus"])}
    relevant = {f"q{i:05d}": {f"d{j:05d}" for j in docs} for i, docs in enumerate(task["relevant"])}
    evaluator = InformationRetrievalEvaluator(queries, corpus, relevant, write_csv=False,
                                              mrr_at_k=[10], ndcg_at_k=[10], precision_recall_at_k=[1, 10, 100])
    want = evaluator(minilm_st(truncate_dim))
    got = evaluate_retrieval.evaluate(minilm_encoder, task, truncate_dim=truncate_dim)
    for ours, theirs in [("ndcg@10", "cosine_ndcg@10"), ("mrr@10", "cosine_mrr@10"), ("recall@1", "cosine_recall@1"),
                         ("recall@10", "cosine_recall@10"), ("recall@100", "cosine_recall@100")]:
        assert got[ours] == pytest.approx(want[theirs], abs=1e-6), ours


def test_evaluate_refuses_a_cut_above_the_model(minilm_encoder):
    with pytest.raises(evaluate_sts.ConfigError, match="--truncate-dim 385: the model makes 384-dimensional"):
        evaluate_sts.evaluate(minilm_encoder, [("a", "b"), ("c", "d")], [0.1, 0.2], truncate_dim=385)
    with pytest.raises(evaluate_sts.ConfigError, match="--truncate-dim 0"):
        evaluate_retrieval.evaluate(minilm_encoder, {"queries": ["a"], "corpus": ["b"], "relevant": [{0}]},
                                    truncate_dim=0)


# ---- the scripts --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def small_sts_file(sts_dir, tmp_path_factory):
    pairs, gold = evaluate_sts.load_sts(sts_dir, "dev")
    return write_tsv(tmp_path_factory.mktemp("sts") / "small.tsv", evaluate_sts.STS_COLUMNS,
                     [(a, b, str(5 * s)) for (a, b), s in zip(pairs[:40], gold[:40])])


def test_scripts_json_truncate_dim(tiny_model_dir, small_sts_file, small_retrieval_task, tmp_path):
    sts = run_script("evaluate_sts.py", tiny_model_dir, "--sts-data", small_sts_file, "--json", "--truncate-dim", "8")
    assert sts.returncode == 0, sts.stderr
    [row] = json.loads(sts.stdout)
    assert set(row) == {"model", "split", "truncate_dim", "spearman", "pearson", "n"} and row["truncate_dim"] == 8
    encoder = evaluate_sts.load_encoder(tiny_model_dir)
    want = evaluate_sts.evaluate(encoder, *evaluate_sts.load_sts(small_sts_file), truncate_dim=8)
    assert row["spearman"] == pytest.approx(want["spearman"], abs=1e-6)

    nli = write_tsv(tmp_path / "nli.tsv", NLI_COLUMNS, [("P1", "H1", "0"), ("P1", "H2", "2"), ("P2", "H3", "0"),
                                                         ("P2", "H1", "1")])
    retrieval = run_script("evaluate_retrieval.py", tiny_model_dir, "--nli-retrieval", nli, "--json",
                           "--truncate-dim", "8")
    assert retrieval.returncode == 0, retrieval.stderr
    [row] = json.loads(retrieval.stdout)
    assert row["truncate_dim"] == 8 and row["queries"] == 2 and row["corpus"] == 3


@pytest.mark.parametrize("script,truncate_dim", [("evaluate_sts.py", "33"), ("evaluate_retrieval.py", "0")])
def test_scripts_refuse_a_cut_above_the_model(tiny_model_dir, small_sts_file, tmp_path, script, truncate_dim):
    nli = write_tsv(tmp_path / "nli.tsv", NLI_COLUMNS, [("P1", "H1", "0")])
    data = ["--sts-data", small_sts_file] if script == "evaluate_sts.py" else ["--nli-retrieval", nli]
    result = run_script(script, tiny_model_dir, *data, "--truncate-dim", truncate_dim)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: --truncate-dim {truncate_dim}: "), result.stderr
    assert "32-dimensional" in lines[0]
