"""A new pooling is one edit (issue 28 §3): one function and one line of POOLINGS in pooling.py, made on a copy of
the repository. --pooling offers it, the run trains and saves it; sentence-transformers reloads it with our
embeddings when it has such a pooling, and when it has none the save says so in one line and still writes the
weights and the card, whose transformers code and our loaders embed as training did."""
import glob
import json
import os
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT, script_env

SAMPLE_NLI = os.path.join(ROOT, "tests", "data", "nli")
TEXTS = ["A man is playing a guitar.", "Someone plays an instrument.", "The cat sleeps on the warm windowsill."]
# The edit a forker makes: one function above the table, one entry in it.
NEW_POOLINGS = {
    # sentence-transformers has it: pooling_mode_mean_sqrt_len_tokens (the sum over sqrt(token count))
    "mean_sqrt_len": ('''def mean_sqrt_len_pool(tokens, mask):
    """Sum of the real tokens over the square root of their count."""
    weights = mask.unsqueeze(-1).to(tokens.dtype)
    return (tokens * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9).sqrt()
''', '"mean_sqrt_len": (mean_sqrt_len_pool, "pooling_mode_mean_sqrt_len_tokens"),'),
    # sentence-transformers has no such pooling
    "mean_max": ('''def mean_max_pool(tokens, mask):
    """The mean and the max of the real tokens, averaged."""
    weights = mask.unsqueeze(-1).to(tokens.dtype)
    mean = (tokens * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)
    return (mean + tokens.masked_fill(weights == 0, torch.finfo(tokens.dtype).min).max(dim=1).values) / 2
''', '"mean_max": (mean_max_pool, None),'),
}
# Run in the copy after training: our loader and encode, sentence-transformers where the folder has its files, and
# the model card's transformers example -> their embeddings as JSON lists.
CHECK = '''
import json, sys, torch
from mnr.models import load_encoder
from pooling import encode
folder, texts = sys.argv[1], json.loads(sys.argv[2])
encoder = load_encoder(folder, "cpu")
out = {"pooling": encoder.pooling, "ours": encode(encoder, texts).tolist()}
card = open(folder + "/README.md").read()
code = card.split("With transformers alone", 1)[1].split("```python\\n", 1)[1].split("```", 1)[0]
code = code.replace(json.dumps(["A man is playing a guitar.", "Someone plays an instrument."]), json.dumps(texts))
scope = {}
exec(code, scope)
out["card"] = scope["embeddings"].tolist()
if "--st" in sys.argv:
    from sentence_transformers import SentenceTransformer
    out["st"] = SentenceTransformer(folder, device="cpu").encode(texts, convert_to_tensor=True).tolist()
print(json.dumps(out))
'''


def forked_repo(tmp_path, name):
    """The repository's code copied to tmp_path/repo with pooling `name` added to pooling.py."""
    repo = tmp_path / "repo"
    repo.mkdir()
    for path in glob.glob(os.path.join(ROOT, "*.py")):
        shutil.copy(path, repo)
    shutil.copytree(os.path.join(ROOT, "mnr"), repo / "mnr", ignore=shutil.ignore_patterns("__pycache__"))
    function, entry = NEW_POOLINGS[name]
    source = (repo / "pooling.py").read_text()
    table = source.index("\nPOOLINGS = {\n")
    comment = source.rindex("\n\n", 0, table)  # the function goes above the table's comment
    source = source[:comment] + "\n\n\n" + function + source[comment:]
    source = source.replace("\nPOOLINGS = {\n", f"\nPOOLINGS = {{\n    {entry}\n")
    (repo / "pooling.py").write_text(source)
    return repo


def run_in(repo, *args):
    return subprocess.run([sys.executable, *args], cwd=repo, env=script_env(PYTHONPATH=str(repo)),
                          capture_output=True, text=True, timeout=600)


def train_and_embed(tmp_path, tiny_model_dir, name, st):
    repo, out = forked_repo(tmp_path, name), tmp_path / "model"
    run = run_in(repo, "train_mnr.py", "--model-name", tiny_model_dir, "--nli-data", SAMPLE_NLI, "--pooling", name,
                 "--batch-size", "4", "--max-steps", "2", "--device", "cpu", "--output-dir", str(out))
    assert run.returncode == 0, run.stderr[-3000:]
    check = run_in(repo, "-c", CHECK, str(out), json.dumps(TEXTS), *(["--st"] if st else []))
    assert check.returncode == 0, check.stderr[-3000:]
    return out, run, json.loads(check.stdout.strip().splitlines()[-1])


