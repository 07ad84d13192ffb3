"""Bad input: one clear line naming the file and the problem, a non-zero exit, nothing written.

Each case runs the command-line entry in-process (`main(argv)` raises SystemExit with the message Python
would print); test_core_train.py checks the same mechanics through real subprocesses."""
import os

import pytest

import evaluate_sts
import train_mnr
from conftest import one_line_error, write_tsv

NLI_HEADER = ("premise", "hypothesis", "label")

GOOD_ROWS = [("A man plays a guitar.", "A man plays music.", "0"), ("A dog runs.", "An animal moves.", "0"),
             ("Kids swim in a lake.", "Children are in water.", "0"), ("A chef cooks.", "Someone makes food.", "0"),
             ("A man plays a guitar.", "Nobody plays music.", "2")]


def fails(argv, *expected):
    return one_line_error(lambda: train_mnr.main(train_mnr.parse_args(argv)), *expected)


@pytest.fixture
def good(tmp_path):
    return write_tsv(tmp_path / "train.tsv", NLI_HEADER, GOOD_ROWS)


@pytest.fixture
def base(tmp_path, tiny_model_dir):
    return lambda data, *extra: ["--model-name", tiny_model_dir, "--nli-data", data, "--batch-size", "2",
                                 "--max-steps", "1", "--output-dir", str(tmp_path / "out"), *extra]


def test_missing_path(base, tmp_path):
    fails(base(str(tmp_path / "nope.tsv")), "nope.tsv", "no such file")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions")
def test_unreadable_path(base, good):
    os.chmod(good, 0)
    fails(base(good), "train.tsv", "not readable")


def test_empty_file(base, tmp_path):
    (tmp_path / "train.tsv").write_text("")
    fails(base(str(tmp_path / "train.tsv")), "train.tsv", "empty")


