"""show_similarity.py, the README's picture: run on the tiny model fixtures, its PNG is drawn and its numbers are
one real batch's scaled cosine matrices, as an independent computation (transformers, mean pooling by hand)
gives them; a folder that names no start model, and a row outside the batch, are one error line."""
import gzip
import json
import os

import pytest
import torch
import torch.nn.functional as F

from conftest import ROOT, run_script

pytest.importorskip("matplotlib")
DATA = os.path.join(ROOT, "tests", "data", "nli", "snli_test_sample.tsv.gz")


def scaled_cosines(folder, anchors, positives, scale):
    """scale x cosine of each anchor with each positive: the folder's BERT, its real tokens averaged."""
    from transformers import AutoModel, AutoTokenizer
    tokenizer, model = AutoTokenizer.from_pretrained(folder), AutoModel.from_pretrained(folder).eval()

    def embed(texts):
        batch = tokenizer(texts, padding=True, truncation=True, max_length=128, return_tensors="pt")
        with torch.no_grad():
            tokens = model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).float()
        return F.normalize((tokens * mask).sum(1) / mask.sum(1), dim=1)

    return scale * embed(anchors) @ embed(positives).T


def entailment_pairs(path):
    with gzip.open(path, "rt", encoding="utf-8") as f:
        header = f.readline().rstrip("\n").split("\t")
        rows = [dict(zip(header, line.rstrip("\n").split("\t"))) for line in f]
    return {(r["premise"], r["hypothesis"]) for r in rows if r["label"] in ("0", "entailment")}


def test_the_picture_is_one_batch_before_and_after(tmp_path, tiny_model_dir, minilm_path):
    out = tmp_path / "picture" / "similarity.png"
    result = run_script("show_similarity.py", minilm_path, "--start-model", tiny_model_dir, "--batch-size", "6",
                        "--anchor", "2", "--scale", "20", "--out", str(out))
    assert result.returncode == 0, result.stderr[-2000:]
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000
    numbers = json.loads(out.with_suffix(".json").read_text())
    anchors, positives = numbers["anchors"], numbers["positives"]
    # a real batch: six of the file's entailment pairs, no text twice (a repeat would be a false negative)
    assert len(anchors) == 6 and set(zip(anchors, positives)) <= entailment_pairs(DATA)
    assert len(set(anchors + positives)) == 12
    for key, folder in (("before", tiny_model_dir), ("after", minilm_path)):
        want = scaled_cosines(folder, anchors, positives, 20.0)
        assert torch.allclose(torch.tensor(numbers[key]), want, atol=1e-4), key
        assert torch.allclose(torch.tensor(numbers[f"softmax_{key}"]), want[2].softmax(0), atol=1e-5)
    # the trained MiniLM picks anchor 2's own positive; the random BERT does not know it yet
    assert numbers["softmax_after"][2] == max(numbers["softmax_after"]) > 2 * numbers["softmax_before"][2]
    assert result.stdout.strip().startswith(str(out))


@pytest.mark.parametrize("flags, message", [
    ([], "MODEL: no training_config.json to name the start model; give --start-model"),
    (["--start-model", "MODEL", "--anchor", "32"], "--anchor 32: give a row of the batch, 0 to 31"),
])
def test_bad_input_is_one_line(tmp_path, tiny_model_dir, flags, message):
    """The tiny folder was never trained here: it names no start model."""
    flags = [tiny_model_dir if f == "MODEL" else f for f in flags]
    result = run_script("show_similarity.py", tiny_model_dir, *flags, "--out", str(tmp_path / "p.png"))
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == "error: " + message.replace("MODEL", tiny_model_dir)
    assert not (tmp_path / "p.png").exists()


def test_a_missing_model_folder_is_named_first(tmp_path):
    result = run_script("show_similarity.py", str(tmp_path / "no-such-run"), "--out", str(tmp_path / "p.png"))
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == \
        f"error: {tmp_path / 'no-such-run'}: no such folder; give the folder a training run saved (its OUTPUT_DIR)"
