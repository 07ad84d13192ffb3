"""Checkpoints: everything a bit-identical resume needs, one folder per step, and the resume itself.

OUTPUT_DIR/checkpoint-STEP is a loadable model folder (mnr/save.py) plus training_state.pt: optimiser, schedule,
step, the hyperparameters, and every process's RNG state (mnr/rng.py). Written under a temporary name and renamed
when complete, so a crash mid-write never leaves a checkpoint that looks whole. A checkpoint damaged later (a
truncated copy, a disk error) is found at --resume: the run continues from the newest intact one and says so.
"""
import hashlib
import os
import shutil
import sys

import torch

from mnr.errors import ResumeError, SaveError, first_line
from mnr import outdir
from mnr.files import follow_umask, removed_on_failure, temporary_folder
from mnr.save import write_model_files

STATE_FILE = "training_state.pt"
REQUIRED = ("model.safetensors", "config.json", STATE_FILE)
# Hyperparameters a resumed run may change: they decide where and how often things are written or scored,
# never what is computed.
RESUME_FREE = {"OUTPUT_DIR", "RESUME", "SAVE_EVERY", "KEEP_CHECKPOINTS", "STS_DATA", "EVAL_BEIR", "EVAL_EVERY", "DEVICE",
               "OVERWRITE"}
STATE_KEYS = ("step", "config", "optimizer", "scheduler", "rng")  # what training_state.pt must hold to resume


def rows_digest(rows):
    """A digest of the training rows themselves: the same path may hold other data by the time a run resumes."""
    digest = hashlib.sha256()
    for row in rows:
        digest.update("\t".join(row).encode("utf-8", "surrogatepass") + b"\n")
    return digest.hexdigest()[:16]


class DamagedCheckpoint(ResumeError):
    """A checkpoint file that exists but cannot be read."""


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


def save_checkpoint(output_dir, step, model, tokenizer, optimizer, scheduler, config, rng_states, keep, facts=None,
                    rows_digest=None, loss=None):
    """OUTPUT_DIR/checkpoint-STEP: a loadable model folder plus optimizer, scheduler, step and the dropout RNG
    states of every rank. Written under a temporary name and renamed when complete; the newest `keep` are kept.
    `facts`: what the training loop measured so far, for the model card; `rows_digest`: the training rows'
    (rows_digest), so a resume on other rows is refused; `loss`: the loss, whose state (a learned temperature)
    is saved when it is an nn.Module."""
    final = os.path.join(output_dir, f"checkpoint-{step}")
    tmp = temporary_folder(output_dir, f"checkpoint-{step}")
    with removed_on_failure(tmp, f"{final}: could not write the checkpoint ({{reason}}); the earlier checkpoints "
                                 "are untouched"):
        incomplete = write_model_files(model, tokenizer, tmp, config, dict(facts or {}, steps=step, path=final), final)
        if incomplete:
            raise SaveError(f"{final}: could not write the checkpoint's model files ({incomplete})")
        torch.save({"step": step, "config": config, "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(), "rng": rng_states, "rows_digest": rows_digest,
                    "loss": loss_state(loss)},
                   os.path.join(tmp, STATE_FILE))
        outdir.write_manifest(tmp)
        follow_umask(tmp)
        if os.path.exists(final):  # left by an earlier run of ours into the same folder: replace it
            shutil.rmtree(final)
        os.rename(tmp, final)
    for old in checkpoints(output_dir)[:-keep] if keep > 0 else []:
        shutil.rmtree(old)


