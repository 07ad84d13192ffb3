"""Graded relevance as BEIR scores it: nDCG@10 takes a qrel's grade as the gain, recall and MRR count every
document with grade > 0. Checked on a hand-computed example and against pytrec_eval (trec_eval's own code, what
BEIR and MTEB score with) on graded qrels built from the shipped SNLI sample."""
import csv
import gzip
import json
import math
import os
import re
from collections import Counter

import pytest
import pytrec_eval  # a dev requirement (requirements-bench.txt): this comparison is the point, never skipped
import torch

import evaluate_retrieval as er
from mnr import beir
from mnr.search import top_k
from conftest import SAMPLE_DIR

SAMPLE = os.path.join(SAMPLE_DIR, "nli", "snli_test_sample.tsv.gz")
GRADE = {"0": 2, "1": 1, "2": 0}  # entailed 2, neutral 1 (same scene, not implied), contradicted 0 (judged, not relevant)


def binary_metrics(ranking, relevant):
    """The binary formulas, written out: nDCG with gain 1 for every relevant document."""
    dcg = sum(1 / math.log2(r + 1) for r, doc in enumerate(ranking[:10], 1) if doc in relevant)
    ideal = sum(1 / math.log2(r + 1) for r in range(1, min(len(relevant), 10) + 1))
    first = next((r for r, doc in enumerate(ranking[:10], 1) if doc in relevant), None)
    return {"ndcg@10": dcg / ideal, "mrr@10": 1 / first if first else 0.0,
            **{f"recall@{k}": len(set(ranking[:k]) & set(relevant)) / len(relevant) for k in (1, 10, 100)}}


def test_graded_metrics_hand_computed():
    ranking = list(range(100))  # document i at rank i + 1
    # grade 2 at rank 2, grade 1 at rank 5, grade 3 at rank 51 (outside the top 10, but in the ideal ranking)
    got = er.retrieval_metrics([ranking], [{1: 2, 4: 1, 50: 3}])
    ideal = 3 / math.log2(2) + 2 / math.log2(3) + 1 / math.log2(4)  # grades best first: 3, 2, 1
    assert got["ndcg@10"] == pytest.approx((2 / math.log2(3) + 1 / math.log2(6)) / ideal, abs=1e-12)
    assert got["ndcg@10"] == pytest.approx(0.3462, abs=1e-4)  # binary gains would give 0.4776
    assert got["mrr@10"] == 0.5  # the grade does not matter: the first relevant document is at rank 2
    assert (got["recall@1"], got["recall@10"], got["recall@100"]) == pytest.approx((0, 2 / 3, 1))
    # a better grade found first scores higher than a worse one found first, all else alike
    high_first = er.retrieval_metrics([ranking], [{0: 2, 1: 1}])["ndcg@10"]
    low_first = er.retrieval_metrics([ranking], [{0: 1, 1: 2}])["ndcg@10"]
    assert high_first == 1.0 and low_first == pytest.approx((1 + 2 / math.log2(3)) / (2 + 1 / math.log2(3)))
    # Grades all 1 (SciFact's; NLI tasks give sets) keep exactly the binary figures, to the last bit.
    ranking = [50, 51] + [i for i in range(100) if i not in (50, 51)]
    for relevant in ({1, 4, 50}, {20, 500}, set(range(12)), {0}, {99, 3}):
        graded = er.query_metrics([ranking], [dict.fromkeys(relevant, 1.0)])
        assert graded == er.query_metrics([ranking], [relevant])
        assert {name: v for name, [v] in graded.items()} == binary_metrics(ranking, relevant)


@pytest.fixture(scope="module")
def graded_folder(tmp_path_factory):
    """A BEIR folder from the shipped SNLI test sample: premises are queries, every distinct hypothesis is a
    document, and each (premise, hypothesis) row a judgement graded by its label."""
    with gzip.open(SAMPLE, "rt", encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    queries = {p: f"q{i}" for i, p in enumerate(dict.fromkeys(r["premise"] for r in rows))}
    documents = {h: f"d{i}" for i, h in enumerate(dict.fromkeys(r["hypothesis"] for r in rows))}
    folder = tmp_path_factory.mktemp("graded")
    (folder / "qrels").mkdir()
    (folder / "corpus.jsonl").write_text("".join(json.dumps({"_id": d, "title": "", "text": h}) + "\n"
                                                 for h, d in documents.items()))
    (folder / "queries.jsonl").write_text("".join(json.dumps({"_id": q, "text": p}) + "\n" for p, q in queries.items()))
    judgements = {(queries[r["premise"]], documents[r["hypothesis"]]): GRADE[r["label"]] for r in rows}
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(
        f"{q}\t{d}\t{g}\n" for (q, d), g in judgements.items()))
    return folder, queries, list(documents.values()), judgements


