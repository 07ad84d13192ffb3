"""OUTPUT_DIR/train_log.jsonl: one JSON line per step (loss, learning rate, gradient norm, speed) and per score."""
import json
import os

import torch


def open_log(output_dir, start_step):
    """The JSONL metrics log. A resumed run drops what the interrupted run logged after its checkpoint."""
    os.makedirs(output_dir, exist_ok=True)
    path = os.path.join(output_dir, "train_log.jsonl")
    kept = []
    if start_step and os.path.exists(path):
        with open(path) as f:
            kept = [line for line in f if line.strip() and json.loads(line)["step"] <= start_step]
    log = open(path, "w")
    log.writelines(kept)
    return log


def write(log, record):
    log.write(json.dumps(record) + "\n")
    log.flush()


def log_step(log, step, loss, lr, grad_norm, pairs_per_s, device, false_negatives=None):
    record = {"step": step, "loss": loss, "lr": lr, "grad_norm": grad_norm.item(), "pairs_per_s": pairs_per_s}
    if false_negatives is not None:  # candidates the guide left out, summed over the global batch
        record["false_negatives"] = round(false_negatives)
    if device.type == "cuda":
        record["cuda_peak_gib"] = torch.cuda.max_memory_allocated(device) / 2 ** 30
    write(log, record)
