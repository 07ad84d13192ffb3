"""Seconds-long versions of the comparison and the speed benchmark: the plumbing works, the figures are not judged.

The one figure that is judged: with dropout off and the same batches, our first losses equal the library's."""
import gzip
import json
import os
import re
import shutil
import sys

import pytest
import torch
from safetensors.torch import load_file

import compare_runs
import evaluate_sts
from conftest import SAMPLE_DIR, commands_recorded, run_script
from mnr import outdir, report, scores

pytest.importorskip("sentence_transformers", reason="requirements-bench.txt is not installed")
pytest.importorskip("accelerate", reason="requirements-bench.txt is not installed")


def head(src, dst, n):
    with gzip.open(src, "rt") as f, open(dst, "w") as out:
        for _ in range(n + 1):
            out.write(f.readline())


@pytest.fixture(scope="module")
def small_eval(tmp_path_factory, sts_dir, snli_test_file):
    """60 STS pairs per split and a 300-row retrieval task: scoring in seconds."""
    base = tmp_path_factory.mktemp("eval")
    os.makedirs(base / "sts")
    for split in ("dev", "test"):
        head(os.path.join(sts_dir, f"{split}.tsv.gz"), base / "sts" / f"{split}.tsv", 60)
    head(snli_test_file, base / "retrieval.tsv", 300)
    return {"sts": str(base / "sts"), "retrieval": str(base / "retrieval.tsv")}


def test_compare_runs_smoke(tmp_path, tiny_model_dir, nli_dir, small_eval, monkeypatch):
    monkeypatch.setitem(compare_runs.PRESETS, "smoke", dict(compare_runs.PRESETS["smoke"], nli=nli_dir, **small_eval))
    out = tmp_path / "out"
    compare_runs.main(["--preset", "smoke", "--model-name", tiny_model_dir, "--output-dir", str(out)])
    rows = json.load(open(out / "results.json"))
    assert {r["run"] for r in rows} == {"start model (untrained)", "MNR (ours)", "bidirectional GTE (ours)",
                                        "symmetric (ours)", "MNR (sentence-transformers)"}
    assert [r["sts_test"] for r in rows] == sorted((r["sts_test"] for r in rows), reverse=True)
    start = next(r for r in rows if r["run"] == "start model (untrained)")  # scored like any evaluator run would
    encoder = evaluate_sts.load_encoder(tiny_model_dir)
    assert start["sts_test"] == pytest.approx(
        evaluate_sts.evaluate(encoder, *evaluate_sts.load_sts(small_eval["sts"], "test"))["spearman"], abs=1e-9)
    table = open(out / "results.md").read()
    commands = [line for line in table.splitlines() if line.startswith("    python train_bidirectional.py")]
    shown = compare_runs.shown(str(out / "symmetric"), None)  # as results files show paths: relative to the repository
    assert any(line.endswith("--loss symmetric --output-dir " + shown) for line in commands)
    assert table.count("\n| ") == 7  # header, rule, 5 runs
    assert (out / "curves.png").stat().st_size > 1000
    # Every run logged its loss and its STSb dev score, ours and the library's alike.
    for short in ("mnr", "bidirectional", "symmetric", "st-mnr"):
        lines = [json.loads(line) for line in open(out / short / "train_log.jsonl")]
        assert sum("loss" in r for r in lines) == 3 and sum("sts_dev_spearman" in r for r in lines) >= 2


