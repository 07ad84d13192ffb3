"""The real-data sample shipped in tests/data: what the data tests need from it, and that make_sample.py cuts it.

The data tests read the full local files when present and this sample otherwise (conftest.py); these tests
check the sample itself in both cases, so a change that would break a fresh clone shows up here too."""
import gzip
import importlib.util
import os

import pytest

import data_prep
import evaluate_retrieval
import evaluate_sts
from conftest import SAMPLE_DIR, SAMPLE_FILES, count_rows


def load_make_sample():
    spec = importlib.util.spec_from_file_location("make_sample", os.path.join(SAMPLE_DIR, "make_sample.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_sample_has_what_the_data_tests_need():
    nli = data_prep.load_nli(os.path.join(SAMPLE_DIR, SAMPLE_FILES["nli"]))
    assert set(nli["label"]) <= {-1, 0, 1, 2}
    pairs, triplets = data_prep.make_rows(nli), data_prep.make_rows(nli, hard_negatives=True)
    # 30 steps of batch 16 (test_core_train), and full 64-row batches of triplets (test_core_data): a batch
    # takes one row per premise, so 64 premises with a triplet at the very least.
    assert len(pairs) >= 500 and len(triplets) >= 128, (len(pairs), len(triplets))
    assert len({anchor for anchor, _, _ in triplets}) >= 64
    assert len(data_prep.epoch_batches(triplets, 16, seed=0)) >= 2
    # Retrieval: tests read up to the first 600 rows of SNLI test.
    snli_test = os.path.join(SAMPLE_DIR, SAMPLE_FILES["snli_test"])
    assert "train" not in os.path.basename(snli_test)  # never loaded as training data
    assert count_rows(snli_test) > 600
    task = evaluate_retrieval.load_nli_retrieval(snli_test)
    assert len(task["queries"]) >= 100 and all(task["relevant"])
    # SNLI dev: tests take its first 300 entailment pairs.
    snli_dev = os.path.join(SAMPLE_DIR, SAMPLE_FILES["snli_dev"])
    assert "train" not in os.path.basename(snli_dev)
    assert len(data_prep.make_rows(data_prep.load_nli(snli_dev))) >= 300
    for split in ("dev", "test"):
        sts_pairs, gold = evaluate_sts.load_sts(os.path.join(SAMPLE_DIR, SAMPLE_FILES["sts"]), split)
        assert len(sts_pairs) == count_rows(os.path.join(SAMPLE_DIR, "stsb", f"{split}.tsv.gz")) >= 200
        assert min(gold) >= 0 and max(gold) <= 1 and len(set(gold)) > 20
    size = sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(SAMPLE_DIR) for f in files
               if "__pycache__" not in d)
    assert size < 1_000_000, size


def test_make_sample_cuts_exactly_the_shipped_files(tmp_path):
    """Cut again from the full files when the ones the sample was cut from are here (same SHA-256), and compare
    the contents. Without them (a fresh clone), only what does not need them is checked."""
    make_sample = load_make_sample()
    written = {**make_sample.NLI_TRAIN, **make_sample.NLI_TEST, **make_sample.STS}
    shipped = {name for name in written} | set(make_sample.COPIED)
    for name in shipped:
        assert os.path.isfile(os.path.join(SAMPLE_DIR, name)), name
    for name in written:
        with open(os.path.join(SAMPLE_DIR, name), "rb") as f:
            header = f.read(10)
        assert header[4:8] == b"\0\0\0\0", f"{name}: gzip header holds a time (not written by make_sample.py)"
    hashes, missing = make_sample.check_sources(make_sample.DEFAULT_SOURCE)
    if missing or hashes != make_sample.SOURCE_SHA256:
        pytest.skip("the full files the sample was cut from are not here: nothing to compare the cut with")
    make_sample.make(make_sample.DEFAULT_SOURCE, str(tmp_path))
    for name in written:
        with gzip.open(os.path.join(tmp_path, name), "rb") as a, gzip.open(os.path.join(SAMPLE_DIR, name), "rb") as b:
            assert a.read() == b.read(), f"{name}: make_sample.py no longer cuts the shipped file"
    for name in make_sample.COPIED:
        with open(os.path.join(tmp_path, name), "rb") as a, open(os.path.join(SAMPLE_DIR, name), "rb") as b:
            assert a.read() == b.read(), name
