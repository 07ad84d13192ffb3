"""BEIR folders with nothing silently wrong: a repeated id is one error naming the file, the id and both lines;
an empty text and qrels naming ids the folder lacks are one counted warning each; `"text": null` keeps the title.
Also evaluate_retrieval.py's own faults: --batch-size 0, and advice that names the arguments it takes."""
import json
import re

import pytest

import evaluate_retrieval as er
from mnr import beir, hub
from mnr.errors import DataError
from conftest import run_script

DOCS = [{"_id": "d1", "title": "Cats", "text": "cats purr"}, {"_id": "d2", "title": "", "text": "dogs bark"},
        {"_id": "d3", "text": "birds sing"}]
QUERIES = [{"_id": "q1", "text": "what purrs"}, {"_id": "q2", "text": "what barks"}]
QRELS = ["q1\td1\t1", "q2\td2\t2", "q2\td3\t0"]


def write_beir(folder, corpus=DOCS, queries=QUERIES, qrels=QRELS, split="test"):
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    (folder / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in corpus))
    (folder / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))
    (folder / "qrels" / f"{split}.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(f"{r}\n" for r in qrels))
    return str(folder)


def warnings(capsys):
    return [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]


# ---- repeated ids ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("file", ["corpus.jsonl", "queries.jsonl"])
def test_a_repeated_id_is_an_error_naming_file_id_and_both_lines(tmp_path, file):
    corpus = [*DOCS, {"_id": "d1", "text": "another text"}] if file == "corpus.jsonl" else DOCS
    queries = [QUERIES[0], {"_id": "q9", "text": "other"}, {"_id": "q1", "text": "again"}, QUERIES[1]] \
        if file == "queries.jsonl" else QUERIES
    folder = write_beir(tmp_path, corpus, queries)
    where = "document id 'd1' appears twice, at line 1 and line 4" if file == "corpus.jsonl" else \
        "query id 'q1' appears twice, at line 1 and line 3"
    for load in (beir.load_task, beir.train_pairs):
        with pytest.raises(DataError, match=f"{tmp_path / file}: {where}"):
            load(folder, "test")


def test_an_integer_id_repeated_as_a_string_is_the_same_id(tmp_path):
    folder = write_beir(tmp_path, [{"_id": 7, "text": "x"}, {"_id": "7", "text": "y"}], QUERIES, ["q1\t7\t1"])
    with pytest.raises(DataError, match="id '7' appears twice"):
        beir.load_task(folder)


# ---- texts: null, empty, not a string --------------------------------------------------------------------------

def test_null_text_keeps_the_title_only(tmp_path, capsys):
    corpus = [{"_id": "d1", "title": "Title", "text": None}, {"_id": "d2", "title": None, "text": "body"}]
    task = beir.load_task(write_beir(tmp_path, corpus, QUERIES, ["q1\td1\t1"]))
    assert task["corpus"] == ["Title", "body"]  # not "Title None", not "None body"
    assert warnings(capsys) == []


def test_empty_texts_are_dropped_with_one_counted_warning_each(tmp_path, capsys):
    corpus = [*DOCS, {"_id": "e1", "title": "", "text": "  "}, {"_id": "e2", "text": None}]
    queries = [*QUERIES, {"_id": "q3", "text": ""}, {"_id": "q4", "text": None}, {"_id": "q5", "text": "kept"}]
    qrels = [*QRELS, "q1\te1\t1", "q3\td1\t1", "q4\td2\t1", "q5\te2\t1", "q5\td3\t1"]
    task = beir.load_task(write_beir(tmp_path, corpus, queries, qrels))
    assert task["corpus"] == ["Cats cats purr", "dogs bark", "birds sing"]
    assert task["queries"] == ["what purrs", "what barks", "kept"]
    assert task["relevant"] == [{0: 1}, {1: 2}, {2: 1}]  # e1 and e2 are no documents to find
    assert task["unknown_qrels"] == 0  # their judgements were dropped with them, not counted again
    assert warnings(capsys) == [
        f"warning: {tmp_path / 'corpus.jsonl'}: 2 empty document text(s) dropped, with the judgements that name "
        "them (the first: document 'e1', at line 4)",
        f"warning: {tmp_path / 'queries.jsonl'}: 2 empty query text(s) dropped, with the judgements that name "
        "them (the first: query 'q3', at line 3)"]


@pytest.mark.parametrize("row, said", [({"_id": "d1", "text": 5}, '"text" is 5, not a string'),
                                       ({"_id": "d1", "title": ["a"], "text": "x"}, '"title" is ["a"], not a string'),
                                       ({"_id": None, "text": "x"}, '"_id" is null')])
def test_a_field_of_the_wrong_kind_is_an_error_naming_the_line(tmp_path, row, said):
    folder = write_beir(tmp_path, [DOCS[1], row], QUERIES, QRELS)
    with pytest.raises(DataError, match=re.escape(f"corpus.jsonl:2: {said}")):
        beir.load_task(folder)


# ---- qrels naming ids the folder lacks -------------------------------------------------------------------------

def test_qrels_naming_missing_ids_are_one_counted_warning(tmp_path, capsys):
    qrels = [*QRELS, "q1\td404\t1", "q7\td1\t2", "q2\td405\t1", "q8\td406\t0"]  # a grade 0 changes no score
    task = beir.load_task(write_beir(tmp_path, qrels=qrels))
    assert task["unknown_qrels"] == 3
    assert task["relevant"] == [{0: 1}, {1: 2}]
    [line] = warnings(capsys)
    assert line == (f"warning: {tmp_path / 'qrels' / 'test.tsv'}: 3 positive judgement(s) name an id missing from "
                    "the corpus or the queries (the first: document 'd404'); not scored")


def test_training_pairs_refuse_missing_ids_and_skip_empty_texts(tmp_path, capsys):
    corpus = [*DOCS, {"_id": "e1", "text": ""}]
    folder = write_beir(tmp_path, corpus, QUERIES, ["q1\td1\t1", "q2\te1\t1", "q2\td2\t1"], split="train")
    assert beir.train_pairs(folder) == [("what purrs", "Cats cats purr"), ("what barks", "dogs bark")]
    assert len(warnings(capsys)) == 1
    write_beir(tmp_path, corpus, QUERIES, ["q1\td1\t1", "q2\td404\t1"], split="train")
    with pytest.raises(DataError, match="document 'd404' is not in"):
        beir.train_pairs(folder)
    write_beir(tmp_path, corpus, QUERIES, ["q1\te1\t1"], split="train")
    with pytest.raises(DataError, match="no .query, document. pair left"):
        beir.train_pairs(folder)


def test_a_query_text_listed_under_two_ids_gives_its_pair_once(tmp_path, capsys):
    """SciFact's queries.jsonl lists 2 claims under two ids each, judged against the same documents: as text pairs
    they are one training example, kept once in first-seen order (twice, it would weigh double every epoch)."""
    queries = [*QUERIES, {"_id": "q3", "text": "what purrs"}]
    folder = write_beir(tmp_path, DOCS, queries, ["q1\td1\t1", "q2\td2\t1", "q3\td1\t1", "q3\td3\t1"],
                        split="train")
    assert beir.train_pairs(folder) == [("what purrs", "Cats cats purr"), ("what barks", "dogs bark"),
                                        ("what purrs", "birds sing")]
    [note] = capsys.readouterr().err.splitlines()
    assert note == (f"note: {tmp_path / 'qrels' / 'train.tsv'}: 1 (query, document) pair(s) of texts judged more "
                    "than once (the same texts under several ids, or a judgement repeated) are kept once")


def test_hub_data_gets_the_same_checks(monkeypatch, capsys):
    import datasets
    tables = {"corpus": {"_id": ["d1", "d2", "d1"], "title": ["T", "", ""], "text": [None, "b", "c"]},
              "queries": {"_id": ["q1"], "text": ["x"]},
              "qrels": {"query-id": ["q1", "q1"], "corpus-id": ["d1", "d2"], "score": [2, 1]}}
    monkeypatch.setattr(hub, "may_load", lambda: True)
    monkeypatch.setattr(datasets, "load_dataset",
                        lambda name, config: {"train": datasets.Dataset.from_dict(tables[config])})
    with pytest.raises(DataError, match="org/Nano: document id 'd1' appears twice, at row 1 and row 3"):
        er.load_beir("org/Nano")
    tables["corpus"] = {"_id": ["d1", "d2", "d3"], "title": ["T", "", ""], "text": [None, "b", ""]}
    tables["qrels"]["corpus-id"] = ["d1", "d3"]
    task = er.load_beir("org/Nano")
    assert task["corpus"] == ["T", "b"] and task["relevant"] == [{0: 2}]
    assert len(warnings(capsys)) == 1  # d3, empty


# ---- the script ------------------------------------------------------------------------------------------------

def test_script_warns_at_start_and_scores(tmp_path, tiny_model_dir):
    corpus = [*DOCS, {"_id": "e1", "text": ""}]
    folder = write_beir(tmp_path, corpus, QUERIES, [*QRELS, "q1\td404\t1"])
    result = run_script("evaluate_retrieval.py", tiny_model_dir, "--beir", folder, "--json", timeout=300)
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert [line.split(":")[0] for line in lines[:2]] == ["warning", "warning"], result.stderr
    assert "1 empty document text(s)" in lines[0] and "1 positive judgement(s)" in lines[1]
    assert sum(line.startswith("warning:") for line in lines) == 2
    [row] = json.loads(result.stdout)  # stdout holds the JSON only
    assert row["corpus"] == 3 and row["queries"] == 2


def test_script_refuses_a_repeated_id_in_one_line(tmp_path, tiny_model_dir):
    folder = write_beir(tmp_path, DOCS, [*QUERIES, QUERIES[0]])
    result = run_script("evaluate_retrieval.py", tiny_model_dir, "--beir", folder, timeout=300)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'queries.jsonl'}: query id 'q1' appears twice, at line 1 and line 3; each id must be "
        "unique: remove or rename one"]


@pytest.mark.parametrize("size", ["0", "-3"])
def test_script_batch_size_below_one_is_one_line(tiny_model_dir, tmp_path, size):
    folder = write_beir(tmp_path)
    result = run_script("evaluate_retrieval.py", tiny_model_dir, "--beir", folder, "--batch-size", size, timeout=300)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [f"error: --batch-size must be positive, got {size}"]


def test_script_advice_names_its_model_arguments(tmp_path):
    folder = write_beir(tmp_path)
    result = run_script("evaluate_retrieval.py", "no-such-org/no-such-model", "--beir", folder, timeout=300)
    assert result.returncode == 1
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: no-such-org/no-such-model: no such local folder, nor in the Hugging Face cache")
    assert "--model-name" not in line and "as the MODEL arguments" in line
    assert "python evaluate_retrieval.py" in line
