"""Tables of texts on disk or on the hub: what --train-data, --corpus and the NLI and STS loaders read.

Local files are .tsv, .csv, .jsonl, .json or .parquet, optionally gzipped; a folder means its files with "train" in
the name; a comma-separated list means each. A BEIR folder (corpus.jsonl, queries.jsonl, qrels/) is read as it is
(mnr/beir.py). Every problem with a file is one DataError line naming the file, and the row where there is one.
"""
import os
import re
import sys

from mnr import beir, hub
from mnr.errors import DataError, first_line
from mnr.table_file import columns_of, file_format, load_table

NLI_COLUMNS = ("premise", "hypothesis", "label")
LOCAL_TRAIN = ("--train-data PATH (a local .tsv, .csv, .jsonl, .json or .parquet file, optionally .gz, a BEIR "
               "folder, a folder of such files or a comma-separated list; e.g. the sample tests/data/nli/"
               "snli_train_sample.tsv.gz)")
# A cell that is a number or an identifier (digits, maybe letters, no space): not a sentence.
ID_LIKE = re.compile(r"^[\w./:-]*\d[\w./:-]*$")


def data_files(path):
    """A file, a comma-separated list of files, or a directory (its files with "train" in the name)."""
    files = []
    for part in path.split(","):
        if os.path.isdir(part):
            found = sorted(os.path.join(part, f) for f in os.listdir(part)
                           if "train" in f and file_format(f) is not None)
            if not found and os.path.isdir(os.path.join(part, "qrels")):  # a BEIR folder with a file missing
                missing = [f for f in ("corpus.jsonl", "queries.jsonl") if not os.path.isfile(os.path.join(part, f))]
                raise DataError(f"{part}: a BEIR folder (it has qrels/) needs corpus.jsonl and queries.jsonl beside "
                                f"qrels/; missing: {', '.join(missing)}")
            if not found:
                raise DataError(f"{part}: no data file with 'train' in its name "
                                "(.tsv, .csv, .jsonl, .json, .parquet, optionally .gz)")
            files += found
        elif not os.path.exists(part):
            raise DataError(f"{part}: no such file or directory")
        elif not os.access(part, os.R_OK):
            raise DataError(f"{part}: not readable (permission denied)")
        else:
            files.append(part)
    return files


# ---- Training data of any source (--train-data): rows (anchor, positive, negative_1, ...) ---------------------
# A column whose name says its role is read by that name, wherever it stands: {"pos": ..., "query": ...} has its
# anchor second, and key order is an accident of whoever wrote the file. Columns without such a name go by
# position, as in sentence-transformers, so a file written by mine_negatives.py, a hub triplet set and a
# hand-made TSV all read the same way. The first line a load prints says which column became what.
ANCHOR_NAMES = ("anchor", "query", "question")
POSITIVE_NAMES = ("positive", "pos", "document", "answer")
NEGATIVE_NAME = re.compile(r"^(negative|neg)(_?\d+)?$")  # negative, neg, negative_1, negative2, neg_3 ...
KNOWN_NAMES = "anchor/query/question, positive/pos/document/answer, negative/neg/negative_N"


def hub_source(source, flag="--train-data", local_alternative=LOCAL_TRAIN):
    """`source` as a hub dataset id -> (repo, config), None for a local path. A name that is no local path but
    could be a hub id is more often a mistyped path than a dataset: without the hub, say that first."""
    found = hub.hub_id(source)
    if found is not None and not hub.may_load():
        raise DataError(f"{flag} {source}: no such local file or folder (check the path); as a hub dataset id "
                        f"it needs the hub, and the Hugging Face hub is unreachable (no network?): use "
                        f"{local_alternative}")
    return found


