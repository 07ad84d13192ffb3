"""`data_prep`: duplicate-free batches, local loading of hand-written files, the script's counts, `collate`."""
import csv
import gzip
import json
import os
import re
from collections import defaultdict

import pytest

import data_prep
from conftest import ROOT, run_script, write_tsv

# ---------------------------------------------------------------------------------------------------------
# epoch_batches


@pytest.fixture(scope="module")
def real_nli(nli_dir):
    return data_prep.load_nli(nli_dir)


@pytest.fixture(scope="module")
def real_rows(real_nli):
    return {"pairs": data_prep.make_rows(real_nli), "triplets": data_prep.make_rows(real_nli, hard_negatives=True)}


def check_batches(rows, batches, batch_size):
    """Shape properties every epoch must have: full batches, no row twice, no text shared by two rows."""
    assert batches, "no batches at all"
    assert all(len(b) == batch_size for b in batches), sorted({len(b) for b in batches})
    used = [i for b in batches for i in b]
    assert len(used) == len(set(used)), "a row index is used twice in one epoch"
    assert all(0 <= i < len(rows) for i in used)
    for b in batches:
        seen = {}
        for i in b:
            for text in set(rows[i]):
                assert text not in seen, f"rows {seen.get(text)} and {i} of one batch share the text {text!r}"
                seen[text] = i
    return used


