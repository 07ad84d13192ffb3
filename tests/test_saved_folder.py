"""A saved folder keeps what the start model had (Normalize and other modules after pooling, the pooler weights,
the max sequence length), loads in sentence-transformers and transformers with nothing missing, follows the
umask, and its checkpoints still resume into the pooler-less training model."""
import contextlib
import json
import os
import stat

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from mnr import checkpoint, save
from mnr import model_card
from mnr.errors import ResumeError
from mnr import models

TEXTS = ["A man is playing a guitar.", "Someone plays an instrument.", "The cat sleeps on the warm windowsill."]


@contextlib.contextmanager
def umask(mask):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def run_config(model_name, **overrides):
    return {"MODEL_NAME": str(model_name), "MAX_LENGTH": 128, "POOLING": "mean", **overrides}


def save_run(model_name, out, mask=0o022, **overrides):
    model, tokenizer = models.load_model(str(model_name))
    with umask(mask):
        save.save_model(model, tokenizer, str(out), run_config(model_name, **overrides))
    return model, tokenizer


def module_types(folder):
    with open(os.path.join(folder, "modules.json")) as f:
        return [m["type"].rsplit(".", 1)[-1] for m in json.load(f)]


def modes(folder):
    """{relative path: permission bits} for the folder and everything in it."""
    found = {".": stat.S_IMODE(os.stat(folder).st_mode)}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = os.path.join(root, name)
            found[os.path.relpath(path, folder)] = stat.S_IMODE(os.stat(path).st_mode)
    return found


def assert_modes(folder, file_mode, dir_mode):
    wrong = {p: oct(m) for p, m in modes(folder).items()
             if m != (dir_mode if os.path.isdir(os.path.join(folder, p)) else file_mode)}
    assert not wrong, wrong


@pytest.fixture(scope="module")
def minilm_saved(tmp_path_factory, minilm_path):
    """The real MiniLM saved without training: every difference from the start model is the saving's."""
    out = tmp_path_factory.mktemp("saved") / "minilm"
    save_run(minilm_path, out)
    return str(out)


def test_modules_after_pooling_and_max_length_are_kept(minilm_saved):
    assert module_types(minilm_saved) == ["Transformer", "Pooling", "Normalize"]
    with open(os.path.join(minilm_saved, "sentence_bert_config.json")) as f:
        assert json.load(f)["max_seq_length"] == 256  # MiniLM's own, not the run's default MAX_LENGTH


