"""Files written so that a crash, a full disk or Ctrl-C never leaves one half-written that looks whole.

Everything is written under a temporary name in the destination's own folder (so the final rename stays on one
filesystem and is atomic) and renamed into place only once complete.
"""
import ast
import contextlib
import hashlib
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
    # A folder beside the repository (../shared/data, made absolute by a script) reads as the user typed it.
    return text.replace(ROOT + os.sep, "").replace(os.path.dirname(ROOT) + os.sep, ".." + os.sep)


def without_docstrings(tree):
    """`tree` with the docstring of its module, classes and functions removed (in place); ast.dump then sees no
    comments or line numbers either."""
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and body and \
                isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) and \
                isinstance(body[0].value.value, str):
            node.body = body[1:] or [ast.Pass()]
    return tree


def code_files(scripts, root=ROOT):
    """The repository's Python files (paths relative to `root`) that `scripts` run: each script and every module of this repository it
    imports, followed transitively. Derived from the code itself, so a new module can never be left out."""
    seen, todo = set(), list(scripts)
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        with open(os.path.join(root, path), encoding="utf-8") as f:
            tree = ast.parse(f.read())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            else:
                continue
            for name in names:
                for candidate in (name.replace(".", "/") + ".py", name.replace(".", "/") + "/__init__.py"):
                    if os.path.isfile(os.path.join(root, candidate)):
                        todo.append(candidate)
    return sorted(seen)


def code_version(scripts, root=ROOT):
    """A digest of the code `scripts` run (code_files), as Python parses it: compare_runs.py reuses a model trained,
    or a score computed, only by the same code. Comments, docstrings and layout are left out, so an edit to the
    teaching text keeps every cached run; a change to what runs (a statement, a constant) retrains."""
    digest = hashlib.sha256()
    for name in code_files(scripts, root):
        digest.update(name.encode())
        with open(os.path.join(root, name), encoding="utf-8") as f:
            digest.update(ast.dump(without_docstrings(ast.parse(f.read()))).encode())
    return digest.hexdigest()[:16]