@pytest.mark.parametrize("kind", ["pairs", "triplets"])
@pytest.mark.parametrize("batch_size", [16, 64])
def test_real_batches_are_full_unique_and_share_no_text(real_rows, kind, batch_size):
    rows = real_rows[kind]
    batches = data_prep.epoch_batches(rows, batch_size, seed=0, epoch=0)
    used = check_batches(rows, batches, batch_size)
    # Only a handful of rows may be dropped (the last partial batch and a few rows that clash at the end).
    assert len(rows) - len(used) <= max(2 * batch_size, len(rows) // 100), (len(rows), len(used))


@pytest.mark.parametrize("kind", ["pairs", "triplets"])
def test_real_batches_never_hold_one_string_twice(real_rows, kind):
    # The documented invariant: "a batch never holds the same string twice, in any column". This counts the
    # row's own columns too: the real data has entailment pairs whose hypothesis IS the premise.
    rows = real_rows[kind]
    for b in data_prep.epoch_batches(rows, 16, seed=0, epoch=0):
        texts = [t for i in b for t in rows[i]]
        dupes = sorted({t for t in texts if texts.count(t) > 1})
        assert not dupes, f"batch {b} holds {dupes[:3]} more than once"


def test_a_row_repeating_its_own_text_is_never_batched():
    # Focused version of the failure above: a row (s, s) puts s twice in whichever batch takes it.
    rows = [(f"a{i}", f"p{i}") for i in range(20)] + [("same", "same")]
    for seed in range(5):
        for b in data_prep.epoch_batches(rows, 4, seed=seed, epoch=0):
            assert 20 not in b, f"seed {seed}: batch {b} holds the row ('same', 'same')"


def synthetic(n=103, columns=2):
    return [tuple(f"row{i}-col{c}" for c in range(columns)) for i in range(n)]


@pytest.mark.parametrize("columns", [2, 3])
def test_every_row_is_used_when_no_text_is_shared(columns):
    rows = synthetic(103, columns)
    batches = data_prep.epoch_batches(rows, 10, seed=1, epoch=0)
    used = check_batches(rows, batches, 10)
    assert len(batches) == 10 and len(used) == 100  # only the 3 leftover rows (< batch_size) are dropped


def test_exact_multiple_uses_every_row():
    rows = synthetic(40)
    assert sorted(i for b in data_prep.epoch_batches(rows, 8, seed=0, epoch=0) for i in b) == list(range(40))


def test_same_seed_and_epoch_repeat_other_seed_or_epoch_differ():
    rows = synthetic(200)
    base = data_prep.epoch_batches(rows, 8, seed=5, epoch=0)
    assert data_prep.epoch_batches(rows, 8, seed=5, epoch=0) == base
    assert data_prep.epoch_batches(rows, 8, seed=6, epoch=0) != base
    assert data_prep.epoch_batches(rows, 8, seed=5, epoch=1) != base
    # Shuffled at all: not the data order.
    assert base[0] != list(range(8))


def test_same_seed_is_stable_across_processes():
    # Determinism must not hang on PYTHONHASHSEED (string hashing is salted per process).
    code = ("import data_prep; rows=[(f'a{i}', f'b{i}') for i in range(50)]; "
            "print(data_prep.epoch_batches(rows, 5, seed=3, epoch=2))")
    outs = set()
    for hashseed in ("1", "2"):
        result = run_script("-c", code, PYTHONHASHSEED=hashseed, timeout=60)
        assert result.returncode == 0, result.stderr[-2000:]
        outs.add(result.stdout)
    assert len(outs) == 1


def test_heavily_duplicated_rows_still_give_duplicate_free_batches():
    # 10 of 40 rows share one anchor; negatives also repeat across rows.
    rows = [("shared anchor", f"positive {i}", f"negative {i % 3}") if i < 10 else
            (f"anchor {i}", f"positive {i}", f"other negative {i}") for i in range(40)]
    for seed in range(10):
        batches = data_prep.epoch_batches(rows, 4, seed=seed, epoch=0)
        check_batches(rows, batches, 4)
        assert all(sum(i < 10 for i in b) <= 1 for b in batches)


def test_all_rows_sharing_one_text_give_no_batch_above_size_one():
    rows = [("same", f"p{i}") for i in range(10)]
    assert data_prep.epoch_batches(rows, 2, seed=0, epoch=0) == []
    assert len(data_prep.epoch_batches(rows, 1, seed=0, epoch=0)) == 10


def test_bad_batch_sizes_raise_data_error():
    rows = synthetic(10)
    with pytest.raises(data_prep.DataError):
        data_prep.epoch_batches(rows, 11, seed=0, epoch=0)
    with pytest.raises(data_prep.DataError):
        data_prep.epoch_batches(rows, 0, seed=0, epoch=0)
    assert len(data_prep.epoch_batches(rows, 10, seed=0, epoch=0)) == 1  # exactly len(rows) is fine


# ---------------------------------------------------------------------------------------------------------
# Local loading of hand-written files

HEADER = ["premise", "hypothesis", "label", "source"]
HAND_ROWS = [  # (premise, hypothesis, label)
    ("P1 a man sleeps.", "A person rests.", "0"),
    ("P1 a man sleeps.", '"Quoted start with no end', "2"),  # bare quote at the start of a field
    ("P1 a man sleeps.", "He might be tired.", "1"),
    ("P2 a cat.", "NA", "0"),  # a sentence, not a missing value
    ("P3 she said \"hi\" there.", 'She spoke 12" away.', "0"),  # bare quotes inside fields
    ("P3 she said \"hi\" there.", "no gold label", "-1"),
    ("P4 only a contradiction.", "Not so.", "2"),
    ("P1 a man sleeps.", "Someone is asleep. ", "0"),  # trailing space kept
    ("null", "1984", "0"),  # neither a missing value nor a number
    ("P5 the dash label.", "annotators disagreed", "-"),
]
HAND_PAIRS = [(p, h) for p, h, y in HAND_ROWS if y == "0"]
HAND_TRIPLETS = [("P1 a man sleeps.", "A person rests.", '"Quoted start with no end'),
                 ("P1 a man sleeps.", "Someone is asleep. ", '"Quoted start with no end')]


def write_hand(path, rows):
    """Hand-written NLI rows as a TSV (gzip for .gz names) with an extra free-text column, as the real files have."""
    return write_tsv(path, HEADER, [(*row, "hand") for row in rows])


@pytest.mark.parametrize("gz", [False, True])
def test_tsv_keeps_exactly_the_entailment_rows_as_written(tmp_path, gz):
    path = write_hand(tmp_path / ("hand_train.tsv.gz" if gz else "hand_train.tsv"), HAND_ROWS)
    nli = data_prep.load_nli(path)
    assert len(nli) == len(HAND_ROWS)  # no rows glued together by a quote, none dropped as NA
    assert nli["label"] == [int({"-": -1}.get(y, y)) for _, _, y in HAND_ROWS]
    assert nli["hypothesis"][3] == "NA" and isinstance(nli["hypothesis"][3], str)
    assert data_prep.make_rows(nli) == HAND_PAIRS


def test_triplets_come_only_from_the_same_premise(tmp_path):
    nli = data_prep.load_nli(write_hand(tmp_path / "hand_train.tsv", HAND_ROWS))
    triplets = data_prep.make_rows(nli, hard_negatives=True)
    assert sorted(triplets) == sorted(HAND_TRIPLETS)
    labels = {(p, h): y for p, h, y in HAND_ROWS}
    for p, pos, neg in triplets:
        assert labels[(p, pos)] == "0" and labels[(p, neg)] == "2"


def test_triplets_are_every_entailment_contradiction_combination(tmp_path):
    rows = [("P", "e1", "0"), ("Q", "qe", "0"), ("P", "c1", "2"), ("P", "e2", "0"), ("P", "c2", "2"),
            ("Q", "qn", "1"), ("R", "rc", "2")]
    nli = data_prep.load_nli(write_hand(tmp_path / "x_train.tsv", rows))
    assert sorted(data_prep.make_rows(nli, hard_negatives=True)) == sorted(
        [("P", e, c) for e in ("e1", "e2") for c in ("c1", "c2")])


def test_labels_given_as_words(tmp_path):
    words = {"0": "entailment", "1": "neutral", "2": "contradiction", "-1": "-", "-": "-"}
    rows = [(p, h, words[y]) for p, h, y in HAND_ROWS]
    nli = data_prep.load_nli(write_hand(tmp_path / "words_train.tsv", rows))
    assert data_prep.make_rows(nli) == HAND_PAIRS
    assert sorted(data_prep.make_rows(nli, hard_negatives=True)) == sorted(HAND_TRIPLETS)


def test_bad_label_raises_data_error(tmp_path):
    path = write_hand(tmp_path / "bad_train.tsv", [("a", "b", "0"), ("c", "d", "maybe")])
    with pytest.raises(data_prep.DataError, match="maybe"):
        data_prep.load_nli(path)


def test_directory_loads_only_train_files(tmp_path):
    write_hand(tmp_path / "snli_train.tsv", [("T1", "t1 entails", "0")])
    write_hand(tmp_path / "mnli_train_part.tsv.gz", [("T2", "t2 entails", "0")])
    write_hand(tmp_path / "snli_dev.tsv", [("D1", "dev entails", "0")])
    write_hand(tmp_path / "test.tsv", [("X1", "test entails", "0")])
    (tmp_path / "train_notes.md").write_text("not data\n")
    nli = data_prep.load_nli(str(tmp_path))
    assert sorted(data_prep.make_rows(nli)) == [("T1", "t1 entails"), ("T2", "t2 entails")]


def test_csv_input(tmp_path):
    path = tmp_path / "hand_train.csv"
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)  # quotes fields holding commas or quotes, as any CSV writer does
        w.writerow(HEADER)
        w.writerows([list(r) + ["hand, with comma"] for r in HAND_ROWS])
    nli = data_prep.load_nli(str(path))
    assert data_prep.make_rows(nli) == HAND_PAIRS
    assert sorted(data_prep.make_rows(nli, hard_negatives=True)) == sorted(HAND_TRIPLETS)


