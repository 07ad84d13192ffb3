"""Any encoder architecture the field uses (issue 29 §1): BERT, RoBERTa, XLM-RoBERTa, DistilBERT, MPNet, ELECTRA,
DeBERTa-v2 and ModernBERT, and decoder-only Llama and Qwen2 with last-token pooling. Each is a tiny random model
(hidden 32, 2 layers) with a real tokenizer of its kind: MiniLM's WordPiece where the architecture takes one, a
byte-level BPE (RoBERTa, MPNet, the decoders) or a Unigram (XLM-R, DeBERTa-v2) trained here on the shipped sample.

For each: the packed forward equals the padded one (or the run says once that it falls back), a few steps train,
the saved folder loads in AutoModel with nothing missing and in sentence-transformers with our embeddings, and the
miner and both evaluators run on it. A seq2seq model or one transformers has no base model for is refused."""
import contextlib
import gzip
import io
import json
import os

import pytest
import torch

import data_prep
import evaluate_retrieval
import evaluate_sts
import mine_negatives
from conftest import ROOT, run_in_process, write_tsv
from mnr import packing
from mnr.errors import ModelError
from mnr.models import check_model_name, load_encoder, load_model
from pooling import embed, encode, pool

SAMPLE = os.path.join(ROOT, "tests", "data")
ENCODERS = ["bert", "roberta", "xlm-roberta", "distilbert", "mpnet", "electra", "deberta-v2", "modernbert"]
DECODERS = ["llama", "qwen2"]
KINDS = ENCODERS + DECODERS
PACKED = ["bert", "roberta", "xlm-roberta", "distilbert", "mpnet", "electra"]  # the others fall back to padding
TEXTS = ["A man is playing a guitar.", "Someone plays an instrument.", "The cat sleeps on the warm windowsill.",
         "Hi"]
ROBERTA_SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]  # ids 0-4, as RoBERTa, XLM-R and MPNet number them
SMALL = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
             max_position_embeddings=130)  # RoBERTa-like: 128 tokens after the padding offset


def sample_lines(n=400):
    with gzip.open(os.path.join(SAMPLE, "nli", "snli_train_sample.tsv.gz"), "rt", encoding="utf-8") as f:
        next(f)
        return [text for line in f for text in line.rstrip("\n").split("\t")[:2]][:n]


def around(first, last):
    """A post-processor that puts `first` (or nothing) before and `last` after every text, as the real ones do."""
    from tokenizers import processors

    def build(tok):
        specials = [t for t in (first, last) if t]
        return processors.TemplateProcessing(
            single=" ".join(filter(None, (first, "$A", last))),
            pair=" ".join(filter(None, (first, "$A", last, last if first else None, "$B", last))),
            special_tokens=[(t, tok.token_to_id(t)) for t in specials])
    return build


def byte_bpe(specials, post):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(sample_lines(), trainers.BpeTrainer(
        vocab_size=400, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False))
    tok.post_processor = post(tok)
    return tok


def unigram(specials, unk, post):
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    tok.train_from_iterator(sample_lines(), trainers.UnigramTrainer(
        vocab_size=300, special_tokens=specials, unk_token=unk, show_progress=False))
    tok.post_processor = post(tok)
    return tok


def tokenizer_of(kind, minilm_path):
    import transformers
    roberta_names = dict(bos_token="<s>", eos_token="</s>", sep_token="</s>", cls_token="<s>", unk_token="<unk>",
                         pad_token="<pad>", mask_token="<mask>")
    if kind in ("bert", "distilbert", "electra", "modernbert"):  # WordPiece: MiniLM's (bert-base-uncased) vocabulary
        return transformers.AutoTokenizer.from_pretrained(minilm_path)
    if kind in ("roberta", "mpnet"):
        wrapper = transformers.RobertaTokenizerFast if kind == "roberta" else transformers.MPNetTokenizerFast
        return wrapper(tokenizer_object=byte_bpe(ROBERTA_SPECIALS, around("<s>", "</s>")), **roberta_names)
    if kind == "xlm-roberta":
        return transformers.XLMRobertaTokenizerFast(
            tokenizer_object=unigram(ROBERTA_SPECIALS, "<unk>", around("<s>", "</s>")), **roberta_names)
    if kind == "deberta-v2":
        return transformers.DebertaV2TokenizerFast(
            tokenizer_object=unigram(["[PAD]", "[CLS]", "[SEP]", "[UNK]", "[MASK]"], "[UNK]", around("[CLS]", "[SEP]")),
            bos_token="[CLS]", eos_token="[SEP]", sep_token="[SEP]", cls_token="[CLS]", unk_token="[UNK]",
            pad_token="[PAD]", mask_token="[MASK]")
    # Decoders: the end-of-sequence token appended to every text, as Qwen3-Embedding's tokenizer does, so last-token
    # pooling reads a token that has seen the whole text.
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=byte_bpe(["<|endoftext|>", "<|pad|>"], around(None, "<|endoftext|>")),
        eos_token="<|endoftext|>", pad_token="<|pad|>")


