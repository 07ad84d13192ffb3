"""--eval-beir FOLDER: the folder's dev split scored before training, every --eval-every steps and at the end, as
sentence-transformers' InformationRetrievalEvaluator does in fit(): logged, and in the model card."""
import json
import os
import shutil

import pytest

from conftest import ROOT, run_in_process
from mnr import beir, retrieval

SAMPLE = os.path.join(ROOT, "tests", "data", "beir-snli")


def test_dev_ndcg_along_training_equals_the_evaluator_on_the_saved_model(tmp_path, tiny_model_dir, nli_dir):
    out = tmp_path / "out"
    assert run_in_process(["--model-name", tiny_model_dir, "--nli-data", nli_dir, "--max-steps", "4",
                           "--batch-size", "8", "--eval-beir", SAMPLE, "--eval-every", "2",
                           "--output-dir", str(out)]) is None
    logged = [json.loads(line) for line in open(out / "train_log.jsonl") if "beir_dev_ndcg@10" in line]
    assert [r["step"] for r in logged] == [0, 2, 4]
    # step 0 is the start model, step 4 the saved one: each equals evaluate_retrieval's figure on that folder
    dev = beir.load_task(SAMPLE, "dev")
    assert logged[0]["beir_dev_ndcg@10"] == pytest.approx(retrieval.evaluate(tiny_model_dir, dev)["ndcg@10"], abs=1e-9)
    assert logged[-1]["beir_dev_ndcg@10"] == pytest.approx(retrieval.evaluate(str(out), dev)["ndcg@10"], abs=1e-9)
    card = (out / "README.md").read_text()
    assert "### Retrieval dev along training" in card and f"| 4 | {logged[-1]['beir_dev_ndcg@10']:.4f} |" in card


def test_a_folder_without_a_dev_split_is_refused_at_start(tmp_path, tiny_model_dir, nli_dir):
    folder = tmp_path / "nodev"
    shutil.copytree(SAMPLE, folder)
    os.remove(folder / "qrels" / "dev.tsv")
    message = run_in_process(["--model-name", tiny_model_dir, "--nli-data", nli_dir, "--max-steps", "2",
                              "--eval-beir", str(folder), "--output-dir", str(tmp_path / "out")])
    assert message == (f"error: --eval-beir {folder}: no qrels/dev.tsv there; give a BEIR folder with a dev split "
                       "(its test split is never scored during training)")
    assert not (tmp_path / "out").exists()
