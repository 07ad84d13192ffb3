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
from model_card import module_kind, read_json, write_model_card
from pooling import ST_POOLING_KEYS


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=2)


def _tmp_folder(parent, name):
    return tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=parent)  # hidden, and never named like a result


def follow_umask(folder):
    """Give `folder` and everything in it the modes the user's umask gives any file they write. Two writers make
    private files: mkdtemp (0700), and safetensors, which writes model.safetensors as a 0600 temporary file and
    renames it into place."""
    umask = os.umask(0)
    os.umask(umask)
    for root, _, files in os.walk(folder):
        os.chmod(root, 0o777 & ~umask)
        for name in files:
            os.chmod(os.path.join(root, name), 0o666 & ~umask)


def start_model_folder(name):
    """The start model (--model-name) on disk: the folder itself, or its snapshot in the local Hugging Face cache;
    None when it is in neither (the saved folder then holds only what training knows, as before)."""
    if os.path.isdir(name):
        return name
    from huggingface_hub import try_to_load_from_cache
    try:
        found = try_to_load_from_cache(name, "config.json")
    except ValueError:  # not a valid hub name either
        return None
    return os.path.dirname(found) if isinstance(found, str) else None


def modules_after_pooling(start):
    """The start model's sentence-transformers modules after Pooling (Normalize, Dense, ...) as listed in its
    modules.json, in order; [] when it has none."""
    modules = read_json(os.path.join(start, "modules.json"), [])
    kinds = [module_kind(m) for m in modules]
    return modules[kinds.index("Pooling") + 1:] if "Pooling" in kinds else []


def start_pooler(start, prefix):
    """The start model's pooler.* weights, unchanged. load_model drops BERT's pooler (no pooling here uses it), but
    `AutoModel.from_pretrained` of the saved folder builds one: without these it would be random, and reported
    missing. Keys saved from a task model (`bert.pooler...`) lose the base model's prefix."""
    files = [os.path.join(start, "model.safetensors")]
    index = read_json(os.path.join(start, "model.safetensors.index.json"), None)
    if index:
        files = sorted({os.path.join(start, shard) for shard in index["weight_map"].values()})
    pooler = {}
    if all(os.path.isfile(f) for f in files):
        from safetensors import safe_open
        for path in files:
            with safe_open(path, "pt") as f:
                pooler.update({k.removeprefix(prefix + "."): f.get_tensor(k) for k in f.keys()
                               if k.removeprefix(prefix + ".").startswith("pooler.")})
    elif os.path.isfile(os.path.join(start, "pytorch_model.bin")):
        state = torch.load(os.path.join(start, "pytorch_model.bin"), map_location="cpu", weights_only=True)
        pooler = {k.removeprefix(prefix + "."): v for k, v in state.items()
                  if k.removeprefix(prefix + ".").startswith("pooler.")}
    return pooler


# train_mnr.MAX_LENGTH's default, for callers that pass no facts["defaults"].
DEFAULT_MAX_LENGTH = 128


def sentence_bert_config(start, config, facts):
    """sentence_bert_config.json: the start model's, max_seq_length included, unless the run set MAX_LENGTH away
    from its default; then the run's. MAX_LENGTH is how much of each training sentence the model saw, not a limit
    on what it can encode: a default left alone says nothing, and the start model's limit (256 for MiniLM)
    keeps the saved model encoding long inputs as the start model did. A MAX_LENGTH the user chose is kept."""
    default = (facts or {}).get("defaults", {}).get("MAX_LENGTH", DEFAULT_MAX_LENGTH)
    st_config = {"max_seq_length": config["MAX_LENGTH"], "do_lower_case": False}
    st_config.update(read_json(os.path.join(start, "sentence_bert_config.json"), {}) if start else {})
    if config["MAX_LENGTH"] != default:
        st_config["max_seq_length"] = config["MAX_LENGTH"]
    return st_config


