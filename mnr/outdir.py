"""Output folders: a run writes only into a folder that is new, empty, or holds nothing but a model of ours, and
it never deletes or overwrites a file it did not write.

What is ours is written down, not guessed: every saved model folder lists its own files in MANIFEST, and the few
files a running job keeps beside them have fixed names (the lock, the in-progress log, checkpoint-STEP folders).
Anything else in the folder is the user's: a run refuses to start in such a folder (or, with --resume, keeps it
where it is), and when the new model replaces an old one, the user's entries are moved across, never deleted.

The lifecycle of OUTPUT_DIR, as train_mnr.py drives it:
  claim()      at start, before the model loads: refuse a folder that is not ours (or ours but not to be
               replaced: --overwrite says it may be), take the lock, clear what an interrupted run left behind
  the run      writes only IN_PROGRESS_LOG and checkpoint-STEP folders into OUTPUT_DIR; the earlier model, its log
               and its card are untouched
  swap()       the complete new folder (written beside OUTPUT_DIR under a temporary name, mnr/save.py) takes
               OUTPUT_DIR's place in one atomic exchange: at every instant OUTPUT_DIR is the old model or the new
  release()    at exit: the lock goes, and a folder this run created and left empty goes with it
"""
import contextlib
import ctypes
import glob
import json
import os
import re
import shutil
import sys
import time

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; a second run into the same folder is then not detected
    fcntl = None

from mnr.errors import ConfigError

MANIFEST = "mnr_files.json"                 # in every saved folder: the entries this project wrote there
LOCK = ".mnr-lock"                          # held (flock) by the run writing into the folder; holds its pid
IN_PROGRESS_LOG = "train_log.in-progress.jsonl"  # the running job's log, renamed train_log.jsonl in the new model
INCOMPLETE = ".mnr-incomplete"              # in a temporary folder until it is complete: all of it is ours
CHECKPOINT = re.compile(r"^(checkpoint-\d+|\.checkpoint-\d+\.tmp-.+)$")
# The files our save writes, for folders saved before MANIFEST existed (they have training_config.json).
SAVED_NAMES = {"config.json", "model.safetensors", "model.safetensors.index.json", "tokenizer.json",
               "tokenizer_config.json", "special_tokens_map.json", "vocab.txt", "vocab.json", "merges.txt",
               "added_tokens.json", "spm.model", "sentencepiece.bpe.model", "tokenizer.model", "modules.json",
               "sentence_bert_config.json", "config_sentence_transformers.json", "training_config.json", "README.md",
               "train_log.jsonl", "chat_template.jinja"}
MODULE_FOLDER = re.compile(r"^\d+_[A-Za-z]+$")  # 1_Pooling, 2_Dense, 2_Normalize
HELD = []  # this process's claims, until released


