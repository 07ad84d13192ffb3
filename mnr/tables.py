"""Tables of texts on disk or on the hub: what --train-data, --corpus and the NLI and STS loaders read.

Local files are .tsv, .csv, .jsonl, .json or .parquet, optionally gzipped; a folder means its files with "train" in
the name; a comma-separated list means each. A BEIR folder (corpus.jsonl, queries.jsonl, qrels/) is read as it is
(mnr/beir.py). Every problem with a file is one DataError line naming the file, and the row where there is one.
"""
import csv
import gzip
import os
import re

from mnr import beir, hub
from mnr.errors import DataError, first_line

FORMATS = {".tsv": "tsv", ".csv": "csv", ".jsonl": "json", ".json": "json", ".parquet": "parquet"}
NLI_COLUMNS = ("premise", "hypothesis", "label")
LOCAL_TRAIN = ("--train-data PATH (a local .tsv, .csv, .jsonl, .json or .parquet file, optionally .gz, a BEIR "
               "folder, a folder of such files or a comma-separated list; e.g. the sample tests/data/nli/"
               "snli_train_sample.tsv.gz)")
# A cell that is a number or an identifier (digits, maybe letters, no space): not a sentence.
ID_LIKE = re.compile(r"^[\w./:-]*\d[\w./:-]*$")


def _format(name):
    base = name[:-3] if name.endswith(".gz") else name
    return FORMATS.get(os.path.splitext(base)[1].lower())


def data_files(path):
    """A file, a comma-separated list of files, or a directory (its files with "train" in the name)."""
    files = []
    for part in path.split(","):
        if os.path.isdir(part):
            found = sorted(os.path.join(part, f) for f in os.listdir(part)
                           if "train" in f and _format(f) is not None)
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


def load_table(path, columns=None):
    """One local file as a `datasets.Dataset` holding exactly `columns` (None: all, in file order), TSV and CSV
    columns as strings (no type guessing).

    TSV files are read with quoting off: NLI and STS texts contain bare `"` characters, and a quote-aware
    parser would silently glue rows together. "NA" or "null" are sentences here, not missing values."""
    import datasets
    datasets.disable_progress_bars()
    fmt = _format(path)
    if fmt is None:
        raise DataError(f"{path}: unknown file type (expected .tsv, .csv, .jsonl, .json or .parquet, optionally .gz)")
    if os.path.getsize(path) == 0:
        raise DataError(f"{path}: the file is empty")
    kwargs = {}
    try:
        if fmt in ("tsv", "csv"):
            delimiter = "\t" if fmt == "tsv" else ","
            with (gzip.open if path.endswith(".gz") else open)(path, "rt", encoding="utf-8", newline="") as f:
                header = next(csv.reader(f, delimiter=delimiter, quoting=csv.QUOTE_NONE if fmt == "tsv"
                                         else csv.QUOTE_MINIMAL), [])
            # Every column as a string: type guessing would turn a sentence like "1984" into a number.
            features = datasets.Features({name: datasets.Value("string") for name in header})
            kwargs = dict(delimiter=delimiter, keep_default_na=False, na_filter=False, features=features,
                          **({"quoting": csv.QUOTE_NONE} if fmt == "tsv" else {}))
        ds = datasets.load_dataset("csv" if fmt == "tsv" else fmt, data_files=path, split="train", **kwargs)
    except Exception as e:  # noqa: BLE001 - truncated gzip, bad bytes, ragged rows...: one line, no traceback
        msg = first_line(e)
        cause = e.__cause__ or e.__context__
        if cause is not None and str(cause).strip():
            msg = f"{msg} ({type(cause).__name__}: {first_line(cause)})"
        raise DataError(f"{path}: could not be read as {fmt}: {type(e).__name__}: {msg}") from None
    missing = [c for c in columns or () if c not in ds.column_names]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)}; "
                        f"found {', '.join(ds.column_names) or 'none'}; expected {', '.join(columns)}")
    if len(ds) == 0:
        raise DataError(f"{path}: the file has a header but no rows")
    return ds if columns is None else ds.select_columns(list(columns))