def write_model_files(model, tokenizer, folder, config, facts=None):
    """The files of a saved model: transformers weights (safetensors) and tokenizer, plus what
    sentence-transformers reads to rebuild the same pooling, so all three loaders give the same embeddings.
    What the start model had beyond the trained encoder is kept: its pooler weights and its modules after
    pooling (Normalize). Then the model card (model_card.py), which describes these files."""
    model = getattr(model, "module", model)  # unwrap DDP
    start = start_model_folder(config["MODEL_NAME"])
    state = model.state_dict()
    pooler = {k: v for k, v in start_pooler(start, model.base_model_prefix).items() if k not in state} if start else {}
    model.save_pretrained(folder, state_dict={**state, **pooler} if pooler else None, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    later = modules_after_pooling(start) if start else []
    for module in later:  # Normalize has no files; Dense has its weights and config
        if module.get("path") and os.path.isdir(os.path.join(start, module["path"])):
            shutil.copytree(os.path.join(start, module["path"]), os.path.join(folder, module["path"]))
    write_json(os.path.join(folder, "modules.json"), [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        *[dict(module, idx=i, name=str(i)) for i, module in enumerate(later, start=2)]])
    write_json(os.path.join(folder, "sentence_bert_config.json"), sentence_bert_config(start, config, facts))
    os.makedirs(os.path.join(folder, "1_Pooling"), exist_ok=True)
    write_json(os.path.join(folder, "1_Pooling", "config.json"),
               {"word_embedding_dimension": model.config.hidden_size, "pooling_mode_mean_sqrt_len_tokens": False,
                **{key: name == config["POOLING"] for name, key in ST_POOLING_KEYS.items()}})
    write_json(os.path.join(folder, "config_sentence_transformers.json"),
               {"similarity_fn_name": "cosine", "prompts": {}, "default_prompt_name": None})
    write_json(os.path.join(folder, "training_config.json"), config)
    write_model_card(folder, config, facts)


KEEP_PREFIXES = ("train_log", "checkpoint-")  # what a run keeps in OUTPUT_DIR besides the model itself


def save_model(model, tokenizer, output_dir, config, facts=None):
    """The final model, swapped in whole: written to a temporary sibling folder, then renamed over
    `output_dir`. A crash mid-save leaves the previous model as it was. The run's log and checkpoints in
    `output_dir` are carried over as hard links (no copy, and never absent from `output_dir` before the swap).
    `facts`: what the training loop measured, for the model card (model_card.write_model_card)."""
    facts = dict(facts or {}, path=output_dir)  # the card names the folder as the user typed it
    output_dir = os.path.abspath(output_dir)
    parent = os.path.dirname(output_dir)
    os.makedirs(parent, exist_ok=True)
    tmp = _tmp_folder(parent, os.path.basename(output_dir))
    try:
        write_model_files(model, tokenizer, tmp, config, facts)
        follow_umask(tmp)  # before the links below: they share their files' modes with the originals
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


def save_checkpoint(output_dir, step, model, tokenizer, optimizer, scheduler, config, rng_states, keep, facts=None):
    """OUTPUT_DIR/checkpoint-STEP: a loadable model folder plus optimizer, scheduler, step and the dropout RNG
    states (gradcache.rng_state) of every rank. Written under a temporary name and renamed when complete; the
    newest `keep` are kept. `facts`: what the training loop measured so far, for the model card."""
    final = os.path.join(output_dir, f"checkpoint-{step}")
    tmp = _tmp_folder(output_dir, f"checkpoint-{step}")
    try:
        write_model_files(model, tokenizer, tmp, config, dict(facts or {}, steps=step, path=final))
        torch.save({"step": step, "config": config, "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(), "rng": rng_states}, os.path.join(tmp, STATE_FILE))
        follow_umask(tmp)
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
    # The file may hold more than the model: the start model's pooler, kept for AutoModel (write_model_files).
    saved, wanted = load_file(os.path.join(path, "model.safetensors")), model.state_dict().keys()
    if wanted - saved.keys():
        missing = sorted(wanted - saved.keys())
        raise ResumeError(f"{path}: model.safetensors lacks {len(missing)} of the model's weights "
                          f"({', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''})")
    model.load_state_dict({k: saved[k] for k in wanted}, strict=True)
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


def log_step(log, step, loss, lr, grad_norm, pairs_per_s, device, false_negatives=None):
    record = {"step": step, "loss": loss, "lr": lr, "grad_norm": grad_norm.item(), "pairs_per_s": pairs_per_s}
    if false_negatives is not None:  # candidates the guide left out, summed over the global batch
        record["false_negatives"] = round(false_negatives)
    if device.type == "cuda":
        record["cuda_peak_gib"] = torch.cuda.max_memory_allocated(device) / 2 ** 30
    log.write(json.dumps(record) + "\n")
    log.flush()


def resume(path, output_dir, model, optimizer, scheduler, config, world):
    """--resume (path "latest": the newest complete checkpoint in output_dir): restore weights, optimiser and
    schedule -> (step, every process's RNG state, the checkpoint's path)."""
    found = checkpoints(output_dir)
    path = path if path != "latest" else (found[-1] if found else None)
    if path is None or not os.path.isfile(os.path.join(path, STATE_FILE)):
        raise ResumeError(f"{path or output_dir}: no complete checkpoint to resume from; "
                          "run the same command without --resume to start over")
    step, rng = load_checkpoint(path, model, optimizer, scheduler, config)
    if len(rng) != world:
        raise ResumeError(f"{path}: written by {len(rng)} process(es), resumed with {world}")
    return step, rng, path


def report_saved(output_dir, seconds):
    """Where the model is, and what checkpoints remain beside it (they are not needed to use the model)."""
    print(f"saved to {output_dir} (training took {seconds / 60:.1f} min)")
    for path in checkpoints(output_dir):
        size = sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)
        print(f"  checkpoint kept: {path} ({size / 2 ** 20:.0f} MB): delete it if you will not resume or inspect it")


def resume_advice(output_dir):
    """What an interrupted or failed run can continue from."""
    found = checkpoints(output_dir)
    if found:
        return f"run the same command with --resume to continue from {found[-1]}"
    return "no checkpoint was written yet: run the same command (without --resume) to start over"
