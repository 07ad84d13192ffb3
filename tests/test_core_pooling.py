"""`pooling`: padding never counts, the hand-computed values, and sentence-transformers' Pooling module."""
import pytest
import torch

import pooling

LENGTHS = [5, 3, 1]  # real tokens per row; right padding, as BERT's tokenizer produces


def batch(dtype=torch.float32, seed=0, T=5, D=4):
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randn(len(LENGTHS), T, D, generator=g).to(dtype)
    mask = torch.tensor([[1] * n + [0] * (T - n) for n in LENGTHS])  # int64, like a tokenizer's
    return tokens, mask


def with_padding(tokens, mask, value):
    return tokens.masked_fill(~mask.bool().unsqueeze(-1), value)


@pytest.mark.parametrize("name", ["mean", "max", "cls"])
@pytest.mark.parametrize("pad_value", [1e6, -1e6, 0.0, 37.5])
def test_padded_positions_change_nothing(name, pad_value):
    tokens, mask = batch()
    base = pooling.pool(name, tokens, mask)
    # Random values, huge values (larger than every real one: the max must still ignore them), and zeros.
    assert torch.equal(pooling.pool(name, with_padding(tokens, mask, pad_value), mask), base)
    noisy = tokens + 100 * torch.randn_like(tokens) * (1 - mask.unsqueeze(-1))
    assert torch.equal(pooling.pool(name, noisy, mask), base)


def test_mean_is_the_hand_average_of_real_tokens():
    tokens, mask = batch(torch.float64)
    want = torch.stack([tokens[i, :n].mean(dim=0) for i, n in enumerate(LENGTHS)])
    assert torch.allclose(pooling.mean_pool(tokens, mask), want, atol=1e-12)


def test_max_is_the_hand_max_of_real_tokens():
    tokens, mask = batch(torch.float64)
    tokens = with_padding(tokens, mask, 1e6)
    want = torch.stack([tokens[i, :n].max(dim=0).values for i, n in enumerate(LENGTHS)])
    assert torch.equal(pooling.max_pool(tokens, mask), want)
    # All real values negative: padding (zeros or large values) still must not win.
    neg = -tokens.abs() - 1
    want = torch.stack([neg[i, :n].max(dim=0).values for i, n in enumerate(LENGTHS)])
    assert torch.equal(pooling.max_pool(with_padding(neg, mask, 0.0), mask), want)


def test_cls_is_the_first_token():
    tokens, mask = batch()
    assert torch.equal(pooling.cls_pool(tokens, mask), tokens[:, 0])


@pytest.mark.parametrize("mask_dtype", [torch.int64, torch.int32, torch.bool, torch.float32])
@pytest.mark.parametrize("name", ["mean", "max", "cls"])
def test_mask_dtype_does_not_matter(name, mask_dtype):
    tokens, mask = batch()
    assert torch.equal(pooling.pool(name, tokens, mask.to(mask_dtype)), pooling.pool(name, tokens, mask))


def test_all_padding_row_gives_zeros_not_nan():
    tokens, mask = batch()
    mask[1] = 0
    out = pooling.mean_pool(tokens, mask)
    assert torch.equal(out[1], torch.zeros(tokens.shape[-1]))
    assert torch.isfinite(out).all()
    # The other rows are untouched by the empty one.
    assert torch.allclose(out[0], tokens[0].mean(dim=0), atol=1e-6)
    for name in ("max", "cls"):
        assert not torch.isnan(pooling.pool(name, tokens, mask)).any(), name


def test_pool_dispatches_by_name_and_rejects_unknown():
    tokens, mask = batch()
    for name, fn in [("mean", pooling.mean_pool), ("max", pooling.max_pool), ("cls", pooling.cls_pool)]:
        assert torch.equal(pooling.pool(name, tokens, mask), fn(tokens, mask))
    for name in pooling.POOLINGS:  # every pooling the --pooling flag offers works
        assert pooling.pool(name, tokens, mask).shape == tokens[:, 0].shape
    with pytest.raises(ValueError, match="nope"):
        pooling.pool("nope", tokens, mask)


@pytest.fixture(scope="module")
def st_pooling():
    pytest.importorskip("sentence_transformers")
    try:
        from sentence_transformers.sentence_transformer.modules import Pooling
    except ImportError:
        from sentence_transformers.models import Pooling

    def run(name, tokens, mask):
        module = Pooling(tokens.shape[-1], pooling_mode=name)
        return module({"token_embeddings": tokens, "attention_mask": mask})["sentence_embedding"]
    return run


# Every pooling of the table that names a sentence-transformers flag: the loaders rebuild it from that flag.
EXPRESSIBLE = [name for name, (_, key) in pooling.POOLINGS.items() if key]


def st_mode(name):
    """The sentence-transformers pooling mode the table's 1_Pooling flag for `name` selects."""
    from sentence_transformers.sentence_transformer.modules.pooling import _LEGACY_POOLING_MODE_KWARGS
    return _LEGACY_POOLING_MODE_KWARGS[pooling.POOLINGS[name][1]]