def test_bench_train_smoke_and_same_first_losses(tiny_model_dir, nli_dir):
    result = run_script("benchmarks/bench_train.py", "--smoke", "--model-name", tiny_model_dir, "--nli-data", nli_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "| 8 | ours |" in result.stdout and "| 8 | sentence-transformers |" in result.stdout
    ours, library = re.search(r"ours (\[.*?\]), library (\[.*?\])", result.stdout).groups()
    assert json.loads(ours) == pytest.approx(json.loads(library), abs=2e-4) and len(json.loads(ours)) == 3


def test_compare_runs_reuses_a_model_only_from_the_same_command_and_code(tmp_path, monkeypatch):
    out = tmp_path / "run"
    calls = commands_recorded(monkeypatch, compare_runs, out)
    command = ["train_mnr.py", "--batch-size", "32"]
    compare_runs.run_once(command, str(out), str(tmp_path / "log"))  # no stamp yet: trains, then stamps
    assert len(calls) == 1
    compare_runs.run_once(command, str(out), str(tmp_path / "log"))  # same command, same code: reused
    assert len(calls) == 1
    compare_runs.run_once([*command, "--seed", "1"], str(out), str(tmp_path / "log"))  # another command: trains
    assert len(calls) == 2
    monkeypatch.setattr(compare_runs, "code_version", lambda scripts: "edited")  # the training code changed: trains
    compare_runs.run_once([*command, "--seed", "1"], str(out), str(tmp_path / "log"))
    assert len(calls) == 3


def test_compare_runs_trains_again_a_run_cut_short(tmp_path, monkeypatch):
    """A run cut by a sitting's end leaves its in-progress log (no model): the next sitting replaces it, where
    train_mnr.py alone refuses the folder without --overwrite."""
    out = tmp_path / "run"
    calls = commands_recorded(monkeypatch, compare_runs, out)
    os.remove(out / "model.safetensors")
    (out / outdir.IN_PROGRESS_LOG).write_text('{"step": 1, "loss": 1.0}\n')
    compare_runs.run_once(["train_mnr.py"], str(out), str(tmp_path / "log"))
    assert calls == [[sys.executable, "train_mnr.py", "--overwrite"]]
    os.remove(out / outdir.IN_PROGRESS_LOG)
    os.remove(out / "command.json")
    compare_runs.run_once(["train_mnr.py", "--seed", "1"], str(out), str(tmp_path / "log"))  # nothing to replace
    assert calls[-1] == [sys.executable, "train_mnr.py", "--seed", "1"]


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_profile_step_reports_where_the_time_goes(tiny_model_dir, nli_dir, attention):
    result = run_script("benchmarks/profile_step.py", "--model-name", tiny_model_dir, "--nli-data", nli_dir,
                        "--batch-size", "8", "--max-steps", "2", "--attention", attention)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"attention {attention}," in result.stdout and "of which tokenising" in result.stdout
    real, packed, padded = map(float, re.search(r"(\d+) real, (\d+) packed slots, (\d+) when", result.stdout).groups())
    assert 0 < real <= packed and real <= padded  # packing and padding only ever add slots
    ms = [float(x) for x in re.findall(r"^\| [^|]+ \| (\d+\.\d) \| \d+% \|$", result.stdout, re.M)]
    assert len(ms) == 7  # 5 kinds of work, the other operators, all operators
    assert abs(sum(ms[:6]) - ms[6]) <= 0.3  # the parts add up to the whole (each rounded to 0.1 ms)
    assert ms[0] > 0  # the model's matrix multiplies took measurable time


@pytest.mark.parametrize("name", ["negatives", "matryoshka"])
def test_compare_runs_presets_with_seeds_smoke(tmp_path, tiny_model_dir, small_eval, monkeypatch, name):
    """The hard-negative and Matryoshka tables, at a few steps: every run with 2 seeds, mean and spread, per-seed
    values; mined files made once and their report in results.md; STSb test at each cut. On the shipped NLI
    sample, whatever data the other tests use: mining embeds the whole corpus."""
    smoke = ["--eval-every", "2", "--max-steps", "3", "--batch-size", "8"]
    preset = dict(compare_runs.PRESETS[name], nli=os.path.join(SAMPLE_DIR, "nli"), flags=smoke, **small_eval)
    if name == "negatives":  # a mined negative (mined once for both seeds), and the guide
        preset["runs"] = [run for run in preset["runs"] if run[1] in ("mined-topk", "gist")]
    if name == "matryoshka":  # the tiny model is 32 wide
        preset.update(dims=[32, 16, 8], runs=[("MNR", "mnr", ["train_mnr.py"]), ("MNR + Matryoshka", "matryoshka",
                      ["train_mnr.py", "--matryoshka-dims", "32,16,8"])])
    monkeypatch.setitem(compare_runs.PRESETS, name, preset)
    out = tmp_path / "out"
    seeds = 2 if name == "matryoshka" else 1  # the spread over seeds is the same code for every preset
    compare_runs.main(["--preset", name, "--model-name", tiny_model_dir, "--output-dir", str(out), "--seeds", str(seeds)])
    rows = json.load(open(out / "results.json"))
    assert len(rows) == len(preset["runs"]) + 1
    for r in rows:
        trained = 1 if r["run"] == "start model (untrained)" else seeds
        assert len(r["per_seed"]) == trained == len(r["models"])
        values = [s["sts_test"] for s in r["per_seed"]]
        assert r["sts_test"] == pytest.approx(sum(values) / trained)
        if trained == 2:  # another seed, another model (its folder named in the results relative to the output)
            first, second = (load_file(os.path.join(out, os.path.basename(m), "model.safetensors")) for m in r["models"])
            assert any(not torch.equal(first[k], second[k]) for k in first)
    table = open(out / "results.md").read()
    assert (" ± " in table) == (seeds > 1) and str(tmp_path) not in table.replace(str(out), "")
    if name == "negatives":
        assert (out / "mined-topk-negatives" / "negatives.tsv.gz").exists()
        assert "mined-topk-mining:" in table and "--train-data" in table and "--guide-model" in table
        assert "rows written:" in table and not report.PROGRESS_BAR.search(table)  # the report, no bars
    else:
        assert all(f"sts_test@{d}" in rows[0] for d in (32, 16, 8)) and "STSb test @8" in table


def test_compare_runs_table_from_records_equals_the_table_from_models(tmp_path, tiny_model_dir, small_eval,
                                                                        monkeypatch):
    """A second sitting with no models (another machine: a fresh folder) and the first sitting's --records makes
    the same table (every figure, per seed, minutes included) without training or scoring a run again."""
    preset = dict(compare_runs.PRESETS["matryoshka"], nli=os.path.join(SAMPLE_DIR, "nli"), dims=[32, 8],
                  flags=["--eval-every", "2", "--max-steps", "3", "--batch-size", "8"], **small_eval,
                  runs=[("MNR", "mnr", ["train_mnr.py"]),
                        ("MNR + Matryoshka", "matryoshka", ["train_mnr.py", "--matryoshka-dims", "32,8"])])
    monkeypatch.setitem(compare_runs.PRESETS, "matryoshka", preset)
    records = tmp_path / "records"
    def sitting(out):
        compare_runs.main(["--preset", "matryoshka", "--model-name", tiny_model_dir, "--output-dir", str(out),
                           "--seeds", "2", "--records", str(records)])
        return [{k: v for k, v in row.items() if k != "models"} for row in json.load(open(out / "results.json"))]
    first = sitting(tmp_path / "out")
    assert sorted(os.listdir(records)) == ["matryoshka-seed43.json", "matryoshka.json", "mnr-seed43.json", "mnr.json"]
    trained = []
    real_run = compare_runs.subprocess.run
    monkeypatch.setattr(compare_runs.subprocess, "run", lambda command, **kw: trained.append(command) or real_run(
        command, **kw))
    encoded = []
    real_load = scores.load_encoder
    monkeypatch.setattr(scores, "load_encoder", lambda path: encoded.append(path) or real_load(path))
    curves = (tmp_path / "out" / "curves.png").exists()
    shutil.rmtree(tmp_path / "out")  # the next sitting: the same command, on a machine that kept no models
    assert sitting(tmp_path / "out") == first
    assert trained == [] and encoded == [tiny_model_dir]  # only the start model is scored again
    assert not os.path.exists(tmp_path / "out" / "mnr" / "model.safetensors")
    assert (tmp_path / "out" / "curves.png").exists() == curves


def test_compare_runs_scores_a_trained_model_once_until_model_code_or_data_change(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(scores, "load_encoder", lambda path: calls.append(path) or path)
    monkeypatch.setattr(scores.sts, "evaluate", lambda encoder, *a, **kw: {"spearman": 0.5})
    out = tmp_path / "run"
    out.mkdir()
    (out / "command.json").write_text(json.dumps({"command": ["train_mnr.py"], "code": "a"}))
    preset = {"sts": "sts-folder", "retrieval": None}
    first = compare_runs.score(str(out), preset, (), (), None)
    assert first == {"sts_dev": 0.5, "sts_test": 0.5} and len(calls) == 1
    assert compare_runs.score(str(out), preset, (), (), None) == first and len(calls) == 1  # reused
    compare_runs.score(str(out), dict(preset, sts="other-sts"), (), (), None)  # other data: scored again
    assert len(calls) == 2
    (out / "command.json").write_text(json.dumps({"command": ["train_mnr.py", "--seed", "1"], "code": "a"}))
    compare_runs.score(str(out), dict(preset, sts="other-sts"), (), (), None)  # retrained: scored again
    assert len(calls) == 3
    monkeypatch.setattr(scores, "code_version", lambda files=None: "edited")  # scoring code changed
    compare_runs.score(str(out), dict(preset, sts="other-sts"), (), (), None)
    assert len(calls) == 4
    compare_runs.score(str(tmp_path), preset, (), (), None)  # not trained here (no stamp): never cached
    compare_runs.score(str(tmp_path), preset, (), (), None)
    assert len(calls) == 6 and not (tmp_path / "scores.json").exists()
