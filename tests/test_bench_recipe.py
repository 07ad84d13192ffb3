"""benchmarks/bench_recipe.py: its smoke run (2 training steps a side) on the tiny model and the shipped sample BEIR
folder goes through both whole recipes, mine + train + score, and prints each side's phases in order, both dev
scores and the ratio; a smoke run never writes RESULTS.md."""
import os
import re

from conftest import ROOT, run_script

SAMPLE = f"{ROOT}/tests/data/beir-snli"  # train and dev qrels, built from SNLI (CC BY-SA)
with open(f"{SAMPLE}/qrels/train.tsv") as qrels:
    TRAIN_PAIRS = len(qrels.readlines()) - 1  # less the header


def test_smoke_runs_both_recipes_and_prints_their_phases(words_model_dir):
    result = run_script("benchmarks/bench_recipe.py", "--smoke", "--write", "--beir", SAMPLE,
                        "--model-name", words_model_dir, "--seed", "7")
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    for side in ("ours", "library"):
        cells = re.search(rf"^\| {side} \| (.*) \|$", out, re.M).group(1).split(" | ")
        mined, trained, scored, whole, rows, ndcg, recall = (float(cell.split()[0]) for cell in cells)
        assert 0 < rows <= TRAIN_PAIRS, cells  # a row per train pair at most: pairs left without a negative drop
        # each phase ends no earlier than the one before; the marks are rounded to 0.1 s, and scoring the
        # sample with a tiny model can take less than that, so two marks may print equal
        assert 0 < mined <= trained <= scored <= whole and mined < whole, cells
        assert 0 < ndcg <= 1 and 0 < recall <= 1, cells
    assert "--seed 7 --max-steps 2" in out  # the seed reaches ours's training; the library's script reads it too
    assert "mine_negatives.py" in out and "--range-max 100" in out and "evaluate_retrieval.py" in out, out
    assert re.search(r"^library / ours, whole recipe: \d+\.\d\d", out, re.M), out
    assert "wrote" not in out


def test_results_show_paths_as_typed_not_as_this_machine_has_them():
    from mnr.files import repo_relative
    beside = os.path.join(os.path.dirname(ROOT), "shared", "data", "beir", "scifact")  # ../shared/data, made absolute
    assert repo_relative(f"--beir {beside} --output {ROOT}/output/t") == "--beir ../shared/data/beir/scifact --output output/t"
