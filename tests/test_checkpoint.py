"""Runs that survive: resume is bit-identical (also after kill -9, also under torchrun), incomplete checkpoints are
skipped, NaN stops the run cleanly, and every interruption says what to run next."""
import json
import os
import shutil
import signal
import time

import pytest
import torch
from safetensors.torch import load_file

from mnr import checkpoint, outdir
import train_mnr
from conftest import finish, run_in_process, start_script

THREADS = str(torch.get_num_threads())  # bit-identity holds for equal thread counts: children use this process's



def flags(model, data, out, *extra):
    # dropout stays on (the model's 0.1): resume must restore the RNG streams, not just the weights
    return ["--model-name", model, "--nli-data", data, "--max-steps", "6", "--batch-size", "8", "--lr", "1e-3",
            "--save-every", "2", "--keep-checkpoints", "5", "--output-dir", str(out), *extra]


def weights(folder):
    return load_file(os.path.join(folder, "model.safetensors"))


def assert_identical(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def logged_steps(out):
    """The steps logged so far: the running job's in-progress log, or once it has saved, the model's log."""
    path = os.path.join(out, outdir.IN_PROGRESS_LOG)
    path = path if os.path.exists(path) else os.path.join(out, "train_log.jsonl")
    return [json.loads(line)["step"] for line in open(path) if '"loss"' in line] if os.path.exists(path) else []


def kill_when(proc, done, timeout=300):
    """SIGKILL the process (and its children: torchrun's workers) as soon as `done()` holds. Returns whether it
    was still running, i.e. whether this was an interruption at all."""
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None and not done():
        time.sleep(0.01)
    alive = proc.poll() is None
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    return alive


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
def test_resume_from_each_checkpoint_is_bit_identical(reference, tmp_path, tiny_model_dir, nli_dir, at, capsys):
    out = tmp_path / "resumed"
    os.makedirs(out)
    shutil.copytree(os.path.join(reference, f"checkpoint-{at}"), out / f"checkpoint-{at}")
    assert run_in_process(flags(tiny_model_dir, nli_dir, out, "--resume")) is None
    assert f"resumed from {out / f'checkpoint-{at}'} (step {at} of 6)" in capsys.readouterr().out
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
    """A real interruption: SIGKILL once step 3 is logged (checkpoint-2 exists), then the same command + --resume."""
    out = tmp_path / "killed"
    proc = start_script("train_mnr.py", *flags(tiny_model_dir, nli_dir, out), OMP_NUM_THREADS=THREADS,
                        start_new_session=True)
    assert kill_when(proc, lambda: len(logged_steps(out)) >= 3), "the run ended before it could be killed"
    assert not (out / "model.safetensors").exists() and len(logged_steps(out)) < 6
    assert run_in_process(flags(tiny_model_dir, nli_dir, out, "--resume")) is None
    assert_identical(weights(out), weights(reference))
    assert logged_steps(out) == [1, 2, 3, 4, 5, 6]  # the log holds each step once


def torchrun(*args):
    return [*("-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"), "train_mnr.py", *args]


def test_resume_under_torchrun_after_kill_9_is_bit_identical(tmp_path, tiny_model_dir, nli_dir):
    """2 processes (gloo): killed after checkpoint-4, resumed with 2 processes -> the uninterrupted run's weights.
    Each process restores its own dropout stream, so dropout stays on."""
    whole = tmp_path / "whole"
    assert finish(start_script(*torchrun(*flags(tiny_model_dir, nli_dir, whole)), OMP_NUM_THREADS="1")).returncode == 0
    out = tmp_path / "killed"
    proc = start_script(*torchrun(*flags(tiny_model_dir, nli_dir, out)), OMP_NUM_THREADS="1", start_new_session=True)
    assert kill_when(proc, lambda: checkpoint.checkpoints(out)[-1:] == [str(out / "checkpoint-4")]), \
        "the run ended before it could be killed"
    assert not (out / "model.safetensors").exists()
    resumed = finish(start_script(*torchrun(*flags(tiny_model_dir, nli_dir, out, "--resume")), OMP_NUM_THREADS="1"))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from" in resumed.stdout and "(step 4 of 6)" in resumed.stdout
    assert_identical(weights(out), weights(whole))
    assert logged_steps(out) == [1, 2, 3, 4, 5, 6]


def test_resume_with_other_hyperparameters_is_refused(reference, tmp_path, tiny_model_dir, nli_dir):
    out = tmp_path / "resumed"
    shutil.copytree(reference, out)
    message = run_in_process(flags(tiny_model_dir, nli_dir, out, "--resume", "--seed", "7"))
    assert message.startswith("error:") and "--seed 7" in message and "written with 42" in message


def test_resume_without_checkpoint_says_to_start_over(tmp_path, tiny_model_dir, nli_dir):
    message = run_in_process(flags(tiny_model_dir, nli_dir, tmp_path / "empty", "--resume"))
    assert message.startswith("error:") and "no complete checkpoint" in message
    assert "without --resume to start over" in message


def poisoned_at(n):
    """mnr_loss, but NaN on the n-th call: what a too-high learning rate produces."""
    calls = []

    def loss(*args, **kwargs):
        calls.append(1)
        value = train_mnr.mnr_loss(*args, **kwargs)
        return value * float("nan") if len(calls) == n else value
    return loss


def test_nan_loss_stops_and_newest_checkpoint_still_loads(tmp_path, tiny_model_dir, nli_dir):
    out = tmp_path / "nan"
    args = train_mnr.parse_args(flags(tiny_model_dir, nli_dir, out, "--max-steps", "8"))
    with pytest.raises(FloatingPointError, match=r"step 5: the loss is nan while every weight is finite.*scale"):
        train_mnr.train(args, loss_fn=poisoned_at(5))
    newest = checkpoint.checkpoints(out)[-1]
    assert newest.endswith("checkpoint-4")
    model, _ = train_mnr.load_model(newest)
    state = torch.load(os.path.join(newest, checkpoint.STATE_FILE), weights_only=True)
    assert state["step"] == 4 and sum(p.numel() for p in model.parameters()) > 0
    assert not (out / "model.safetensors").exists()  # no final model from a failed run
    # The command line names the checkpoint to resume from (in a folder of its own: `out` now holds an
    # interrupted run, which a new run without --resume or --overwrite may not write into).
    again = tmp_path / "nan-again"
    with pytest.raises(SystemExit) as exit_info:
        train_mnr.main(train_mnr.parse_args(flags(tiny_model_dir, nli_dir, again, "--max-steps", "8")),
                       loss_fn=poisoned_at(5))
    assert str(exit_info.value.code).startswith("error: step 5: the loss is nan")
    assert f"--resume to continue from {again / 'checkpoint-4'}" in str(exit_info.value.code)


@pytest.mark.parametrize("after_checkpoint", [False, True])
def test_ctrl_c_exits_130_and_names_what_to_run(tmp_path, tiny_model_dir, nli_dir, after_checkpoint):
    """SIGINT during the run: exit status 130, no traceback, and a next step that works."""
    out = tmp_path / "interrupted"
    proc = start_script("train_mnr.py", *flags(tiny_model_dir, nli_dir, out, "--max-steps", "400"),
                        OMP_NUM_THREADS="1", start_new_session=True)
    deadline = time.time() + 300
    ready = (lambda: checkpoint.checkpoints(out)) if after_checkpoint else (lambda: os.path.exists(out))
    while time.time() < deadline and proc.poll() is None and not ready():
        time.sleep(0.01)
    assert proc.poll() is None, "the run ended before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    result = finish(proc)
    assert result.returncode == 130 and "Traceback" not in result.stderr, result.stderr[-2000:]
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith("interrupted: nothing is half-written")
    if after_checkpoint:
        assert "run the same command with --resume to continue from" in message and "checkpoint-" in message
    else:
        assert "no checkpoint was written yet" in message and "without --resume" in message


def test_failed_run_leaves_saved_model_untouched(reference, tmp_path, tiny_model_dir, nli_dir):
    out = tmp_path / "saved"
    shutil.copytree(reference, out)
    before = weights(out)
    assert run_in_process(flags(tiny_model_dir, str(tmp_path / "missing.tsv"), out)).startswith("error:")
    assert_identical(weights(out), before)
