"""The house: scripts at the root use the mnr/ package and never the other way round; nothing after the last step
loses the trained weights (a loss the card does not know, a full disk, a card that fails); a damaged checkpoint is
passed over at --resume; compare_runs notices any changed module."""
import ast
import glob
import hashlib
import os
import resource
import shutil
import subprocess
import sys

import pytest
import torch

import compare_runs
from conftest import ROOT, finish, run_script, script_env
from mnr import checkpoint, save
from mnr.errors import SaveError
from mnr.files import code_files, code_version
from mnr.models import load_model

SCRIPTS = {os.path.basename(p)[:-3] for p in glob.glob(os.path.join(ROOT, "*.py"))}


def test_the_package_never_imports_a_script():
    for path in glob.glob(os.path.join(ROOT, "mnr", "*.py")):
        with open(path) as f:
            tree = ast.parse(f.read())
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.module else []
            # the tutorial's modules (steps 1-3 and 5) are no scripts: mnr/sts.py and retrieval.py score with them
            assert not {n.split(".")[0] for n in names} & (SCRIPTS - {"data_prep", "pooling"}), \
                f"{path} imports a script: {names}"


def test_root_holds_scripts_only():
    """Every Python file at the root is something a user runs (a __main__) or the tutorial's pooling step."""
    for name in SCRIPTS - {"pooling"}:
        with open(os.path.join(ROOT, f"{name}.py")) as f:
            assert 'if __name__ == "__main__":' in f.read(), name


def tiny_run(tmp_path, tiny_model_dir, nli_dir, *extra, script="train_mnr.py"):
    return ["python", script, "--model-name", tiny_model_dir, "--nli-data", nli_dir, "--batch-size", "8",
            "--precision", "fp32", *extra]


ADDED_LOSS = """
import sys
import torch.nn.functional as F
import train_bidirectional
from train_mnr import cos_sim

def cosine_margin_loss(query, doc, negatives=None, scale=20.0, label_offset=0):
    '''A cosine margin loss of my own: each query's positive above its hardest in-batch document.'''
    scores = cos_sim(query, doc)
    own = scores.diagonal(label_offset)
    return F.relu(0.2 - own[:, None] + scores).mean()

train_bidirectional.LOSSES["margin"] = cosine_margin_loss
args = train_bidirectional.parse_args(sys.argv[1:])
train_bidirectional.train_mnr.main(args, train_bidirectional.LOSSES[args.loss], defaults=train_bidirectional.parse_args([]))
"""


def test_a_loss_added_to_LOSSES_trains_saves_and_gets_a_card(tmp_path, tiny_model_dir, nli_dir):
    out = tmp_path / "out"
    _, script, *flags = tiny_run(tmp_path, tiny_model_dir, nli_dir, "--max-steps", "2", "--loss", "margin",
                                 "--output-dir", str(out))
    result = run_script("-c", ADDED_LOSS, *flags)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (out / "model.safetensors").is_file() and (out / "modules.json").is_file()
    card = (out / "README.md").read_text()
    assert "A cosine margin loss of my own" in card and "loss:" not in card.split("---")[1].split("tags:")[0]


def digest(folder):
    return {name: hashlib.sha256(open(os.path.join(folder, name), "rb").read()).hexdigest()
            for name in ("model.safetensors", "config.json", "README.md", "modules.json")}


def test_a_file_size_limit_at_save_is_one_error_line_and_the_earlier_model_stays(tmp_path, tiny_model_dir, nli_dir):
    out = tmp_path / "out"
    args = tiny_run(tmp_path, tiny_model_dir, nli_dir, "--max-steps", "1", "--output-dir", str(out))[1:]
    assert run_script(*args).returncode == 0
    before = digest(out)
    limit = 1 << 20  # 1 MiB: the log and the tokenizer fit, the weights (4 MB) do not (as with `ulimit -f 1024`)
    proc = subprocess.Popen([sys.executable, *args, "--seed", "7", "--overwrite"], cwd=ROOT, env=script_env(), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit)))
    result = finish(proc)
    assert result.returncode == 1, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith(f"error: {out}: could not write the model's weights") and "Traceback" not in result.stderr
    assert "File too large" in lines[-1] or "too large" in lines[-1].lower()
    assert digest(out) == before  # the earlier model, untouched
    assert not [e for e in os.listdir(tmp_path) if e.startswith(".out.")]  # no temporary folder left behind


