"""Retrieval scores: the tasks (an NLI file's premises retrieving their entailed hypotheses, a BEIR folder's split,
a NanoBEIR hub name), nDCG@10 / MRR@10 / Recall@{1,10,100} per query, and a model's figures on a task.
evaluate_retrieval.py prints them; compare_runs.py fills its tables and its paired bootstrap with them.

STS asks whether a model orders sentence *pairs* like annotators do; retrieval asks whether, among thousands of
documents, the relevant ones come out on top. Search is exact (a matrix product and a top-k), no index library.
"""
import math
import os

import data_prep  # the tutorial's NLI reader (steps 1-3): an NLI retrieval task reads the file as training does
from mnr import beir, hub
from mnr.errors import DataError, first_line
from mnr.models import load_encoder
from mnr.scoring import unit_embeddings
from mnr.search import top_k
from mnr.table_file import columns_of

TOP_K = 100          # documents kept per query: enough for Recall@100, the deepest metric
METRICS = ("ndcg@10", "mrr@10", "recall@1", "recall@10", "recall@100")  # public names, used in --json


# ---- 1. Tasks: {"queries": [str], "corpus": [str], "relevant": per query, a set of corpus indices or a dict ---
# {corpus index: grade} (BEIR's graded qrels)

def load_nli_retrieval(path):
    """An NLI file -> a task: each premise with an entailed hypothesis is a query, its entailed hypotheses are
    the relevant documents, and every distinct hypothesis (any label) is in the corpus. Neutral and contradicted
    hypotheses of the same premise are the hard distractors: close in topic, not implied."""
    if os.path.isdir(path):
        raise DataError(f"{path}: is a folder; --nli-retrieval takes one NLI file")
    nli = data_prep.load_local_nli(path)
    corpus, relevant = {}, {}  # text -> index / premise -> set; dicts keep first-appearance order
    for premise, hypothesis, label in zip(*columns_of(nli, "premise", "hypothesis", "label")):
        corpus.setdefault(hypothesis, len(corpus))
        relevant.setdefault(premise, set())
        if label == data_prep.ENTAILMENT:
            relevant[premise].add(corpus[hypothesis])
    queries = [p for p, docs in relevant.items() if docs]
    if not queries:
        raise DataError(f"{path}: no premise has an entailed hypothesis, so there is no query")
    return {"queries": queries, "corpus": list(corpus), "relevant": [relevant[p] for p in queries]}


def load_beir(dir_or_name, split="test"):
    """A BEIR folder's `split` or a NanoBEIR hub name -> a task (mnr/beir.py)."""
    if os.path.isdir(dir_or_name):
        return beir.load_task(dir_or_name, split)
    if hub.hub_id(dir_or_name) is None:  # a path, not a hub name: say so, and not that the hub is unreachable
        raise DataError(f"{dir_or_name}: no such folder (--beir takes a BEIR folder or a NanoBEIR hub name)")
    return _load_hub_beir(dir_or_name)


def _load_hub_beir(name):
    """NanoBEIR layout: configs corpus, queries, qrels, one split each; qrels may have no score (all relevant)."""
    hub.check_inputs([f"--beir DIR (a local BEIR folder; {name} is no folder here, so it was taken for a hub name)"])
    import datasets
    datasets.disable_progress_bars()
    try:
        parts = {}
        for config in ("corpus", "queries", "qrels"):
            splits = datasets.load_dataset(name, config)
            parts[config] = splits["test" if "test" in splits else next(iter(splits))]
    except Exception as e:  # noqa: BLE001 - any hub failure becomes one line
        raise DataError(f"{name}: no such folder, and it could not be loaded from the hub as a NanoBEIR name "
                        f"({type(e).__name__}: {first_line(e)})") from None
    corpus, queries, qrels = parts["corpus"], parts["queries"], parts["qrels"]
    titles = corpus["title"] if "title" in corpus.column_names else [None] * len(corpus)
    scores = qrels["score"] if "score" in qrels.column_names else [1] * len(qrels)
    docs, no_text = beir.unique_texts([(str(d), beir.document_text(title, text), f"row {n}") for n, (d, title, text)
                                       in enumerate(zip(corpus["_id"], titles, corpus["text"]), 1)], name, "document")
    queries, no_query = beir.unique_texts([(str(q), text or "", f"row {n}")
                                           for n, (q, text) in enumerate(zip(queries["_id"], queries["text"]), 1)],
                                          name, "query")
    return beir.task(docs, queries, list(zip(qrels["query-id"], qrels["corpus-id"], scores)), name, no_text, no_query)


# ---- 3. Metrics: pure functions of rankings, graded relevance --------------------------------------------------

def query_metrics(ranked, relevant):
    """ranked: per query, distinct corpus indices best first (ints; at least the top 100 when the corpus has
    them); relevant: per query, its relevant corpus indices, non-empty: a dict {index: grade > 0} (BEIR's graded
    qrels) or a set (every grade 1). -> {metric: [one value per query]}: what a paired comparison of two models
    over the same queries needs (compare_runs.py's bootstrap).

    nDCG@10 takes the grade as the gain, as BEIR, MTEB and pytrec_eval's ndcg_cut do (log2 discount, the ideal
    ranking every relevant document best grade first): a grade-2 document found at rank 1 counts twice a grade-1
    one. MRR and recall count every relevant document alike, whatever its grade."""
    values = {name: [] for name in METRICS}
    for ranking, docs in zip(ranked, relevant, strict=True):
        grades = docs if isinstance(docs, dict) else dict.fromkeys(docs, 1)
        hits = [doc in grades for doc in ranking[:100]]
        dcg = sum(grades[doc] / math.log2(rank + 1) for rank, doc in enumerate(ranking[:10], 1) if doc in grades)
        ideal = sum(grade / math.log2(rank + 1)
                    for rank, grade in enumerate(sorted(grades.values(), reverse=True)[:10], 1))
        first = next((rank for rank, hit in enumerate(hits[:10], 1) if hit), None)
        values["ndcg@10"].append(dcg / ideal)
        values["mrr@10"].append(1 / first if first else 0.0)
        for k in (1, 10, 100):
            values[f"recall@{k}"].append(sum(hits[:k]) / len(grades))
    return values


def averaged(values):
    """{metric: [one value per query]} -> {metric: its mean over the queries}: the figures BEIR and MTEB report."""
    return {name: sum(v) / len(v) for name, v in values.items()}


def retrieval_metrics(ranked, relevant):
    return averaged(query_metrics(ranked, relevant))


def evaluate(model_or_path, task, batch_size=64, truncate_dim=None, progress=False, precision="fp32",
             per_query=False):
    """Retrieval metrics of one model on one task. `model_or_path`: a folder or hub name, or an already loaded
    SentenceEncoder (mnr/models.py). `truncate_dim`: search with the embeddings cut to their first
    truncate_dim dimensions. `progress`: a bar on stderr while encoding. `per_query`: also "per_query",
    query_metrics' lists in the task's query order."""
    encoder = load_encoder(model_or_path) if isinstance(model_or_path, str) else model_or_path
    queries = unit_embeddings(encoder, task["queries"], batch_size, truncate_dim,
                              "encoding queries" if progress else None, precision)  # (Q, D)
    corpus = unit_embeddings(encoder, task["corpus"], batch_size, truncate_dim,
                             "encoding documents" if progress else None, precision)  # (N, D)
    ranked = top_k(queries, corpus, min(TOP_K, len(corpus)))[1]  # (Q, k): exact search, best first
    values = query_metrics(ranked.tolist(), task["relevant"])
    return {**averaged(values), "per_query": values} if per_query else averaged(values)
