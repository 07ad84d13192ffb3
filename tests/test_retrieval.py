"""evaluate_retrieval.py: metrics against hand-computed numbers, the chunked search against a full sort, the two
task loaders on hand-written files, and the script end to end with the tiny model."""
import json
import math

import pytest
import torch

import data_prep
import evaluate_retrieval as er
from mnr import hub
from mnr.search import top_k
from conftest import run_script


# ---- metrics ----------------------------------------------------------------------------------------------

def test_metrics_hand_computed():
    ranking = list(range(100))  # document i at rank i + 1
    # relevant at ranks 2, 5 and 51
    a = er.retrieval_metrics([ranking], [{1, 4, 50}])
    assert a["ndcg@10"] == pytest.approx((1 / math.log2(3) + 1 / math.log2(6))
                                         / (1 + 1 / math.log2(3) + 1 / math.log2(4)))
    assert a["mrr@10"] == pytest.approx(1 / 2)
    assert (a["recall@1"], a["recall@10"], a["recall@100"]) == pytest.approx((0, 2 / 3, 1))
    # relevant at rank 21 and not retrieved at all: nothing in the top 10
    b = er.retrieval_metrics([ranking], [{20, 500}])
    assert [b[name] for name in er.METRICS] == pytest.approx([0, 0, 0, 0, 0.5])  # nDCG, MRR, R@1, R@10, R@100
    # 12 relevant, the top 10 all relevant: perfect nDCG only if the ideal DCG stops at 10 documents
    c = er.retrieval_metrics([ranking], [set(range(12))])
    assert (c["ndcg@10"], c["mrr@10"]) == pytest.approx((1, 1))
    assert (c["recall@1"], c["recall@10"], c["recall@100"]) == pytest.approx((1 / 12, 10 / 12, 1))
    # first relevant at rank 3 of 12 relevant
    d = er.retrieval_metrics([[50, 51] + ranking[:98]], [set(range(12))])
    ideal = sum(1 / math.log2(r + 1) for r in range(1, 11))
    assert d["ndcg@10"] == pytest.approx(sum(1 / math.log2(r + 1) for r in range(3, 11)) / ideal)
    assert d["mrr@10"] == pytest.approx(1 / 3)
    # the mean over queries
    both = er.retrieval_metrics([ranking] * 3, [{1, 4, 50}, {20, 500}, set(range(12))])
    assert set(both) == {"ndcg@10", "mrr@10", "recall@1", "recall@10", "recall@100"}
    for name in both:
        assert both[name] == pytest.approx((a[name] + b[name] + c[name]) / 3)


# ---- search -----------------------------------------------------------------------------------------------

def brute_force(queries, corpus, k):
    """Every document scored in Python on integer vectors (exact ties), sorted by (-score, index)."""
    rankings = []
    for q in queries.tolist():
        scores = [sum(a * b for a, b in zip(q, d)) for d in corpus.tolist()]
        rankings.append(sorted(range(len(scores)), key=lambda j: (-scores[j], j))[:k])
    return rankings


def search(queries, corpus, k, chunk_size=256):
    """evaluate_retrieval's search: mnr/search.py's top_k, `chunk_size` queries at a time, indices only."""
    return top_k(queries, corpus, min(k, len(corpus)), chunk_elements=chunk_size * len(corpus))[1]


def test_search_known_answer_and_ties():
    corpus = torch.tensor([[0., 1.], [1., 0.], [1., 0.], [-1., 0.], [1., 0.]])
    queries = torch.tensor([[1., 0.], [-1., 1.]])
    assert search(queries, corpus, k=10).tolist() == [[1, 2, 4, 0, 3], [0, 3, 1, 2, 4]]
    # ties across the k-th place: the lowest indices are kept
    assert search(queries, corpus, k=2).tolist() == [[1, 2], [0, 3]]
    assert search(queries, corpus, k=3).tolist() == [[1, 2, 4], [0, 3, 1]]


@pytest.mark.parametrize("chunk_size", [1, 3, 256])
@pytest.mark.parametrize("k", [1, 5, 37, 1000])
def test_search_equals_full_sort(chunk_size, k):
    g = torch.Generator().manual_seed(0)
    corpus = torch.randint(-2, 3, (37, 4), generator=g).float()  # small integers: many exact ties
    corpus[30:] = corpus[:7]  # and duplicate documents
    queries = torch.randint(-2, 3, (11, 4), generator=g).float()
    result = search(queries, corpus, k=k, chunk_size=chunk_size)
    assert result.shape == (11, min(k, 37))
    assert result.tolist() == brute_force(queries, corpus, k)


# ---- tasks ------------------------------------------------------------------------------------------------

