"""BEIR folders, read as they are: a retrieval task to score, or (query, document) pairs to train on.

Layout (BEIR, MTEB): corpus.jsonl ({"_id", "title", "text"} per line), queries.jsonl ({"_id", "text"}) and
qrels/SPLIT.tsv (query-id, corpus-id, score) for the splits train, dev and test. A document is its title and its
text, joined by a space and stripped, as BEIR and MTEB embed it. A qrel's score is a grade: score > 0 marks a
relevant document, and nDCG takes the grade as that document's gain (TREC-COVID, Touché and the TREC deep-learning
sets grade 0, 1, 2; SciFact's grades are all 1).

Nothing here is silently wrong: a repeated id is an error; an empty text, and judgements naming an id the folder
lacks, are dropped with one counted `warning:` line each on stderr.
"""
import json
import os
import sys
from collections import Counter, defaultdict

from mnr.errors import DataError
from mnr.table_file import columns_of, load_table

SPLITS = ("train", "dev", "test")


def is_beir_folder(path):
    return os.path.isdir(path) and all(os.path.isfile(os.path.join(path, f)) for f in ("corpus.jsonl", "queries.jsonl"))


def warn(message):
    print(f"warning: {message}", file=sys.stderr, flush=True)


def read_jsonl(path, keys):
    """A JSON-lines file -> [(line number, dict)], each checked to hold `keys`; a bad line is one error naming it."""
    if not os.path.isfile(path):
        raise DataError(f"{path}: no such file")
    rows = []
    with open(path, encoding="utf-8") as f:
        try:
            for n, line in enumerate(f, 1):  # streamed: BEIR corpus files run to gigabytes
                if line.strip():
                    try:
                        row = json.loads(line)
                    except json.JSONDecodeError as e:
                        raise DataError(f"{path}:{n}: bad JSON line ({e.msg}, column {e.colno})") from None
                    if not isinstance(row, dict) or not all(k in row for k in keys):
                        raise DataError(f"{path}:{n}: expected a JSON object with {', '.join(keys)}")
                    rows.append((n, row))
        except UnicodeDecodeError as e:
            raise DataError(f"{path}: not UTF-8 text ({e})") from None
    if not rows:
        raise DataError(f"{path}: the file is empty")
    return rows


def field(path, n, row, key):
    """A text field of a JSON line: missing or null is "" (a document with `"text": null` keeps its title, where
    str() would embed "Title None"); a number or a list is an error, not a text to embed as its repr."""
    value = row.get(key)
    if value is not None and not isinstance(value, str):
        raise DataError(f"{path}:{n}: \"{key}\" is {json.dumps(value)}, not a string")
    return value or ""


def row_id(path, n, row):
    value = row["_id"]
    if value == "" or isinstance(value, bool) or not isinstance(value, (str, int)):  # null would become "None"
        raise DataError(f"{path}:{n}: \"_id\" is {json.dumps(value)}; each line needs an id, a string or an integer")
    return str(value)


def document_text(title, text):
    return f"{title or ''} {text or ''}".strip()


def unique_texts(rows, source, what):
    """[(id, text, where)] -> ({id: text} in order, the ids dropped for an empty text). `where`: the row's place
    in `source` for messages ("line 4", "row 4").

    A repeated id is an error: which text BEIR keeps depends on its reader (a dict keeps the last), so a score
    would hang on a detail nobody chose. An empty text is dropped with one counted warning rather than refused:
    published corpora hold a few (Touché's), so a user scoring them means it; and kept, every empty text embeds
    as the same special-tokens vector, ranked against every query on no content at all."""
    texts, where_seen, empty = {}, {}, []
    for i, text, where in rows:
        if i in where_seen:
            raise DataError(f"{source}: {what} id {i!r} appears twice, at {where_seen[i]} and {where}; "
                            "each id must be unique: remove or rename one")
        where_seen[i] = where
        if text.strip():
            texts[i] = text
        else:
            empty.append(i)
    if empty:
        warn(f"{source}: {len(empty)} empty {what} text(s) dropped, with the judgements that name them "
             f"(the first: {what} {empty[0]!r}, at {where_seen[empty[0]]})")
    return texts, set(empty)


def read_corpus(folder):
    """corpus.jsonl -> ({id: document text}, ids dropped as empty)."""
    path = os.path.join(folder, "corpus.jsonl")
    return unique_texts([(row_id(path, n, r), document_text(field(path, n, r, "title"), field(path, n, r, "text")),
                          f"line {n}") for n, r in read_jsonl(path, ("_id", "text"))], path, "document")


def read_query_file(folder):
    """queries.jsonl -> ({id: query text}, ids dropped as empty)."""
    path = os.path.join(folder, "queries.jsonl")
    return unique_texts([(row_id(path, n, r), field(path, n, r, "text"), f"line {n}")
                         for n, r in read_jsonl(path, ("_id", "text"))], path, "query")


def read_documents(folder):
    """corpus.jsonl -> [(id, text)], ids as strings, empty documents left out."""
    return list(read_corpus(folder)[0].items())


def read_queries(folder):
    """queries.jsonl -> {id: text}, empty queries left out."""
    return read_query_file(folder)[0]