def close(a, b):
    import torch
    torch.testing.assert_close(torch.tensor(a), torch.tensor(b), atol=1e-5, rtol=1e-5)


def test_a_pooling_sentence_transformers_has_reloads_there_with_our_embeddings(tmp_path, tiny_model_dir):
    pytest.importorskip("sentence_transformers")
    out, run, got = train_and_embed(tmp_path, tiny_model_dir, "mean_sqrt_len", st=True)
    with open(out / "1_Pooling" / "config.json") as f:
        flags = json.load(f)
    assert flags["pooling_mode_mean_sqrt_len_tokens"] is True
    assert [k for k, v in flags.items() if k.startswith("pooling_mode_") and v] == ["pooling_mode_mean_sqrt_len_tokens"]
    assert got["pooling"] == "mean_sqrt_len" and "note:" not in run.stdout
    close(got["st"], got["ours"])
    close(got["card"], got["ours"])


def test_a_pooling_sentence_transformers_lacks_saves_weights_and_card_and_says_so(tmp_path, tiny_model_dir):
    out, run, got = train_and_embed(tmp_path, tiny_model_dir, "mean_max", st=False)
    notes = [line for line in run.stdout.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and "sentence-transformers has no 'mean_max' pooling" in notes[0], run.stdout
    assert (out / "model.safetensors").is_file() and (out / "README.md").is_file()
    assert not (out / "modules.json").exists() and not (out / "1_Pooling").exists()  # nothing to load wrongly
    assert "sentence-transformers has no 'mean_max' pooling" in (out / "README.md").read_text()
    assert got["pooling"] == "mean_max"  # the evaluators and the miner embed as training did
    close(got["card"], got["ours"])


def test_pooling_choices_are_the_table(tmp_path):
    """--pooling offers exactly the table's names (a pooling added to the copy included), read at parse time."""
    repo = forked_repo(tmp_path, "mean_max")
    run = run_in(repo, "train_mnr.py", "--help")
    assert run.returncode == 0, run.stderr
    assert "--pooling {mean_max,mean,cls,max,lasttoken}" in run.stdout


@pytest.mark.parametrize("mode", ["cls", "max", "lasttoken"])
def test_a_folder_sentence_transformers_6_saved_is_scored_with_its_pooling(tmp_path, tiny_model_dir, mode):
    """sentence-transformers 6 names the pooling as "pooling_mode": "cls" instead of a flag; read as mean, the
    evaluators would score a CLS model with mean pooling and say nothing."""
    pytest.importorskip("sentence_transformers")
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    from mnr.models import load_encoder
    from pooling import encode
    module = Transformer(tiny_model_dir)
    model = SentenceTransformer(modules=[module, Pooling(32, pooling_mode=mode)], device="cpu")
    model.save(str(tmp_path / "st"))
    with open(tmp_path / "st" / "1_Pooling" / "config.json") as f:
        assert json.load(f).get("pooling_mode") == mode  # the format this test is about
    encoder = load_encoder(str(tmp_path / "st"), "cpu")
    assert encoder.pooling == mode
    theirs = SentenceTransformer(str(tmp_path / "st"), device="cpu").encode(TEXTS, convert_to_tensor=True)
    torch.testing.assert_close(encode(encoder, TEXTS), theirs, atol=1e-5, rtol=1e-5)


def test_the_package_reads_the_live_table(tmp_path, tiny_model_dir, monkeypatch, capsys):
    """An entry added to pooling.POOLINGS in the running process is what save and the card follow (no copy)."""
    import pooling
    from mnr import models, save

    def half_mean_pool(tokens, mask):
        """Half the mean: a pooling sentence-transformers has no flag for."""
        return pooling.mean_pool(tokens, mask) / 2

    monkeypatch.setitem(pooling.POOLINGS, "half_mean", (half_mean_pool, None))
    model, tokenizer = models.load_model(tiny_model_dir)
    save.save_model(model, tokenizer, str(tmp_path / "m"), {"MODEL_NAME": tiny_model_dir, "MAX_LENGTH": 32,
                                                            "POOLING": "half_mean"})
    assert [line for line in capsys.readouterr().out.splitlines() if line.startswith("note:")]
    assert not (tmp_path / "m" / "modules.json").exists() and (tmp_path / "m" / "model.safetensors").is_file()
    assert "def half_mean_pool(tokens, mask):" in (tmp_path / "m" / "README.md").read_text()
    assert models.saved_pooling(str(tmp_path / "m")) == "half_mean"