def test_a_card_that_fails_costs_no_weights(tmp_path, tiny_model_dir, monkeypatch):
    model, tokenizer = load_model(tiny_model_dir)

    def broken(*a, **k):
        raise KeyError("mine")
    monkeypatch.setattr(save, "write_model_card", broken)
    with pytest.raises(SaveError, match="weights and tokenizer are saved.*KeyError"):
        save.save_model(model, tokenizer, str(tmp_path / "m"), {"MODEL_NAME": tiny_model_dir, "MAX_LENGTH": 16,
                                                                 "POOLING": "mean"})
    reloaded, _ = load_model(str(tmp_path / "m"))
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), reloaded.state_dict().values()))


def test_a_damaged_checkpoint_is_passed_over_or_named(tmp_path, tiny_model_dir, nli_dir):
    out = tmp_path / "out"
    args = tiny_run(tmp_path, tiny_model_dir, nli_dir, "--max-steps", "6", "--save-every", "2",
                    "--keep-checkpoints", "3", "--output-dir", str(out))[1:]
    first = run_script(*args)  # checkpoints at steps 2 and 4, the model at 6
    assert first.returncode == 0, first.stderr[-2000:]
    newest = out / "checkpoint-4" / checkpoint.STATE_FILE
    newest.write_bytes(newest.read_bytes()[:1000])  # truncated, as by a full disk or a cut copy
    resumed = run_script(*args, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"{newest}: damaged" in resumed.stderr and "resuming from the next newest" in resumed.stderr
    assert "resumed from" in resumed.stdout and "checkpoint-2 (step 2 of 6)" in resumed.stdout
    for step in (4, 2):  # the resumed run wrote checkpoint-4 anew; now every checkpoint is damaged
        state = out / f"checkpoint-{step}" / checkpoint.STATE_FILE
        state.write_bytes(state.read_bytes()[:1000])
    failed = run_script(*args, "--resume")
    assert failed.returncode == 1 and "Traceback" not in failed.stderr
    assert failed.stderr.strip().splitlines()[-1].startswith(f"error: {state}: damaged")  # the oldest, tried last


def test_compare_runs_notices_a_changed_module(tmp_path):
    assert compare_runs.code_version is code_version  # the digest compare_runs stamps runs and scores with
    files = code_files(["train_mnr.py"])
    assert {"mnr/gist.py", "mnr/hub.py", "mnr/errors.py", "mnr/sts.py", "pooling.py"} <= set(files)
    copy = tmp_path / "repo"
    for name in files:
        os.makedirs(copy / os.path.dirname(name), exist_ok=True)
        shutil.copy(os.path.join(ROOT, name), copy / name)
    before = code_version(["train_mnr.py"], root=str(copy))
    gist = (copy / "mnr" / "gist.py").read_text()
    # Teaching text is not code: a comment, a reworded docstring and blank lines keep the cached runs
    docstring = gist.split('"""')[1]
    (copy / "mnr" / "gist.py").write_text(gist.replace(docstring, "Reworded.", 1) + "\n\n# a comment on GIST\n")
    assert code_version(["train_mnr.py"], root=str(copy)) == before
    # A statement is: the same module with one more line of code retrains
    (copy / "mnr" / "gist.py").write_text(gist + "\nGIST_CHANGED = 1\n")
    assert code_version(["train_mnr.py"], root=str(copy)) != before
    assert "own = rows + label_offset" in gist  # one operator changed
    (copy / "mnr" / "gist.py").write_text(gist.replace("own = rows + label_offset", "own = rows - label_offset"))
    assert code_version(["train_mnr.py"], root=str(copy)) != before
