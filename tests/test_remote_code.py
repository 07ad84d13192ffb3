"""No code from a model folder or a checkpoint ever runs (issue 27 §4).

A folder can ask transformers to import Python files it holds (`auto_map` in its config, or an architecture
transformers does not ship); left to transformers, that asks on stdin and a "y" runs them. A pickle can hold an
object whose unpickling calls anything. Each "evil" file here writes a marker file when it runs: the marker must
never appear, and each load ends in one `error:` line."""
import ast
import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

from conftest import ROOT, run_in_process, script_env
from mnr import models
from mnr.errors import ModelError

EVIL_CODE = """\
open({marker!r}, "w").write("ran")  # what the folder's code does on import: anything at all
from transformers import BertConfig, BertModel


class EvilConfig(BertConfig):
    model_type = "evilbert"


class EvilModel(BertModel):
    config_class = EvilConfig
"""


class Evil:
    """Unpickling this calls open(marker, "w"): a stand-in for any call a pickle can make."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return open, (self.marker, "w")


@pytest.fixture
def marker(tmp_path):
    path = tmp_path / "code-ran"
    yield path
    assert not path.exists(), "code from the model folder or checkpoint ran"


def evil_folder(tmp_path, tiny_model_dir, marker, model_type):
    """The tiny BERT, whose config asks for the code in its evil.py (model_type bert: transformers knows it;
    evilbert: only the folder's code defines it)."""
    folder = tmp_path / f"remote-code-{model_type}"
    shutil.copytree(tiny_model_dir, folder)
    config = json.loads((folder / "config.json").read_text())
    config.update(model_type=model_type, auto_map={"AutoConfig": "evil.EvilConfig", "AutoModel": "evil.EvilModel"})
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "evil.py").write_text(EVIL_CODE.format(marker=str(marker)))
    return folder


@pytest.mark.parametrize("model_type", ["bert", "evilbert"])
def test_auto_map_folder_is_refused_without_a_prompt_even_on_a_terminal(tmp_path, tiny_model_dir, marker,
                                                                         model_type):
    """stdin is a terminal with "y" already typed: transformers' prompt would read it and run evil.py."""
    folder = evil_folder(tmp_path, tiny_model_dir, marker, model_type)
    controller, terminal = os.openpty()
    os.write(controller, b"y\n")
    try:
        proc = subprocess.run([sys.executable, "evaluate_sts.py", str(folder), "--sts-data", "tests/data/stsb"],
                              cwd=ROOT, env=script_env(), stdin=terminal, capture_output=True, text=True, timeout=300)
    finally:
        os.close(terminal)
        os.close(controller)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "custom code" not in proc.stdout + proc.stderr  # no prompt was shown
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith(f"error: {folder / 'config.json'}: has an auto_map") and len(lines) == 1, lines


def test_unknown_model_type_is_refused_naming_config_json(tmp_path, tiny_model_dir):
    folder = tmp_path / "unknown"
    shutil.copytree(tiny_model_dir, folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(dict(config, model_type="evilbert")))
    with pytest.raises(ModelError, match=r"config.json: model_type 'evilbert' is not an architecture"):
        models.load_model(str(folder))


def test_tokenizer_auto_map_is_refused(tmp_path, tiny_model_dir):
    folder = tmp_path / "tokenizer-code"
    shutil.copytree(tiny_model_dir, folder)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config["auto_map"] = {"AutoTokenizer": ["evil.EvilTokenizer", None]}
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    with pytest.raises(ModelError, match=r"tokenizer_config.json: has an auto_map"):
        models.load_model(str(folder))


def test_loads_pass_trust_remote_code_false_behind_the_folder_check(tmp_path, tiny_model_dir, marker, monkeypatch):
    """The second line of defence, for what the folder check cannot see (a hub model): with the check out of the
    way, transformers itself must refuse, never prompt, never import evil.py."""
    folder = evil_folder(tmp_path, tiny_model_dir, marker, "evilbert")
    monkeypatch.setattr(models, "check_model_folder", lambda folder: None, raising=False)
    prompts = []
    monkeypatch.setattr("builtins.input", lambda *a: prompts.append(a) or "y")
    with pytest.raises(ModelError, match="custom code"):
        models.load_model(str(folder))
    assert prompts == []


def test_every_load_in_the_product_code_passes_trust_remote_code_false():
    """Each from_pretrained / SentenceTransformer(...) call in the scripts, mnr/ and pooling.py (not tests or
    benchmarks) says trust_remote_code=False: a new call site that forgets it fails here."""
    files = [f for f in os.listdir(ROOT) if f.endswith(".py")]
    files += [os.path.join("mnr", f) for f in os.listdir(os.path.join(ROOT, "mnr")) if f.endswith(".py")]
    calls = []
    for path in files:
        with open(os.path.join(ROOT, path)) as f:
            tree = ast.parse(f.read())
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                name = getattr(node.func, "attr", getattr(node.func, "id", None))
                if name in ("from_pretrained", "SentenceTransformer", "CrossEncoder"):
                    safe = any(k.arg == "trust_remote_code" and isinstance(k.value, ast.Constant)
                               and k.value.value is False for k in node.keywords)
                    calls.append((f"{path}:{node.lineno}", safe))
    assert calls, "no load found: the scan is broken"
    assert [where for where, safe in calls if not safe] == []


def test_pickled_object_in_model_weights_is_refused(tmp_path, tiny_model_dir, marker):
    folder = tmp_path / "pickled"
    shutil.copytree(tiny_model_dir, folder)
    from safetensors.torch import load_file
    state = load_file(folder / "model.safetensors")
    os.remove(folder / "model.safetensors")
    torch.save({**state, "evil": Evil(str(marker))}, folder / "pytorch_model.bin")
    refused = r"pytorch_model.bin: not readable as weights.*\(Unsupported global: GLOBAL \S*open\b"
    with pytest.raises(ModelError, match=refused):
        models.load_model(str(folder))


def test_pickled_object_in_a_checkpoint_is_refused_at_resume(tmp_path, tiny_model_dir, marker):
    """A real checkpoint whose training_state.pt also holds an object that calls open() when unpickled: --resume
    refuses it in one line (torch.load with weights_only=True) and the call never happens."""
    out = tmp_path / "run"
    argv = ["--model-name", tiny_model_dir, "--nli-data", os.path.join(ROOT, "tests", "data", "nli"),
            "--batch-size", "4", "--max-steps", "2", "--save-every", "1", "--output-dir", str(out)]
    assert run_in_process(argv) is None
    state_file = out / "checkpoint-1" / "training_state.pt"
    state = torch.load(state_file, weights_only=True)
    torch.save({**state, "evil": Evil(str(marker))}, state_file)
    message = run_in_process([*argv, "--resume"])
    assert message.startswith(f"error: {state_file}: damaged, cannot be read") and "\n" not in message, message