@pytest.mark.parametrize("label_as", ["int", "word"])
def test_jsonl_input(tmp_path, label_as):
    words = {"0": "entailment", "1": "neutral", "2": "contradiction", "-1": "-", "-": "-"}
    path = tmp_path / "hand_train.jsonl"
    with open(path, "w", encoding="utf-8") as f:
        for p, h, y in HAND_ROWS:
            label = int({"-": -1}.get(y, y)) if label_as == "int" else words[y]
            f.write(json.dumps({"premise": p, "hypothesis": h, "label": label, "source": "hand"}) + "\n")
    nli = data_prep.load_nli(str(path))
    assert data_prep.make_rows(nli) == HAND_PAIRS
    assert sorted(data_prep.make_rows(nli, hard_negatives=True)) == sorted(HAND_TRIPLETS)


# ---------------------------------------------------------------------------------------------------------
# The real folder, through the script


def independent_counts(nli_dir):
    """Pairs and triplets of the real train files, counted with the csv module only."""
    pairs, entailed, contradicted = 0, defaultdict(int), defaultdict(int)
    for name in sorted(os.listdir(nli_dir)):
        if "train" not in name or not name.endswith(".tsv.gz"):
            continue
        with gzip.open(os.path.join(nli_dir, name), "rt", encoding="utf-8", newline="") as f:
            for row in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE):
                if row["label"] == "0":
                    pairs += 1
                    entailed[row["premise"]] += 1
                elif row["label"] == "2":
                    contradicted[row["premise"]] += 1
    return pairs, sum(n * contradicted[p] for p, n in entailed.items())