def qrels_path(folder, split):
    return os.path.join(folder, "qrels", f"{split}.tsv")


def read_graded_qrels(folder, split):
    """qrels/SPLIT.tsv -> [(query id, document id, grade)] of every judgement, grade 0 included, in file order."""
    path = qrels_path(folder, split)
    if not os.path.isfile(path):
        found = sorted(f[:-4] for f in os.listdir(os.path.join(folder, "qrels")) if f.endswith(".tsv")) \
            if os.path.isdir(os.path.join(folder, "qrels")) else []
        raise DataError(f"{path}: no such file (this folder's splits: {', '.join(found) or 'none'})")
    queries, documents, grades = columns_of(load_table(path, ("query-id", "corpus-id", "score")),
                                            "query-id", "corpus-id", "score")
    try:
        scores = [float(s) for s in grades]
    except ValueError as e:
        raise DataError(f"{path}: score column is not numeric ({e})") from None
    if not any(s > 0 for s in scores):
        raise DataError(f"{path}: no positive judgement (score > 0): the {split} split is empty")
    return list(zip(queries, documents, scores))


def read_qrels(folder, split):
    """qrels/SPLIT.tsv -> [(query id, document id)] of its positive (score > 0) judgements, in file order."""
    return [(q, d) for q, d, grade in read_graded_qrels(folder, split) if grade > 0]


def train_pairs(folder, split="train"):
    """(query text, document text), one per positive qrel of `split`. A qrel naming a query or document the
    folder does not have is an error: a pair cannot be made up. One naming an empty text (dropped with a
    warning) makes no pair: there is nothing to learn from it.

    A pair of texts met twice is kept once (said in one note): a folder can list one query text under two ids
    (SciFact's queries.jsonl does, for 2 claims), and the same text pair twice is one example trained twice an
    epoch, twice the weight of any other. A duplicate-free batch never holds both copies, so nothing else is
    gained. The miner reads its pairs here, so it writes one row per pair, as sentence-transformers'
    mine_hard_negatives does."""
    (documents, no_text), (queries, no_query) = read_corpus(folder), read_query_file(folder)
    path, pairs = qrels_path(folder, split), Counter()  # insertion-ordered: first-seen order
    for q, d in read_qrels(folder, split):
        if q in no_query or d in no_text:
            continue
        if q not in queries:
            raise DataError(f"{path}: query {q!r} is not in {os.path.join(folder, 'queries.jsonl')}")
        if d not in documents:
            raise DataError(f"{path}: document {d!r} is not in {os.path.join(folder, 'corpus.jsonl')}")
        pairs[queries[q], documents[d]] += 1
    if not pairs:
        raise DataError(f"{path}: no (query, document) pair left: every positive judgement names an empty text")
    repeated = sum(count > 1 for count in pairs.values())
    if repeated:
        print(f"note: {path}: {repeated} (query, document) pair(s) of texts judged more than once (the same "
              "texts under several ids, or a judgement repeated) are kept once", file=sys.stderr)
    return list(pairs)


def documents(folder):
    """Every document's text, in corpus order: the candidates to mine negatives from."""
    return [text for _, text in read_documents(folder)]


def task(docs, queries, judgements, source, no_text=frozenset(), no_query=frozenset()):
    """A retrieval task {"queries", "corpus", "relevant", "unknown_qrels"} from docs and queries {id: text}
    (unique_texts' checked texts), judgements [(query id, doc id, grade)], and the document and query ids
    unique_texts dropped as empty (their judgements go without a second warning).

    "relevant": per query, {corpus index: grade > 0}. A pair judged twice keeps its last grade, as BEIR's qrels
    dict does. Only queries with a relevant document are scored. Positive judgements naming an id that neither
    docs nor queries hold are counted in "unknown_qrels" and told in one warning: BEIR would count such a
    document as relevant and never retrieved, so the folder and its qrels likely do not belong together."""
    index = {d: i for i, d in enumerate(docs)}
    grades, unknown = defaultdict(dict), []
    for q, d, grade in judgements:
        q, d = str(q), str(d)
        if q in queries and d in index:
            grades[q][index[d]] = grade
        elif grade > 0 and q not in no_query and d not in no_text:
            unknown.append(f"query {q!r}" if q not in queries else f"document {d!r}")
    if unknown:
        warn(f"{source}: {len(unknown)} positive judgement(s) name an id missing from the corpus or the queries "
             f"(the first: {unknown[0]}); not scored")
    relevant = {q: {i: g for i, g in grades[q].items() if g > 0} for q in queries}
    ids = [q for q in queries if relevant[q]]
    if not ids:
        raise DataError(f"{source}: no query has a positive qrels entry pointing into the corpus")
    return {"queries": [queries[q] for q in ids], "corpus": list(docs.values()),
            "relevant": [relevant[q] for q in ids], "unknown_qrels": len(unknown)}


def load_task(folder, split="test"):
    """A BEIR folder's `split` as a retrieval task."""
    (docs, no_text), (queries, no_query) = read_corpus(folder), read_query_file(folder)
    return task(docs, queries, read_graded_qrels(folder, split), qrels_path(folder, split), no_text, no_query)
