"""Files written so that a crash, a full disk or Ctrl-C never leaves one half-written that looks whole.

Everything is written under a temporary name in the destination's own folder (so the final rename stays on one
filesystem and is atomic) and renamed into place only once complete.
"""
import contextlib
import json
import os
import shutil
import tempfile

from mnr.errors import SaveError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the repository


def read_json(path, default):
    """A JSON file's content, or `default` when there is no such file."""
    if not os.path.isfile(path):
        return default
    with open(path) as f:
        return json.load(f)


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=2)


def write_json_atomic(path, obj):
    """`path` holds either its old content or all of `obj`, never a part."""
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        write_json(tmp, obj)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def temporary_folder(parent, name):
    return tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=parent)  # hidden, and never named like a result


@contextlib.contextmanager
def removed_on_failure(tmp, failure):
    """Write into the temporary folder `tmp` inside this block: if anything fails, `tmp` is removed, so nothing
    half-written is left; an OSError (disk full, no permission) becomes one SaveError line, `failure` with the
    system's reason in place of {reason}."""
    try:
        yield
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise SaveError(failure.format(reason=e.strerror or e)) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


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


def repo_relative(text, model=None):
    """A path or command as results files show it: relative to the repository, and `model` (the packaged
    MiniLM's folder, which differs from machine to machine) as $MINILM."""
    if model:
        text = text.replace(model, "$MINILM")
    return text.replace(ROOT + os.sep, "")
