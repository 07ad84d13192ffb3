"""Writing models to disk so that a crash never leaves a half-written folder that looks whole.

Everything is written under a temporary name in the destination's own folder (so the final rename stays on
one filesystem and is atomic) and swapped in only once complete.
"""
import json
import os
import shutil
import tempfile

import torch

from errors import ResumeError
from pooling import ST_POOLING_KEYS


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=2)


def _tmp_folder(parent, name):
    tmp = tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=parent)  # hidden, and never named like a result
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private; the final folder should read like any other
    return tmp


def write_model_files(model, tokenizer, folder, config):
    """The files of a saved model: transformers weights (safetensors) and tokenizer, plus what
    sentence-transformers reads to rebuild the same pooling, so all three loaders give the same embeddings."""
    model = getattr(model, "module", model)  # unwrap DDP
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    write_json(os.path.join(folder, "modules.json"), [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}])
    write_json(os.path.join(folder, "sentence_bert_config.json"),
               {"max_seq_length": config["MAX_LENGTH"], "do_lower_case": False})
    os.makedirs(os.path.join(folder, "1_Pooling"), exist_ok=True)
    write_json(os.path.join(folder, "1_Pooling", "config.json"),
               {"word_embedding_dimension": model.config.hidden_size, "pooling_mode_mean_sqrt_len_tokens": False,
                **{key: name == config["POOLING"] for name, key in ST_POOLING_KEYS.items()}})
    write_json(os.path.join(folder, "config_sentence_transformers.json"),
               {"similarity_fn_name": "cosine", "prompts": {}, "default_prompt_name": None})
    write_json(os.path.join(folder, "training_config.json"), config)


KEEP_PREFIXES = ("train_log", "checkpoint-")  # what a run keeps in OUTPUT_DIR besides the model itself


def save_model(model, tokenizer, output_dir, config):
    """The final model, swapped in whole: written to a temporary sibling folder, then renamed over
    `output_dir`. A crash mid-save leaves the previous model as it was. The run's log and checkpoints in
    `output_dir` are carried over as hard links (no copy, and never absent from `output_dir` before the swap)."""
    output_dir = os.path.abspath(output_dir)
    parent = os.path.dirname(output_dir)
    os.makedirs(parent, exist_ok=True)
    tmp = _tmp_folder(parent, os.path.basename(output_dir))
    try:
        write_model_files(model, tokenizer, tmp, config)
        if not os.path.isdir(output_dir):
            os.rename(tmp, output_dir)
            return
        for entry in os.listdir(output_dir):
            src, dst = os.path.join(output_dir, entry), os.path.join(tmp, entry)
            if entry.startswith(KEEP_PREFIXES) and not os.path.exists(dst):
                if os.path.isdir(src):
                    shutil.copytree(src, dst, copy_function=os.link)
                else:
                    os.link(src, dst)
        old = tempfile.mkdtemp(prefix=f".{os.path.basename(output_dir)}.old-", dir=parent)
        os.rename(output_dir, os.path.join(old, "model"))
        os.rename(tmp, output_dir)  # between these two renames (microseconds) output_dir does not exist
        shutil.rmtree(old)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


# ---- Checkpoints: everything a bit-identical resume needs, one folder per step ----------------------------

STATE_FILE = "training_state.pt"
REQUIRED = ("model.safetensors", "config.json", STATE_FILE)
# Hyperparameters a resumed run may change: they decide where and how often things are written or scored,
# never what is computed.
RESUME_FREE = {"OUTPUT_DIR", "RESUME", "SAVE_EVERY", "KEEP_CHECKPOINTS", "STS_DATA", "EVAL_EVERY", "DEVICE"}


def checkpoints(output_dir):
    """Complete checkpoint folders in `output_dir`, oldest first. A folder missing a required file is skipped."""
    if not os.path.isdir(output_dir):
        return []
    found = []
    for entry in os.listdir(output_dir):
        path = os.path.join(output_dir, entry)
        step = entry.removeprefix("checkpoint-")
        if step.isdigit() and all(os.path.isfile(os.path.join(path, f)) for f in REQUIRED):
            found.append((int(step), path))
    return [path for _, path in sorted(found)]


def save_checkpoint(output_dir, step, model, tokenizer, optimizer, scheduler, config, rng_states, keep):
    """OUTPUT_DIR/checkpoint-STEP: a loadable model folder plus optimizer, scheduler, step and the dropout RNG
    states (gradcache.rng_state) of every rank. Written under a temporary name and renamed when complete; the
    newest `keep` are kept."""
    final = os.path.join(output_dir, f"checkpoint-{step}")
    tmp = _tmp_folder(output_dir, f"checkpoint-{step}")
    try:
        write_model_files(model, tokenizer, tmp, config)
        torch.save({"step": step, "config": config, "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(), "rng": rng_states}, os.path.join(tmp, STATE_FILE))
        if os.path.exists(final):  # left by an earlier run into the same folder: replace it
            shutil.rmtree(final)
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for old in checkpoints(output_dir)[:-keep] if keep > 0 else []:
        shutil.rmtree(old)


def load_checkpoint(path, model, optimizer, scheduler, config):
    """Restore weights, optimizer and scheduler from `path` in place -> (step, per-rank RNG states).

    Only safetensors and `weights_only` loading: a checkpoint cannot run code. Refuses (one line) a resume
    whose hyperparameters would compute something else than the run that wrote the checkpoint."""
    from safetensors.torch import load_file
    state = torch.load(os.path.join(path, STATE_FILE), map_location="cpu", weights_only=True)
    for key in sorted(set(config) | set(state["config"])):
        if key not in RESUME_FREE and config.get(key) != state["config"].get(key):
            raise ResumeError(f"{path}: cannot resume with --{key.lower().replace('_', '-')} "
                            f"{config.get(key)!r}; the checkpoint was written with {state['config'].get(key)!r}")
    model = getattr(model, "module", model)
    model.load_state_dict(load_file(os.path.join(path, "model.safetensors")), strict=True)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    return state["step"], state["rng"]


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
