"""benchmarks/gpu_check.py: its CPU dry run (--device cpu --tiny) passes every check, times every row and writes the
report a GPU run will; and it runs without `datasets`, which the GPU machines lack."""
import importlib.util
import json
import os

from conftest import ROOT, run_script

SCRIPT = os.path.join(ROOT, "benchmarks", "gpu_check.py")
ROW_KEYS = {"config", "pairs_per_s", "tokens_per_s", "mfu", "peak_memory_gib"}
# A machine without `datasets`, as the libraries see it: `import datasets` fails and the package's metadata is
# absent (sentence-transformers asks the metadata, so a datasets.py that raises would not pass for "not installed").
NO_DATASETS = """import importlib.metadata, sys
sys.modules["datasets"] = None
_metadata = importlib.metadata.metadata
def metadata(name):
    if name == "datasets":
        raise importlib.metadata.PackageNotFoundError(name)
    return _metadata(name)
importlib.metadata.metadata = metadata
"""


def dry_run(out, **env):
    """Run the CPU dry run -> its report, after checking the report's shape and that every check passed."""
    result = run_script(SCRIPT, "--out", str(out), "--device", "cpu", "--tiny", timeout=300, **env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    with open(os.path.join(out, "gpu_check.json")) as f:
        report = json.load(f)
    assert set(report) == {"device", "torch", "checks", "speed"}
    assert all(set(c) == {"name", "ok", "detail"} for c in report["checks"])
    assert [c for c in report["checks"] if not c["ok"]] == []
    names = " / ".join(c["name"] for c in report["checks"])
    for part in ("datasets", "packed", "GradCache = plain", "bf16", "resume", "peak memory"):
        assert part in names
    assert all(set(r) == ROW_KEYS and r["pairs_per_s"] > 0 and r["tokens_per_s"] > 0 for r in report["speed"])
    assert sum(r["config"].startswith("ours") for r in report["speed"]) == 3  # batch 8, 16, GradCache 32
    assert "pairs/s" in result.stdout  # the table
    return report


def library_rows(report):
    return [r["config"] for r in report["speed"] if r["config"].startswith("sentence-transformers")]


def test_cpu_dry_run(tmp_path):
    report = dry_run(tmp_path)
    assert len(library_rows(report)) == (2 if importlib.util.find_spec("sentence_transformers") else 0)


def test_runs_without_datasets(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(NO_DATASETS)
    report = dry_run(tmp_path / "out", PYTHONPATH=os.pathsep.join([str(site), ROOT]))
    rows = library_rows(report)  # no trainer without `datasets`: the library's model and loss in our loop
    assert all("our loop" in r for r in rows) and len(rows) == (2 if importlib.util.find_spec("sentence_transformers")
                                                                else 0)
