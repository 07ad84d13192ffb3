"""Step 1 of the tutorial: NLI data -> (anchor, positive[, negative]) rows -> duplicate-free, padded batches.

    python data_prep.py --nli-data hub                      # SNLI + MultiNLI from the Hugging Face hub
    python data_prep.py --nli-data ../shared/data/nli       # local files (every file with "train" in its name)
    python data_prep.py --nli-data ../shared/data/nli --hard-negatives

It prints what training would see (`pairs: N`, `triplets: N`, a few examples) and writes nothing.
Training scripts import `load_nli`, `make_rows`, `epoch_batches` and `collate` from here.
"""
import argparse
import csv
import gzip
import os
import random
import re
from collections import defaultdict

import hub
from errors import DataError, exit_on_input_error, first_line

# MNLI's integer labels. The hub's SNLI uses the same ones, plus -1 for pairs annotators could not agree on.
LABELS = {"entailment": 0, "neutral": 1, "contradiction": 2, "-": -1}
ENTAILMENT, CONTRADICTION = 0, 2
NLI_COLUMNS = ("premise", "hypothesis", "label")
# what to give instead of the hub
LOCAL_NLI = "--nli-data PATH (e.g. --nli-data ../shared/data/nli, or the sample tests/data/nli)"


# ---------------------------------------------------------------------------------------------------------
# Loading: the hub (as in the tutorial) or local files. Both end in one `datasets.Dataset` with the columns
# premise, hypothesis, label (int), so everything after loading is the same code.

def load_hub_nli():
    """SNLI train + MultiNLI train, as the tutorial builds them (942,854 rows before filtering)."""
    hub.check_inputs([LOCAL_NLI])
    import datasets
    try:
        snli = datasets.load_dataset("stanfordnlp/snli", split="train")
        mnli = datasets.load_dataset("nyu-mll/glue", "mnli", split="train")
    except Exception as e:  # noqa: BLE001 - any hub failure becomes one line
        raise DataError(f"could not load SNLI/MultiNLI from the hub ({type(e).__name__}: {e}); "
                        "use --nli-data PATH for local files") from None
    mnli = mnli.remove_columns([c for c in mnli.column_names if c not in NLI_COLUMNS])
    # SNLI's label is a ClassLabel with the same names as MNLI's; casting makes the two concatenable.
    snli = snli.cast(mnli.features)
    return datasets.concatenate_datasets([snli, mnli])


def nli_files(path):
    """A file, a comma-separated list of files, or a directory (its files with "train" in the name)."""
    files = []
    for part in path.split(","):
        if os.path.isdir(part):
            found = sorted(os.path.join(part, f) for f in os.listdir(part)
                           if "train" in f and _format(f) is not None)
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


def _format(name):
    base = name[:-3] if name.endswith(".gz") else name
    ext = os.path.splitext(base)[1].lower()
    return {".tsv": "tsv", ".csv": "csv", ".jsonl": "json", ".json": "json", ".parquet": "parquet"}.get(ext)


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


def _label_to_int(path):
    def convert(batch):
        out = []
        for value in batch["label"]:
            key = str(value).strip().lower()
            if key in LABELS:
                out.append(LABELS[key])
            elif key.lstrip("-").isdigit() and int(key) in (-1, 0, 1, 2):
                out.append(int(key))
            else:
                raise DataError(f"{path}: bad label {value!r} (expected 0/1/2/-1 or "
                                "entailment/neutral/contradiction)")
        return {"label": out}
    return convert


def load_local_nli(path):
    import datasets
    from datasets import Features, Value
    features = Features({"premise": Value("string"), "hypothesis": Value("string"), "label": Value("int64")})
    parts = []
    for f in nli_files(path):
        ds = load_table(f, NLI_COLUMNS)
        ds = ds.map(_label_to_int(f), batched=True, features=features)
        parts.append(ds)
    return datasets.concatenate_datasets(parts)


def load_nli(source="hub"):
    """`hub` or a local path -> Dataset(premise, hypothesis, label) with every label in {-1, 0, 1, 2}."""
    return load_hub_nli() if source == "hub" else load_local_nli(source)


