"""--train-data tables that used to train something other than what the file says (issue 27 §3): named columns
read by name, the columns line, a header that is really a row, a column of numbers, a header-only file, and a
mistyped local path when the hub is unreachable."""
import csv
import json

import pytest

from conftest import one_line_error, run_in_process, run_script, write_tsv
from mnr import hub, tables
from mnr.errors import DataError

PAIRS = [(f"what does the sign on door {i} say?", f"the sign on door {i} says keep out") for i in range(40)]


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(path)


def write_csv(path, header, rows):
    with open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([header, *rows])
    return str(path)


def refused(source, *expected):
    return one_line_error(lambda: tables.load_train_data(source), *expected, error=DataError)


# ---- named columns --------------------------------------------------------------------------------------------

def test_named_jsonl_is_read_by_name_not_key_order(tmp_path, capsys):
    path = write_jsonl(tmp_path / "t.jsonl", [{"pos": p, "query": q} for q, p in PAIRS])
    assert tables.load_train_data(path) == PAIRS  # key order would make the positive the anchor
    line = capsys.readouterr().out.splitlines()[0]
    assert line == f"columns of {path}: anchor='query' (column 2), positive='pos' (column 1); by name"


def test_named_csv_columns_in_any_order(tmp_path):
    rows = [(f"bad {i}", p, q) for i, (q, p) in enumerate(PAIRS)]
    path = write_csv(tmp_path / "t.csv", ("negative", "positive", "anchor"), rows)
    assert tables.load_train_data(path) == [(q, p, n) for n, p, q in rows]


def test_named_anchor_and_positive_take_their_place_the_rest_fill_in_by_position(tmp_path, capsys):
    path = write_tsv(tmp_path / "t.tsv", ("text", "hard one", "question"), [(p, f"no {i}", q)
                                                                            for i, (q, p) in enumerate(PAIRS)])
    assert tables.load_train_data(path) == [(q, p, f"no {i}") for i, (q, p) in enumerate(PAIRS)]
    line = capsys.readouterr().out.splitlines()[0]
    assert "anchor='question' (column 3, by name), positive='text' (column 1), negative='hard one' (column 2)" in line
    assert "the named ones by name, the others by position" in line


def test_columns_by_position_say_so_on_the_first_line(tmp_path, capsys):
    path = write_tsv(tmp_path / "t.tsv", ("s1", "s2", "s3"), [(q, p, "a cat") for q, p in PAIRS])
    tables.load_train_data(path)
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"columns of {path}: anchor='s1' (column 1), positive='s2' (column 2), "
                             "negative='s3' (column 3); by position: no column has a known name")


def test_mined_file_columns_keep_their_order(tmp_path, capsys):
    rows = [(q, p, f"n1 {i}", f"n2 {i}") for i, (q, p) in enumerate(PAIRS)]
    path = write_tsv(tmp_path / "m.tsv", ("anchor", "positive", "negative_1", "negative_2"), rows)
    assert tables.load_train_data(path) == rows
    assert capsys.readouterr().out.splitlines()[0].endswith("negative='negative_2' (column 4); by name")


def test_two_anchor_names_are_refused(tmp_path):
    path = write_jsonl(tmp_path / "t.jsonl", [{"query": q, "anchor": q, "pos": p} for q, p in PAIRS])
    refused(path, "'query' and 'anchor' both name the anchor")


def test_flagembedding_lists_give_one_column_per_negative(tmp_path, capsys):
    records = [{"query": q, "pos": [p], "neg": [f"x {i}", f"y {i}"]} for i, (q, p) in enumerate(PAIRS)]
    path = write_jsonl(tmp_path / "fe.jsonl", records)
    assert tables.load_train_data(path) == [(q, p, f"x {i}", f"y {i}") for i, (q, p) in enumerate(PAIRS)]
    assert "negative='neg' (column 3, 2 texts)" in capsys.readouterr().out


