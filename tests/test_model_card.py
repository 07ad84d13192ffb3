"""The model card (README.md) in every saved folder: hub metadata that parses, the run in plain words, and loading
code that gives the model's own embeddings."""
import os
import re
import shlex

import pytest
import torch
import yaml

from mnr import checkpoint, save
from mnr import model_card
import pooling
import train_mnr
from mnr import models
from mnr.flags import config_of

DEFAULTS = config_of(train_mnr.parse_args([]))  # train_mnr.py's hyperparameters as they stand
COMMAND = ["train_mnr.py", "--batch-size", "64", "--sts-data", "hub", "--eval-every", "1000",
           "--output-dir", "runs/it's mine", "--hard-negatives"]
CONFIG = dict(DEFAULTS, BATCH_SIZE=64, STS_DATA="hub", EVAL_EVERY=1000, OUTPUT_DIR="runs/it's mine",
              HARD_NEGATIVES=True)
FACTS = {"command": COMMAND, "defaults": DEFAULTS,
         "data": {"source": "SNLI + MultiNLI train from the hub", "rows": 277230, "pairs": 314315,
                  "negatives_per_row": 1},
         "steps": 4331, "total_steps": 4331, "wall_time_s": 3725.2, "device": "cuda (NVIDIA A100)",
         "sts_dev": [[0, 0.5917], [1000, 0.8236], [4331, 0.84127]]}


def card_text(folder):
    """README.md of `folder` -> (its front matter, parsed, the text after it)."""
    with open(os.path.join(folder, "README.md")) as f:
        text = f.read()
    assert text.startswith("---\n")
    front, body = text[4:].split("\n---\n", 1)
    return yaml.safe_load(front), body


def card(folder, config=CONFIG, facts=FACTS):
    model_card.write_model_card(str(folder), config, facts)
    return card_text(folder)


def test_front_matter_is_hub_metadata(tmp_path):
    meta, _ = card(tmp_path)
    assert meta["base_model"] == "bert-base-uncased"
    assert meta["library_name"] == "sentence-transformers"
    assert meta["pipeline_tag"] == "sentence-similarity"
    assert meta["language"] == ["en"]
    assert "loss:MultipleNegativesRankingLoss" in meta["tags"]
    assert meta["datasets"] == model_card.NLI_HUB_DATASETS
    result = meta["model-index"][0]["results"][0]
    assert meta["model-index"][0]["name"] == "it's mine"
    assert result["task"]["type"] == "semantic-similarity"
    assert result["dataset"] == {"name": "STSb dev", "type": "nyu-mll/glue", "config": "stsb", "split": "validation"}
    assert result["metrics"] == [{"type": "spearman_cosine", "value": 0.8413, "name": "Spearman Cosine"}]


def test_local_inputs_are_no_hub_metadata(tmp_path, tiny_model_dir):
    config = dict(CONFIG, MODEL_NAME=tiny_model_dir, NLI_DATA="../shared/data/nli", STS_DATA=None, LOSS="symmetric",
                  MATRYOSHKA_DIMS="32,16")
    meta, body = card(tmp_path, config, {"defaults": DEFAULTS})
    assert "base_model" not in meta and "datasets" not in meta and "model-index" not in meta  # paths are no hub ids
    assert {"loss:MultipleNegativesSymmetricRankingLoss", "loss:MatryoshkaLoss"} <= set(meta["tags"])
    assert f"`{tiny_model_dir}`" in body and "`../shared/data/nli`" in body  # as the user typed them
    assert "truncate_dim=16" in body and "--truncate-dim 16" in body


def test_a_card_from_the_config_alone(tmp_path):
    meta, body = card(tmp_path, {"MODEL_NAME": "bert-base-uncased", "MAX_LENGTH": 128, "POOLING": "cls"}, None)
    assert meta["library_name"] == "sentence-transformers"
    assert "`POOLING`" in body and "'cls'" in body
    assert "def cls_pool(" in body and "mask.to(torch.long).argmax(dim=1)" in body  # the function itself, not mean