# ---------------------------------------------------------------------------------------------------------
# Rows: MNR needs only (anchor, positive) pairs, so every label but entailment is dropped (the tutorial's
# filter; this also drops the hub's -1 "no gold label" rows). With hard negatives, a row becomes
# (premise, entailed hypothesis, contradicted hypothesis of the same premise): a contradiction is the
# closest thing NLI has to a near-miss document, which is what makes a negative "hard".

def make_rows(nli, hard_negatives=False):
    """Dataset(premise, hypothesis, label) -> list of (anchor, positive) or (anchor, positive, negative) tuples.

    Triplets: every (entailment, contradiction) combination for each premise, in the data's order; premises
    with no contradiction produce none. Identical premise strings count as the same premise."""
    premises, hypotheses, labels = nli["premise"], nli["hypothesis"], nli["label"]
    if not hard_negatives:
        return [(p, h) for p, h, y in zip(premises, hypotheses, labels) if y == ENTAILMENT]
    entailed, contradicted = defaultdict(list), defaultdict(list)
    for p, h, y in zip(premises, hypotheses, labels):
        if y == ENTAILMENT:
            entailed[p].append(h)
        elif y == CONTRADICTION:
            contradicted[p].append(h)
    return [(p, pos, neg) for p, positives in entailed.items() for pos in positives
            for neg in contradicted.get(p, ())]


# ---------------------------------------------------------------------------------------------------------
# Batches. With in-batch negatives every other row's texts are negatives for this row. If the same sentence
# sits in two rows of a batch, the model is told to push a sentence away from itself: a false negative.
# So a batch never holds the same string twice, in any column.

def epoch_batches(rows, batch_size, seed, epoch=0):
    """Row indices of one epoch, as full batches with no repeated text (compared as exact strings).

    Deterministic for (seed, epoch); each epoch is a new shuffle. Greedy: walk a shuffled order and put a
    row in the first batch it fits without a clash; a row that clashes waits and gets first pick at the next
    batch. Every row is used at most once per epoch. Leftovers are dropped: the last incomplete batch, any
    row that never found a batch without a clash (with rows that share text this happens to a handful at the
    end), and rows that repeat a text within themselves (an anchor identical to its positive teaches nothing).
    Dropping keeps every batch the same size, so each query always has the same number of negatives
    and a batch splits evenly across processes. The next epoch's shuffle drops different rows."""
    if batch_size < 1:
        raise DataError(f"batch size must be at least 1, got {batch_size}")
    if batch_size > len(rows):
        raise DataError(f"batch size {batch_size} is larger than the {len(rows)} usable rows")
    order = list(range(len(rows)))
    random.Random(f"{seed}-{epoch}").shuffle(order)
    waiting = dict.fromkeys(order)  # insertion-ordered: rows that clashed stay at the front, first in line
    # A row whose own columns repeat a text (premise == hypothesis: 34 of the local pairs) never fits either.
    self_repeating = {j for j, row in enumerate(rows) if len(set(row)) < len(row)}
    batches = []
    while True:
        batch, texts = [], set()
        for j in waiting:
            if texts.isdisjoint(rows[j]) and j not in self_repeating:
                batch.append(j)
                texts.update(rows[j])
                if len(batch) == batch_size:
                    break
        if len(batch) < batch_size:
            return batches  # leftovers: fewer than a batch's worth of rows that fit together
        for j in batch:
            del waiting[j]
        batches.append(batch)


def collate(rows, tokenizer, max_length=128, pad_to_max_length=False):
    """A batch of row tuples -> one tokenizer dict per column (anchor, positive, negatives...).

    Padding is per batch: each column is padded to its own longest row. The tutorial padded every row to
    128 tokens, but NLI sentences average ~15 tokens, so most of a 128-wide forward would be padding that the
    attention mask then ignores: the same embeddings for several times the compute.
    `pad_to_max_length=True` reproduces the tutorial so the difference can be measured."""
    columns = list(zip(*rows))
    return [tokenizer(list(col), max_length=max_length, truncation=True, return_tensors="pt",
                      padding="max_length" if pad_to_max_length else "longest") for col in columns]


