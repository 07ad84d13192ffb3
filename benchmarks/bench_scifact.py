"""The SciFact recipe's training: train_mnr.py against sentence-transformers' trainer on the mined SciFact table.

    python benchmarks/bench_scifact.py             # MiniLM, 8 steps per run, 2 repetitions, about 10 minutes here
    python benchmarks/bench_scifact.py --write     # the same, then its section of benchmarks/RESULTS.md
    python benchmarks/bench_scifact.py --smoke --model-name PATH --table TABLE   # seconds: the plumbing (CI)

The rows: SciFact's train queries, each with its relevant abstract and one mined hard negative, the table the
recipe trains on. --table names it; where there is none yet, the benchmark mines it first (and says so):
    python mine_negatives.py --model-name $MINILM --train-data ../shared/data/beir/scifact \\
        --corpus ../shared/data/beir/scifact --output output/bench-scifact/negatives.tsv.gz \\
        --num-negatives 1 --relative-margin 0.05 --range-max 100
Configurations, each a fresh process per repetition, interleaved (ours, the library, ours, ...) so a slow spell
of a shared machine hits all of them alike; every one trains with max length 256 and batch 32:
  ours                              train_mnr.py --train-data TABLE (PRECISION auto: bf16 where the CPU has it)
  sentence-transformers, bf16=True  benchmarks/st_train.py --train-data TABLE --bf16
  sentence-transformers             the trainer's default, fp32 (only with --library-fp32)
  ours, --compile                   train_mnr.py --compile: torch.compile (only with --compile)
Both sides train the same batches (st_train.py --our-batches: train_mnr.py's duplicate-free batches, same seed):
batches differ a little in tokens (most abstracts are cut at 256, the queries are not), so with the same ones
both sides do the same work, step for step, and the tokens and FLOPs below are counted, not estimated.

Figures, median (min-max) over the repetitions:
  steady pairs/s   the median over each run's steps after the first two (mnr/measure.py, as bench_train.py)
  tokens/s         the real tokens per pair of those steps' batches (anchor + positive + negative, each tokenized
                   at the max length, special tokens included, no padding) x steady pairs/s
  model GFLOP/s    training FLOPs per token = 6 N + 12 L d T: forward 2 N (one multiply-add per weight) plus
                   attention's QK^T and AV, 4 d T per layer (each token attends over its whole text: an encoder
                   has no causal mask), and backward twice the forward; N the parameters outside the embeddings
                   and the pooler, L layers, d the hidden size, T the length of the token's own text. Summed over
                   the real tokens, so padding and masked-out work, which either side may compute, count nothing
  share of peak    model GFLOP/s / the matmul peak of the precision the configuration computes in (ours: bf16
                   where the CPU has it natively, else fp32; the library with bf16=True: bf16), a 2048^3 product
                   measured in this process before the runs, at the torch threads the runs use; on the GPU where
                   they train on one. Where bf16 is emulated (a CPU without AVX512-BF16 or AMX: its bf16 product
                   ran at ~1 GFLOP/s against fp32's ~100 on an AVX2 EPYC), the bf16 'peak' is no ceiling, so the
                   fp32 peak is taken, the higher one: against it, shares read above 100 %
and the ratio ours / the library per repetition (neighbouring runs). Prints a markdown block; --write puts it
into benchmarks/RESULTS.md as its section (HEADING below), every other section kept byte for byte.
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import data_prep  # noqa: E402  train_mnr.py's duplicate-free batches, to count their tokens
from mnr.files import repo_relative  # noqa: E402  paths as results show them
from mnr.measure import run, spread  # noqa: E402  one training command, in a fresh process, measured
from mnr.models import packaged_minilm  # noqa: E402  MiniLM from its PyPI package
from mnr.precision import resolve  # noqa: E402  what PRECISION auto computes in here
from mnr.report import machine, write_section  # noqa: E402  the CPU and GPU the figures come from; RESULTS.md
from mnr.tables import load_train_data  # noqa: E402  the rows both sides train

DATA = os.environ.get("MNR_DATA_DIR", os.path.join(ROOT, "..", "shared", "data"))
TABLE = os.path.join(ROOT, "output", "bench-scifact", "negatives.tsv.gz")  # output/ is git-ignored: SciFact is CC BY-NC
HEADING = "## The SciFact recipe's training: train_mnr.py vs sentence-transformers' trainer"
MAX_LENGTH = 256  # the recipe's: SciFact's abstracts are long, most are cut here
BATCH_SIZE = 32   # the recipe's
SEED = 42         # given to both sides, so they draw the same batches
RULE = "| --- | --- | --- | --- | --- |"  # the table's second line: the rows after it are printed when measured
OURS, LIBRARY_BF16, LIBRARY = "ours", "sentence-transformers, bf16=True", "sentence-transformers (fp32)"
COMPILED = "ours, --compile"


def shown(text):
    """A path or command as the results show it: relative to the repository, the packaged MiniLM as $MINILM."""
    return repo_relative(text, packaged_minilm())


def matmul_peak(dtype, size=2048, reps=5):
    """GFLOP/s of a (size x size) @ (size x size) product in `dtype`, the median of `reps` after a warm-up: what
    this CPU's matrix units give torch at its current thread count (a GPU's, where the runs train on one)."""
    device = "cuda" if torch.cuda.is_available() else "cpu"  # where train_mnr.py's DEVICE "auto" trains
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)  # a GPU product returns before it is done
    a, b = torch.randn(size, size, device=device).to(dtype), torch.randn(size, size, device=device).to(dtype)
    a @ b  # the first product pays for the thread pool and the packed-weight buffers
    seconds = []
    for _ in range(reps):
        sync()
        start = time.perf_counter()
        a @ b
        sync()
        seconds.append(time.perf_counter() - start)
    return 2 * size ** 3 / statistics.median(seconds) / 1e9


def mine(table, model, beir):
    """Write `table` with mine_negatives.py, the recipe's mining of SciFact's train queries."""
    command = ["mine_negatives.py", "--model-name", model, "--train-data", beir, "--corpus", beir, "--output", table,
               "--num-negatives", "1", "--relative-margin", "0.05", "--range-max", "100"]
    print(f"no table at {shown(table)}: mining it first (python {shown(' '.join(command))})", flush=True)
    os.makedirs(os.path.dirname(os.path.abspath(table)), exist_ok=True)
    if subprocess.run([sys.executable, *command], cwd=ROOT, stdout=subprocess.DEVNULL).returncode != 0:
        sys.exit(f"error: mining {shown(table)} failed (its message is above); "
                 "give an existing table with --table")


def work_per_pair(table, model, steps, batch_size=BATCH_SIZE, max_length=MAX_LENGTH):
    """The batches both sides train in their steady steps (after the first two, as mnr.measure counts them)
    -> (real tokens per pair, training FLOPs per pair, N, L, d), by the formula of the docstring."""
    from transformers import AutoConfig, AutoModel, AutoTokenizer
    rows = load_train_data(table)
    batches = data_prep.epoch_batches(rows, batch_size, SEED)[:steps]
    texts = [text for batch in (batches[2:] or batches) for j in batch for text in rows[j]]
    lengths = [len(ids) for ids in AutoTokenizer.from_pretrained(model)(texts, max_length=max_length,
                                                                         truncation=True)["input_ids"]]
    config = AutoConfig.from_pretrained(model)
    with torch.device("meta"):  # shapes only: no weights read, no memory taken
        encoder = AutoModel.from_config(config)
    n = sum(p.numel() for name, p in encoder.named_parameters() if "embeddings" not in name and "pooler" not in name)
    layers, width = config.num_hidden_layers, config.hidden_size
    pairs = len(texts) / len(rows[0])
    flops = sum(6 * n * t + 12 * layers * width * t * t for t in lengths)  # each of a text's t tokens attends over t
    return sum(lengths) / pairs, flops / pairs, n, layers, width


def configs(table, model, steps, library_fp32, compiled=False):
    flags = ["--model-name", model, "--train-data", table, "--max-length", str(MAX_LENGTH),
             "--batch-size", str(BATCH_SIZE), "--max-steps", str(steps), "--seed", str(SEED)]
    library = ["benchmarks/st_train.py", *flags, "--our-batches"]
    found = {OURS: ["train_mnr.py", *flags], LIBRARY_BF16: [*library, "--bf16"]}
    return (found | ({LIBRARY: [*library, "--no-bf16"]} if library_fp32 else {})
            | ({COMPILED: ["train_mnr.py", *flags, "--compile"]} if compiled else {}))


def precisions(runs):
    """What each configuration computes its products in: ours (and ours compiled) as train_mnr.py's PRECISION
    auto resolves on this machine, the library's as its --bf16 / --no-bf16 flag says."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    ours = resolve("auto", device)
    return {name: ours if command[0] == "train_mnr.py" else ("bf16" if "--bf16" in command else "fp32")
            for name, command in runs.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--table", default=TABLE, help="the mined (anchor, positive, negative) table; mined first "
                        "where it does not exist (default: output/bench-scifact/negatives.tsv.gz)")
    parser.add_argument("--beir", default=os.path.join(DATA, "beir", "scifact"), help="SciFact, to mine the table from")
    parser.add_argument("--model-name", default=None, help="default: all-MiniLM-L6-v2 from its PyPI package")
    parser.add_argument("--steps", type=int, default=8, help="steps per run (default: 8)")
    parser.add_argument("--repeats", type=int, default=2, help="interleaved repetitions (default: 2)")
    parser.add_argument("--library-fp32", action="store_true", help="also the library's default trainer (fp32)")
    parser.add_argument("--compile", action="store_true", help="also ours with --compile (torch.compile; its "
                        "compilation falls in the first two steps, which the steady figure leaves out)")
    parser.add_argument("--write", action="store_true", help="put the block into benchmarks/RESULTS.md")
    parser.add_argument("--smoke", action="store_true",
                        help="3 steps, 1 repetition, a small peak product; never writes RESULTS.md")
    args = parser.parse_args(argv)
    if args.smoke:
        args.steps, args.repeats = 3, 1
    model = args.model_name or packaged_minilm()
    args.table, args.beir = os.path.abspath(args.table), os.path.abspath(args.beir)  # the runs start in the repo
    # 1. The table, mined where there is none, and the work per pair of the batches the runs will train.
    if not os.path.exists(args.table):
        mine(args.table, model, args.beir)
    tokens, flops, n, layers, width = work_per_pair(args.table, model, args.steps)
    # 2. The peak, in this process and just before the runs, so it sees the machine as they do.
    size = 512 if args.smoke else 2048
    peak_bf16, peak_fp32 = matmul_peak(torch.bfloat16, size), matmul_peak(torch.float32, size)
    # The ceiling a bf16 run is held to is the faster of the two products: emulated bf16 is slower than fp32.
    peaks = {"bf16": peak_bf16, "fp32": peak_fp32}
    ceiling = {"bf16": "bf16" if peak_bf16 >= peak_fp32 else "fp32", "fp32": "fp32"}
    runs = configs(repo_relative(args.table), model, args.steps, args.library_fp32, args.compile)
    computes = precisions(runs)
    lines = [f"{time.strftime('%Y-%m-%d')}; {machine()}, {torch.get_num_threads()} threads",
             f"Command: `python benchmarks/bench_scifact.py {shown(' '.join(argv or sys.argv[1:]))}`; "
             f"table {shown(args.table)}; model {shown(model)}; max length {MAX_LENGTH}, batch {BATCH_SIZE}, "
             f"{args.steps} steps per run, {args.repeats} repetition{'s' * (args.repeats > 1)}",
             f"matmul peak ({size}^3, median of 5): bf16 {peak_bf16:.0f} GFLOP/s, fp32 {peak_fp32:.0f} GFLOP/s",
             f"work per pair (the steady steps' batches): {tokens:.0f} real tokens, {flops / 1e9:.3g} GFLOP of "
             f"training = 6 N + 12 L d T per token (N {n / 1e6:.3g} M non-embedding parameters, L {layers}, d {width}, "
             "T its text's tokens)",
             *(f"- {name}: `python {shown(' '.join(command))}`" for name, command in runs.items()), "",
             "| configuration | steady pairs/s | tokens/s | model GFLOP/s | share of its precision's peak (%) |",
             RULE]
    print("\n".join(lines), flush=True)
    # 3. The runs, interleaved, then the figures of each and the ratios.
    rates = {name: [] for name in runs}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            for i, (name, command) in enumerate(runs.items()):
                rates[name].append(statistics.median(run(command, os.path.join(tmp, f"{i}-{r}"))[0]))
    for name, got in rates.items():
        gflops = [x * flops / 1e9 for x in got]
        lines.append(f"| {name} | {spread(got, '{:.2f}')} | {spread([x * tokens for x in got], '{:.0f}')} | "
                     f"{spread(gflops, '{:.3g}')} | {spread([100 * x / peaks[ceiling[computes[name]]] for x in gflops])} "
                     f"of {ceiling[computes[name]]} |")
    lines.append("")
    for name in list(runs)[1:]:
        ratios = [o / s for o, s in zip(rates[OURS], rates[name])]
        lines.append(f"ours / {name}: {spread(ratios, '{:.2f}')}x steady pairs/s "
                     "(median (min-max) over the repetitions)")
    print("\n".join(lines[lines.index(RULE) + 1:]), flush=True)
    if args.write and not args.smoke:
        write_section(os.path.join(ROOT, "benchmarks", "RESULTS.md"), "\n".join([HEADING, "", *lines]) + "\n")
        print("wrote its section of benchmarks/RESULTS.md", flush=True)


if __name__ == "__main__":
    main()