def bag_of_words(texts, vocabulary):
    vectors = torch.zeros(len(texts), len(vocabulary))
    for i, text in enumerate(texts):
        for word, n in Counter(re.findall(r"\w+", text.lower())).items():
            vectors[i, vocabulary[word]] = n
    return torch.nn.functional.normalize(vectors, dim=1)


def test_graded_metrics_equal_pytrec_eval(graded_folder):
    folder, query_ids, doc_ids, judgements = graded_folder
    task = er.load_beir(str(folder))
    grades = Counter(judgements.values())
    assert grades[2] > 100 and grades[1] > 100 and grades[0] > 100  # a graded task indeed
    # A ranking with both relevant and irrelevant documents near the top: word overlap.
    words = {w for t in task["queries"] + task["corpus"] for w in re.findall(r"\w+", t.lower())}
    vocabulary = {w: i for i, w in enumerate(sorted(words))}
    ranked = top_k(bag_of_words(task["queries"], vocabulary), bag_of_words(task["corpus"], vocabulary), 100)[1].tolist()
    ours = er.query_metrics(ranked, task["relevant"])

    # pytrec_eval reads the qrels as written, every grade included; the run gives each query its top 100 with
    # scores falling by rank. Scored queries: those with a relevant document (grade > 0), ours and theirs alike.
    qrels = {}
    for (q, d), g in judgements.items():
        qrels.setdefault(q, {})[d] = g
    scored = [q for q in query_ids.values() if any(g > 0 for g in qrels[q].values())]
    assert [query_ids[text] for text in task["queries"]] == scored
    run = {q: {doc_ids[i]: float(100 - rank) for rank, i in enumerate(ranking)} for q, ranking in zip(scored, ranked)}
    theirs = pytrec_eval.RelevanceEvaluator({q: qrels[q] for q in scored},
                                            {"ndcg_cut.10", "recall.1,10,100"}).evaluate(run)
    for metric, key in (("ndcg@10", "ndcg_cut_10"), ("recall@1", "recall_1"), ("recall@10", "recall_10"),
                        ("recall@100", "recall_100")):
        assert ours[metric] == pytest.approx([theirs[q][key] for q in scored], abs=1e-9), metric
    # MRR@10: the reciprocal rank of the first document with grade > 0 among the top 10, else 0.
    naive = [next((1 / r for r, i in enumerate(ranking[:10], 1) if qrels[q].get(doc_ids[i], 0) > 0), 0.0)
             for q, ranking in zip(scored, ranked)]
    assert ours["mrr@10"] == pytest.approx(naive, abs=1e-12)
    # Binary gains would differ here: the comparison above can tell the two apart.
    binary = er.retrieval_metrics(ranked, [set(r) for r in task["relevant"]])["ndcg@10"]
    assert abs(binary - sum(ours["ndcg@10"]) / len(scored)) > 1e-3


def test_a_pair_judged_twice_keeps_its_last_grade_as_beir_does(tmp_path):
    (tmp_path / "qrels").mkdir()
    (tmp_path / "corpus.jsonl").write_text('{"_id": "d1", "text": "a"}\n{"_id": "d2", "text": "b"}\n')
    (tmp_path / "queries.jsonl").write_text('{"_id": "q1", "text": "x"}\n{"_id": "q2", "text": "y"}\n')
    (tmp_path / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n"
                                                 "q1\td1\t1\nq1\td2\t1\nq1\td1\t2\nq2\td1\t1\nq2\td1\t0\nq2\td2\t1\n")
    task = beir.load_task(str(tmp_path))
    assert task["relevant"] == [{0: 2, 1: 1}, {1: 1}]  # q2's d1 was judged again, not relevant
