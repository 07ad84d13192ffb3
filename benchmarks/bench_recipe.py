"""The whole SciFact recipe, mine + train one epoch + score dev: ours against sentence-transformers', whole processes.

    python benchmarks/bench_recipe.py                  # SciFact from ../shared/data/beir/scifact, MiniLM, 1 repetition
    python benchmarks/bench_recipe.py --repeats 2 --write   # then its section of benchmarks/RESULTS.md
    python benchmarks/bench_recipe.py --seed 43             # both sides' training seed (default 42)
    python benchmarks/bench_recipe.py --smoke --beir tests/data/beir-snli --model-name PATH   # seconds (CI)

What a user of either side runs to get a SciFact model and its dev score, start to finish:
  ours     three scripts, as the scifact preset's best row runs them (one epoch instead of its three):
           mine_negatives.py --num-negatives 1 --relative-margin 0.05 --range-max 100, then
           train_mnr.py --train-data TABLE --lr 1e-4 --max-length 256 (batch 32, PRECISION auto: bf16 where the
           CPU computes it natively), then evaluate_retrieval.py MODEL --split dev (fp32)
  library  one script, as its documentation composes the three: util.mine_hard_negatives (same settings,
           sampling "top", the folder's corpus as candidates), SentenceTransformerTrainer with
           MultipleNegativesRankingLoss and the NO_DUPLICATES sampler (same rate, warmup, decay, clipping, batch,
           max_seq_length; bf16=True where ours trains in bf16), then InformationRetrievalEvaluator on dev (fp32)
Each repetition runs ours, then the library, every process fresh (imports, model loads and data reads
included); the time of a side is from its first process's start to its last one's exit. The library's script
also prints when each of its phases ended, so both sides' phases are shown. Figures: seconds, median (min-max)
over the repetitions; the ratio library / ours per repetition; both sides' dev scores (the two train different
batches in a different order, so the scores agree only roughly: the timing is what is compared).
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from mnr.precision import resolve  # noqa: E402  what PRECISION "auto" trains in here
from mnr.measure import spread  # noqa: E402  median (min-max)
from mnr.models import packaged_minilm  # noqa: E402  MiniLM from its PyPI package
from mnr.files import repo_relative  # noqa: E402  paths as results show them
from mnr.report import machine, write_section  # noqa: E402  the CPU and GPU the figures come from; RESULTS.md

DATA = os.environ.get("MNR_DATA_DIR", os.path.join(ROOT, "..", "shared", "data"))
HEADING = "## The whole SciFact recipe: mine + train one epoch + score dev, ours vs sentence-transformers"
MINING = ["--num-negatives", "1", "--relative-margin", "0.05", "--range-max", "100"]  # the scifact preset's best row
TRAINING = ["--lr", "1e-4", "--max-length", "256", "--batch-size", "32"]  # its flags, one epoch (and --seed)
LIBRARY = """
import json, sys, time
start = time.perf_counter()
from datasets import Dataset
from sentence_transformers import (SentenceTransformer, SentenceTransformerTrainer,
                                   SentenceTransformerTrainingArguments, losses)
from sentence_transformers.sentence_transformer.evaluation import InformationRetrievalEvaluator
from sentence_transformers.training_args import BatchSamplers
from sentence_transformers.util import mine_hard_negatives
sys.path.insert(0, {root!r})
from mnr import beir  # the folder's texts as both sides read them: the same pairs, documents and judgements
folder, model_name, output = sys.argv[1:4]
bf16, max_steps, seed = sys.argv[4] == "1", int(sys.argv[5]), int(sys.argv[6])
pairs = beir.train_pairs(folder)
model = SentenceTransformer(model_name, device="cpu")
model.max_seq_length = 256
phases = {{"start-up": time.perf_counter() - start}}
mined = mine_hard_negatives(Dataset.from_dict({{"anchor": [a for a, _ in pairs], "positive": [p for _, p in pairs]}}),
                            model, corpus=beir.documents(folder), num_negatives=1, range_max=100,
                            relative_margin=0.05, sampling_strategy="top", output_format="triplet",
                            batch_size=64, verbose=False)