def read_checkpoint(path):
    """The checkpoint's training state and weights, read whole before anything is restored -> (state, weights).
    A file that cannot be read (truncated, corrupted) is a ResumeError naming it."""
    from safetensors.torch import load_file
    files = {name: os.path.join(path, name) for name in (STATE_FILE, "model.safetensors")}
    try:
        state = torch.load(files[STATE_FILE], map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - a truncated zip, a bad pickle: the file is damaged, whatever the type
        raise DamagedCheckpoint(f"{files[STATE_FILE]}: damaged, cannot be read ({first_line(e, type(e).__name__)})") from None
    missing = [key for key in STATE_KEYS if not isinstance(state, dict) or key not in state]
    if missing:
        raise DamagedCheckpoint(f"{files[STATE_FILE]}: not a training state of these scripts (no "
                                f"{', '.join(missing)})")
    try:
        weights = load_file(files["model.safetensors"])
    except Exception as e:  # noqa: BLE001
        raise DamagedCheckpoint(f"{files['model.safetensors']}: damaged, cannot be read "
                          f"({first_line(e, type(e).__name__)})") from None
    return state, weights


def loss_state(loss):
    """The loss's own tensors (nn.Module parameters and buffers) -> a dict for training_state.pt; {} for a function."""
    if not isinstance(loss, torch.nn.Module):
        return {}
    return {k: v.detach().cpu().clone() for k, v in loss.state_dict().items()}


def load_checkpoint(path, model, optimizer, scheduler, config, rows_digest=None, loss=None):
    """Restore weights, optimizer, scheduler and the loss's own state from `path` in place -> (step, per-rank RNG
    states).

    Only safetensors and `weights_only` loading: a checkpoint cannot run code. Refuses (one line) a resume
    whose hyperparameters would compute something else than the run that wrote the checkpoint."""
    state, saved = read_checkpoint(path)
    for key in sorted(set(config) | set(state["config"])):
        if key not in RESUME_FREE and config.get(key) != state["config"].get(key):
            raise ResumeError(f"{path}: cannot resume with --{key.lower().replace('_', '-')} "
                              f"{config.get(key)!r}; the checkpoint was written with {state['config'].get(key)!r}")
    if rows_digest and state.get("rows_digest") and rows_digest != state["rows_digest"]:
        raise ResumeError(f"{path}: the training data ({config.get('TRAIN_DATA') or config.get('NLI_DATA')}) holds "
                          "other rows than the run that wrote this checkpoint; resume on the same data, or start "
                          "over with --overwrite")
    model = getattr(model, "module", model)
    # The file may hold more than the model: the start model's pooler, kept for AutoModel (mnr/save.py).
    wanted = model.state_dict().keys()
    if wanted - saved.keys():
        missing = sorted(wanted - saved.keys())
        raise ResumeError(f"{path}: model.safetensors lacks {len(missing)} of the model's weights "
                          f"({', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''})")
    model.load_state_dict({k: saved[k] for k in wanted}, strict=True)
    if loss_state(loss).keys() != state.get("loss", {}).keys():  # a loss with other parameters than the checkpoint's
        raise ResumeError(f"{path}: the loss holds {sorted(loss_state(loss)) or 'no parameters'}, the checkpoint "
                          f"{sorted(state.get('loss', {})) or 'none'}; resume with the loss that wrote it")
    if isinstance(loss, torch.nn.Module):
        loss.load_state_dict(state["loss"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    return state["step"], state["rng"]


def resume(path, output_dir, model, optimizer, scheduler, config, world, rows_digest=None, loss=None):
    """--resume (path "latest": the newest complete checkpoint in output_dir): restore weights, optimiser and
    schedule -> (step, every process's RNG state, the checkpoint's path). With "latest", a damaged checkpoint is
    passed over for the newest intact one, said on stderr; a damaged PATH given by name is an error."""
    candidates = checkpoints(output_dir)[::-1] if path == "latest" else [path]
    if not candidates or not os.path.isfile(os.path.join(candidates[0], STATE_FILE)):
        raise ResumeError(f"{candidates[0] if candidates else output_dir}: no complete checkpoint to resume from; "
                          "run the same command without --resume to start over")
    for i, candidate in enumerate(candidates):
        try:
            step, rng = load_checkpoint(candidate, model, optimizer, scheduler, config, rows_digest, loss)
            break
        except DamagedCheckpoint as e:
            if i == len(candidates) - 1:
                raise
            print(f"warning: {e}; resuming from the next newest, {candidates[i + 1]}", file=sys.stderr)
    if len(rng) != world:
        raise ResumeError(f"{candidate}: written by {len(rng)} process(es), resumed with {world}")
    return step, rng, candidate


def resume_advice(output_dir):
    """What an interrupted or failed run can continue from."""
    found = checkpoints(output_dir)
    if found:
        return f"run the same command with --resume to continue from {found[-1]}"
    return "no checkpoint was written yet: run the same command (without --resume) to start over"
