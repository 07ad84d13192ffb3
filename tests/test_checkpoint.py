"""Runs that survive: resume is bit-identical, incomplete checkpoints are skipped, NaN stops the run cleanly."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

import checkpoint
import train_mnr
from conftest import ROOT


def run_in_process(argv):
    """train_mnr's command-line entry in this process (no interpreter start-up); SystemExit -> its message."""
    try:
        train_mnr.main(argv[1:])
    except SystemExit as e:
        return str(e.code)
    return None


def flags(model, data, out, *extra):
    # dropout stays on (the model's 0.1): resume must restore the RNG streams, not just the weights
    return ["train_mnr.py", "--model-name", model, "--nli-data", data, "--max-steps", "6", "--batch-size", "8",
            "--lr", "1e-3", "--save-every", "2", "--keep-checkpoints", "5", "--output-dir", str(out), *extra]


def weights(folder):
    return load_file(os.path.join(folder, "model.safetensors"))


def assert_identical(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.fixture(scope="module")
def reference(tmp_path_factory, tiny_model_dir, nli_dir):
    """One uninterrupted run, with a checkpoint every 2 steps."""
    out = tmp_path_factory.mktemp("uninterrupted")
    assert run_in_process(flags(tiny_model_dir, nli_dir, out)) is None
    return out


def test_checkpoints_are_loadable_model_folders(reference):
    assert [os.path.basename(p) for p in checkpoint.checkpoints(reference)] == ["checkpoint-2", "checkpoint-4"]
    for path in checkpoint.checkpoints(reference):
        assert os.path.isfile(os.path.join(path, "1_Pooling", "config.json"))
        assert os.path.isfile(os.path.join(path, "tokenizer.json"))
        state = torch.load(os.path.join(path, checkpoint.STATE_FILE), weights_only=True)
        assert state["step"] == int(path.rsplit("-", 1)[1])
    assert not [e for e in os.listdir(reference) if ".tmp-" in e]  # no temporary leftovers


@pytest.mark.parametrize("at", [2, 4])
def test_resume_from_each_checkpoint_is_bit_identical(reference, tmp_path, tiny_model_dir, nli_dir, at):
    out = tmp_path / "resumed"
    os.makedirs(out)
    shutil.copytree(os.path.join(reference, f"checkpoint-{at}"), out / f"checkpoint-{at}")
    assert run_in_process(flags(tiny_model_dir, nli_dir, out, "--resume")) is None
    assert_identical(weights(out), weights(reference))


def test_resume_skips_a_checkpoint_missing_a_file(reference, tmp_path, tiny_model_dir, nli_dir):
    out = tmp_path / "resumed"
    shutil.copytree(reference, out)
    os.remove(out / "checkpoint-4" / checkpoint.STATE_FILE)  # as if killed before the state was written
    assert [os.path.basename(p) for p in checkpoint.checkpoints(out)] == ["checkpoint-2"]
    os.remove(out / "model.safetensors")
    assert run_in_process(flags(tiny_model_dir, nli_dir, out, "--resume")) is None
    assert_identical(weights(out), weights(reference))


def test_resume_after_kill_9(reference, tmp_path, tiny_model_dir, nli_dir):
    """A real interruption: SIGKILL once step 3 is logged, then resume with the same command."""
    out = tmp_path / "killed"
    # The same thread count as this process (no OMP_NUM_THREADS override): bit-identity holds for equal threads.
    env = dict(os.environ, PYTHONPATH=ROOT, HF_HUB_OFFLINE="1")
    os.environ.get("OMP_NUM_THREADS") or env.update(OMP_NUM_THREADS=str(torch.get_num_threads()))
    proc = subprocess.Popen([sys.executable, *flags(tiny_model_dir, nli_dir, out)], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log = out / "train_log.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if log.exists() and sum(1 for _ in open(log)) >= 3:
            break
        time.sleep(0.05)
    killed = proc.poll() is None
    proc.send_signal(signal.SIGKILL) if killed else None
    proc.wait()
    if killed:
        assert not (out / "model.safetensors").exists()
    assert run_in_process(flags(tiny_model_dir, nli_dir, out, "--resume")) is None
    assert_identical(weights(out), weights(reference))
    steps = [json.loads(line)["step"] for line in open(log)]
    assert steps == [1, 2, 3, 4, 5, 6]  # the log holds each step once


def test_resume_with_other_hyperparameters_is_refused(reference, tmp_path, tiny_model_dir, nli_dir):
    out = tmp_path / "resumed"
    shutil.copytree(reference, out)
    message = run_in_process(flags(tiny_model_dir, nli_dir, out, "--resume", "--seed", "7"))
    assert message.startswith("error:") and "--seed 7" in message and "written with 42" in message


def test_resume_without_checkpoint_is_refused(tmp_path, tiny_model_dir, nli_dir):
    message = run_in_process(flags(tiny_model_dir, nli_dir, tmp_path / "empty", "--resume"))
    assert message.startswith("error:") and "no complete checkpoint" in message


def test_nan_loss_stops_and_newest_checkpoint_still_loads(tmp_path, tiny_model_dir, nli_dir):
    calls = []

    def poisoned(*args, **kwargs):  # a NaN on the 5th step, as a too-high learning rate would produce
        calls.append(1)
        loss = train_mnr.mnr_loss(*args, **kwargs)
        return loss * float("nan") if len(calls) == 5 else loss

    config = dict(train_mnr.DEFAULTS, MODEL_NAME=tiny_model_dir, NLI_DATA=nli_dir, MAX_STEPS=8, BATCH_SIZE=8,
                  SAVE_EVERY=2, OUTPUT_DIR=str(tmp_path / "nan"))
    with pytest.raises(FloatingPointError, match=r"step 4: loss is nan.*learning rate.*scale"):
        train_mnr.train(config, loss_fn=poisoned)
    newest = checkpoint.checkpoints(tmp_path / "nan")[-1]
    assert newest.endswith("checkpoint-4")
    model, _ = train_mnr.load_model(newest)
    state = torch.load(os.path.join(newest, checkpoint.STATE_FILE), weights_only=True)
    assert state["step"] == 4 and sum(p.numel() for p in model.parameters()) > 0
    assert not (tmp_path / "nan" / "model.safetensors").exists()  # no final model from a failed run


def test_failed_run_leaves_saved_model_untouched(reference, tmp_path, tiny_model_dir, nli_dir):
    out = tmp_path / "saved"
    shutil.copytree(reference, out)
    before = weights(out)
    assert run_in_process(flags(tiny_model_dir, str(tmp_path / "missing.tsv"), out)).startswith("error:")
    assert_identical(weights(out), before)