# ---- Training data of any source (--train-data): rows (anchor, positive, negative_1, ...) ---------------------
# Column names are free and position decides, as in sentence-transformers, so a file written by mine_negatives.py,
# a hub triplet set and a hand-made TSV all read the same way.

def load_tables(source, local_alternative=LOCAL_TRAIN):
    """A local file, folder (its files with "train" in the name) or comma-separated list, or a hub dataset id
    -> list of (where, Dataset with every column in source order). `local_alternative`: what to give instead
    of a hub id when the hub is unreachable."""
    found = hub.hub_id(source)
    if found is None:
        return [(f, load_table(f)) for f in data_files(source)]
    hub.check_inputs([local_alternative])
    import datasets
    try:
        ds = datasets.load_dataset(*found, split="train")
    except Exception as e:  # noqa: BLE001 - any hub failure becomes one line
        raise DataError(f"could not load {source} from the hub ({type(e).__name__}: {first_line(e)}); "
                        f"use {local_alternative}") from None
    return [(source, ds)]


def table_rows(where, ds):
    """A Dataset -> its rows as tuples of texts; a missing, empty or non-text cell is one line naming
    the file and the row (counted from 1, below the header)."""
    rows = list(zip(*(ds[name] for name in ds.column_names)))
    for i, row in enumerate(rows):
        for j, text in enumerate(row):
            if not isinstance(text, str) or not text.strip():
                what = "missing" if text is None else "empty" if isinstance(text, str) else f"not a text ({text!r})"
                raise DataError(f"{where}: row {i + 1}, column {j + 1} ({ds.column_names[j]!r}): {what}")
    return rows


def check_texts_are_texts(where, names, rows):
    """Refuse a table whose anchor or positive column holds only numbers or ids (a qrels file, an id map):
    training on it would run and teach nothing. A BEIR qrels file gets the folder to give instead."""
    for j in (0, 1):
        if all(ID_LIKE.match(row[j].strip()) for row in rows):
            if os.path.basename(os.path.dirname(os.path.abspath(where))) == "qrels":
                folder = os.path.dirname(os.path.dirname(os.path.normpath(where))) or "."  # as the user wrote it
                advice = (f"this is a BEIR qrels file: pass the BEIR folder itself, --train-data {folder} "
                          "(it reads corpus.jsonl, queries.jsonl and qrels/train.tsv)")
            else:
                advice = ("give a table of (anchor, positive, ...) texts, or a BEIR folder itself (the folder that "
                          "holds corpus.jsonl, queries.jsonl and qrels/)")
            raise DataError(f"{where}: the texts of column {j + 1} ({names[j]!r}) look like ids or numbers "
                            f"(e.g. {rows[0][j]!r}), not sentences; {advice}")


def load_train_data(source, with_sources=False):
    """--train-data: a local table, a BEIR folder or a hub dataset -> list of (anchor, positive, negative_1, ...).

    Columns are taken by position: anchor, positive, then zero or more negatives, whatever their names.
    Every file of one source must have the same number of columns, and at least two. A BEIR folder gives one
    (query, document) pair per positive train qrel (mnr/beir.py). `with_sources`: -> (rows, each row's source),
    the file it came from (a BEIR folder or a hub dataset is one source), for --batch-sampler by-source."""
    if beir.is_beir_folder(source):
        rows = beir.train_pairs(source)
        return (rows, [source] * len(rows)) if with_sources else rows
    rows, width, sources = [], None, []
    for where, ds in load_tables(source):
        if len(ds.column_names) < 2:
            raise DataError(f"{where}: {len(ds.column_names)} column(s) ({', '.join(ds.column_names)}); "
                            "training data needs at least anchor and positive")
        if width is not None and len(ds.column_names) != width:
            raise DataError(f"{where}: {len(ds.column_names)} columns, but the files before it have {width}; "
                            "every file of --train-data must have the same number of columns")
        width = len(ds.column_names)
        found = table_rows(where, ds)
        check_texts_are_texts(where, ds.column_names, found)
        rows += found
        sources += [where] * len(found)
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