def test_the_table_holds_every_pooling_with_its_flag():
    assert {"mean", "cls", "max", "lasttoken"} <= set(pooling.POOLINGS)
    assert all(callable(fn) for fn, _ in pooling.POOLINGS.values())


@pytest.mark.parametrize("name", EXPRESSIBLE)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_equals_sentence_transformers_pooling(st_pooling, name, dtype):
    tokens, mask = batch(dtype, seed=3, T=7, D=16)
    tokens = with_padding(tokens, mask, 5.0)  # padding larger than real values, as BERT's can be
    got, want = pooling.pool(name, tokens, mask), st_pooling(st_mode(name), tokens, mask)
    assert got.dtype == want.dtype
    assert torch.allclose(got, want, atol=1e-6), (got - want).abs().max()


@pytest.mark.parametrize("name", ["mean", "max", "cls"])
def test_half_precision_equals_sentence_transformers_pooling(st_pooling, name):
    # An fp16 model (common for GPU inference) hands fp16 token vectors to the pooling. The module docstring
    # promises sentence-transformers' numerics, and its Pooling handles fp16 for every mode.
    tokens, mask = batch(torch.float16, seed=4, T=7, D=16)
    want = st_pooling(name, tokens, mask)
    got = pooling.pool(name, tokens, mask)
    assert got.dtype == torch.float16
    assert torch.allclose(got.float(), want.float(), atol=2e-3), (got.float() - want.float()).abs().max()


def test_last_token_reads_the_last_real_token_with_padding_on_either_side(st_pooling):
    tokens, mask = batch(seed=5, T=6, D=8)
    want = torch.stack([tokens[i, n - 1] for i, n in enumerate(LENGTHS)])
    assert torch.equal(pooling.pool("lasttoken", tokens, mask), want)
    left_tokens, left_mask = tokens.clone(), mask.flip(1)  # left padding, as decoder tokenizers pad
    for i, n in enumerate(LENGTHS):
        left_tokens[i, -n:] = tokens[i, :n]
    assert torch.equal(pooling.pool("lasttoken", left_tokens, left_mask), want)
    assert torch.equal(st_pooling("lasttoken", left_tokens, left_mask), want)


def test_embed_matches_sentence_transformers_minilm(minilm_path):
    # A real forward: `embed` on a padded batch gives what sentence-transformers gives for the same model
    # (all-MiniLM-L6-v2 ends in a Normalize module, so compare unit vectors).
    st = pytest.importorskip("sentence_transformers")
    from transformers import AutoModel, AutoTokenizer
    texts = ["A man is playing a guitar.", "Hi", "Two dogs run across a snowy field while their owner watches."]
    tokenizer = AutoTokenizer.from_pretrained(minilm_path)
    model = AutoModel.from_pretrained(minilm_path).eval()
    with torch.inference_mode():
        features = tokenizer(texts, padding="longest", truncation=True, max_length=128, return_tensors="pt")
        assert features["attention_mask"].sum(1).min() < features["attention_mask"].shape[1]  # padding present
        got = torch.nn.functional.normalize(pooling.embed(model, features, "mean"), dim=1)
        alone = torch.cat([pooling.embed(model, tokenizer([t], return_tensors="pt"), "mean") for t in texts])
    want = st.SentenceTransformer(str(minilm_path), device="cpu").encode(texts, convert_to_tensor=True)
    assert torch.allclose(got, want, atol=1e-5), (got - want).abs().max()
    # Padding a sentence inside a batch gives the embedding it has on its own.
    assert torch.allclose(got, torch.nn.functional.normalize(alone, dim=1), atol=1e-5)


def left_padded(tokens, mask):
    """The same rows with their padding moved to the front, as a decoder's tokenizer (padding_side="left") pads."""
    shifts = [int(n) for n in mask.shape[1] - mask.sum(dim=1)]
    return (torch.stack([row.roll(s, dims=0) for row, s in zip(tokens, shifts)]),
            torch.stack([row.roll(s, dims=0) for row, s in zip(mask, shifts)]))


@pytest.mark.parametrize("name", list(pooling.POOLINGS))
def test_left_padding_pools_the_same_real_tokens(name):
    """Every pooling reads the real tokens wherever the padding sits: [CLS] is the first real token, not token 0."""
    tokens, mask = batch(seed=5)
    moved, moved_mask = left_padded(tokens, mask)
    assert not torch.equal(moved[:, 0], tokens[:, 0])  # the rows really moved: token 0 is padding in two of them
    assert torch.equal(pooling.pool(name, moved, moved_mask), pooling.pool(name, tokens, mask))


@pytest.mark.parametrize("name", EXPRESSIBLE)
def test_left_padding_equals_sentence_transformers_pooling(st_pooling, name):
    tokens, mask = left_padded(*batch(seed=6, T=7, D=16))
    got, want = pooling.pool(name, tokens, mask), st_pooling(st_mode(name), tokens, mask)
    assert torch.allclose(got, want, atol=1e-6), (got - want).abs().max()
