"""The JSONL training log: one JSON line per step (loss, learning rate, gradient norm, speed) and per score;
and the lines a run prints about itself at the start.

While a run trains, its log is OUTPUT_DIR/train_log.in-progress.jsonl, beside the earlier model's own
train_log.jsonl, which stays as it was: the new log becomes the folder's train_log.jsonl only together with the new
model (mnr/save.py), so a folder's log always belongs to the model it holds."""
import json
import os
import sys

import torch

from mnr.errors import ResumeError, SaveError
from mnr.outdir import IN_PROGRESS_LOG


def kept_lines(path, start_step):
    """The lines of the log `path` up to `start_step` (what the checkpoint had seen). A last line cut short (the
    run was killed mid-write) is dropped and said; a damaged line before it is an error."""
    with open(path) as f:
        lines = [line for line in f if line.strip()]
    kept = []
    for i, line in enumerate(lines):
        try:
            record = json.loads(line)
        except ValueError:
            if i < len(lines) - 1:
                raise ResumeError(f"{path}: line {i + 1} is not JSON; the log is damaged") from None
            print(f"note: {path}: dropped its last line, cut short when the run was stopped", file=sys.stderr)
            continue
        if record.get("step", 0) <= start_step:
            kept.append(line if line.endswith("\n") else line + "\n")
    return kept


def open_log(output_dir, start_step):
    """This run's log, OUTPUT_DIR/train_log.in-progress.jsonl. A resumed run keeps what the interrupted run logged
    up to its checkpoint (from its in-progress log; a log written before in-progress logs existed, train_log.jsonl,
    is read but left as it is)."""
    path = os.path.join(output_dir, IN_PROGRESS_LOG)
    kept = []
    if start_step:
        source = next((p for p in (path, os.path.join(output_dir, "train_log.jsonl")) if os.path.exists(p)), None)
        kept = kept_lines(source, start_step) if source else []
    try:
        with open(path + ".tmp", "w") as f:
            f.writelines(kept)
        os.replace(path + ".tmp", path)  # the interrupted run's log is replaced only by a complete copy of its start
        log = open(path, "a")
    except OSError as e:
        raise SaveError(f"{path}: could not write the training log ({e.strerror})") from None
    return log


def write(log, record):
    """One line, flushed: a kill loses at most the line being written. A full disk is one error line."""
    try:
        log.write(json.dumps(record) + "\n")
        log.flush()
    except OSError as e:
        raise SaveError(f"{log.name}: could not write the training log ({e.strerror}); the "
                        "model that was in the folder before is untouched") from None


def log_step(log, step, loss, lr, grad_norm, pairs_per_s, device, false_negatives=None):
    record = {"step": step, "loss": loss, "lr": lr, "grad_norm": grad_norm.item(), "pairs_per_s": pairs_per_s}
    if false_negatives is not None:  # candidates the guide left out, summed over the global batch
        record["false_negatives"] = round(false_negatives)
    if device.type == "cuda":
        record["cuda_peak_gib"] = torch.cuda.max_memory_allocated(device) / 2 ** 30
    write(log, record)


def describe_run(config, defaults, rows, steps, world, device, precision_asked=None):
    """What a run prints before its first step: data, steps, the global batch and its in-batch negatives per query,
    device and precision, and every hyperparameter changed from `defaults` (both as {"BATCH_SIZE": 32, ...});
    PRECISION as the user gave it (`precision_asked`), not what "auto" became."""
    batch_size = config["BATCH_SIZE"]
    negatives = batch_size * (len(rows[0]) - 1) - 1
    typed = dict(config, PRECISION=precision_asked or config["PRECISION"])
    changed = [f"{k}={v}" for k, v in typed.items() if v != defaults.get(k)]
    return (f"{'triplets' if len(rows[0]) > 2 else 'pairs'}: {len(rows)}  steps: {steps}  global batch: "
            f"{batch_size} = {world} process(es) x {batch_size // world}  (each query against {negatives} in-batch "
            f"negatives)  device: {device}, {config['PRECISION']}\n"
            f"changed from the defaults: {', '.join(changed) or 'nothing'}")
