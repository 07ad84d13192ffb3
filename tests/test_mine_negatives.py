"""mine_negatives.py: the search (mnr/search.py), the filters and the selection on hand-made scores, the memory bound, the
command line (bad settings, atomic output, NLI label shares), and the same negatives as sentence-transformers'
mine_hard_negatives on real pairs and MiniLM."""
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

import data_prep
import evaluate_sts
from mnr import hub, tables
from mnr.search import top_k
from mnr.table_file import Table
import mine_negatives as mine
from conftest import ROOT, write_tsv

INF = float("-inf")

# ---------------------------------------------------------------------------------------------------------
# Filters: hand-made scores, positive and negative positive scores, against a per-element loop.


def naive_filters(scores, positive_scores, relative_margin=0.0, absolute_margin=None, max_score=None):
    """The rule as the help states it, one candidate at a time; -inf marks a removed one."""
    active = {"absolute margin": absolute_margin is not None, "relative margin": bool(relative_margin),
              "max score": max_score is not None}
    out, removed = [], {name: 0 for name, on in active.items() if on}
    for row, positive in zip(scores.tolist(), positive_scores.tolist()):
        kept = []
        for s in row:
            rules = [("absolute margin", absolute_margin is not None and s > positive - (absolute_margin or 0)),
                     ("relative margin", bool(relative_margin) and s > positive - abs(positive) * relative_margin),
                     ("max score", max_score is not None and s > max_score)]
            first = next((name for name, hit in rules if hit and s != INF), None)
            if first:
                removed[first] += 1
            kept.append(INF if first else s)
        out.append(kept)
    return torch.tensor(out), removed


SCORES = torch.tensor([[0.90, 0.58, 0.50, 0.30, -0.20],
                       [-0.10, -0.30, -0.42, -0.50, -0.60]])
POSITIVES = torch.tensor([0.60, -0.40])  # the second query's positive scores below zero


def kept(scores):
    return [[round(s, 4) for s in row if s != INF] for row in scores.tolist()]


def test_relative_margin_uses_the_size_of_the_positive_score():
    scores, removed = mine.apply_filters(SCORES, POSITIVES, relative_margin=0.1)
    # 0.6 - 0.06 = 0.54; -0.4 - 0.04 = -0.44. A (1 - m) x positive rule would give -0.36 and keep -0.42.
    assert kept(scores) == [[0.50, 0.30, -0.20], [-0.50, -0.60]]
    assert removed == {"relative margin": 5}


def test_absolute_margin_and_max_score():
    scores, removed = mine.apply_filters(SCORES, POSITIVES, relative_margin=0, absolute_margin=0.2)
    assert kept(scores) == [[0.30, -0.20], [-0.60]]  # above 0.4 / -0.6 goes
    assert removed == {"absolute margin": 7}
    scores, removed = mine.apply_filters(SCORES, POSITIVES, relative_margin=0, max_score=0.4)
    assert kept(scores) == [[0.30, -0.20], kept(SCORES)[1]]
    assert removed == {"max score": 3}


def test_relative_margin_zero_is_plain_top_k():
    scores, removed = mine.apply_filters(SCORES, POSITIVES, relative_margin=0)
    assert torch.equal(scores, SCORES) and removed == {}


@pytest.mark.parametrize("settings", [dict(relative_margin=0.05), dict(relative_margin=0.1, absolute_margin=0.05),
                                      dict(relative_margin=0.2, max_score=0.3),
                                      dict(relative_margin=0, absolute_margin=0.0, max_score=0.5)])
def test_filters_match_a_loop_and_count_each_candidate_once(settings):
    torch.manual_seed(0)
    scores = (torch.rand(20, 12) * 2 - 1).sort(dim=1, descending=True).values
    scores[3, 8:] = INF  # a short row (small corpus): padding is never counted
    positive_scores = torch.rand(20) * 2 - 1
    got, removed = mine.apply_filters(scores, positive_scores, **settings)
    want, want_removed = naive_filters(scores, positive_scores, **settings)
    assert torch.equal(got, want) and removed == want_removed


# ---------------------------------------------------------------------------------------------------------
# Selection: range_min, range_max, top and random.

def test_range_min_skips_the_highest_survivors_and_short_rows_are_left_out():
    scores = torch.tensor([[0.9, 0.8, 0.7, 0.6, 0.5], [0.9, INF, 0.7, INF, 0.5]])
    indices = torch.tensor([[10, 11, 12, 13, 14], [20, 21, 22, 23, 24]])
    assert mine.pick_negatives(scores, indices, 2).tolist() == [[10, 11], [20, 22]]
    assert mine.pick_negatives(scores, indices, 2, range_min=1).tolist() == [[11, 12], [22, 24]]
    assert mine.pick_negatives(scores, indices, 3, range_min=1).tolist() == [[11, 12, 13], [-1, -1, -1]]