# ---------------------------------------------------------------------------------------------------------

def main(argv=None):
    parser = argparse.ArgumentParser(description="Show the (anchor, positive[, negative]) rows training would use.")
    parser.add_argument("--nli-data", default="hub", help="'hub' or a local file/folder (default: hub)")
    parser.add_argument("--hard-negatives", action=argparse.BooleanOptionalAction, default=False,
                        help="build (anchor, positive, contradiction) triplets")
    parser.add_argument("--examples", type=int, default=3, help="how many rows to print")
    args = parser.parse_args(argv)
    with exit_on_input_error():
        nli = load_nli(args.nli_data)
    print(f"source: {args.nli_data}")
    print(f"NLI rows (every label): {len(nli)}")
    print(f"pairs: {len(make_rows(nli))}")
    rows = make_rows(nli, hard_negatives=args.hard_negatives)
    if args.hard_negatives:
        print(f"triplets: {len(rows)}")
    for row in rows[:args.examples]:
        print("  " + " | ".join(row))

if __name__ == "__main__":
    main()


# ---------------------------------------------------------------------------------------------------------
# Training data of any source (--train-data): rows (anchor, positive, negative_1, ...) from a local table or a
# hub dataset. Column names are free and position decides, as in sentence-transformers, so a file written by
# mine_negatives.py, a hub triplet set and a hand-made TSV all read the same way.

LOCAL_TRAIN = ("--train-data PATH (a local .tsv, .csv, .jsonl, .json or .parquet file, optionally .gz, "
               "a folder or a comma-separated list)")
# owner/name[:config], the form of a hub dataset id; a path that exists is always read as a path.
HUB_DATASET_ID = re.compile(r"^[\w.-]+/[\w.-]+(:[\w.-]+)?$")


def hub_dataset_id(source):
    """`owner/name[:config]` -> (name, config or None) when `source` is a hub id and no local path, else None."""
    if os.path.exists(source) or not HUB_DATASET_ID.match(source) or _format(source.split(":")[0]):
        return None
    name, _, config = source.partition(":")
    return name, config or None


def load_tables(source, local_alternative=LOCAL_TRAIN):
    """A local file, folder (its files with "train" in the name) or comma-separated list, or a hub dataset id
    -> list of (where, Dataset with every column in source order). `local_alternative`: what to give instead
    of a hub id when the hub is unreachable."""
    hub_id = hub_dataset_id(source)
    if hub_id is None:
        return [(f, load_table(f)) for f in nli_files(source)]
    hub.check_inputs([local_alternative])
    import datasets
    try:
        ds = datasets.load_dataset(*hub_id, split="train")
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


def load_train_data(source):
    """--train-data: a local table or hub dataset -> list of (anchor, positive, negative_1, ...) tuples.

    Columns are taken by position: anchor, positive, then zero or more negatives, whatever their names.
    Every file of one source must have the same number of columns, and at least two."""
    rows, width = [], None
    for where, ds in load_tables(source):
        if len(ds.column_names) < 2:
            raise DataError(f"{where}: {len(ds.column_names)} column(s) ({', '.join(ds.column_names)}); "
                            "training data needs at least anchor and positive")
        if width is not None and len(ds.column_names) != width:
            raise DataError(f"{where}: {len(ds.column_names)} columns, but the files before it have {width}; "
                            "every file of --train-data must have the same number of columns")
        width = len(ds.column_names)
        rows += table_rows(where, ds)
    return rows


def load_texts(source, local_alternative):
    """Every distinct text of a table, in first-seen order: an NLI table's premises and hypotheses (its label and
    other columns are not texts), any other table's every column."""
    texts = {}
    for where, ds in load_tables(source, local_alternative):
        if all(c in ds.column_names for c in NLI_COLUMNS):
            ds = ds.select_columns(["premise", "hypothesis"])
        for row in table_rows(where, ds):
            texts.update(dict.fromkeys(row))
    return list(texts)
