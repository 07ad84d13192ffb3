"""The errors a user can fix, and the one way every script reports them: `error: <one line>`, exit status 1.

A traceback tells a user where our code was; one line tells them what to change. Each kind names what is wrong:
  DataError    a data file or dataset (missing, empty, unreadable, wrong columns or labels, too small)
  ConfigError  a hyperparameter or flag (a non-positive learning rate, a batch that does not split evenly)
  ModelError   a model name or folder that holds no loadable model
  ResumeError  a checkpoint that cannot continue this run (missing, damaged, or written with other settings)
  SaveError    a model or checkpoint that could not be written (disk full, no permission, file too large)
"""
import contextlib
import sys


class InputError(Exception):
    """Bad or missing input. `exit_on_input_error` prints its message as one line and exits 1."""


class DataError(InputError):
    pass


class ConfigError(InputError):
    pass


class ModelError(InputError):
    pass


class ResumeError(InputError):
    pass


class SaveError(InputError):
    pass


def first_line(error, default=""):
    """The first non-empty line of an exception's message: library errors often run to many lines."""
    text = str(error).strip()
    return text.splitlines()[0] if text else default


@contextlib.contextmanager
def exit_on_input_error():
    """Scripts run their work inside this: an InputError becomes `error: ...` on stderr and exit status 1."""
    try:
        yield
    except InputError as e:
        sys.exit(f"error: {e}")