def test_range_max_bounds_the_candidates(monkeypatch):
    torch.manual_seed(1)
    queries, corpus = F.normalize(torch.randn(5, 8), dim=1), F.normalize(torch.randn(40, 8), dim=1)
    scores, indices = top_k(queries, corpus, 4, [[] for _ in range(5)])
    full = (queries @ corpus.T).sort(dim=1, descending=True)
    assert scores.shape == (5, 4) and torch.equal(indices, full.indices[:, :4])
    # Everything above all 4 is filtered: nothing beyond rank 4 is looked at, so no negatives.
    filtered, _ = mine.apply_filters(scores, torch.full((5,), -1.0), relative_margin=0, max_score=-1.0)
    assert (mine.pick_negatives(filtered, indices, 1) == -1).all()


def test_random_sampling_is_seeded_draws_survivors_only_and_keeps_best_first_order():
    torch.manual_seed(2)
    scores = torch.rand(50, 30).sort(dim=1, descending=True).values
    scores[:, 5] = INF  # filtered candidates
    scores[7, 3:] = INF  # a row left with 3 survivors
    indices = torch.arange(30).expand(50, -1)
    picks = [mine.pick_negatives(scores, indices, 4, range_min=2, sampling="random", seed=s) for s in (42, 42, 7)]
    assert torch.equal(picks[0], picks[1]) and not torch.equal(picks[0], picks[2])
    top = mine.pick_negatives(scores, indices, 4, range_min=2)
    assert not torch.equal(picks[0], top)
    for pick in (picks[0], picks[2]):
        assert (pick[7] == -1).all()
        rows = [r for i, r in enumerate(pick.tolist()) if i != 7]
        assert all(r == sorted(r) for r in rows)  # best first (indices ascend with rank here)
        assert all(c >= 2 and c != 5 for r in rows for c in r)  # after range_min, survivors only (the -inf at 5)


# ---------------------------------------------------------------------------------------------------------
# Search: chunks equal a full sort; positives and the anchor's own text are never returned; memory.

@pytest.mark.parametrize("chunk_rows", [1, 7, 1000])
def test_chunked_search_equals_a_full_sort(chunk_rows):
    torch.manual_seed(3)
    q, n, k = 53, 300, 25
    queries, corpus = F.normalize(torch.randn(q, 16), dim=1), F.normalize(torch.randn(n, 16), dim=1)
    exclude = [sorted({i % n, (7 * i) % n}) for i in range(q)]
    scores, indices = top_k(queries, corpus, k, exclude, chunk_elements=chunk_rows * n)
    full = queries @ corpus.T
    for i, e in enumerate(exclude):
        full[i, e] = INF
    want = full.sort(dim=1, descending=True)
    assert torch.allclose(scores, want.values[:, :k], atol=1e-6)
    assert torch.equal(indices, want.indices[:, :k])


def test_a_tiny_corpus_pads_and_never_returns_an_excluded_text():
    corpus = F.normalize(torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]]), dim=1)
    scores, indices = top_k(corpus[:1], corpus, 4, [[0, 1]])
    assert indices.tolist() == [[2, -1, -1, -1]] and scores[0, 1:].eq(INF).all()


MEMORY_PROBE = """
import resource, time, torch, torch.nn.functional as F
from mnr.search import top_k
torch.manual_seed(0)
queries = F.normalize(torch.randn(20_000, 16), dim=1)
corpus = F.normalize(torch.randn(200_000, 16), dim=1)
exclude = [[i] for i in range(20_000)]
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.time()
scores, indices = top_k(queries, corpus, 30, exclude)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
assert scores.shape == (20_000, 30) and not (indices == torch.arange(20_000)[:, None]).any()
print((after - before) * 1024, time.time() - start)
"""


