"""`tables.load_train_data` (--train-data): every file format, columns by position, one-line errors."""
import csv
import gzip
import json
import os

import pytest

from mnr import hub
from conftest import FULL_DATA, count_rows, one_line_error
from mnr.errors import DataError
from mnr import tables

ROWS = [("What is \"NA\"?", "NA", "null", "1984"),   # quotes, and texts pandas would call missing or a number
        ("a cat sits", "a cat is sitting", "a dog runs", "a cat sleeps"),
        ("  padded  ", "tab-free text", "x", "y")]
NAMES = ("query", "answer", "hard 1", "zzz")  # free names, not in alphabetical order: position decides


def write(path, rows, names=NAMES):
    """One table in the format its name says (.tsv, .csv, .jsonl, .json, .parquet, optionally .gz)."""
    base = path[:-3] if path.endswith(".gz") else path
    opener = gzip.open if path.endswith(".gz") else open
    if base.endswith(".parquet"):
        import datasets
        datasets.Dataset.from_dict({n: [r[i] for r in rows] for i, n in enumerate(names)}).to_parquet(base)
        if path.endswith(".gz"):
            with open(base, "rb") as f, gzip.open(path, "wb") as g:
                g.write(f.read())
            os.remove(base)
        return path
    with opener(path, "wt", encoding="utf-8", newline="") as f:
        records = [dict(zip(names, r)) for r in rows]
        if base.endswith(".tsv"):  # as the NLI files: no quoting at all
            f.write("\t".join(names) + "\n" + "".join("\t".join(r) + "\n" for r in rows))
        elif base.endswith(".csv"):
            csv.writer(f).writerows([names, *rows])
        elif base.endswith(".jsonl"):
            f.write("".join(json.dumps(r) + "\n" for r in records))
        else:
            json.dump(records, f)
    return path


@pytest.mark.parametrize("ext", [".tsv", ".csv", ".jsonl", ".json", ".parquet"])
@pytest.mark.parametrize("gz", [False, True])
def test_every_format_reads_the_same_rows_in_column_order(tmp_path, ext, gz):
    path = write(str(tmp_path / f"train{ext}{'.gz' if gz else ''}"), ROWS)
    if ext == ".parquet" and gz:  # parquet compresses itself, and datasets cannot read it gzipped: one line
        refused(path, "train.parquet.gz", "could not be read as parquet")
    else:
        assert tables.load_train_data(path) == ROWS


@pytest.mark.parametrize("width", [2, 3, 4])
def test_two_three_or_four_columns(tmp_path, width):
    rows = [r[:width] for r in ROWS]
    assert tables.load_train_data(write(str(tmp_path / "t.tsv"), rows, NAMES[:width])) == rows


def test_column_names_are_free_and_position_decides(tmp_path):
    # Names that say no role (tests/test_table_checks.py reads named ones): the first column is still the anchor.
    path = write(str(tmp_path / "t.jsonl"), ROWS, names=("zz", "yy", "xx", "label"))
    assert [r[0] for r in tables.load_train_data(path)] == [r[0] for r in ROWS]


def test_folder_and_list_read_train_files_in_order(tmp_path):
    write(str(tmp_path / "a_train.tsv"), ROWS[:1])
    write(str(tmp_path / "b_train.jsonl.gz"), ROWS[1:])
    write(str(tmp_path / "dev.tsv"), [("not", "read", "at", "all")])
    assert tables.load_train_data(str(tmp_path)) == ROWS
    listed = f"{tmp_path / 'b_train.jsonl.gz'},{tmp_path / 'a_train.tsv'}"
    assert tables.load_train_data(listed) == ROWS[1:] + ROWS[:1]


def refused(source, *expected):
    return one_line_error(lambda: tables.load_train_data(source), *expected, error=DataError)


def test_files_with_different_column_counts_are_refused_naming_the_file(tmp_path):
    write(str(tmp_path / "a_train.tsv"), ROWS)
    write(str(tmp_path / "b_train.tsv"), [r[:3] for r in ROWS], NAMES[:3])
    refused(str(tmp_path), "b_train.tsv", "3 columns", "4")


def test_one_column_is_refused(tmp_path):
    refused(write(str(tmp_path / "t.tsv"), [(r[0],) for r in ROWS], NAMES[:1]), "t.tsv", "at least")


@pytest.mark.parametrize("ext,row,column,value,what", [
    (".tsv", 2, 2, "", "empty"), (".csv", 3, 1, "   ", "empty"),
    (".jsonl", 1, 3, None, "missing"), (".jsonl", 2, 2, "", "empty")])
def test_missing_or_empty_text_names_file_and_row(tmp_path, ext, row, column, value, what):
    rows = [list(r) for r in ROWS]
    rows[row - 1][column - 1] = value
    path = str(tmp_path / f"t{ext}")
    if value is None:  # only JSON can say "missing"
        with open(path, "w") as f:
            f.write("".join(json.dumps(dict(zip(NAMES, r))) + "\n" for r in rows))
    else:
        write(path, [tuple(r) for r in rows])
    refused(path, path, f"row {row}", f"column {column}", what)


def test_a_short_tsv_row_is_an_empty_text(tmp_path):
    path = tmp_path / "t.tsv"
    path.write_text("anchor\tpositive\na\tb\nc\n")
    refused(str(path), "row 2", "column 2")


def test_missing_file(tmp_path):
    refused(str(tmp_path / "nope.tsv"), "nope.tsv", "no such file")


def test_hub_id_offline_fails_at_once_naming_the_flag_and_a_local_alternative(monkeypatch):
    monkeypatch.setattr(hub, "may_load", lambda *a, **k: False)
    message = refused("sentence-transformers/all-nli:triplet", "--train-data PATH", "unreachable", "local")
    assert "Traceback" not in message


def test_hub_ids_and_paths_are_told_apart(tmp_path):
    assert hub.hub_id("sentence-transformers/all-nli:triplet") == ("sentence-transformers/all-nli",
                                                                                 "triplet")
    assert hub.hub_id("owner/name") == ("owner/name", None)
    assert hub.hub_id("data/train.tsv") is None  # a missing file, not a dataset
    (tmp_path / "owner").mkdir()
    (tmp_path / "owner" / "name").mkdir()
    assert hub.hub_id(str(tmp_path / "owner" / "name")) is None  # a folder that exists is a path


def test_real_nli_file_reads_all_rows_but_is_refused_as_training_data(snli_dev_file):
    ds = tables.load_table(snli_dev_file)
    # SNLI dev has 9,842 labelled pairs; the shipped sample (no full data here) what its file holds, counted apart.
    assert len(ds) == (9842 if FULL_DATA else count_rows(snli_dev_file))
    assert ds.column_names == ["premise", "hypothesis", "label", "source"]
    # As --train-data its labels (0/1/2) would train as hard negatives: refused, naming the flag that reads it.
    refused(snli_dev_file, "'label'", "look like ids or numbers", f"--nli-data {snli_dev_file}")