@pytest.mark.parametrize("change,expected", [
    (lambda r: r.update(neg=[]), "column 3 ('neg', the negative) holds 0 texts in row 3; every row needs at least one"),
    (lambda r: r.update(pos=[]), "column 2 ('pos', the positive) holds 0 texts in row 3; every row needs at least one"),
    (lambda r: r.update(query=[r["query"]]), "'query', the anchor) holds lists of texts")])
def test_flagembedding_rows_without_a_text_are_one_line(tmp_path, change, expected):
    records = [{"query": q, "pos": [p], "neg": [f"x {i}", f"y {i}"]} for i, (q, p) in enumerate(PAIRS)]
    change(records[2])
    refused(write_jsonl(tmp_path / "fe.jsonl", records), "fe.jsonl", expected)


def test_flagembedding_uneven_lists_give_a_row_per_positive_and_the_fewest_negatives(tmp_path, capsys):
    """As bge fine-tuning data comes: some queries with two positives, 2 to 4 negatives a query. Every positive
    becomes a row with its query and the query's first k negatives, k = 2 the fewest, and the line says so."""
    records = [{"query": q, "pos": [p] + ([f"also {i}"] if i % 3 == 0 else []),
                "neg": [f"n{m} {i}" for m in range(2 + i % 3)]} for i, (q, p) in enumerate(PAIRS)]
    rows = tables.load_train_data(write_jsonl(tmp_path / "fe.jsonl", records))
    expected = [(q, pos, f"n0 {i}", f"n1 {i}") for i, (q, p) in enumerate(PAIRS)
                for pos in [p] + ([f"also {i}"] if i % 3 == 0 else [])]
    assert rows == expected  # independently built: a row per positive, in file order, first 2 negatives each
    line = capsys.readouterr().out
    assert f"positive='pos' (column 2, {len(expected):,} positives in {len(PAIRS):,} rows: a row per positive)" in line
    assert "negative='neg' (column 3, the first 2 of 2-4 texts a row: the fewest any row has)" in line


# ---- a header that is a row -----------------------------------------------------------------------------------

def test_headerless_tsv_warns_that_its_first_row_became_the_header(tmp_path, capsys):
    path = tmp_path / "pairs.tsv"
    path.write_text("".join(f"{q}\t{p}\n" for q, p in PAIRS))  # 40 rows, no header
    assert len(tables.load_train_data(str(path))) == 39
    captured = capsys.readouterr()
    assert f"anchor={PAIRS[0][0]!r} (column 1)" in captured.out.splitlines()[0]  # the header it used
    warning = captured.err.strip()
    assert warning.startswith(f"warning: {path}: its first line ({PAIRS[0][0]!r}, {PAIRS[0][1]!r}) was read as the "
                              "header") and "39 rows are trained" in warning and "anchor<TAB>positive" in warning


@pytest.mark.parametrize("header", [("sentence1", "sentence2"), ("anchor", "text two")])
def test_a_real_header_gives_no_warning(tmp_path, capsys, header):
    short = [(f"cat {i}", f"dog {i}") for i in range(10)]  # rows about as long as the header, still no warning
    tables.load_train_data(write_tsv(tmp_path / "t.tsv", header, short))
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out.startswith(f"columns of {tmp_path / 't.tsv'}: anchor={header[0]!r}")


# ---- a column of numbers --------------------------------------------------------------------------------------

def test_sts_file_as_train_data_is_refused_naming_the_score_column(tmp_path):
    rows = [(q, p, f"{i % 5}.{i % 10}") for i, (q, p) in enumerate(PAIRS)]
    path = write_csv(tmp_path / "sts.csv", ("sentence1", "sentence2", "score"), rows)
    refused(path, "sts.csv", "column 3 ('score', read as the negative)", "look like ids or numbers",
            "an STS file", f"evaluate_sts.py --sts-data {path}")