def test_body_holds_the_command_changes_data_and_scores(tmp_path):
    _, body = card(tmp_path)
    assert "python " + shlex.join(COMMAND) in body  # quoted exactly: the output dir has a quote in it
    changed = body.split("Changed from the defaults:")[1].split("| Hyperparameter")[0]
    assert set(re.findall(r"`(\w+)`", changed)) == {"HARD_NEGATIVES", "BATCH_SIZE", "STS_DATA", "EVAL_EVERY", "OUTPUT_DIR"}
    assert "64" in changed and str(DEFAULTS["BATCH_SIZE"]) in changed  # the value and the default it replaced
    table = body.split("| Hyperparameter")[1]
    assert all(f"`{name}`" in table for name in DEFAULTS)  # the full table holds the unchanged ones too
    assert all(figure in body for figure in ("277,230", "314,315", "4,331", "1:02:05", "cuda (NVIDIA A100)"))
    assert all(figure in body for figure in ("0.5917", "1,000", "0.8236", "0.8413"))
    assert "SentenceTransformer(\"runs/it's mine\")" in body and "AutoModel.from_pretrained(\"runs/it's mine\")" in body
    assert f"torch {torch.__version__}" in body


def test_yaml_strings_survive_any_characters():
    value = {"a": ["plain", 'quote " and: colon', "#hash", "yes", "null", "1.5", "ünï"], "b": {"c": [{"d": 1.5}]}}
    assert yaml.safe_load("\n".join(model_card.to_yaml(value))) == value


SENTENCES = ["A man is playing a guitar.", "Someone plays an instrument."]  # the ones the card's examples embed


def card_example_embeddings(model, tokenizer, out, config):
    """Save the model to `out`, then run the transformers example of its card -> (card text, the embeddings)."""
    save.save_model(model, tokenizer, out, config)
    with open(os.path.join(out, "README.md")) as f:
        body = f.read()
    code = body.split("With transformers alone", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    scope = {}
    exec(code, scope)  # noqa: S102 - our own generated example
    return body, scope["embeddings"]


@pytest.mark.parametrize("pooling_name", ["mean", "cls", "max"])
def test_transformers_code_in_the_card_gives_the_models_embeddings(tmp_path, tiny_model_dir, pooling_name):
    model, tokenizer = models.load_model(tiny_model_dir)
    config = {"MODEL_NAME": tiny_model_dir, "MAX_LENGTH": 128, "POOLING": pooling_name}
    _, embeddings = card_example_embeddings(model, tokenizer, str(tmp_path / "model"), config)
    model.eval()
    with torch.no_grad():
        expected = pooling.embed(model, tokenizer(SENTENCES, padding=True, return_tensors="pt"), pooling_name)
    torch.testing.assert_close(embeddings, expected, atol=1e-5, rtol=1e-5)


def test_the_card_normalises_when_the_folder_has_normalize(tmp_path, minilm_path):
    st = pytest.importorskip("sentence_transformers")
    model, tokenizer = models.load_model(str(minilm_path))
    out = str(tmp_path / "model")
    config = {"MODEL_NAME": str(minilm_path), "MAX_LENGTH": 128, "POOLING": "mean"}
    body, embeddings = card_example_embeddings(model, tokenizer, out, config)
    assert "of unit length" in body and "F.normalize" in body
    expected = st.SentenceTransformer(out, device="cpu").encode(SENTENCES)
    torch.testing.assert_close(embeddings, torch.from_numpy(expected), atol=1e-5, rtol=1e-5)


def test_saved_model_and_checkpoint_folders_have_a_card(tmp_path, tiny_model_dir):
    model, tokenizer = models.load_model(tiny_model_dir)
    config = dict(CONFIG, MODEL_NAME=tiny_model_dir, OUTPUT_DIR=str(tmp_path / "run"))
    save.save_model(model, tokenizer, str(tmp_path / "run"), config, facts=FACTS)
    optimizer = torch.optim.AdamW(model.parameters())
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    checkpoint.save_checkpoint(str(tmp_path / "run"), 2000, model, tokenizer, optimizer, scheduler, config,
                               [torch.get_rng_state()], keep=2, facts=FACTS)
    meta, body = card_text(tmp_path / "run")
    assert meta["model-index"][0]["results"][0]["metrics"][0]["value"] == 0.8413
    meta, body = card_text(tmp_path / "run" / "checkpoint-2000")
    assert meta["library_name"] == "sentence-transformers"
    assert f"SentenceTransformer(\"{tmp_path / 'run' / 'checkpoint-2000'}\")" in body  # not the temporary folder
    assert "2,000 steps of 4,331" in body
