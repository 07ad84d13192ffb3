"""STS files and evaluator flags that used to print a table of NaN or a traceback (issue 27 §2/§3): each is one
`error:` line and exit status 1, before any model is scored."""
import os

import pytest

import compare_runs
import evaluate_sts
from conftest import run_in_process, run_script, write_tsv

STS_HEADER = ("sentence1", "sentence2", "score")
ROWS = [(f"a man plays guitar number {i}", f"someone plays music {i}", f"{i % 6}.0") for i in range(12)]


def sts_file(tmp_path, rows=ROWS, name="dev.tsv"):
    return write_tsv(tmp_path / name, STS_HEADER, rows)


def with_score(row, score, rows=ROWS):
    return [r if i != row - 1 else (*r[:2], score) for i, r in enumerate(rows)]


def evaluate_fails(argv, *expected):
    with pytest.raises(SystemExit) as exit_info:
        evaluate_sts.main(argv)
    message = str(exit_info.value.code)
    assert exit_info.value.code not in (0, None) and message.startswith("error:") and "\n" not in message, message
    for part in expected:
        assert part in message, message
    return message


@pytest.mark.parametrize("score,expected", [
    ("nan", "row 4: score 'nan' is not a finite number"), ("inf", "row 4: score 'inf' is not a finite number"),
    ("-inf", "score '-inf' is not a finite number"), ("7.5", "row 4: score '7.5' is outside the STS range 0-5"),
    ("-0.5", "score '-0.5' is outside the STS range 0-5"), ("35", "rescale the file's scores to 0-5")])
def test_bad_scores_are_refused_naming_the_row(tmp_path, tiny_model_dir, score, expected):
    path = sts_file(tmp_path, with_score(4, score))
    evaluate_fails([tiny_model_dir, "--sts-data", path], path, expected)
    # the scale's ends are scores
    pairs, gold = evaluate_sts.load_sts(sts_file(tmp_path, with_score(1, "0", with_score(2, "5.000")), "ok.tsv"))
    assert len(pairs) == 12 and gold[:2] == [0.0, 1.0]


@pytest.mark.parametrize("rows,expected", [
    (ROWS[:1], "1 scored pair(s); a correlation needs at least 2"),
    ([(*r[:2], "3.0") for r in ROWS], "all 12 gold scores are equal (3)")])
def test_too_few_or_equal_scores_are_refused(tmp_path, tiny_model_dir, rows, expected):
    evaluate_fails([tiny_model_dir, "--sts-data", sts_file(tmp_path, rows)], expected)


@pytest.mark.parametrize("value", ["0", "-3"])
def test_batch_size_must_be_positive(tiny_model_dir, sts_dir, value):
    evaluate_fails([tiny_model_dir, "--sts-data", sts_dir, f"--batch-size={value}"],
                   f"--batch-size must be positive, got {value}")


def test_training_with_a_nan_sts_dev_file_stops_before_training(tmp_path, tiny_model_dir):
    train = write_tsv(tmp_path / "train.tsv", ("anchor", "positive"), [r[:2] for r in ROWS])
    sts_dir = tmp_path / "sts"
    sts_dir.mkdir()
    sts_file(sts_dir, with_score(2, "NaN"))
    message = run_in_process(["--model-name", tiny_model_dir, "--train-data", train, "--sts-data", str(sts_dir),
                              "--batch-size", "4", "--output-dir", str(tmp_path / "out")])
    assert message.startswith("error:") and "row 2: score 'NaN' is not a finite number" in message, message
    assert not (tmp_path / "out").exists()


def test_nan_sts_file_through_the_script_exits_1_with_one_line(tmp_path, tiny_model_dir):
    path = sts_file(tmp_path, with_score(3, "nan"))
    result = run_script("evaluate_sts.py", tiny_model_dir, "--sts-data", path, timeout=300)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and result.stdout == "", result.stdout  # no table of nan
    assert lines[-1] == (f"error: {path}: row 3: score 'nan' is not a finite number; every pair needs a gold "
                         "score in 0-5"), result.stderr


@pytest.mark.parametrize("seeds", ["-1", "0"])
def test_compare_runs_seeds_must_be_at_least_1(tmp_path, seeds):
    out = tmp_path / "cmp"
    with pytest.raises(SystemExit) as exit_info:
        compare_runs.main(["--preset", "smoke", "--seeds", seeds, "--output-dir", str(out)])
    assert str(exit_info.value.code) == f"error: --seeds must be at least 1, got {seeds}"
    assert not os.path.exists(out)  # refused before any folder is made or model trained
