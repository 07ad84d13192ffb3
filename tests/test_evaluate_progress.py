"""Progress in the evaluators: a line per model and a bar while encoding, both on stderr, so a --json stdout
still parses; and no bar at all unless one is asked for (the training loop's periodic evaluation stays quiet)."""
import json

import pytest

import evaluate_sts
from conftest import finish, run_script, start_script, write_tsv

STS_ROWS = [("A man is playing a guitar.", "A man plays the guitar.", 4.8),
            ("A woman is slicing an onion.", "A man is playing a guitar.", 0.2),  # a sentence in two pairs
            ("Two dogs run in a field.", "Dogs are running outside.", 4.0),
            ("A child reads a book.", "Someone is cooking dinner.", 0.0),
            ("The cat sleeps on the sofa.", "A cat is asleep on a couch.", 4.6)]
NLI_ROWS = [("A man plays a guitar.", "A man makes music.", "0"),
            ("A man plays a guitar.", "A man is asleep.", "2"),
            ("Two dogs run in a field.", "Animals are outside.", "0"),
            ("Two dogs run in a field.", "The dogs are brown.", "1"),
            ("A child reads a book.", "A child is reading.", "0")]


def write_sts(path):
    return write_tsv(path, evaluate_sts.STS_COLUMNS, [(a, b, str(s)) for a, b, s in STS_ROWS])


@pytest.fixture(scope="module")
def runs(tiny_model_dir, tmp_path_factory):
    """Both scripts with --json on small files made here, started together (each is mostly start-up)."""
    folder = tmp_path_factory.mktemp("progress")
    sts = write_sts(folder / "sts.tsv")
    nli = write_tsv(folder / "nli.tsv", ("premise", "hypothesis", "label"), NLI_ROWS)
    procs = {"sts": start_script("evaluate_sts.py", tiny_model_dir, "--sts-data", sts, "--json", "--batch-size", "2",
                                 OMP_NUM_THREADS="1"),
             "retrieval": start_script("evaluate_retrieval.py", tiny_model_dir, "--nli-retrieval", nli, "--json",
                                       "--batch-size", "2", OMP_NUM_THREADS="1")}
    return {name: finish(proc) for name, proc in procs.items()}


def test_sts_json_stays_clean(runs, tiny_model_dir):
    result = runs["sts"]
    assert result.returncode == 0, result.stderr
    [row] = json.loads(result.stdout)  # stdout is the JSON and nothing else
    assert set(row) == {"model", "split", "spearman", "pearson", "n"} and row["n"] == 5  # no truncate_dim key
    assert f"scoring {tiny_model_dir} on STS benchmark dev (5 pairs, 9 sentences)" in result.stderr
    assert "encoding sentences" in result.stderr and "5/5" in result.stderr  # 9 sentences in batches of 2


def test_retrieval_json_stays_clean(runs, tiny_model_dir):
    result = runs["retrieval"]
    assert result.returncode == 0, result.stderr
    [row] = json.loads(result.stdout)
    assert "truncate_dim" not in row and (row["queries"], row["corpus"]) == (3, 5)
    assert f"scoring {tiny_model_dir} on retrieval " in result.stderr
    assert "nli.tsv (3 queries, 5 documents)" in result.stderr
    assert "encoding queries" in result.stderr and "2/2" in result.stderr
    assert "encoding documents" in result.stderr and "3/3" in result.stderr


def test_table_output_keeps_its_format(tiny_model_dir, tmp_path):
    sts = write_sts(tmp_path / "sts.tsv")
    result = run_script("evaluate_sts.py", tiny_model_dir, "--sts-data", sts)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"STS benchmark dev (5 pairs, {sts})"
    assert lines[2:4] == ["| model | spearman | pearson |", "| --- | --- | --- |"]
    assert lines[4].startswith(f"| {tiny_model_dir} | ") and len(lines) == 5
    assert "scoring" not in result.stdout and "encoding" not in result.stdout


def test_encode_bar_only_when_asked(tiny_model_dir, capsys):
    encoder = evaluate_sts.load_encoder(tiny_model_dir)
    texts = [a for a, _, _ in STS_ROWS]
    quiet = evaluate_sts.encode(encoder, texts, batch_size=2)
    assert capsys.readouterr() == ("", "")
    loud = evaluate_sts.encode(encoder, texts, batch_size=2, progress="encoding things")
    out, err = capsys.readouterr()
    assert out == "" and "encoding things" in err and "3/3" in err
    assert quiet.equal(loud)
    pairs, gold = [(a, b) for a, b, _ in STS_ROWS], [s / 5 for _, _, s in STS_ROWS]
    evaluate_sts.evaluate(encoder, pairs, gold)  # as the training loop calls it: no bar
    assert capsys.readouterr() == ("", "")
    evaluate_sts.evaluate(encoder, pairs, gold, progress=True)
    assert "encoding sentences" in capsys.readouterr().err
