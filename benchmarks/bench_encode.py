"""Evaluation speed: evaluate_retrieval.py (fp32 and bf16) against sentence-transformers' encode-based evaluation.

    python benchmarks/bench_encode.py                       # SciFact dev from ../shared/data/beir/scifact, 3 repetitions
    python benchmarks/bench_encode.py --beir DIR --split dev --repeats 5

Each configuration is one whole process, started fresh, timed from start to exit (model loading, tokenizing,
encoding queries and corpus, search, metrics), repetitions interleaved so that a change in the machine's load
hits every configuration alike. The library side is `SentenceTransformer.encode` (its default batch of 32,
fp32) inside its own `InformationRetrievalEvaluator` on the same queries, documents and judgements. Writes
nothing; prints a table, the scores of each side, and the ratios.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from mnr.files import repo_relative  # noqa: E402  paths as results show them
from mnr.models import packaged_minilm  # noqa: E402  MiniLM from its PyPI package
from mnr.report import machine  # noqa: E402  the CPU and GPU the figures come from

DATA = os.environ.get("MNR_DATA_DIR", os.path.join(ROOT, "..", "shared", "data"))
LIBRARY = """
import json, sys
from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer.evaluation import InformationRetrievalEvaluator
sys.path.insert(0, {root!r})
from mnr import beir
folder, split, model = sys.argv[1:4]
documents, queries = beir.read_documents(folder), beir.read_queries(folder)
relevant = {{}}
for q, d in beir.read_qrels(folder, split):
    relevant.setdefault(q, set()).add(d)
evaluator = InformationRetrievalEvaluator({{q: queries[q] for q in relevant}}, dict(documents), relevant,
                                          mrr_at_k=[10], ndcg_at_k=[10], precision_recall_at_k=[100],
                                          accuracy_at_k=[1], map_at_k=[100], write_csv=False)
scores = evaluator(SentenceTransformer(model, device="cpu"))
print(json.dumps({{"ndcg@10": scores["cosine_ndcg@10"], "mrr@10": scores["cosine_mrr@10"],
                  "recall@100": scores["cosine_recall@100"]}}))
"""


def configs(model, folder, split):
    ours = [sys.executable, "evaluate_retrieval.py", model, "--beir", folder, "--split", split, "--json"]
    return {"ours, fp32": ours, "ours, bf16": [*ours, "--precision", "bf16"],
            "sentence-transformers encode, fp32": [sys.executable, "-c", LIBRARY.format(root=ROOT), folder, split, model]}


def timed(command):
    """Run one whole process -> (seconds, its JSON scores)."""
    start = time.perf_counter()
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True,
                            env={**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"})
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"error: {command[1]} failed:\n{result.stderr[-3000:]}")
    scores = json.loads(result.stdout)
    return seconds, scores[0] if isinstance(scores, list) else scores


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--beir", default=os.path.join(DATA, "beir", "scifact"), help="a BEIR folder")
    parser.add_argument("--split", default="dev", help="its qrels split (default: dev)")
    parser.add_argument("--model-name", default=None, help="default: all-MiniLM-L6-v2 from its PyPI package")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repetitions (default: 3)")
    args = parser.parse_args(argv)
    model = args.model_name or packaged_minilm()
    runs = configs(model, args.beir, args.split)
    seconds, scores = {name: [] for name in runs}, {}
    for _ in range(args.repeats):
        for name, command in runs.items():
            s, scores[name] = timed(command)
            seconds[name].append(s)
            print(f"{name}: {s:.1f} s", file=sys.stderr, flush=True)
    print(f"{time.strftime('%Y-%m-%d')}; {machine()}, {torch.get_num_threads()} threads; model {repo_relative(model, packaged_minilm())}; "
          f"{repo_relative(args.beir)} {args.split}; {args.repeats} repetitions, whole process\n")
    print("| configuration | seconds, median (min-max) | nDCG@10 | MRR@10 | Recall@100 |\n| --- | --- | --- | --- | --- |")
    for name in runs:
        s = seconds[name]
        print(f"| {name} | {statistics.median(s):.1f} ({min(s):.1f}-{max(s):.1f}) | {scores[name]['ndcg@10']:.4f} | "
              f"{scores[name]['mrr@10']:.4f} | {scores[name]['recall@100']:.4f} |")
    library = seconds["sentence-transformers encode, fp32"]
    for name in ("ours, fp32", "ours, bf16"):
        ratios = [lib / ours for lib, ours in zip(library, seconds[name])]
        gap = max(abs(scores[name][m] - scores["sentence-transformers encode, fp32"][m]) for m in scores[name]
                  if m in ("ndcg@10", "mrr@10", "recall@100"))
        print(f"\n{name}: {statistics.median(ratios):.2f}x the library ({min(ratios):.2f}-{max(ratios):.2f}, per "
              f"repetition); largest score difference {gap:.5f}")


if __name__ == "__main__":
    main()