def test_sentence_transformers_encodes_as_the_start_model(minilm_saved, minilm_path):
    st = pytest.importorskip("sentence_transformers")
    saved = st.SentenceTransformer(minilm_saved, device="cpu").encode(TEXTS)
    start = st.SentenceTransformer(str(minilm_path), device="cpu").encode(TEXTS)
    np.testing.assert_allclose(np.linalg.norm(saved, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(saved, start, atol=1e-5)


def test_automodel_loads_with_nothing_missing_and_the_start_pooler(minilm_saved, minilm_path):
    from transformers import AutoModel
    model, info = AutoModel.from_pretrained(minilm_saved, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    start = AutoModel.from_pretrained(str(minilm_path))
    assert torch.equal(model.pooler.dense.weight, start.pooler.dense.weight)
    assert torch.equal(model.pooler.dense.bias, start.pooler.dense.bias)


def test_saved_files_follow_the_umask(minilm_saved):
    assert_modes(minilm_saved, 0o644, 0o755)  # model.safetensors too (safetensors writes it 0600)


def test_a_stricter_umask_is_followed_too(tmp_path, tiny_model_dir):
    out = tmp_path / "model"
    save_run(tiny_model_dir, out, mask=0o027)
    assert_modes(str(out), 0o640, 0o750)


@pytest.mark.parametrize("start", ["tiny", "uncached hub name"])
def test_start_without_modules_json_saves_transformer_and_pooling(tmp_path, tiny_model_dir, start):
    st = pytest.importorskip("sentence_transformers")
    model, tokenizer = models.load_model(tiny_model_dir)
    name = tiny_model_dir if start == "tiny" else "nobody-here/not-a-cached-model"
    assert (save.start_model_folder(name) is None) == (start != "tiny")
    with umask(0o022):
        save.save_model(model, tokenizer, str(tmp_path / "model"), run_config(name))
    assert module_types(tmp_path / "model") == ["Transformer", "Pooling"]
    with open(tmp_path / "model" / "sentence_bert_config.json") as f:
        assert json.load(f)["max_seq_length"] == 128  # no start model's to keep: the run's
    embeddings = st.SentenceTransformer(str(tmp_path / "model"), device="cpu").encode(TEXTS)
    assert embeddings.shape == (len(TEXTS), 32)
    assert_modes(str(tmp_path / "model"), 0o644, 0o755)


def test_max_seq_length_rule(minilm_path):
    start = str(minilm_path)
    assert save.sentence_bert_config(start, run_config(start), None)["max_seq_length"] == 256
    # A MAX_LENGTH the user set (away from the default) is theirs to keep.
    assert save.sentence_bert_config(start, run_config(start, MAX_LENGTH=64), None)["max_seq_length"] == 64
    facts = {"defaults": {"MAX_LENGTH": 256}}
    assert save.sentence_bert_config(start, run_config(start), facts)["max_seq_length"] == 128


def optimizer_and_scheduler(model):
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)


def test_checkpoint_keeps_the_pooler_and_resumes_into_the_training_model(tmp_path, minilm_path):
    model, tokenizer = models.load_model(str(minilm_path))
    assert not any(k.startswith("pooler.") for k in model.state_dict())  # training never builds it
    with torch.no_grad():
        model.embeddings.word_embeddings.weight[0] += 1.0  # as if trained: resume must bring this back
    config = run_config(minilm_path)
    with umask(0o022):
        checkpoint.save_checkpoint(str(tmp_path), 3, model, tokenizer, *optimizer_and_scheduler(model), config,
                                   [torch.get_rng_state()], keep=2)
    folder = tmp_path / "checkpoint-3"
    assert {"pooler.dense.weight", "pooler.dense.bias"} <= load_file(folder / "model.safetensors").keys()
    assert module_types(folder) == ["Transformer", "Pooling", "Normalize"]
    assert_modes(str(folder), 0o644, 0o755)

    fresh, _ = models.load_model(str(minilm_path))
    step, _ = checkpoint.load_checkpoint(str(folder), fresh, *optimizer_and_scheduler(fresh), config)
    assert step == 3
    for key, value in model.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value), key


def test_resume_names_the_weights_a_checkpoint_lacks(tmp_path, tiny_model_dir):
    model, tokenizer = models.load_model(tiny_model_dir)
    config = run_config(tiny_model_dir)
    checkpoint.save_checkpoint(str(tmp_path), 1, model, tokenizer, *optimizer_and_scheduler(model), config,
                               [torch.get_rng_state()], keep=2)
    path = tmp_path / "checkpoint-1" / "model.safetensors"
    weights = load_file(path)
    del weights["embeddings.word_embeddings.weight"]
    save_file(weights, path, metadata={"format": "pt"})
    with pytest.raises(ResumeError, match="lacks 1 of the model's weights .*embeddings.word_embeddings.weight"):
        checkpoint.load_checkpoint(str(tmp_path / "checkpoint-1"), model, *optimizer_and_scheduler(model), config)


@pytest.fixture(scope="module")
def dense_start(tmp_path_factory, tiny_model_dir):
    """A sentence-transformers start model with Dense and Normalize after pooling, built around the tiny BERT."""
    st = pytest.importorskip("sentence_transformers")
    from sentence_transformers.models import Dense, Normalize, Pooling, Transformer
    torch.manual_seed(0)
    transformer = Transformer(tiny_model_dir)
    start = st.SentenceTransformer(modules=[transformer, Pooling(32, "mean"), Dense(32, 16), Normalize()],
                                   device="cpu")
    path = tmp_path_factory.mktemp("dense-start") / "model"
    start.save(str(path))
    return str(path)


def test_dense_and_normalize_are_copied_in_order(tmp_path, dense_start):
    st = pytest.importorskip("sentence_transformers")
    save_run(dense_start, tmp_path / "model")
    assert module_types(tmp_path / "model") == ["Transformer", "Pooling", "Dense", "Normalize"]
    saved = st.SentenceTransformer(str(tmp_path / "model"), device="cpu").encode(TEXTS)
    start = st.SentenceTransformer(dense_start, device="cpu").encode(TEXTS)
    assert saved.shape == (len(TEXTS), 16)
    np.testing.assert_allclose(saved, start, atol=1e-5)


def test_a_start_model_in_the_hugging_face_cache_is_found_by_its_hub_name(tmp_path, minilm_path, monkeypatch):
    """The cache layout huggingface_hub writes: refs/main names a snapshot folder holding the files."""
    import huggingface_hub.constants
    snapshot = tmp_path / "models--someone--minilm" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    for name in ("config.json", "modules.json", "sentence_bert_config.json", "model.safetensors"):
        os.symlink(os.path.join(minilm_path, name), snapshot / name)
    (tmp_path / "models--someone--minilm" / "refs").mkdir()
    (tmp_path / "models--someone--minilm" / "refs" / "main").write_text("abc123")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    assert save.start_model_folder("someone/minilm") == str(snapshot)
    assert save.start_pooler(str(snapshot), "bert").keys() == {"pooler.dense.weight", "pooler.dense.bias"}
    assert [model_card.module_kind(m) for m in save.modules_after_pooling(str(snapshot))] == ["Normalize"]
