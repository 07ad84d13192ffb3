"""A training command run in a fresh process and measured: the benchmarks' pairs/s, peak memory and losses
(benchmarks/bench_train.py and bench_step.py), read from the run's own train_log.jsonl.
"""
import json
import os
import statistics
import subprocess
import sys
import time

from mnr.files import ROOT


def run(command, out):
    """Run one training command (a script and its flags, without --output-dir) in a fresh process, writing to
    `out` -> (steady-state pairs/s of each step after the first two, whole-process pairs/s, peak GiB, losses,
    seconds outside the steps: start-up (imports, data, tokenizer, model) and saving, the wall time less the steps')."""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, *command, "--output-dir", out], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)  # this child's own peak RSS
    wall = time.perf_counter() - start
    if status != 0:
        sys.exit(f"error: {' '.join(command)} failed:\n{proc.stderr.read()[-3000:]}")
    with open(os.path.join(out, "train_log.jsonl")) as f:
        log = [json.loads(line) for line in f if '"loss"' in line]
    rates = [r["pairs_per_s"] for r in log[2:]] or [r["pairs_per_s"] for r in log]
    batch = int(command[command.index("--batch-size") + 1])
    peak = max((r.get("cuda_peak_gib", 0) for r in log), default=0) or usage.ru_maxrss / 1024 ** 2  # GPU, else RSS
    outside = wall - sum(batch / r["pairs_per_s"] for r in log)
    return rates, len(log) * batch / wall, peak, [r["loss"] for r in log], outside


def spread(values, fmt="{:.1f}"):
    """Repeated measurements as the results show them: median (min-max)."""
    return f"{fmt.format(statistics.median(values))} ({fmt.format(min(values))}-{fmt.format(max(values))})"