def snapshot(root):
    skip = {".git", "__pycache__", ".pytest_cache"}
    out = set()
    for d, dirs, files in os.walk(root):
        dirs[:] = [x for x in dirs if x not in skip]
        out.update(os.path.relpath(os.path.join(d, f), root) for f in files)
    return out


def test_script_counts_match_make_rows_and_it_writes_nothing(nli_dir, real_rows, tmp_path):
    before = snapshot(ROOT)
    proc = run_script(os.path.join(ROOT, "data_prep.py"), "--nli-data", nli_dir, "--hard-negatives", cwd=tmp_path,
                      timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    counts = {k: int(v) for k, v in re.findall(r"^(pairs|triplets): (\d+)$", proc.stdout, re.M)}
    assert counts == {"pairs": len(real_rows["pairs"]), "triplets": len(real_rows["triplets"])}, proc.stdout
    assert (counts["pairs"], counts["triplets"]) == independent_counts(nli_dir)
    assert os.listdir(tmp_path) == [], "the script wrote into its working directory"
    assert snapshot(ROOT) - before == set(), "the script wrote into the repo"


# ---------------------------------------------------------------------------------------------------------
# collate


@pytest.fixture(scope="module")
def tokenizer(minilm_path):
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(minilm_path)


COLLATE_ROWS = [("A short anchor.", "A much longer positive sentence about dogs running in the park today.", "No."),
                ("Another anchor that is quite a bit longer than the first.", "Short.", "A negative."),
                ("Hi.", "Medium length positive here.", "A longer negative sentence than the others.")]


def test_collate_pads_each_column_to_its_own_longest_row(tokenizer):
    columns = data_prep.collate(COLLATE_ROWS, tokenizer)
    assert len(columns) == 3
    widths = []
    for c, features in enumerate(columns):
        lengths = [len(tokenizer(row[c])["input_ids"]) for row in COLLATE_ROWS]
        assert features["input_ids"].shape == (3, max(lengths))
        assert features["attention_mask"].sum(dim=1).tolist() == lengths
        widths.append(max(lengths))
    assert len(set(widths)) == 3  # the columns really differ, so a shared width would have been caught


def test_collate_pad_to_max_length(tokenizer):
    for features in data_prep.collate(COLLATE_ROWS, tokenizer, max_length=40, pad_to_max_length=True):
        assert features["input_ids"].shape == (3, 40)


def test_collate_truncates_at_max_length(tokenizer):
    long = " ".join(["word"] * 300)
    columns = data_prep.collate([(long, "short one"), ("tiny", long)], tokenizer, max_length=16)
    for features in columns:
        assert features["input_ids"].shape == (2, 16)
    assert columns[0]["input_ids"][0, -1].item() == tokenizer.sep_token_id  # truncated, still a full sequence
    assert data_prep.collate([(long, "x")], tokenizer)[0]["input_ids"].shape == (1, 128)  # default max_length
