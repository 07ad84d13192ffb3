"""The errors a user can fix, and the one way every script reports them: `error: <one line>`, exit status 1.

A traceback tells a user where our code was; one line tells them what to change. Each kind names what is wrong:
  DataError    a data file or dataset (missing, empty, unreadable, wrong columns or labels, too small)
  ConfigError  a hyperparameter or flag (a non-positive learning rate, a batch that does not split evenly)
  ModelError   a model name or folder that holds no loadable model
  ResumeError  a checkpoint that cannot continue this run (missing, or written with other settings)
"""
import contextlib
import difflib
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


def parse_flags(parser, argv=None):
    """`parser.parse_args(argv)`, but an unknown flag is named with the closest known one: --batchsize gets
    "did you mean --batch-size?". Exit status 2, as argparse's own usage errors."""
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        known = [option for action in parser._actions for option in action.option_strings]
        hints = [f"{flag} (did you mean {close[0]}?)" if (close := difflib.get_close_matches(flag.split("=")[0], known, 1))
                 else flag for flag in unknown]
        parser.error(f"unrecognized arguments: {' '.join(hints)}")
    return args