def load_tables(source, local_alternative=LOCAL_TRAIN):
    """A local file, folder (its files with "train" in the name) or comma-separated list, or a hub dataset id
    -> list of (where, a Table or, from the hub, a Dataset, with every column in source order).
    `local_alternative`: what to give instead of a hub id when the hub is unreachable."""
    found = hub_source(source, local_alternative.split()[0], local_alternative)  # each alternative opens with its flag
    if found is None:
        return [(f, load_table(f)) for f in data_files(source)]
    import datasets
    try:
        ds = datasets.load_dataset(*found, split="train")
    except Exception as e:  # noqa: BLE001 - any hub failure becomes one line
        raise DataError(f"{source}: no such local file or folder, and the hub could not load it as a dataset "
                        f"({type(e).__name__}: {first_line(e)}); check the path, or use {local_alternative}") from None
    return [(source, ds)]


def check_cells(where, names, rows):
    """A missing, empty or non-text cell is one line naming the file, the row (counted from 1, below the header)
    and the column."""
    for i, row in enumerate(rows):
        for j, text in enumerate(row):
            if not isinstance(text, str) or not text.strip():
                what = "missing" if text is None else "empty" if isinstance(text, str) else f"not a text ({text!r})"
                raise DataError(f"{where}: row {i + 1}, column {j + 1} ({names[j]!r}): {what}")
    return rows


def table_rows(where, ds):
    """A Table or Dataset -> its rows as tuples of texts, every cell checked (check_cells)."""
    return check_cells(where, ds.column_names, list(zip(*columns_of(ds, *ds.column_names))))


def column_role(name):
    name = str(name).strip().lower()
    return ("anchor" if name in ANCHOR_NAMES else "positive" if name in POSITIVE_NAMES
            else "negative" if NEGATIVE_NAME.match(name) else None)


def column_order(where, names):
    """Column names -> [(role, column index), ...] for anchor, positive and each negative. A named anchor or
    positive is taken wherever it stands; the other columns fill in by position, in file order."""
    roles = [column_role(n) for n in names]
    for role in ("anchor", "positive"):
        named = [repr(n) for n, r in zip(names, roles) if r == role]
        if len(named) > 1:
            raise DataError(f"{where}: columns {' and '.join(named)} both name the {role}; keep one, or rename "
                            "the other (a negative is negative, neg or negative_N)")
    free = [j for j, r in enumerate(roles) if r is None]
    order = []
    for role in ("anchor", "positive"):
        j = roles.index(role) if role in roles else free.pop(0) if free else None
        if j is None:
            raise DataError(f"{where}: no column for the {role} (columns {', '.join(map(repr, names))}); name "
                            f"one {' or '.join(ANCHOR_NAMES if role == 'anchor' else POSITIVE_NAMES)}")
        order.append((role, j))
    taken = {j for _, j in order}
    return order + [("negative", j) for j in range(len(names)) if j not in taken]


def ordered_columns(where, ds, order):
    """The columns in (anchor, positive, negatives...) order -> (their names, their cells, how many texts each of
    `order` gave, as a count or a phrase). A list-valued positive or negative column (FlagEmbedding's {"query",
    "pos": [...], "neg": [...]}, as bge fine-tuning reads it) gives one column per item: a row per positive (the
    query and its negatives repeated: duplicate-free batches keep the copies apart), and each row's first k
    negatives, k the fewest any row has (a batch needs the same number of negatives in every row)."""
    names, labels, columns, counts = ds.column_names, [], [], []
    every = columns_of(ds, *names)
    expand = None  # where positives are lists: (the positive's column, how many rows each row of the file becomes)
    for role, j in order:
        cells, what = every[j], f"{where}: column {j + 1} ({names[j]!r}, the {role})"
        lengths = [len(c) if isinstance(c, list) else None for c in cells]
        if all(n is None for n in lengths):
            labels, columns, counts = labels + [names[j]], columns + [cells], counts + [1]
            continue
        texts = [("a single text" if n is None else f"{n} texts") for n in lengths]
        if role == "anchor":
            raise DataError(f"{what} holds lists of texts ({texts[0]} in row 1); give one text per row")
        if (i := next((i for i, n in enumerate(lengths) if not n), None)) is not None:
            raise DataError(f"{what} holds {texts[i]} in row {i + 1}; every row needs at least one "
                            f"{'positive' if role == 'positive' else 'negative (or no negative column at all)'}")
        if role == "positive":  # the anchor's one column and count come first, so both index it alike
            expand = len(columns), lengths
            labels, columns, counts = labels + [names[j]], columns + [cells], counts + [1]
            continue
        k = min(lengths)
        labels += [f"{names[j]}[{m}]" for m in range(k)]
        columns += [[c[m] for c in cells] for m in range(k)]
        counts.append(k if k == max(lengths) else f"the first {k} of {k}-{max(lengths)} texts a row: the fewest "
                                                  "any row has")
    if expand is not None:  # a row per positive: the positive column's lists unrolled, every other column repeated
        p, per_row = expand
        columns = [[text for cell in column for text in cell] if c == p else
                   [cell for cell, n in zip(column, per_row) for _ in range(n)] for c, column in enumerate(columns)]
        if max(per_row) > 1:
            counts[p] = f"{sum(per_row):,} positives in {len(per_row):,} rows: a row per positive"
    return labels, columns, counts