def test_search_memory_stays_near_a_chunk_of_the_score_matrix():
    # 20,000 x 200,000 scores would be 16 GB as float32; the search may hold about a chunk of them.
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=ROOT)
    out = subprocess.run([sys.executable, "-c", MEMORY_PROBE], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    growth, seconds = map(float, out.stdout.split())
    assert growth < 2 ** 30, f"peak RSS grew {growth / 2 ** 30:.2f} GiB"
    assert seconds < 60, seconds


# ---------------------------------------------------------------------------------------------------------
# Several positives per query: the lowest is measured against, none is ever a negative.

def test_several_positives_one_query_lowest_positive_and_no_positive_as_negative():
    pairs = [("q", "p1"), ("q", "p2"), ("r", "p3"), ("q", "p1")]  # q repeats a pair: still one query
    queries, corpus, positives, exclude = mine.build_search(pairs, ["n1", "n2", "q", "n3"])
    assert queries == ["q", "r"] and corpus == ["p1", "p2", "p3", "n1", "n2", "q", "n3"]
    assert positives == [[0, 1], [2]] and exclude == [[0, 1, 5], [2]]  # q's own text too
    vectors = {"q": [1, 0], "r": [0, 1], "p1": [0.9, 0.1], "p2": [0.5, 0.5], "p3": [0.1, 0.9],
               "n1": [0.7, 0.3], "n2": [0.4, 0.6], "n3": [0.3, 0.7]}
    emb = lambda texts: F.normalize(torch.tensor([vectors[t] for t in texts], dtype=torch.float), dim=1)
    lowest = mine.lowest_positive_scores(emb(queries), emb(corpus), positives)
    assert lowest.tolist() == pytest.approx([F.normalize(torch.tensor([0.5, 0.5]), dim=0)[0].item(),
                                             F.normalize(torch.tensor([0.1, 0.9]), dim=0)[1].item()])
    scores, indices = top_k(emb(queries), emb(corpus), 6, exclude)
    assert not any(c in exclude[i] for i, row in enumerate(indices.tolist()) for c in row)
    # q: p1 (0.99) and itself (1.0) would rank first; n1 (0.92) is above p2 (0.71) and goes with any margin.
    scores, _ = mine.apply_filters(scores, lowest, relative_margin=0.05)
    picked = mine.pick_negatives(scores, indices, 1)
    assert [corpus[c] for c in picked[:, 0].tolist()] == ["n2", "n3"]


# ---------------------------------------------------------------------------------------------------------
# Embedding: packed batches give evaluate_sts.encode's vectors.

@pytest.mark.parametrize("pack", [True, False])
def test_embeddings_equal_evaluate_sts_encode(tiny_model_dir, monkeypatch, pack):
    monkeypatch.setattr(mine, "PACK_SEQUENCES", pack)
    encoder = evaluate_sts.load_encoder(tiny_model_dir)
    texts = [t for pair in PAIRS for t in pair] + ["a much longer sentence, " * 12, "x"]
    want = F.normalize(evaluate_sts.encode(encoder, texts, 4), dim=1)
    assert torch.allclose(mine.embed_texts(encoder, texts, 4), want, atol=1e-5)


# ---------------------------------------------------------------------------------------------------------
# The command line: bad settings, atomic output, NLI label shares.

PAIRS = [("A man plays a guitar.", "A man plays music."), ("A dog runs in a park.", "An animal moves."),
         ("Kids swim in a lake.", "Children are in water."), ("A chef cooks pasta.", "Someone makes food."),
         ("A woman reads a book.", "A person is reading."), ("Two men play chess.", "People play a game.")]


@pytest.fixture
def argv(tmp_path, tiny_model_dir):
    data = write_tsv(tmp_path / "pairs.tsv", ("anchor", "positive"), PAIRS)
    return lambda *extra: ["--model-name", tiny_model_dir, "--train-data", data,
                           "--output", str(tmp_path / "out" / "mined.tsv.gz"), *extra]


@pytest.mark.parametrize("extra,expected", [
    (["--num-negatives", "5", "--range-max", "4"], "does not fit"),
    (["--range-min", "3", "--range-max", "5", "--num-negatives", "3"], "does not fit"),
    (["--num-negatives", "6", "--range-max", "10"], "candidates a corpus of 6 texts"),
    (["--relative-margin", "-0.1"], "--relative-margin must not be negative"),
    (["--absolute-margin", "-0.1"], "--absolute-margin must not be negative"),
    (["--range-min", "-1"], "--range-min must not be negative"),
    (["--num-negatives", "0"], "--num-negatives must be at least 1"),
    (["--output", "FOLDER"], "must be a file name"),
    (["--output", "mined.csv"], "must be a file name ending in .tsv"),
])
def test_bad_settings_fail_with_one_line_before_any_embedding(argv, tmp_path, monkeypatch, extra, expected):
    def no_model(*_):
        raise AssertionError("the model was loaded before the settings were checked")
    monkeypatch.setattr(evaluate_sts, "load_encoder", no_model)
    extra = [str(tmp_path) if e == "FOLDER" else str(tmp_path / e) if e.endswith(".csv") else e for e in extra]
    with pytest.raises(SystemExit) as exit_info:
        mine.main(argv(*extra))
    message = str(exit_info.value.code)
    assert message.startswith("error:") and "\n" not in message and expected in message, message
    assert not os.path.exists(tmp_path / "out")


def test_mining_from_a_hub_id_offline_fails_before_loading_anything(monkeypatch, tmp_path, tiny_model_dir):
    monkeypatch.setattr(hub, "may_load", lambda *a, **k: False)
    with pytest.raises(SystemExit) as exit_info:
        mine.main(["--model-name", tiny_model_dir, "--train-data", "owner/pairs:config",
                   "--output", str(tmp_path / "m.tsv")])
    message = str(exit_info.value.code)
    assert message.startswith("error:") and "\n" not in message and "--train-data PATH" in message, message


def test_output_is_written_atomically_and_reads_back_as_training_data(argv, tmp_path, capsys):
    mine.main(argv("--num-negatives", "2", "--relative-margin", "0"))
    out = capsys.readouterr().out
    rows = tables.load_train_data(str(tmp_path / "out" / "mined.tsv.gz"))
    assert [r[:2] for r in rows] == PAIRS and {len(r) for r in rows} == {4}
    for anchor, positive, *negatives in rows:
        assert len(set(negatives)) == 2 and positive not in negatives and anchor not in negatives
    assert os.listdir(tmp_path / "out") == ["mined.tsv.gz"]  # no temporary file left behind
    for line in ("queries: 6", "corpus: 6 texts", "candidates examined: 30", "rows written: 6", "seconds:"):
        assert line in out, out


def test_no_row_with_enough_negatives_writes_nothing(argv, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        mine.main(argv("--relative-margin", "0", "--max-score", "-1.5"))  # every cosine is above -1.5
    assert "nothing was written" in str(exit_info.value.code)
    assert "removed by the max score: 30 (100.0%)" in capsys.readouterr().out
    assert not os.path.exists(tmp_path / "out")


def test_a_crash_while_writing_leaves_no_file(tmp_path):
    def rows():
        yield ("a", "b")
        raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        mine.write_tsv(str(tmp_path / "x.tsv.gz"), ["anchor", "positive"], rows())
    assert os.listdir(tmp_path) == []


def test_nli_label_shares():
    nli = Table({"premise": ["q", "q", "q", "r", "r"], "hypothesis": ["a", "b", "c", "a", "d"],
                 "label": [0, 1, 2, 2, -1]})  # as data_prep.load_nli gives it
    queries, corpus = ["q", "r"], ["a", "b", "c", "d", "e"]
    picked = torch.tensor([[1, 2, 4], [0, 3, 4]])  # (q, b) neutral, (q, c) contradiction, (r, a) contradiction
    count, shares = mine.nli_label_shares(nli, queries, corpus, picked)
    assert count == 3 and shares == pytest.approx({"entailment": 0, "neutral": 1 / 3, "contradiction": 2 / 3})


def test_nli_data_input_reports_label_shares(tmp_path, tiny_model_dir, capsys):
    rows = [(a, p, "0") for a, p in PAIRS] + [(a, f"Not: {p}", "2") for a, p in PAIRS] + [
        (a, f"Maybe: {p}", "1") for a, p in PAIRS]
    nli = write_tsv(tmp_path / "nli.tsv", ("premise", "hypothesis", "label"), rows)
    mine.main(["--model-name", tiny_model_dir, "--nli-data", nli, "--corpus", nli, "--relative-margin", "0",
               "--num-negatives", "3", "--range-max", "20", "--output", str(tmp_path / "m.tsv")])
    out = capsys.readouterr().out
    assert "queries: 6" in out and "corpus: 24 texts" in out  # 18 hypotheses + 6 premises
    line = next(line for line in out.splitlines() if line.startswith("NLI labels"))
    assert "entailment 0.0%" in line and "neutral" in line and "contradiction" in line, line


def test_texts_with_tabs_and_line_breaks_are_written_on_one_line(tmp_path, tiny_model_dir):
    # A BEIR corpus may hold them (SciFact does); a TSV cell cannot: spaces take their place, nothing is refused.
    import json
    folder = tmp_path / "beir"
    (folder / "qrels").mkdir(parents=True)
    docs = [(f"d{i}", f"Title {i}", f"First line {i}.\nSecond\tpart {i}.\r\nEnd.") for i in range(12)]
    (folder / "corpus.jsonl").write_text("".join(json.dumps({"_id": d, "title": t, "text": x}) + "\n"
                                                 for d, t, x in docs))
    (folder / "queries.jsonl").write_text("".join(json.dumps({"_id": f"q{i}", "text": f"Query\t{i}?"}) + "\n"
                                                  for i in range(12)))
    write_tsv(folder / "qrels" / "train.tsv", ("query-id", "corpus-id", "score"), [(f"q{i}", f"d{i}", "1")
                                                                                   for i in range(12)])
    out = tmp_path / "mined.tsv"
    mine.main(["--model-name", tiny_model_dir, "--train-data", str(folder), "--corpus", str(folder),
               "--relative-margin", "0", "--output", str(out)])
    lines = out.read_text().splitlines()
    assert len(lines) == 13 and all(line.count("\t") == 4 for line in lines)  # header + 12 rows, 5 cells each
    rows = tables.load_train_data(str(out))
    assert ("Query 0?", "Title 0 First line 0. Second part 0.  End.") in [tuple(r[:2]) for r in rows]


# ---------------------------------------------------------------------------------------------------------
# The same negatives as sentence-transformers on real pairs and MiniLM.
#
# Where this script deliberately differs from mine_hard_negatives, the input or the comparison avoids it:
# - --relative-margin 0 switches that filter off (plain top-k); the library's relative_margin=0 drops candidates
#   above the positive, so ours 0 is compared with the library's None.
# - Ours never returns the anchor's own text; the library can when the anchor is also in the corpus. The input
#   keeps anchors out of the corpus (corpus = positives, no anchor among them).
# - Ours examines exactly range_max non-positive candidates per query; the library takes range_max +
#   max_positives nearest, removes the query's positives, filters, then keeps range_max, so for a query with
#   fewer positives than the most any query has, or with a positive outside that window, a filter can let it
#   reach one candidate further. Compared exactly with range_max beyond the corpus; with a small range_max
#   ours must be a subset of the library's rows with the same negatives.
# - Ours writes one row per input pair in input order; the library one per distinct (anchor, positive), grouped
#   by anchor. Rows are compared by (anchor, positive).

@pytest.fixture(scope="module")
def real_pairs(snli_dev_file):
    pairs = data_prep.make_rows(data_prep.load_nli(snli_dev_file))[:300]
    positives = {p for _, p in pairs}
    return [(a, p) for a, p in pairs if a not in positives]


@pytest.fixture(scope="module")
def library(real_pairs, minilm_path, tmp_path_factory):
    st = pytest.importorskip("sentence_transformers")
    from datasets import Dataset
    model = st.SentenceTransformer(str(minilm_path), device="cpu")
    cache = str(tmp_path_factory.mktemp("st-cache"))  # embeddings once for all the settings

    def run(**settings):
        ds = Dataset.from_dict({"anchor": [a for a, _ in real_pairs], "positive": [p for _, p in real_pairs]})
        out = st.util.mine_hard_negatives(ds, model, num_negatives=3, sampling_strategy="top",
                                          output_format="n-tuple", batch_size=64, verbose=False,
                                          cache_folder=cache, **settings)
        return {(r[0], r[1]): tuple(r[2:]) for r in zip(*(out[c] for c in out.column_names))}
    return run


@pytest.fixture(scope="module")
def ours(real_pairs, minilm_path, tmp_path_factory):
    folder = tmp_path_factory.mktemp("ours")
    data = write_tsv(folder / "pairs.tsv", ("anchor", "positive"), real_pairs)

    def run(*flags):
        output = str(folder / "mined.tsv")
        mine.main(["--model-name", str(minilm_path), "--train-data", data, "--output", output, "--num-negatives", "3",
                   "--batch-size", "64", "--overwrite", *flags])  # each call replaces the previous call's table
        return {(r[0], r[1]): tuple(r[2:]) for r in tables.load_train_data(output)}
    return run


def test_plain_top_k_equals_the_library(ours, library, real_pairs):
    mine_rows = ours("--relative-margin", "0", "--range-max", "10")
    assert len(mine_rows) == len(set(real_pairs))
    assert mine_rows == library(range_max=10)


def test_filters_and_range_min_equal_the_library(ours, library):
    mine_rows = ours("--relative-margin", "0.05", "--max-score", "0.8", "--range-min", "2", "--range-max", "1000")
    theirs = library(relative_margin=0.05, max_score=0.8, range_min=2, range_max=1000)
    assert 0 < len(mine_rows) and mine_rows == theirs


def test_small_range_max_gives_a_subset_of_the_library_rows(ours, library):
    mine_rows = ours("--relative-margin", "0", "--absolute-margin", "0.02", "--range-max", "8")
    theirs = library(absolute_margin=0.02, range_max=8)
    assert 0 < len(mine_rows) <= len(theirs)
    assert all(theirs.get(key) == negatives for key, negatives in mine_rows.items())