phases["mine"] = time.perf_counter() - start
arguments = SentenceTransformerTrainingArguments(
    output_dir=output, per_device_train_batch_size=32, num_train_epochs=1, max_steps=max_steps, learning_rate=1e-4,
    warmup_ratio=0.1, lr_scheduler_type="linear", weight_decay=0.01, max_grad_norm=1.0, seed=seed,
    batch_sampler=BatchSamplers.NO_DUPLICATES, save_strategy="no", report_to=[], disable_tqdm=True,
    bf16=bf16, **({{"use_cpu": True}} if bf16 else {{}}))
SentenceTransformerTrainer(model=model, args=arguments, train_dataset=mined,
                           loss=losses.MultipleNegativesRankingLoss(model)).train()
model.save(output)
phases["train"] = time.perf_counter() - start
documents, queries = dict(beir.read_documents(folder)), beir.read_queries(folder)
relevant = {{}}
for q, d in beir.read_qrels(folder, "dev"):
    relevant.setdefault(q, set()).add(d)
evaluator = InformationRetrievalEvaluator({{q: queries[q] for q in relevant}}, documents, relevant, ndcg_at_k=[10],
                                          mrr_at_k=[10], precision_recall_at_k=[100], accuracy_at_k=[1],
                                          map_at_k=[100], write_csv=False, batch_size=64)
scores = evaluator(model)
phases["score"] = time.perf_counter() - start
print(json.dumps({{"phases": phases, "rows": len(mined), "ndcg@10": scores["cosine_ndcg@10"],
                  "recall@100": scores["cosine_recall@100"]}}))
"""


def shown(text):
    """A path or command as the results show it: relative to the repository, the packaged MiniLM as $MINILM."""
    return repo_relative(text, packaged_minilm())


def ours(folder, model, tmp, max_steps, seed):
    table, trained = os.path.join(tmp, "negatives.tsv.gz"), os.path.join(tmp, "ours")
    steps = ["--max-steps", str(max_steps)] if max_steps else []
    return {"mine": ["mine_negatives.py", "--model-name", model, "--train-data", folder, "--corpus", folder,
                     "--output", table, *MINING],
            "train": ["train_mnr.py", "--model-name", model, "--train-data", table, *TRAINING, "--seed", str(seed),
                      *steps, "--output-dir", trained],
            "score": ["evaluate_retrieval.py", trained, "--beir", folder, "--split", "dev", "--json"]}


def library(folder, model, tmp, bf16, max_steps, seed):
    return ["-c", LIBRARY.format(root=ROOT), folder, model, os.path.join(tmp, "library"), str(int(bf16)),
            str(max_steps or -1), str(seed)]


def timed(command):
    """One whole process -> (seconds, its stdout)."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, *command], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"})
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"error: {shown(' '.join(command[:1]))} failed:\n{done.stderr[-3000:]}")
    return seconds, done.stdout


def run_ours(folder, model, tmp, max_steps, seed):
    """The three scripts in turn -> ({phase: seconds since the first one started}, dev scores)."""
    phases, elapsed, printed = {}, 0.0, {}
    for phase, command in ours(folder, model, tmp, max_steps, seed).items():
        seconds, printed[phase] = timed(command)
        elapsed += seconds
        phases[phase] = elapsed
    scores = json.loads(printed["score"])[0]
    phases["whole"] = elapsed
    rows = int(re.search(r"^rows written: ([\d,]+)", printed["mine"], re.M).group(1).replace(",", ""))
    return phases, {"ndcg@10": scores["ndcg@10"], "recall@100": scores["recall@100"], "rows": rows}


