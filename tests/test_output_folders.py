"""Nothing of the user's is lost: a run writes only into a folder that is new, empty or holds a model of ours; the
earlier model, its log and its card stay whole until the new model replaces them in one atomic step; a second run
into a folder in use is refused; whatever stops a run (an error, Ctrl-C, kill -9, a full disk), the folder holds
the earlier model with its own log or the new one with its own."""
import hashlib
import json
import os
import resource
import signal
import subprocess
import sys
import time

import pytest

import mine_negatives
import train_mnr
from conftest import ROOT, finish, run_in_process, script_env, start_script
from mnr import outdir


def flags(model, data, out, *extra):
    return ["--model-name", model, "--nli-data", data, "--max-steps", "3", "--batch-size", "8",
            *(["--output-dir", str(out)] if out is not None else []), *extra]


def snapshot(folder):
    """Every file under `folder` (dot-files and .git included) -> {relative path: sha256}."""
    found = {}
    for root, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                found[os.path.relpath(path, folder)] = hashlib.sha256(f.read()).hexdigest()
    return found


def user_folder(path):
    """A folder of the user's: notes, and a git repository."""
    os.makedirs(path / ".git" / "objects", exist_ok=True)
    (path / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (path / ".git" / "objects" / "ab").write_bytes(os.urandom(64))
    (path / "mynotes.txt").write_text("what I tried on Tuesday\n")
    return snapshot(path)


def siblings(out):
    return sorted(e for e in os.listdir(os.path.dirname(os.path.abspath(out))) if e.startswith(f".{out.name}."))


@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]])
def test_a_users_folder_is_refused_and_untouched(tmp_path, tiny_model_dir, nli_dir, overwrite):
    """`--output-dir .` in a clone, and the default output/mnr holding a user's file: refused at start, even with
    --overwrite, the first foreign file named; every file byte for byte as it was."""
    clone = tmp_path / "clone"
    before = user_folder(clone)
    message = run_in_process(flags(tiny_model_dir, nli_dir, clone, *overwrite))
    assert message.startswith(f"error: --output-dir {clone}: holds files not written by these scripts (first: .git)")
    assert snapshot(clone) == before and sorted(os.listdir(clone)) == [".git", "mynotes.txt"]

    default = tmp_path / "project" / "output" / "mnr"  # train_mnr.py's OUTPUT_DIR, relative to where it runs
    os.makedirs(default)
    (default / "mynotes.txt").write_text("mine\n")
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "train_mnr.py"), *flags(tiny_model_dir, nli_dir, None),
                           *overwrite], cwd=tmp_path / "project", env=script_env(), capture_output=True, text=True)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("error: --output-dir output/mnr: holds files not written")
    assert "(first: mynotes.txt)" in proc.stderr
    assert os.listdir(default) == ["mynotes.txt"] and (default / "mynotes.txt").read_text() == "mine\n"


