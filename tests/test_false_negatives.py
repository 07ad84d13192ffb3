"""GIST false-negative masking (--guide-model, --false-negative-margin): the mask against a naive loop, the loss
against the row-by-row formula and against sentence-transformers' GISTEmbedLoss, and GradCache with it."""
import copy
import functools
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

import data_prep
import evaluate_sts
from mnr import gradcache
import train_mnr
from mnr import gist, hardness

torch.manual_seed(0)


def naive_mask(guide_anchor, guide_candidates, margin, offset=0):
    out = torch.zeros(len(guide_anchor), len(guide_candidates), dtype=torch.bool)
    for i, a in enumerate(guide_anchor):
        sims = [F.cosine_similarity(a, c, dim=0).item() for c in guide_candidates]
        for j, s in enumerate(sims):
            out[i, j] = j != offset + i and s > sims[offset + i] - margin
    return out


@pytest.mark.parametrize("margin", [0.0, 0.1, -0.2])
@pytest.mark.parametrize("offset", [0, 4])
def test_mask_equals_naive_loop(margin, offset):
    anchor, candidates = torch.randn(4, 8, dtype=torch.float64), torch.randn(24, 8, dtype=torch.float64)
    candidates[1] = anchor[0] * 3  # a near-copy of a query: must be masked for every margin > -1
    got = gist.false_negatives(anchor, candidates, margin, label_offset=offset)
    assert torch.equal(got, naive_mask(anchor, candidates, margin, offset))
    assert not got[torch.arange(4), torch.arange(4) + offset].any()  # a query's own positive is never left out


def test_loss_with_exclusions_equals_row_by_row_softmax():
    a, p, n = (torch.randn(5, 8, dtype=torch.float64, requires_grad=True) for _ in range(3))
    exclude = torch.zeros(5, 10, dtype=torch.bool)
    exclude[0, 3], exclude[2, 7], exclude[4, [0, 1, 9]] = True, True, True
    got = hardness.weighted_mnr_loss(a, p, [n], scale=20.0, exclude=exclude)
    candidates = torch.cat([p, n])
    want = 0
    for i in range(5):
        kept = [j for j in range(10) if not exclude[i, j]]
        scores = torch.stack([20.0 * F.cosine_similarity(a[i], candidates[j], dim=0) for j in kept])
        want = want - torch.log_softmax(scores, 0)[kept.index(i)]
    assert got.item() == pytest.approx((want / 5).item(), abs=1e-12)
    g_got, g_want = torch.autograd.grad(got, [a, p, n]), torch.autograd.grad(want / 5, [a, p, n])
    for x, y in zip(g_got, g_want):
        assert torch.allclose(x, y, atol=1e-12)


# Rows about the same things: each query's positive is nearly another query's positive too (false negatives).
BATCH = [("A man plays the guitar on stage.", "Someone is playing music.", "The stage is empty."),
         ("A guy is playing a guitar at a concert.", "A person plays music.", "Nobody plays anything."),
         ("Two dogs run across a field.", "Animals are running outside.", "The dogs are asleep indoors."),
         ("A pair of dogs races over the grass.", "Some animals run outdoors.", "A cat sleeps on a sofa."),
         ("A woman is cooking pasta in a kitchen.", "Someone prepares food.", "The kitchen is closed."),
         ("A chef makes noodles.", "A person is cooking a meal.", "The chef is on holiday."),
         ("Children swim in a lake.", "Kids are in the water.", "The lake is frozen."),
         ("An old man reads a newspaper.", "A man is reading.", "The man cannot read.")]


@pytest.fixture(scope="module")
def batch():
    return BATCH


@pytest.mark.parametrize("columns", [2, 3])
def test_equals_sentence_transformers_gist(batch, tiny_model_dir, minilm_path, columns):
    """Same model, guide and batch: our masked MNR loss equals GISTEmbedLoss(temperature=1/scale, absolute margin,
    no anchor-anchor or positive-positive terms). Dropout off on both sides."""
    st = pytest.importorskip("sentence_transformers")
    from sentence_transformers.sentence_transformer.losses import GISTEmbedLoss
    model, guide = st.SentenceTransformer(tiny_model_dir, device="cpu"), st.SentenceTransformer(str(minilm_path), device="cpu")
    model.eval()
    guide.eval()
    rows = [row[:columns] for row in batch]
    features = [model.tokenize(list(texts)) for texts in zip(*rows)]
    lib = GISTEmbedLoss(model, guide, temperature=0.05, margin_strategy="absolute", margin=0.1,
                        contrast_anchors=False, contrast_positives=False)
    with torch.no_grad():
        want = lib(features, None).item()
        encoder = evaluate_sts.load_encoder(tiny_model_dir)
        guide_encoder = evaluate_sts.load_encoder(str(minilm_path))
        embeddings = [evaluate_sts.encode(encoder, list(texts)) for texts in zip(*rows)]
        loss = guided_loss(minilm_path)  # the loss the loop calls, as --guide-model builds it
        got = loss(embeddings, rows).item()
    assert loss.left_out > 0, "the guide left nothing out: the comparison would not test the mask"
    assert got == pytest.approx(want, abs=1e-4)


def guided_loss(guide_path, hidden_size=None):
    """make_loss with --guide-model, on CPU (make_loss reads only a model's device, and its size for Matryoshka)."""
    model = SimpleNamespace(device=torch.device("cpu"), config=SimpleNamespace(hidden_size=hidden_size))
    args = train_mnr.parse_args(["--guide-model", str(guide_path), "--false-negative-margin", "0.1"])
    return train_mnr.make_loss(args, model)


def test_cached_step_with_exclusions_equals_plain_step(batch, tiny_model_dir, minilm_path):
    model, tokenizer = train_mnr.load_model(tiny_model_dir, dropout=0.0)
    loss = guided_loss(minilm_path)
    columns = data_prep.collate(batch, tokenizer)
    embed_fn = functools.partial(train_mnr.embed_columns, pooling="mean", pack=True)
    loss_of = functools.partial(loss, rows=batch)
    plain, cached = copy.deepcopy(model), copy.deepcopy(model)
    plain_loss = loss_of(embed_fn(plain, columns))
    plain_loss.backward()
    assert loss.left_out > 0  # the guide did leave candidates out
    cached_loss = gradcache.cached_backward(cached, columns, embed_fn, loss_of, 5, torch.device("cpu"))
    assert cached_loss.item() == pytest.approx(plain_loss.item(), abs=1e-6)
    for (name, a), b in zip(plain.named_parameters(), cached.parameters()):
        if a.grad is not None:
            assert torch.allclose(a.grad, b.grad, atol=1e-5, rtol=1e-4), name
