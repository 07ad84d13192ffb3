"""OUTPUT_DIR/train_log.jsonl: one JSON line per step (loss, learning rate, gradient norm, speed) and per score;
and the lines a run prints about itself at the start."""
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