def test_sts_file_with_equal_scores_gets_the_same_line_not_lower_batch_size(tmp_path, tiny_model_dir):
    path = write_csv(tmp_path / "sts.csv", ("sentence1", "sentence2", "score"), [(q, p, "3.0") for q, p in PAIRS])
    message = run_in_process(["--model-name", tiny_model_dir, "--train-data", path, "--batch-size", "4",
                              "--output-dir", str(tmp_path / "out")])
    assert message.startswith("error:") and "an STS file" in message and "--batch-size" not in message, message
    assert not (tmp_path / "out").exists()


def test_numbers_in_a_negative_column_of_any_table_are_refused(tmp_path):
    path = write_jsonl(tmp_path / "t.jsonl", [{"anchor": q, "positive": p, "negative": str(i)}
                                               for i, (q, p) in enumerate(PAIRS)])
    refused(path, "column 3 ('negative', read as the negative)", "drop that column")
    # a number among texts is a text
    rows = [(q, p, "1984" if i == 0 else f"year {i}") for i, (q, p) in enumerate(PAIRS)]
    assert tables.load_train_data(write_tsv(tmp_path / "t.tsv", ("a", "p", "n"), rows)) == rows


def test_sts_file_through_train_mnr_exits_1_with_one_line(tmp_path, tiny_model_dir):
    rows = [(q, p, f"{i % 5}.5") for i, (q, p) in enumerate(PAIRS)]
    path = write_tsv(tmp_path / "sts.tsv", ("sentence1", "sentence2", "score"), rows)
    result = run_script("train_mnr.py", "--model-name", tiny_model_dir, "--train-data", path, "--batch-size", "4",
                        "--output-dir", str(tmp_path / "out"), timeout=300)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: {path}: the texts of column 3 ('score'") and "evaluate_sts.py" in lines[0]


# ---- empty files and mistyped paths ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["t.tsv", "t.csv", "t.tsv.gz"])
def test_header_only_file_says_so(tmp_path, name):
    path = tmp_path / name
    if name.endswith(".gz"):
        write_tsv(path, ("anchor", "positive"), [])
    else:
        path.write_text("anchor\tpositive\n\n" if name.endswith(".tsv") else "anchor,positive\n")
    message = refused(str(path), f"{path}: the file has a header but no rows")
    assert "Instruction" not in message


def test_mistyped_local_path_offline_says_no_such_path_first(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(hub, "may_load", lambda *a, **k: False)
    message = run_in_process(["--model-name", tiny_model_dir, "--train-data", "mydata/mybeir",
                              "--output-dir", str(tmp_path / "out")])
    assert message.startswith("error: --train-data mydata/mybeir: no such local file or folder"), message
    assert "hub is unreachable" in message and "--train-data PATH" in message


def test_mistyped_local_path_the_hub_cannot_load_says_no_such_path(monkeypatch):
    import datasets

    def not_found(*a, **k):
        raise FileNotFoundError("Dataset 'mydata/mybeir' doesn't exist on the Hub")
    monkeypatch.setattr(hub, "may_load", lambda *a, **k: True)
    monkeypatch.setattr(datasets, "load_dataset", not_found)
    refused("mydata/mybeir", "mydata/mybeir: no such local file or folder, and the hub could not load it",
            "doesn't exist on the Hub", "--train-data PATH")


def test_mistyped_corpus_path_offline_says_no_such_path_first(tiny_model_dir, tmp_path, monkeypatch, nli_dir):
    import mine_negatives
    monkeypatch.setattr(hub, "may_load", lambda *a, **k: False)
    args = mine_negatives.parse_args(["--model-name", tiny_model_dir, "--nli-data", nli_dir, "--corpus",
                                      "mydata/mycorpus", "--output", str(tmp_path / "m.tsv")])
    message = one_line_error(lambda: mine_negatives.check_args(args), error=DataError)
    assert message.startswith("--corpus mydata/mycorpus: no such local file or folder"), message
    assert "hub is unreachable" in message and "--corpus PATH" in message