def test_truncated_gzip(base, tmp_path):
    full = write_tsv(tmp_path / "full.tsv.gz", NLI_HEADER, GOOD_ROWS * 200)
    data = open(full, "rb").read()
    (tmp_path / "train.tsv.gz").write_bytes(data[: len(data) // 2])
    fails(base(str(tmp_path / "train.tsv.gz")), "train.tsv.gz", "could not be read")


def test_corrupt_gzip(base, tmp_path):
    (tmp_path / "train.tsv.gz").write_bytes(b"this is not gzip at all\n" * 10)
    fails(base(str(tmp_path / "train.tsv.gz")), "train.tsv.gz", "could not be read")


def test_missing_columns(base, tmp_path):
    path = write_tsv(tmp_path / "train.tsv", ("sentence1", "sentence2"), [("a", "b")])
    fails(base(path), "missing column(s) premise, hypothesis, label", "found sentence1, sentence2")


def test_bad_label(base, tmp_path):
    path = write_tsv(tmp_path / "train.tsv", NLI_HEADER, GOOD_ROWS + [("x", "y", "maybe")])
    fails(base(path), "train.tsv", "bad label 'maybe'")


def test_no_entailment_rows(base, tmp_path):
    path = write_tsv(tmp_path / "train.tsv", NLI_HEADER, [("a", "b", "1"), ("c", "d", "2")])
    fails(base(path), "no usable rows")


@pytest.mark.parametrize("flag,value", [("--batch-size", "0"), ("--lr", "0"), ("--lr", "-1e-5"), ("--scale", "0"),
                                        ("--max-steps", "0"), ("--epochs", "0"), ("--mini-batch-size", "0")])
def test_non_positive_values(base, good, flag, value):
    fails(base(good, f"{flag}={value}"), flag, "must be positive")  # "=": argparse reads "-1e-5" as a flag otherwise


def test_batch_larger_than_data(base, good):
    fails(base(good, "--batch-size", "50"), "batch size 50 is larger than the 4 usable rows")


def test_model_folder_missing(good, tmp_path):
    fails(["--model-name", str(tmp_path / "no-model"), "--nli-data", good, "--batch-size", "2"], "no-model")


def test_folder_without_a_model(good, tmp_path):
    os.makedirs(tmp_path / "empty-model")
    fails(["--model-name", str(tmp_path / "empty-model"), "--nli-data", good, "--batch-size", "2"],
          "empty-model", "holds no model")


def test_output_path_is_a_file(base, good, tmp_path):
    (tmp_path / "taken").write_text("keep me")
    argv = base(good)
    argv[argv.index("--output-dir") + 1] = str(tmp_path / "taken")
    fails(argv, "is an existing file")
    assert (tmp_path / "taken").read_text() == "keep me"


def test_sts_score_not_numeric(base, good, tmp_path):
    sts = write_tsv(tmp_path / "dev.tsv", ("sentence1", "sentence2", "score"), [("a", "b", "3.0"), ("c", "d", "high")])
    fails(base(good, "--sts-data", sts), "dev.tsv", "score column is not numeric", "'high'")
    with pytest.raises(SystemExit) as exit_info:
        evaluate_sts.main(["some-model", "--sts-data", sts])
    assert "score column is not numeric" in str(exit_info.value.code)


def test_hub_unreachable(base, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr("mnr.hub.may_load", lambda *a, **k: False)
    fails(base("hub"), "hub is unreachable", "--nli-data PATH")


def test_nothing_written_on_failure(base, tmp_path):
    with pytest.raises(SystemExit):
        train_mnr.main(train_mnr.parse_args(base(str(tmp_path / "nope.tsv"))))
    assert not (tmp_path / "out").exists()


def test_unknown_flag_is_rejected_with_the_closest_known_one(capsys):
    with pytest.raises(SystemExit) as exit_info:
        train_mnr.parse_args(["--bogus", "1"])
    assert exit_info.value.code == 2 and "unrecognized arguments: --bogus" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        train_mnr.parse_args(["--batchsize", "64"])
    assert exit_info.value.code == 2
    assert "unrecognized arguments: --batchsize 64; did you mean --batch-size?" in capsys.readouterr().err


def test_hub_model_name_without_network(good, monkeypatch):
    monkeypatch.setattr("mnr.hub.may_load", lambda *a, **k: False)
    fails(["--model-name", "no-such-org-model-xyz", "--nli-data", good, "--batch-size", "2"],
          "no-such-org-model-xyz", "hub is unreachable", "--model-name")


def test_every_offline_input_is_named_in_one_line(tmp_path, monkeypatch):
    """Without network, the model, the NLI data and the STS data that need the hub come in one message, each with
    its local alternative, before any work (nothing is written)."""
    monkeypatch.setattr("mnr.hub.may_load", lambda *a, **k: False)
    message = fails(["--model-name", "no-such-org-model-xyz", "--nli-data", "hub", "--sts-data", "hub",
                     "--output-dir", str(tmp_path / "out")],
                    "hub is unreachable", "--model-name FOLDER", "no-such-org-model-xyz", "--nli-data PATH",
                    "--sts-data PATH")
    assert message.count("--") >= 3
    assert not (tmp_path / "out").exists()


def test_train_data_replaces_the_nli_flags(good, tmp_path, tiny_model_dir):
    fails(["--model-name", tiny_model_dir, "--train-data", good, "--nli-data", good], "--train-data replaces")
    fails(["--model-name", tiny_model_dir, "--train-data", good, "--hard-negatives"], "--train-data replaces")


def test_hub_train_data_without_network(good, tiny_model_dir, monkeypatch):
    monkeypatch.setattr("mnr.hub.may_load", lambda *a, **k: False)
    fails(["--model-name", tiny_model_dir, "--train-data", "sentence-transformers/all-nli:triplet"],
          "hub is unreachable", "--train-data PATH")


@pytest.mark.parametrize("extra,expected", [
    (["--matryoshka-dims", "0"], "must be positive"),
    (["--matryoshka-dims", "16,8", "--matryoshka-weights", "1"], "one --matryoshka-weights value each"),
    (["--matryoshka-dims", "16,x"], "whole numbers"),
    (["--matryoshka-weights", "1"], "needs --matryoshka-dims"),
    (["--matryoshka-dims", "64,16"], "larger than the model's 32 dimensions")])
def test_bad_matryoshka_settings(base, good, extra, expected):
    fails(base(good, *extra), expected)
