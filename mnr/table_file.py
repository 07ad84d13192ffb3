"""One local table file (.tsv, .csv, .jsonl, .json or .parquet, optionally gzipped) read as it is: a Table of
columns (TSV and CSV cells as strings), every problem one DataError line naming the file. The reader under
mnr/tables.py (training data, corpora, NLI and STS files) and mnr/beir.py (qrels): both read through it, so
neither needs the other to read a file.
"""
import csv
import gzip
import os

from mnr.errors import DataError, first_line

FORMATS = {".tsv": "tsv", ".csv": "csv", ".jsonl": "json", ".json": "json", ".parquet": "parquet"}


def file_format(name):
    """A file name -> its table format ("tsv", "csv", "json", "parquet"), None for another kind of file."""
    base = name[:-3] if name.endswith(".gz") else name
    return FORMATS.get(os.path.splitext(base)[1].lower())


class Table:
    """Named columns of equal length, as Python lists: what the readers need of a table (column_names, len,
    table[name], select_columns), the part of a `datasets.Dataset` they use. A local TSV or CSV file is read into
    one without importing `datasets` at all (its import alone is 1.5 s of a training run's start-up here)."""

    def __init__(self, columns):
        self.columns = dict(columns)

    @property
    def column_names(self):
        return list(self.columns)

    def __len__(self):
        return len(next(iter(self.columns.values()), []))

    def __getitem__(self, name):
        return self.columns[name]

    def select_columns(self, names):
        return Table({name: self.columns[name] for name in names})


def read_delimited(path, fmt):
    """A TSV or CSV file -> Table of string cells. TSV with quoting off, CSV with the usual double quotes; blank
    lines are skipped, a row with more cells than the header is an error, a short row's missing cells are None
    (check_cells names them)."""
    with (gzip.open if path.endswith(".gz") else open)(path, "rt", encoding="utf-8", newline="") as f:
        reader = csv.reader(f, delimiter="\t" if fmt == "tsv" else ",",
                            quoting=csv.QUOTE_NONE if fmt == "tsv" else csv.QUOTE_MINIMAL)
        header = next(reader, [])
        if len(set(header)) < len(header):
            raise DataError(f"{path}: the header names a column twice ({', '.join(header)})")
        body = [row for row in reader if row and any(row)]  # no rows at all: load_table says so
    width = len(header)
    for i, row in enumerate(body):
        if len(row) > width:
            raise DataError(f"{path}: could not be read as {fmt}: line {i + 2} has {len(row)} cells, the header "
                            f"{width}" + (" (a tab inside a text?)" if fmt == "tsv" else ""))
    return Table({name: [row[j] if j < len(row) else None for row in body] for j, name in enumerate(header)})


def load_table(path, columns=None):
    """One local file as a Table holding exactly `columns` (None: all, in file order), TSV and CSV columns as
    strings (no type guessing: a sentence like "1984" stays a text, "NA" and "null" are sentences).

    TSV files are read with quoting off: NLI and STS texts contain bare `"` characters, and a quote-aware
    parser would silently glue rows together. JSON and parquet go through `datasets`, which reads their nested
    values (FlagEmbedding's lists of negatives)."""
    fmt = file_format(path)
    if fmt is None:
        raise DataError(f"{path}: unknown file type (expected .tsv, .csv, .jsonl, .json or .parquet, optionally .gz)")
    if os.path.getsize(path) == 0:
        raise DataError(f"{path}: the file is empty")
    try:
        if fmt in ("tsv", "csv"):
            table = read_delimited(path, fmt)
        else:
            import datasets
            datasets.disable_progress_bars()
            ds = datasets.load_dataset(fmt, data_files=path, split="train")
            table = Table(zip(ds.column_names, columns_of(ds, *ds.column_names)))
    except DataError:
        raise
    except Exception as e:  # noqa: BLE001 - truncated gzip, bad bytes, ragged rows...: one line, no traceback
        msg = first_line(e)
        cause = e.__cause__ or e.__context__
        if cause is not None and str(cause).strip():
            msg = f"{msg} ({type(cause).__name__}: {first_line(cause)})"
        raise DataError(f"{path}: could not be read as {fmt}: {type(e).__name__}: {msg}") from None
    missing = [c for c in columns or () if c not in table.column_names]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)}; "
                        f"found {', '.join(table.column_names) or 'none'}; expected {', '.join(columns)}")
    if len(table) == 0:
        raise DataError(f"{path}: the file has a header but no rows")
    return table if columns is None else table.select_columns(list(columns))


def columns_of(ds, *names):
    """Whole columns of a Table or a `datasets.Dataset` as Python lists. A Dataset's are converted at once from
    its Arrow table: since datasets 4, ds["premise"] is a lazy column that formats one row at a time (2.3 s for
    the 44k rows of the local NLI sample against 0.03 s this way; about a minute for the hub's 943k rows)."""
    if isinstance(ds, Table):
        return [ds[name] for name in names]
    table = ds.select_columns(list(names)).to_dict()
    return [table[name] for name in names]