def describe_columns(where, names, order, counts):
    """The line a load prints first: which column became the anchor, the positive and each negative, and why."""
    named = [column_role(names[j]) is not None for _, j in order]
    parts = []
    for (role, j), by_name, count in zip(order, named, counts):
        name = names[j] if len(names[j]) <= 40 else names[j][:37] + "..."  # a header that is really a row
        told = f", {count}" if isinstance(count, str) else f", {count} texts" if count > 1 else ""
        parts.append(f"{role}={name!r} (column {j + 1}{told}"
                     f"{', by name' if by_name and not all(named) else ''})")
    how = ("by name" if all(named) else "the named ones by name, the others by position" if any(named) else
           f"by position: no column has a known name ({KNOWN_NAMES})")
    return f"columns of {where}: {', '.join(parts)}; {how}"


def header_looks_like_data(names, rows):
    """A TSV or CSV file's first line that is probably a row: no known column name, words rather than
    identifiers, and about as long as the rows below it (a header is a few short names)."""
    if not rows or any(column_role(n) for n in names) or all(re.fullmatch(r"[\w.-]*", n.strip()) for n in names):
        return False
    lengths = sorted(sum(len(t) for t in row if isinstance(t, str)) for row in rows[:1000])
    typical = lengths[len(lengths) // 2]
    return typical / 2 <= sum(len(n) for n in names) <= typical * 2


def looks_like(where, names, values):
    """What a table with a column of numbers probably is, and what to do with it instead."""
    lowered = {str(n).strip().lower() for n in names}
    if {"premise", "hypothesis", "label"} <= lowered:
        return f"this looks like an NLI file: train on its entailment pairs with --nli-data {where}"
    if len(names) == 3 and all(0 <= _number(v) <= 5 for v in values):  # STSb's 0-5 gold scale
        return (f"this looks like an STS file (sentence1, sentence2, score): evaluate_sts.py --sts-data {where} "
                "scores models on it; training needs (anchor, positive, negative...) texts")
    return "drop that column, or give a table of (anchor, positive, negative...) texts"


def _number(text):
    """`text` as a float; NaN for anything else, so every comparison with it is false."""
    try:
        return float(text)
    except ValueError:
        return float("nan")


def check_texts_are_texts(where, names, rows, columns=(0, 1)):
    """Refuse a table with a column that holds only numbers or ids (a qrels file, an id map, an STS file's
    scores, NLI labels): training on it would run and teach nothing, or train the numbers as negatives. A BEIR
    qrels file gets the folder to give instead; an STS or NLI file the script or flag that reads it.
    `columns`: which to check, by index (0: the anchor, 1: the positive, 2...: the negatives)."""
    for j in columns:
        role = ("anchor", "positive")[j] if j < 2 else "negative"
        if not all(ID_LIKE.match(row[j].strip()) for row in rows):
            continue
        if os.path.basename(os.path.dirname(os.path.abspath(where))) == "qrels":
            folder = os.path.dirname(os.path.dirname(os.path.normpath(where))) or "."  # as the user wrote it
            advice = (f"this is a BEIR qrels file: pass the BEIR folder itself, --train-data {folder} "
                      "(it reads corpus.jsonl, queries.jsonl and qrels/train.tsv)")
        elif role != "negative":
            advice = ("give a table of (anchor, positive, ...) texts, or a BEIR folder itself (the folder that "
                      "holds corpus.jsonl, queries.jsonl and qrels/)")
        else:
            advice = looks_like(where, names, [row[j] for row in rows])
        raise DataError(f"{where}: the texts of column {j + 1} ({names[j]!r}, read as the {role}) look like ids "
                        f"or numbers (e.g. {rows[0][j]!r}), not sentences; {advice}")


def load_train_data(source, with_sources=False):
    """--train-data: a local table, a BEIR folder or a hub dataset -> list of (anchor, positive, negative_1, ...).

    Columns named anchor/query/question, positive/pos/document/answer or negative/neg/negative_N are read by name;
    the others are taken by position: anchor, positive, then zero or more negatives. It prints (stdout) which
    column became what, and warns (stderr) when a TSV or CSV file's header looks like a row. Every file of one
    source must give the same number of columns, and at least two. A BEIR folder gives one (query, document) pair
    per positive train qrel (mnr/beir.py). `with_sources`: -> (rows, each row's source), the file it came from (a
    BEIR folder or a hub dataset is one source), for --batch-sampler by-source."""
    if beir.is_beir_folder(source):
        rows = beir.train_pairs(source)
        return (rows, [source] * len(rows)) if with_sources else rows
    rows, width, sources, notes, shown = [], None, [], [], None
    for where, ds in load_tables(source):
        names = ds.column_names
        if len(names) < 2:
            raise DataError(f"{where}: {len(names)} column(s) ({', '.join(names)}); "
                            "training data needs at least anchor and positive")
        order = column_order(where, names)
        labels, columns, counts = ordered_columns(where, ds, order)
        if width is not None and len(labels) != width:
            raise DataError(f"{where}: {len(labels)} columns, but the files before it have {width}; "
                            "every file of --train-data must have the same number of columns")
        width = len(labels)
        found = check_cells(where, labels, list(zip(*columns)))
        check_texts_are_texts(where, labels, found)
        if names != shown:  # a folder of files with one header: one line
            notes.append(describe_columns(where, names, order, counts))
            shown = names
        if file_format(where) in ("tsv", "csv") and header_looks_like_data(names, found):
            first = ", ".join(repr(n if len(n) <= 40 else n[:37] + "...") for n in names)
            notes.append((f"warning: {where}: its first line ({first}) was read as the header, but it looks like a "
                          f"row (no known column name, as long as the rows): {len(found)} rows are trained, that "
                          "one is not; if it is data, add a header line such as "
                          f"{'anchor,positive' if file_format(where) == 'csv' else 'anchor<TAB>positive'}"))
        rows += found
        sources += [where] * len(found)
    # Negatives over the whole source: one file's few rows may hold a negative such as "1984".
    if rows:
        check_texts_are_texts(where if sources[0] == where else source, labels, rows, range(2, width))
    if os.environ.get("RANK", "0") == "0":  # under torchrun every process loads the data; one says so
        for line in notes:
            print(line, file=sys.stderr if line.startswith("warning:") else sys.stdout, flush=True)
    return (rows, sources) if with_sources else rows


def load_texts(source, local_alternative):
    """Every distinct text of a table, in first-seen order: an NLI table's premises and hypotheses (its label and
    other columns are not texts), any other table's every column; a BEIR folder's documents."""
    if beir.is_beir_folder(source):
        return list(dict.fromkeys(beir.documents(source)))
    texts = {}
    for where, ds in load_tables(source, local_alternative):
        if all(c in ds.column_names for c in NLI_COLUMNS):
            ds = ds.select_columns(["premise", "hypothesis"])
        for row in table_rows(where, ds):
            texts.update(dict.fromkeys(row))
    return list(texts)
