"""benchmarks/paired_runs.py, the comparison of two hand-trained recipes seed by seed: each model's figure is the
one evaluate_retrieval.py gives, the difference and its interval are the paired bootstrap of the per-query means
over each recipe's seeds computed here independently, and mismatched seed counts are refused in one line."""
import json
import os
import sys

import pytest

import evaluate_retrieval
from conftest import ROOT, one_line_error
from mnr.retrieval import evaluate, load_beir
from mnr.stats import paired_bootstrap

sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
import paired_runs  # noqa: E402

SAMPLE = os.path.join(ROOT, "tests", "data", "beir-snli")


def test_figures_and_paired_difference_match_an_independent_computation(tiny_model_dir, words_model_dir, capsys):
    paired_runs.main(["--beir", SAMPLE, "--runs", tiny_model_dir, words_model_dir,
                      "--baseline", words_model_dir, words_model_dir, "--json"])
    result = json.loads(capsys.readouterr().out)
    evaluate_retrieval.main([tiny_model_dir, words_model_dir, "--beir", SAMPLE, "--split", "dev", "--json"])
    figures = {r["model"]: r["ndcg@10"] for r in json.loads(capsys.readouterr().out)}
    assert [r["ndcg@10"] for r in result["runs"]] == [figures[tiny_model_dir], figures[words_model_dir]]
    assert [r["ndcg@10"] for r in result["baseline"]] == [figures[words_model_dir]] * 2

    task = load_beir(SAMPLE, "dev")
    tiny, words = (evaluate(m, task, per_query=True)["per_query"]["ndcg@10"] for m in (tiny_model_dir, words_model_dir))
    assert figures[tiny_model_dir] != figures[words_model_dir]  # else the difference below says nothing
    # by hand: the runs' recipe averages its two seeds per query, the baseline's two seeds are the same model
    runs_per_query = [(t + w) / 2 for t, w in zip(tiny, words)]
    expected = paired_bootstrap(runs_per_query, words)
    assert result["delta"] == pytest.approx(expected[0], abs=1e-12)
    assert result["delta"] == pytest.approx((sum(tiny) - sum(words)) / 2 / len(tiny), abs=1e-12)
    assert result["delta_ci95"] == pytest.approx(list(expected[1:]), abs=1e-12)
    assert result["per_seed_delta"] == pytest.approx([figures[tiny_model_dir] - figures[words_model_dir], 0.0])
    assert result["queries"] == len(task["queries"])


def test_the_table_shows_each_seed_and_the_interval(tiny_model_dir, words_model_dir, capsys, monkeypatch):
    # a soup against the runs it averages: the soup named once per seed, and scored once
    scored = []
    monkeypatch.setattr(paired_runs, "evaluate", lambda encoder, *a, **k: scored.append(encoder) or evaluate(
        encoder, *a, **k))
    paired_runs.main(["--beir", SAMPLE, "--runs", tiny_model_dir, tiny_model_dir + os.sep,
                      "--baseline", words_model_dir, tiny_model_dir])
    assert len(scored) == 2
    table = capsys.readouterr().out
    assert "| 1 |" in table and "| mean ± std |" in table and "paired bootstrap 95 %" in table


def test_seed_counts_that_differ_are_refused_before_any_scoring(tiny_model_dir, words_model_dir):
    one_line_error(lambda: paired_runs.main(["--beir", SAMPLE, "--runs", tiny_model_dir, words_model_dir,
                                             "--baseline", words_model_dir]), "--runs has 2", "--baseline 1")
    one_line_error(lambda: paired_runs.main(["--beir", SAMPLE, "--runs", tiny_model_dir,
                                             "--baseline", os.path.join(SAMPLE, "no-such-model")]), "no-such-model")