def test_nli_task(tmp_path):
    path = tmp_path / "nli.tsv"
    path.write_text("premise\thypothesis\tlabel\n"
                    "P1\tH1\t0\n"
                    "P1\tH2\t1\n"
                    "P2\tH3\t1\n"            # P2: no entailment anywhere, so not a query
                    "P3\tH4\tneutral\n"      # P3 first appears without an entailment
                    "P1\tH3\t2\n"
                    "P2\tH1\t2\n"
                    "P3\tH5\tentailment\n"
                    "P3\tH1\t0\n"            # a hypothesis entailed by two premises
                    "P1\tH6\t0\n"
                    "P4\tH7\t-1\n"           # no gold label: still a document
                    "P1\tH1\t0\n")           # a repeated row changes nothing
    task = er.load_nli_retrieval(str(path))
    assert task["corpus"] == ["H1", "H2", "H3", "H4", "H5", "H6", "H7"]
    assert task["queries"] == ["P1", "P3"]
    assert task["relevant"] == [{0, 5}, {4, 0}]


def test_nli_task_errors(tmp_path):
    with pytest.raises(data_prep.DataError, match="no such file"):
        er.load_nli_retrieval(str(tmp_path / "missing.tsv"))
    path = tmp_path / "none.tsv"
    path.write_text("premise\thypothesis\tlabel\nP1\tH1\t1\nP2\tH2\t2\n")
    with pytest.raises(data_prep.DataError, match="no query"):
        er.load_nli_retrieval(str(path))


def write_beir(folder, corpus, queries, qrels):
    (folder / "qrels").mkdir(parents=True)
    (folder / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in corpus))
    (folder / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(f"{r}\n" for r in qrels))


def test_beir_task(tmp_path, capsys):
    write_beir(tmp_path,
               [{"_id": "007", "title": "Bond", "text": "a spy"}, {"_id": "d2", "text": "no title key"},
                {"_id": "d3", "title": "", "text": "empty title"}, {"_id": "d4", "title": "T4", "text": "four"}],
               [{"_id": "q3", "text": "third"}, {"_id": "q1", "text": "first"}, {"_id": "q2", "text": "second"},
                {"_id": "q4", "text": "no qrels"}],
               ["q1\t007\t1", "q1\td3\t2", "q2\td2\t0", "q3\td4\t1", "q3\td2\t0", "q1\td9\t1"])
    task = er.load_beir(str(tmp_path))
    assert task["corpus"] == ["Bond a spy", "no title key", "empty title", "T4 four"]
    assert task["queries"] == ["third", "first"]  # q2's only qrel scores 0; q4 has none
    assert task["relevant"] == [{3: 1}, {0: 1, 2: 2}]  # each relevant document with its grade, the nDCG gain
    assert task["unknown_qrels"] == 1  # d9 is not in the corpus
    [warning] = capsys.readouterr().err.splitlines()
    assert warning.startswith("warning: ") and "1 positive judgement(s)" in warning and "'d9'" in warning


def test_beir_errors(tmp_path, monkeypatch):
    write_beir(tmp_path / "zero", [{"_id": "d1", "text": "x"}], [{"_id": "q1", "text": "y"}], ["q1\td1\t0"])
    with pytest.raises(data_prep.DataError, match="test split is empty"):
        er.load_beir(str(tmp_path / "zero"))
    write_beir(tmp_path / "bad", [{"_id": "d1", "text": "x"}], [{"_id": "q1", "text": "y"}], ["q1\td1\t1"])
    (tmp_path / "bad" / "corpus.jsonl").write_text('{"_id": "d1", "text": "x"}\n{"_id": "d2", "text": \n')
    with pytest.raises(data_prep.DataError, match=r"corpus.jsonl:2: bad JSON"):
        er.load_beir(str(tmp_path / "bad"))
    (tmp_path / "bad" / "corpus.jsonl").write_text("")
    with pytest.raises(data_prep.DataError, match="empty"):
        er.load_beir(str(tmp_path / "bad"))
    monkeypatch.setattr(hub, "may_load", lambda: False)
    with pytest.raises(data_prep.DataError, match="unreachable"):
        er.load_beir("no-such-org/NoSuchSet")


# ---- the script -------------------------------------------------------------------------------------------

def test_script_json(tiny_model_dir, snli_test_file):
    # Big batches: the tiny model's cost is per forward call, not per sentence (~10 s instead of ~30 s here).
    result = run_script("evaluate_retrieval.py", tiny_model_dir, "--nli-retrieval", snli_test_file,
                        "--json", "--batch-size", "1024")
    assert result.returncode == 0, result.stderr
    [row] = json.loads(result.stdout)
    assert row["model"] == tiny_model_dir
    for name in ("ndcg@10", "mrr@10", "recall@1", "recall@10", "recall@100"):
        assert 0 <= row[name] <= 1
    assert row["recall@1"] <= row["recall@10"] <= row["recall@100"]


def test_script_bad_path(tmp_path):
    result = run_script("evaluate_retrieval.py", "any-model", "--nli-retrieval", str(tmp_path / "missing.tsv.gz"))
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