def build_model(kind, folder, minilm_path):
    from transformers import AutoConfig, AutoModel
    tokenizer = tokenizer_of(kind, minilm_path)
    extra = {"distilbert": dict(dim=32, n_layers=2, n_heads=2, hidden_dim=64),
             # local attention on every other layer, narrower than the sentences: the sliding window is exercised
             "modernbert": dict(cls_token_id=tokenizer.cls_token_id, sep_token_id=tokenizer.sep_token_id,
                                bos_token_id=tokenizer.cls_token_id, eos_token_id=tokenizer.sep_token_id,
                                global_attn_every_n_layers=2, local_attention=8),
             **{decoder: dict(num_key_value_heads=1, eos_token_id=tokenizer.eos_token_id,
                              bos_token_id=tokenizer.eos_token_id) for decoder in DECODERS},
             }.get(kind, {})
    config = AutoConfig.for_model(kind, vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                                  **SMALL, **extra)
    torch.manual_seed(0)
    AutoModel.from_config(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def start_models(tmp_path_factory, minilm_path):
    base = tmp_path_factory.mktemp("architectures")
    return {kind: build_model(kind, base / kind, str(minilm_path)) for kind in KINDS}


@pytest.fixture(scope="module")
def trained(start_models, tmp_path_factory):
    """Each architecture trained 2 steps by train_mnr (mean pooling; last-token for the decoders) -> {kind:
    (folder, what the run printed)}."""
    base, runs = tmp_path_factory.mktemp("trained"), {}
    for kind, start in start_models.items():
        packing.SAID.discard(kind)  # as in a fresh process: the fallback note not yet said
        out, printed = str(base / kind), io.StringIO()
        with contextlib.redirect_stdout(printed):
            failed = run_in_process(["--model-name", start, "--nli-data", os.path.join(SAMPLE, "nli"),
                                     "--batch-size", "4", "--max-steps", "2", "--device", "cpu", "--dropout", "0",
                                     "--pooling", "lasttoken" if kind in DECODERS else "mean", "--output-dir", out])
        assert failed is None, f"{kind}: {failed}"
        runs[kind] = (out, printed.getvalue())
    return runs


@pytest.fixture(scope="module")
def triplets():
    return data_prep.make_rows(data_prep.load_nli(os.path.join(SAMPLE, "nli")), hard_negatives=True)[:12]


@pytest.mark.parametrize("kind", PACKED)
def test_packed_forward_equals_the_padded_one(start_models, triplets, kind):
    model, tokenizer = load_model(start_models[kind])
    model.eval()
    assert packing.can_pack(model)
    columns = data_prep.collate(triplets, tokenizer)
    assert ("token_type_ids" in columns[0]) == (kind in ("bert", "electra", "distilbert"))  # what each tokenizer makes
    with torch.no_grad():
        padded = [embed(model, c, "mean") for c in columns]
        packed = [pool("mean", t, m) for t, m in packing.token_embeddings(model, columns, width=64)]
    for a, b in zip(padded, packed):
        assert torch.allclose(a, b, atol=1e-5), (kind, (a - b).abs().max())
    first = packing.first_position(model.config)
    assert first == (model.config.pad_token_id + 1 if kind in ("roberta", "xlm-roberta", "mpnet") else 0)
    _, positions, _, places = packing.pack(columns, 64, first)
    row, start, n = places[0][0].tolist()
    assert positions[row, start:start + n].tolist() == list(range(first, first + n))  # restart at the offset


def test_roberta_positions_from_zero_would_be_wrong(start_models, triplets):
    """The offset matters: RoBERTa packed with BERT's positions gives other embeddings."""
    model, tokenizer = load_model(start_models["roberta"])
    model.eval()
    columns = data_prep.collate(triplets, tokenizer)
    ids, positions, mask, _ = packing.pack(columns, 64, 0, model.config.pad_token_id)
    right = packing.pack(columns, 64, packing.first_position(model.config), model.config.pad_token_id)[1]
    with torch.no_grad():
        wrong = model(input_ids=ids, position_ids=positions, attention_mask=mask).last_hidden_state
        good = model(input_ids=ids, position_ids=right, attention_mask=mask).last_hidden_state
    assert not torch.allclose(wrong, good, atol=1e-3)


@pytest.mark.parametrize("kind", [kind for kind in KINDS if kind not in PACKED])
def test_what_packing_cannot_serve_falls_back_said_once(start_models, capsys, kind):
    model, tokenizer = load_model(start_models[kind])
    packing.SAID.discard(kind)
    assert not packing.can_pack(model) and not packing.can_pack(model)
    notes = [line for line in capsys.readouterr().out.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and kind in notes[0] and "padded forward" in notes[0]
    # and the padded forward embeds each text as it would alone
    encoder = (model, tokenizer, "lasttoken" if kind in DECODERS else "mean", 64)
    together = encode(encoder, TEXTS)
    alone = torch.cat([encode(encoder, [t]) for t in TEXTS])
    assert torch.allclose(together, alone, atol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_trains_saves_and_reloads_with_the_same_embeddings(start_models, trained, kind):
    st = pytest.importorskip("sentence_transformers")
    from safetensors.torch import load_file
    from transformers import AutoModel
    folder, printed = trained[kind]
    with open(os.path.join(folder, "train_log.jsonl")) as f:
        assert [json.loads(line)["step"] for line in f if '"loss"' in line] == [1, 2]
    before = load_file(os.path.join(start_models[kind], "model.safetensors"))
    after = load_file(os.path.join(folder, "model.safetensors"))
    assert any(not torch.equal(before[k], after[k]) for k in before if k in after)  # the steps changed weights
    notes = [line for line in printed.splitlines() if line.startswith("note:") and "padded forward" in line]
    assert len(notes) == (0 if kind in PACKED else 1), printed[-2000:]  # said once, at start
    model, info = AutoModel.from_pretrained(folder, output_loading_info=True)
    assert not info["missing_keys"] and not info["mismatched_keys"], info
    with open(os.path.join(folder, "1_Pooling", "config.json")) as f:
        assert json.load(f)["pooling_mode_lasttoken" if kind in DECODERS else "pooling_mode_mean_tokens"] is True
    encoder = load_encoder(folder, "cpu")
    if kind in DECODERS:  # the token last-token pooling reads is the end-of-sequence one, after the whole text
        assert encoder.tokenizer(TEXTS[0])["input_ids"][-1] == encoder.tokenizer.eos_token_id
    ours = encode(encoder, TEXTS)
    theirs = st.SentenceTransformer(folder, device="cpu").encode(TEXTS, convert_to_tensor=True)
    assert torch.allclose(ours, theirs, atol=1e-5), (ours - theirs).abs().max()


@pytest.mark.parametrize("kind", KINDS)
def test_the_miner_and_both_evaluators_run(trained, tmp_path, capsys, kind):
    folder, _ = trained[kind]
    evaluate_sts.main([folder, "--sts-data", os.path.join(SAMPLE, "stsb"), "--json"])
    evaluate_retrieval.main([folder, "--beir", os.path.join(SAMPLE, "beir-snli"), "--json"])
    texts = sample_lines(80)
    rows = list(zip(texts[0::2], texts[1::2]))
    table = write_tsv(tmp_path / "pairs.tsv", ["anchor", "positive"], rows)
    mine_negatives.main(["--train-data", table, "--model-name", folder, "--output", str(tmp_path / "mined.tsv"),
                         "--num-negatives", "1", "--relative-margin", "0"])  # random decoders: all alike
    out = capsys.readouterr().out
    assert '"spearman"' in out and "ndcg@10" in out, out[-2000:]
    with open(tmp_path / "mined.tsv") as f:
        assert len(f.read().splitlines()) > 1


def test_seq2seq_and_models_without_a_base_model_are_refused(tmp_path):
    from transformers import CONFIG_MAPPING
    from transformers.models.auto.modeling_auto import MODEL_MAPPING_NAMES
    headless = next(t for t in CONFIG_MAPPING if t not in MODEL_MAPPING_NAMES)
    for model_type, extra in (("t5", {"is_encoder_decoder": True}), ("bart", {"is_encoder_decoder": True}),
                              (headless, {})):
        folder = tmp_path / model_type
        folder.mkdir()
        (folder / "config.json").write_text(json.dumps({"model_type": model_type, **extra}))
        with pytest.raises(ModelError, match="supported: text encoders") as error:
            check_model_name(str(folder))
        assert "\n" not in str(error.value) and model_type in str(error.value)
    failed = run_in_process(["--model-name", str(tmp_path / "t5"), "--output-dir", str(tmp_path / "out")])
    assert failed.startswith("error: ") and "encoder-decoder (seq2seq)" in failed and "bert, roberta" in failed


@pytest.mark.parametrize("kind", ["distilbert", "modernbert", "llama"])
def test_dropout_sets_the_rates_each_architecture_names(start_models, kind):
    """--dropout 0 must switch dropout off whatever the config calls it (BERT's names mean nothing to these)."""
    model, _ = load_model(start_models[kind], dropout=0.0)
    rates = {k: v for k, v in model.config.to_dict().items() if "dropout" in k and isinstance(v, float)}
    assert rates and not any(rates.values()), rates
    assert all(m.p == 0 for m in model.modules() if isinstance(m, torch.nn.Dropout))