def run_library(folder, model, tmp, bf16, max_steps, seed):
    seconds, out = timed(library(folder, model, tmp, bf16, max_steps, seed))
    result = json.loads(out.strip().splitlines()[-1])
    return {**result["phases"], "whole": seconds}, {k: result[k] for k in ("ndcg@10", "recall@100", "rows")}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--beir", default=os.path.join(DATA, "beir", "scifact"),
                        help="a BEIR folder with train and dev qrels (default: SciFact)")
    parser.add_argument("--model-name", default=None, help="default: all-MiniLM-L6-v2 from its PyPI package")
    parser.add_argument("--repeats", type=int, default=1, help="repetitions, each ours then the library (default: 1)")
    parser.add_argument("--seed", type=int, default=42,
                        help="both sides' training seed, their batch order and dropout (default: 42); mining and "
                        "scoring have none")
    parser.add_argument("--write", action="store_true", help="put the block into benchmarks/RESULTS.md")
    parser.add_argument("--smoke", action="store_true", help="2 training steps a side; never writes RESULTS.md")
    args = parser.parse_args(argv)
    model, folder = args.model_name or packaged_minilm(), os.path.abspath(args.beir)
    max_steps = 2 if args.smoke else None
    bf16 = resolve("auto", torch.device("cuda" if torch.cuda.is_available() else "cpu")) == "bf16"
    times, scores = {"ours": [], "library": []}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            for side in times:
                where = os.path.join(tmp, f"{side}-{r}")
                os.makedirs(where)
                got, scores[side] = (run_ours(folder, model, where, max_steps, args.seed) if side == "ours"
                                     else run_library(folder, model, where, bf16, max_steps, args.seed))
                times[side].append(got)
                print(f"{side}: {got}", file=sys.stderr, flush=True)
    command = f"python benchmarks/bench_recipe.py {' '.join(argv if argv is not None else sys.argv[1:])}".strip()
    lines = [f"{time.strftime('%Y-%m-%d')}; {machine()}, {torch.get_num_threads()} threads; training in "
             f"{'bf16' if bf16 else 'fp32'} on both sides (bf16 where the CPU computes it natively), mining and "
             "scoring in fp32",
             f"Command: `{shown(command)}`; {shown(folder)}; model {shown(model)}; {args.repeats} "
             f"repetition{'s' * (args.repeats > 1)}, whole processes",
             *(f"- ours, {phase}: `python {shown(' '.join(c))}`" for phase, c in ours(folder, model, "TMP", max_steps, args.seed).items()),
             "- library: one script, benchmarks/bench_recipe.py LIBRARY (mine_hard_negatives, SentenceTransformerTrainer, "
             "InformationRetrievalEvaluator)", "",
             "| side | mined by (s) | trained by (s) | scored by (s) | whole process (s) | rows mined | dev nDCG@10 | "
             "dev Recall@100 |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for side, runs in times.items():
        cells = [spread([run[phase] for run in runs]) for phase in ("mine", "train", "score", "whole")]
        lines.append(f"| {side} | {' | '.join(cells)} | {scores[side]['rows']} | {scores[side]['ndcg@10']:.4f} | "
                     f"{scores[side]['recall@100']:.4f} |")
    ratios = [lib["whole"] / our["whole"] for lib, our in zip(times["library"], times["ours"])]
    lines += ["", f"library / ours, whole recipe: {spread(ratios, '{:.2f}')}x (per repetition; target 2x). "
              "Each phase column is the time since the side started: ours adds up three processes, each with its own "
              "start-up; the library's one process spent "
              f"{spread([run['start-up'] for run in times['library']])} s on imports, the model and the pairs before mining"]
    print("\n".join(lines), flush=True)
    if args.write and not args.smoke:
        write_section(os.path.join(ROOT, "benchmarks", "RESULTS.md"), "\n".join([HEADING, "", *lines]) + "\n")
        print("wrote its section of benchmarks/RESULTS.md", flush=True)


if __name__ == "__main__":
    main()
