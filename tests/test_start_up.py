"""Start-up (issue: speed where the real job spends its time): a training run imports `datasets` only for hub data
and scipy only to compute an STS score, and reads local tables with its own TSV/CSV reader. That reader must give
exactly what `datasets`' CSV builder gave, cell for cell, on the real files and on the awkward ones."""
import csv
import gzip
import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT, script_env
from mnr.table_file import columns_of, load_table
from mnr.tables import data_files


def modules_after(code):
    """Run `code` in a fresh interpreter -> the set of top-level modules it imported."""
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys, json; print(json.dumps(sorted({m.split('.')[0] "
                          "for m in sys.modules})))"], cwd=ROOT, env=script_env(), capture_output=True, text=True,
                         check=True).stdout
    return set(json.loads(out.splitlines()[-1]))


def test_training_on_local_files_imports_neither_datasets_nor_scipy(nli_dir):
    imported = modules_after(f"import train_mnr\nargs = train_mnr.parse_args(['--nli-data', {nli_dir!r}])\n"
                             "rows, batches, steps = train_mnr.load_batches(args)\nassert len(rows) > 1000, len(rows)")
    assert "torch" in imported  # the check itself works: what a run needs is there
    assert not {"datasets", "scipy", "pyarrow", "pandas"} & imported


def datasets_reader(path, fmt):
    """The reader load_table used before: datasets' CSV builder, every column a string, quoting off for TSV."""
    import datasets
    with (gzip.open if path.endswith(".gz") else open)(path, "rt", encoding="utf-8", newline="") as f:
        header = next(csv.reader(f, delimiter="\t" if fmt == "tsv" else ","))
    features = datasets.Features({name: datasets.Value("string") for name in header})
    ds = datasets.load_dataset("csv", data_files=path, split="train", delimiter="\t" if fmt == "tsv" else ",",
                               keep_default_na=False, na_filter=False, features=features,
                               **({"quoting": csv.QUOTE_NONE} if fmt == "tsv" else {}))
    return {name: list(ds[name]) for name in ds.column_names}


def test_the_reader_equals_datasets_on_the_real_nli_and_sts_files(nli_dir, sts_dir):
    for path in [*data_files(nli_dir), os.path.join(sts_dir, "dev.tsv.gz")]:
        table = load_table(path)
        assert table.columns == datasets_reader(path, "tsv"), path


AWKWARD_TSV = ('premise\thypothesis\tlabel\r\n'
               'He said "hi\tNA\t0\r\n'            # a bare quote: quoting off, nothing glued
               'null\t 1984 \t2\r\n'                # "null", a number-like text with spaces: kept as text
               '\r\n'                               # a blank line: skipped
               'Ünïcode — dash\t\t1\r\n')           # an empty cell: an empty string
AWKWARD_CSV = 'anchor,positive\n"a, quoted, text",plain\n"a ""quote"" inside",NA\n'


@pytest.mark.parametrize("name,text", [("t.tsv", AWKWARD_TSV), ("t.tsv.gz", AWKWARD_TSV), ("t.csv", AWKWARD_CSV)])
def test_the_reader_equals_datasets_on_awkward_files(tmp_path, name, text):
    path = str(tmp_path / name)
    with (gzip.open if name.endswith(".gz") else open)(path, "wt", encoding="utf-8", newline="") as f:
        f.write(text)
    fmt = "csv" if ".csv" in name else "tsv"
    assert load_table(path).columns == datasets_reader(path, fmt)


def test_a_row_with_more_cells_than_the_header_is_one_line(tmp_path):
    path = tmp_path / "t.tsv"
    path.write_text("anchor\tpositive\na\tb\nc\td\te\n")
    with pytest.raises(Exception) as error:
        load_table(str(path))
    assert str(error.value) == f"{path}: could not be read as tsv: line 3 has 3 cells, the header 2 (a tab inside a text?)"


def test_columns_of_a_shuffled_dataset_follow_its_order():
    import datasets
    ds = datasets.Dataset.from_dict({"a": [str(i) for i in range(50)], "b": list(range(50))}).shuffle(seed=0)
    assert columns_of(ds, "b", "a") == [list(ds["b"]), list(ds["a"])]  # the indices mapping, not the stored order