def test_a_file_the_user_adds_during_the_run_survives_the_swap(tmp_path, tiny_model_dir, nli_dir):
    """A file put into the folder while the run trains is moved into the new model's folder, never deleted."""
    out = tmp_path / "out"
    assert run_in_process(flags(tiny_model_dir, nli_dir, out)) is None
    calls = []

    def loss_that_watches_a_user(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            (out / "mynotes.txt").write_text("written mid-run\n")
        return train_mnr.mnr_loss(*args, **kwargs)

    train_mnr.train(train_mnr.parse_args(flags(tiny_model_dir, nli_dir, out, "--overwrite", "--seed", "7")),
                    loss_fn=loss_that_watches_a_user)
    assert (out / "mynotes.txt").read_text() == "written mid-run\n"
    assert json.load(open(out / "training_config.json"))["SEED"] == 7
    assert siblings(out) == [] and outdir.LOCK not in os.listdir(out)


def test_an_existing_model_needs_overwrite(tmp_path, tiny_model_dir, nli_dir):
    out = tmp_path / "out"
    assert run_in_process(flags(tiny_model_dir, nli_dir, out)) is None
    before = snapshot(out)
    message = run_in_process(flags(tiny_model_dir, nli_dir, out, "--seed", "1"))
    assert message == (f"error: --output-dir {out}: already holds a model saved by these scripts; give another "
                       "--output-dir, or --overwrite to replace it")
    assert snapshot(out) == before  # the refused run wrote nothing, its log included
    assert run_in_process(flags(tiny_model_dir, nli_dir, out, "--seed", "1", "--overwrite")) is None
    after = snapshot(out)
    assert after["model.safetensors"] != before["model.safetensors"]
    assert json.load(open(out / "training_config.json"))["SEED"] == 1
    assert [json.loads(line)["step"] for line in open(out / "train_log.jsonl")] == [1, 2, 3]  # its own log only
    assert sorted(json.load(open(out / outdir.MANIFEST))["files"]) == sorted(set(os.listdir(out)))
    assert siblings(out) == []


def test_an_interrupted_run_leaves_the_earlier_model_whole(tmp_path, tiny_model_dir, nli_dir, capsys):
    """Ctrl-C at step 2 of a run with --overwrite: the earlier model, log and card are byte for byte as they were;
    the next run says what it cleared."""
    out = tmp_path / "out"
    assert run_in_process(flags(tiny_model_dir, nli_dir, out)) is None
    before = snapshot(out)

    def interrupted(*args, **kwargs):
        if interrupted.calls == 1:
            raise KeyboardInterrupt
        interrupted.calls += 1
        return train_mnr.mnr_loss(*args, **kwargs)
    interrupted.calls = 0
    with pytest.raises(KeyboardInterrupt):
        train_mnr.train(train_mnr.parse_args(flags(tiny_model_dir, nli_dir, out, "--overwrite", "--seed", "3")),
                        loss_fn=interrupted)
    now = snapshot(out)
    assert {k: v for k, v in now.items() if k in before} == before
    assert set(now) - set(before) <= {outdir.IN_PROGRESS_LOG, outdir.LOCK}
    capsys.readouterr()
    assert run_in_process(flags(tiny_model_dir, nli_dir, out, "--overwrite")) is None
    assert f"removed the earlier run's {outdir.IN_PROGRESS_LOG} (--overwrite)" in capsys.readouterr().err


def test_a_kill_right_after_the_exchange_leaves_the_new_model(tmp_path, tiny_model_dir, nli_dir, monkeypatch, capsys):
    """The swap is one atomic exchange: stopped just after it, OUTPUT_DIR is the complete new model and the earlier
    one waits beside it, cleared (its user files moved across) by the next run."""
    out = tmp_path / "out"
    assert run_in_process(flags(tiny_model_dir, nli_dir, out)) is None

    def loss_while_a_user_writes(*args, **kwargs):
        (out / "notes.md").write_text("mine\n")  # the user's, written into the folder while the run trains
        return train_mnr.mnr_loss(*args, **kwargs)

    def killed(folder, home):
        raise KeyboardInterrupt
    monkeypatch.setattr(outdir, "discard", killed)
    with pytest.raises(KeyboardInterrupt):
        train_mnr.train(train_mnr.parse_args(flags(tiny_model_dir, nli_dir, out, "--overwrite", "--seed", "5")),
                        loss_fn=loss_while_a_user_writes)
    monkeypatch.undo()
    assert not (out / "notes.md").exists()  # it went with the earlier folder, which now waits beside OUTPUT_DIR
    assert json.load(open(out / "training_config.json"))["SEED"] == 5  # the new model, complete
    assert len(siblings(out)) == 1  # the earlier one, beside it
    capsys.readouterr()
    assert run_in_process(flags(tiny_model_dir, nli_dir, out, "--overwrite", "--seed", "6")) is None
    assert "left by an interrupted save" in capsys.readouterr().err
    assert siblings(out) == [] and (out / "notes.md").read_text() == "mine\n"


def test_a_second_run_into_a_folder_in_use_is_refused(tmp_path, tiny_model_dir, nli_dir):
    out = tmp_path / "out"
    other = subprocess.Popen([sys.executable, "-c", "import sys, time; from mnr import outdir; "
                              f"outdir.claim({str(out)!r}); print('held', flush=True); time.sleep(60)"],
                             cwd=ROOT, env=script_env(), stdout=subprocess.PIPE, text=True)
    try:
        assert other.stdout.readline().strip() == "held"
        message = run_in_process(flags(tiny_model_dir, nli_dir, out))
        assert message == (f"error: --output-dir {out}: in use by another run (pid {other.pid}); wait for it to end, "
                           "or give another --output-dir")
    finally:
        other.kill()
        other.wait()


def test_a_killed_runs_lock_is_taken_over(tmp_path, tiny_model_dir, nli_dir, capsys):
    out = tmp_path / "out"
    os.makedirs(out)
    (out / outdir.LOCK).write_text("999999\n")  # what kill -9 leaves: the file, with no process holding it
    assert run_in_process(flags(tiny_model_dir, nli_dir, out)) is None
    assert "taking over the lock left by run 999999" in capsys.readouterr().err
    assert outdir.LOCK not in os.listdir(out)


def test_kill_9_mid_run_then_resume(tmp_path, tiny_model_dir, nli_dir):
    """kill -9 of an --overwrite run after its first checkpoint: the earlier model and its log stay; --resume
    finishes the new run, whose log then replaces the earlier one with the model."""
    out = tmp_path / "out"
    assert run_in_process(flags(tiny_model_dir, nli_dir, out)) is None
    before = snapshot(out)
    proc = start_script("train_mnr.py", *flags(tiny_model_dir, nli_dir, out, "--overwrite", "--max-steps", "200",
                                               "--save-every", "2"), start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and not os.path.isdir(out / "checkpoint-2"):
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert {k: v for k, v in snapshot(out).items() if k in before} == before
    resumed = finish(start_script("train_mnr.py", *flags(tiny_model_dir, nli_dir, out, "--max-steps", "200",
                                                         "--save-every", "2", "--resume")))
    assert resumed.returncode == 0, resumed.stderr
    steps = [json.loads(line)["step"] for line in open(out / "train_log.jsonl")]
    assert steps == list(range(1, 201))  # the shipped sample holds 326 batches of 8: 200 fit in both


def limited_file_size(n_bytes):
    return lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (n_bytes, n_bytes))


def test_full_disk_while_logging_is_one_line_and_keeps_the_earlier_model(tmp_path, tiny_model_dir, nli_dir):
    out = tmp_path / "out"
    assert run_in_process(flags(tiny_model_dir, nli_dir, out)) is None
    before = snapshot(out)
    proc = subprocess.run([sys.executable, "train_mnr.py", *flags(tiny_model_dir, nli_dir, out, "--overwrite",
                                                                   "--max-steps", "60")],
                          cwd=ROOT, env=script_env(), capture_output=True, text=True,
                          preexec_fn=limited_file_size(2048))  # a log of ~25 lines fills this "disk"
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith(
        f"error: {out / outdir.IN_PROGRESS_LOG}: could not write the training log (File too large)")
    assert {k: v for k, v in snapshot(out).items() if k in before} == before


def test_mine_negatives_on_a_full_disk(tmp_path, tiny_model_dir, nli_dir):
    """A file-size limit (ulimit -f) stops the table's write: one line, and no half table under any name."""
    import data_prep
    pairs = data_prep.make_rows(data_prep.load_nli(nli_dir), False)[:200]
    data = tmp_path / "data" / "pairs.tsv"
    os.makedirs(data.parent)
    data.write_text("anchor\tpositive\n" + "".join(f"{a}\t{p}\n" for a, p in pairs))
    mine = ["mine_negatives.py", "--model-name", tiny_model_dir, "--train-data", str(data), "--corpus", str(data),
            "--relative-margin", "0", "--num-negatives", "1"]
    warm = subprocess.run([sys.executable, *mine, "--output", str(data.parent / "warm.tsv")], cwd=ROOT,
                          env=script_env(), capture_output=True, text=True)  # the datasets cache, written once
    assert warm.returncode == 0 and os.path.getsize(data.parent / "warm.tsv") > 16 * 1024, warm.stderr
    table = tmp_path / "out" / "negatives.tsv"
    os.makedirs(table.parent)
    proc = subprocess.run([sys.executable, *mine, "--output", str(table)], cwd=ROOT, env=script_env(),
                          capture_output=True, text=True, preexec_fn=limited_file_size(16 * 1024))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (f"error: {table}: could not write the table (File too large); "
                                                    "nothing was written")
    assert os.listdir(table.parent) == []  # no temporary file left either


def test_mine_negatives_never_overwrites_a_file_it_did_not_write(tmp_path):
    table = tmp_path / "mine.tsv"
    table.write_text("my own table\n")
    args = ["--model-name", "x", "--nli-data", "y", "--output", str(table)]
    with pytest.raises(mine_negatives.ConfigError, match="exists; give another --output, or --overwrite"):
        mine_negatives.check_output(mine_negatives.parse_args(args))
    with pytest.raises(mine_negatives.ConfigError, match="not a table mine_negatives.py wrote"):
        mine_negatives.check_output(mine_negatives.parse_args([*args, "--overwrite"]))
    assert table.read_text() == "my own table\n"


def test_output_folder_under_a_file(tmp_path, tiny_model_dir, nli_dir):
    (tmp_path / "afile").write_text("x")
    message = run_in_process(flags(tiny_model_dir, nli_dir, tmp_path / "afile" / "out"))
    assert message == f"error: --output-dir {tmp_path / 'afile' / 'out'}: cannot be created, {tmp_path / 'afile'} is a file"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_output_folder(tmp_path, tiny_model_dir, nli_dir):
    ro = tmp_path / "ro"
    os.makedirs(ro)
    os.chmod(ro, 0o555)
    message = run_in_process(flags(tiny_model_dir, nli_dir, ro / "out"))
    assert message == f"error: --output-dir {ro / 'out'}: {ro} is not writable by this user"
