"""BEIR folders, read as they are: a retrieval task to score, or (query, document) pairs to train on.

Layout (BEIR, MTEB): corpus.jsonl ({"_id", "title", "text"} per line), queries.jsonl ({"_id", "text"}) and
qrels/SPLIT.tsv (query-id, corpus-id, score) for the splits train, dev and test. A document is its title and its
text, joined by a space and stripped, as BEIR and MTEB embed it; a qrel with score > 0 marks a relevant document.
"""
import json
import os
from collections import defaultdict

from mnr.errors import DataError

SPLITS = ("train", "dev", "test")


def is_beir_folder(path):
    return os.path.isdir(path) and all(os.path.isfile(os.path.join(path, f)) for f in ("corpus.jsonl", "queries.jsonl"))


def read_jsonl(path, keys):
    """A JSON-lines file -> list of dicts, each checked to hold `keys`; a bad line is one error naming it."""
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


def document_text(title, text):
    return f"{title or ''} {text}".strip()


def read_documents(folder):
    """corpus.jsonl -> [(id, text)], ids as strings."""
    return [(str(r["_id"]), document_text(r.get("title"), r["text"]))
            for r in read_jsonl(os.path.join(folder, "corpus.jsonl"), ("_id", "text"))]


def read_queries(folder):
    """queries.jsonl -> {id: text}; a repeated id keeps its first text."""
    queries = {}
    for r in read_jsonl(os.path.join(folder, "queries.jsonl"), ("_id", "text")):
        queries.setdefault(str(r["_id"]), r["text"])
    return queries


def read_qrels(folder, split):
    """qrels/SPLIT.tsv -> [(query id, document id)] of its positive (score > 0) judgements, in file order."""
    from mnr.tables import load_table  # tables reads BEIR folders too: imported here, not at the top
    path = os.path.join(folder, "qrels", f"{split}.tsv")
    if not os.path.isfile(path):
        found = sorted(f[:-4] for f in os.listdir(os.path.join(folder, "qrels")) if f.endswith(".tsv")) \
            if os.path.isdir(os.path.join(folder, "qrels")) else []
        raise DataError(f"{path}: no such file (this folder's splits: {', '.join(found) or 'none'})")
    table = load_table(path, ("query-id", "corpus-id", "score"))
    try:
        scores = [float(s) for s in table["score"]]
    except ValueError as e:
        raise DataError(f"{path}: score column is not numeric ({e})") from None
    qrels = [(q, d) for q, d, s in zip(table["query-id"], table["corpus-id"], scores) if s > 0]
    if not qrels:
        raise DataError(f"{path}: no positive judgement (score > 0): the {split} split is empty")
    return qrels


def train_pairs(folder, split="train"):
    """(query text, document text), one per positive qrel of `split`. A qrel naming a query or document the
    folder does not have is an error: a pair cannot be made up."""
    documents, queries = dict(read_documents(folder)), read_queries(folder)
    qrels_path = os.path.join(folder, "qrels", f"{split}.tsv")
    pairs = []
    for q, d in read_qrels(folder, split):
        if q not in queries:
            raise DataError(f"{qrels_path}: query {q!r} is not in {os.path.join(folder, 'queries.jsonl')}")
        if d not in documents:
            raise DataError(f"{qrels_path}: document {d!r} is not in {os.path.join(folder, 'corpus.jsonl')}")
        pairs.append((queries[q], documents[d]))
    return pairs


def documents(folder):
    """Every document's text, in corpus order: the candidates to mine negatives from."""
    return [text for _, text in read_documents(folder)]


def task(docs, queries, qrels, source):
    """A retrieval task {"queries", "corpus", "relevant", "unknown_qrels"} from docs [(id, text)], queries
    [(id, text)] and positive qrels [(query id, doc id)]. Ids compared as strings; qrels naming a document the
    corpus lacks are dropped and counted (BEIR would count them as never retrieved)."""
    index = {str(d): i for i, (d, _) in enumerate(docs)}
    relevant, unknown = defaultdict(set), 0
    for q, d in qrels:
        if str(d) in index:
            relevant[str(q)].add(index[str(d)])
        else:
            unknown += 1
    query_texts = dict((str(q), t) for q, t in reversed(list(queries)))  # repeated ids: the first text wins
    ids = [q for q in dict.fromkeys(str(q) for q, _ in queries) if relevant[q]]  # only queries with a relevant doc
    if not ids:
        raise DataError(f"{source}: no query has a positive qrels entry pointing into the corpus")
    return {"queries": [query_texts[q] for q in ids], "corpus": [text for _, text in docs],
            "relevant": [relevant[q] for q in ids], "unknown_qrels": unknown}


def load_task(folder, split="test"):
    """A BEIR folder's `split` as a retrieval task."""
    return task(read_documents(folder), read_queries(folder).items(), read_qrels(folder, split), folder)