def read_manifest(folder):
    try:
        with open(os.path.join(folder, MANIFEST)) as f:
            return set(json.load(f)["files"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_manifest(folder, extra=()):
    """List every entry of the complete folder `folder` (and `extra`, names about to be added) as ours."""
    names = sorted(set(os.listdir(folder)) - {INCOMPLETE, LOCK} | set(extra) | {MANIFEST})
    with open(os.path.join(folder, MANIFEST), "w") as f:
        json.dump({"written_by": "mnr-reference", "files": names}, f, indent=1)


def adopt(folder, *names):
    """Add `names` (files a script of ours wrote into a saved folder later, e.g. compare_runs' scores.json) to the
    folder's manifest, so a later --overwrite may replace them too."""
    listed = read_manifest(folder)
    if listed is not None:
        with open(os.path.join(folder, MANIFEST), "w") as f:
            json.dump({"written_by": "mnr-reference", "files": sorted(listed | set(names))}, f, indent=1)


def is_ours(folder, entry, listed):
    """Whether `entry` of `folder` was written by this project: named in the manifest (`listed`), a running job's
    file, a checkpoint, or, in a folder saved before manifests, one of the names our save writes."""
    if entry in (LOCK, IN_PROGRESS_LOG, MANIFEST, INCOMPLETE) or CHECKPOINT.match(entry):
        return True
    if listed is not None:
        return entry in listed
    legacy = os.path.isfile(os.path.join(folder, "training_config.json"))
    return legacy and (entry in SAVED_NAMES or MODULE_FOLDER.match(entry) is not None)


def foreign_entries(folder):
    """The entries of `folder` this project did not write, sorted (dot-files like .git included)."""
    listed = read_manifest(folder)
    return sorted(e for e in os.listdir(folder) if not is_ours(folder, e, listed))


def leftovers(output_dir):
    """Temporary folders an interrupted save of `output_dir` left beside it (mnr/save.py names them so)."""
    parent, name = os.path.split(os.path.abspath(output_dir))
    return sorted(glob.glob(os.path.join(glob.escape(parent), f".{glob.escape(name)}.tmp-*")))


def discard(folder, home):
    """Delete the folder `folder` that held a model of ours, after moving every entry we did not write into `home`
    (where the user will look for it). An entry that cannot move (the name is taken in `home`) keeps `folder`
    alive, renamed visibly, and is said. -> None, or the path the user's files were kept in."""
    if os.path.isfile(os.path.join(folder, INCOMPLETE)):  # a temporary folder: nothing in it but our own files
        shutil.rmtree(folder)
        return None
    kept = []
    for entry in foreign_entries(folder):
        target = os.path.join(home, entry)
        if os.path.isdir(home) and not os.path.lexists(target):
            os.rename(os.path.join(folder, entry), target)
        else:
            kept.append(entry)
    if not kept:
        shutil.rmtree(folder)
        return None
    keep_as = f"{os.path.abspath(home)}.previous-{time.strftime('%Y%m%d-%H%M%S')}"
    os.rename(folder, keep_as)
    print(f"warning: {keep_as}: kept, it holds files of yours ({', '.join(kept[:3])}) whose names the new model "
          "also uses", file=sys.stderr)
    return keep_as


def exchange(a, b):
    """Swap the folders `a` and `b` in one atomic step (Linux renameat2 RENAME_EXCHANGE): there is no instant
    at which `b` does not exist. Elsewhere, two renames; a crash between them is repaired by claim()."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        renameat2 = None
    if renameat2 is not None:
        renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
        at_cwd, rename_exchange = -100, 2
        if renameat2(at_cwd, os.fsencode(a), at_cwd, os.fsencode(b), rename_exchange) == 0:
            return
    aside = f"{a}.old"  # a is a .NAME.tmp-* folder: aside is a leftover claim() recognises
    os.rename(b, aside)
    os.rename(a, b)
    os.rename(aside, a)


def swap(tmp, output_dir):
    """The complete folder `tmp` becomes `output_dir` -> True when `tmp` now holds the earlier folder, for
    discard(). Whatever kills the process, `output_dir` is the old model or the new one, and a temporary folder
    left beside it is cleared by the next run's claim()."""
    os.remove(os.path.join(tmp, INCOMPLETE))
    if not os.path.lexists(output_dir):
        os.rename(tmp, output_dir)
        return False
    exchange(tmp, output_dir)
    return True


def _describe(folder, entries):
    if os.path.isfile(os.path.join(folder, "model.safetensors")) or "model.safetensors" in entries:
        return "a model saved by these scripts"
    found = [e for e in entries if CHECKPOINT.match(e) or e == IN_PROGRESS_LOG]
    return f"an interrupted run's files ({', '.join(found[:3]) or ', '.join(entries[:3])})"


def check(output_dir, overwrite=False, resume=False, flag="--output-dir"):
    """Refuse, in one line, an output folder this run may not write into: a file, a folder under a file, one that
    holds files not written by us (even with --overwrite: the first is named), or one that holds a model of ours
    when neither --overwrite nor --resume says it may be replaced or continued."""
    path = os.path.abspath(output_dir)
    if os.path.isfile(path):
        raise ConfigError(f"{flag} {output_dir}: is an existing file, not a folder")
    parent = path
    while not os.path.lexists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise ConfigError(f"{flag} {output_dir}: cannot be created, {parent} is a file")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"{flag} {output_dir}: {parent} is not writable by this user")
    if not os.path.isdir(path):
        return
    entries = sorted(set(os.listdir(path)) - {LOCK})
    if not entries:
        return
    foreign = foreign_entries(path)
    if foreign and not resume:
        raise ConfigError(f"{flag} {output_dir}: holds files not written by these scripts (first: {foreign[0]}); "
                          f"give another {flag} (--overwrite only replaces a folder that holds nothing but a model of "
                          "ours)")
    if not (overwrite or resume):
        hint = " (--resume continues it)" if any(CHECKPOINT.match(e) for e in entries) else ""
        raise ConfigError(f"{flag} {output_dir}: already holds {_describe(path, entries)}{hint}; give another "
                          f"{flag}, or --overwrite to replace it")


def claim(output_dir, overwrite=False, resume=False, flag="--output-dir"):
    """check(), then make the folder, take its lock and clear what an interrupted run left -> the claim, for
    release(). A second run into a folder in use is refused, naming the other run's pid; a lock whose run died
    (kill -9) is free again, and taking it over is said."""
    path = os.path.abspath(output_dir)
    for earlier in [c for c in HELD if c["path"] == path]:  # a run in this process that ended by an exception
        release(earlier)
    check(output_dir, overwrite, resume, flag)
    created = not os.path.isdir(path)
    try:
        os.makedirs(path, exist_ok=True)
        fd = os.open(os.path.join(path, LOCK), os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise ConfigError(f"{flag} {output_dir}: cannot write there ({e.strerror})") from None
    with os.fdopen(os.dup(fd)) as f:
        previous = f.read().strip()
    if fcntl is not None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise ConfigError(f"{flag} {output_dir}: in use by another run (pid {previous or 'unknown'}); wait for "
                              f"it to end, or give another {flag}") from None
        if previous:
            print(f"note: {output_dir}: taking over the lock left by run {previous}, which ended without releasing "
                  "it", file=sys.stderr)
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    half_written = [e for e in os.listdir(path) if e.startswith(".checkpoint-") and CHECKPOINT.match(e)]
    for entry in half_written:  # a checkpoint a kill stopped mid-write: never complete, never resumed from
        shutil.rmtree(os.path.join(path, entry))
        print(f"note: {os.path.join(output_dir, entry)}: removed, a checkpoint left half-written", file=sys.stderr)
    if overwrite and not resume:  # the earlier run's checkpoints and log would be taken for this run's
        stale = sorted(e for e in os.listdir(path) if CHECKPOINT.match(e) or e == IN_PROGRESS_LOG)
        for entry in stale:
            (shutil.rmtree if os.path.isdir(os.path.join(path, entry)) else os.remove)(os.path.join(path, entry))
        if stale:
            print(f"note: {output_dir}: removed the earlier run's {', '.join(stale)} (--overwrite)", file=sys.stderr)
    for leftover in leftovers(path):  # an interrupted save's temporary folder
        if leftover.endswith(".old") and not os.listdir(path):  # the two-rename swap stopped halfway: undo it
            os.rmdir(path)
            os.rename(leftover, path)
            print(f"note: {output_dir}: restored the earlier model, whose replacement was interrupted",
                  file=sys.stderr)
            continue
        kept = discard(leftover, path)
        print(f"note: {os.path.relpath(leftover)}: {'kept' if kept else 'removed'}, left by an interrupted save",
              file=sys.stderr)
    claim_ = {"path": path, "fd": fd, "created": created}
    HELD.append(claim_)
    return claim_


def release_all():
    """Every claim this process holds, released: the training script calls it however the run ends."""
    for claim_ in list(HELD):
        release(claim_)


def release(claim_):
    """The lock goes; a folder this run created and left empty goes too (a run refused or failed at start
    leaves nothing behind)."""
    if not claim_ or claim_ not in HELD:
        return
    HELD.remove(claim_)
    with contextlib.suppress(OSError):
        os.close(claim_["fd"])
    lock = os.path.join(claim_["path"], LOCK)
    with contextlib.suppress(OSError):
        with open(lock) as f:
            if f.read().strip() == str(os.getpid()):
                os.remove(lock)
    if claim_["created"]:
        with contextlib.suppress(OSError):
            os.rmdir(claim_["path"])  # only when empty
