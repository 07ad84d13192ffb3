"""A preset's record of its finished runs, committed beside its table (results/NAME/runs/): per run, what made it
(command, code digest, inputs), how long it took and on which machine, its scores and its training log, but not
the model. compare_runs.py writes a run's record as soon as the run is trained and scored.

Why: a table may take longer than one sitting (the scifact preset: 36 trainings, hours of CPU), and the machine of
the next sitting may keep nothing of output/ (a fresh clone, a CI-like box, a colleague's laptop). A run whose
record says it was made by the same command, the same code and from the same inputs, and was scored by the same
scoring code on the same data, is restored from its record instead of trained again: its folder gets the record's
command.json, scores.json and train_log.jsonl, which is all the table reads. A row that needs the weights (a soup
averages its runs) trains again the runs whose model is not here. Paths in a record are the results files' own
(relative, the packaged MiniLM as $MINILM), so a record made on one machine matches on another.
"""
import json
import os

from mnr.files import ROOT, read_json, write_json_atomic
from mnr.report import shown

RUNS = "runs"             # the records' folder, in the preset's results folder
RESTORED = ".mnr-restored"  # in a folder restored from a record: the files the restoring wrote (ours to clear)
IDENTITY = ("command", "code", "inputs")  # what made a run; "seconds" and "machine" only describe the sitting


def identity(stamp):
    """The part of a command.json stamp that says what made the folder (not when, how fast, or where)."""
    return None if stamp is None else {key: stamp[key] for key in IDENTITY if key in stamp}


def stamp_of(folder):
    """What made `folder` (its command.json, written by run_once: command, code, inputs; not the seconds it took or
    the machine, which differ from sitting to sitting); None if nothing here did."""
    return identity(read_json(os.path.join(ROOT, folder, "command.json"), None))


def portable(value, model):
    """`value` with every path as the results files show it: the same on every machine."""
    return json.loads(shown(json.dumps(value), model))


def path(runs_dir, folder):
    return os.path.join(runs_dir, os.path.basename(os.path.normpath(folder)) + ".json")


def keep(folder, runs_dir, model):
    """Record the trained and scored `folder` (its command.json, scores.json and train_log.jsonl) in `runs_dir`."""
    log = os.path.join(folder, "train_log.jsonl")
    lines = []
    if os.path.isfile(log):
        with open(log) as f:
            lines = [json.loads(line) for line in f if line.strip()]
    record = {"stamp": portable(read_json(os.path.join(folder, "command.json"), None), model),
              "scores": portable(read_json(os.path.join(folder, "scores.json"), None), model), "train_log": lines}
    os.makedirs(runs_dir, exist_ok=True)
    if read_json(path(runs_dir, folder), None) != record:
        write_json_atomic(path(runs_dir, folder), record)


def find(runs_dir, folder, made_by, key, model):
    """The record of `folder` if it was made as `made_by` says and scored with the scoring `key`, else None."""
    record = read_json(path(runs_dir, folder), None) if runs_dir else None
    if not record or identity(record["stamp"]) != portable(identity(made_by), model):
        return None
    return record if (record.get("scores") or {}).get("key") == portable(key, model) else None


def restore(folder, record, made_by, key):
    """Give `folder` (with no model in it) the files the table reads, from `record`; this machine's paths in the
    stamp and the scoring key, as a run trained here would have them."""
    os.makedirs(folder, exist_ok=True)
    sitting = {k: v for k, v in record["stamp"].items() if k not in IDENTITY}  # its seconds and machine
    write_json_atomic(os.path.join(folder, "command.json"), {**made_by, **sitting})
    write_json_atomic(os.path.join(folder, "scores.json"), {"key": key, "scores": record["scores"]["scores"]})
    with open(os.path.join(folder, "train_log.jsonl"), "w") as f:
        f.writelines(json.dumps(line) + "\n" for line in record["train_log"])
    write_json_atomic(os.path.join(folder, RESTORED), ["command.json", "scores.json", "train_log.jsonl"])


def clear(folder):
    """Remove what restore() wrote into `folder` (and the folder, if that leaves it empty): the run is about to be
    trained for real, its model needed."""
    written = read_json(os.path.join(folder, RESTORED), None)
    if written is None:
        return
    for name in written:
        if os.path.isfile(os.path.join(folder, name)):
            os.remove(os.path.join(folder, name))
    os.remove(os.path.join(folder, RESTORED))
    if not os.listdir(folder):
        os.rmdir(folder)


def machines(folders):
    """The machines the runs in `folders` were trained on (their command.json), in order of first appearance."""
    return list(dict.fromkeys(m for f in folders if (m := (read_json(os.path.join(f, "command.json"), {}) or {})
                                                         .get("machine"))))
