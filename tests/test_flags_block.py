"""The hyperparameter block cannot silently drop a constant (issue 28 §2): every UPPER_CASE constant between the
block's two marker lines is a flag, with or without a comment and across blank lines; one after the end marker is
not; a constant no flag can type, or a block without its end, is refused at start in one `error:` line.

Each test forks train_mnr.py as a user would (a copy in tmp_path with its block edited) and reads the copy's
flags: in-process for speed, and once as `python copy.py` for the exit status and stderr a user sees."""
import importlib.util
import itertools
import os

import pytest

from conftest import ROOT, run_script
from mnr.flags import BLOCK_END, BLOCK_START, config_of, new_parser

COPIES = itertools.count()


def fork(tmp_path, edit):
    """train_mnr.py copied to tmp_path with `edit(text)` applied -> the copy's path."""
    with open(os.path.join(ROOT, "train_mnr.py"), encoding="utf-8") as f:
        text = f.read()
    edited = edit(text)
    assert edited != text, "the edit found nothing to change: train_mnr.py's block has moved"
    path = tmp_path / "train_fork.py"
    path.write_text(edited, encoding="utf-8")
    return path


def insert_after(prefix, *new_lines):
    """An edit: `new_lines` right after the first line of the block starting with `prefix`."""
    def edit(text):
        lines = text.split("\n")
        at = next((i for i, line in enumerate(lines) if line.startswith(prefix)), None)
        return text if at is None else "\n".join(lines[:at + 1] + list(new_lines) + lines[at + 1:])
    return edit


def load(path):
    """The forked script as a module, imported under a name of its own (its __file__ is the copy)."""
    spec = importlib.util.spec_from_file_location(f"train_fork_{next(COPIES)}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def help_text(module):
    return " ".join(module.add_flags(new_parser(module.__doc__)).format_help().split())


def refusal(module):
    """The one-line message a refused block exits with."""
    with pytest.raises(SystemExit) as exit_info:
        module.parse_args([])
    message = str(exit_info.value.code)
    assert message.startswith("error: train_fork.py: ") and "\n" not in message, message
    return message


def test_a_constant_without_a_comment_is_a_flag(tmp_path):
    fork_ = load(fork(tmp_path, insert_after("SCALE = ", "MARGIN = 0.1", 'TAG = "a # b"',
                                             "WIDTH = 3", "                           # how wide the thing is")))
    args = fork_.parse_args(["--margin", "0.3"])
    assert args.margin == 0.3 and fork_.parse_args([]).margin == 0.1
    assert config_of(args)["WIDTH"] == 3 and fork_.parse_args(["--tag", "x"]).tag == "x"
    text = help_text(fork_)
    assert "--margin MARGIN (no comment) (default: 0.1)" in text, text
    # a `#` inside a string is not a comment; the next line's comment is the help of a constant without one
    assert "--tag TAG (no comment) (default: a # b)" in text, text
    assert "--width WIDTH how wide the thing is (default: 3)" in text, text
    assert text.index(" loss: ") < text.index("--margin MARGIN (no") < text.index(" optimisation: ")  # its header


def test_a_blank_line_in_the_block_keeps_every_constant_after_it(tmp_path):
    knob = insert_after("SCALE = ", "", "", "AFTER_BLANK = 7  # a knob written after a blank line")
    scratch = insert_after(BLOCK_START, "", "scratch = 1  # lower case: a variable, no flag")
    fork_ = load(fork(tmp_path, lambda text: scratch(knob(text)).replace("\n# optimisation\n", "\n\n# optimisation\n")))
    args = fork_.parse_args(["--after-blank", "8", "--batch-size", "4", "--precision", "fp32"])
    assert (args.after_blank, args.batch_size, args.precision) == (8, 4, "fp32")
    text = help_text(fork_)
    assert "--scratch" not in text
    for section in ("data:", "model:", "loss:", "optimisation:", "evaluation and output:", "system:"):
        assert f" {section} " in text, section


def test_a_constant_after_the_end_marker_is_not_a_flag(tmp_path):
    fork_ = load(fork(tmp_path, insert_after(BLOCK_END, "AFTER_BLOCK = 5  # a module constant, not a knob")))
    assert fork_.AFTER_BLOCK == 5 and "AFTER_BLOCK" not in config_of(fork_.parse_args([]))
    with pytest.raises(SystemExit) as exit_info:
        fork_.parse_args(["--after-block", "1"])
    assert exit_info.value.code == 2
    assert "PRECISION" in config_of(fork_.parse_args([]))  # the last constant before the marker still is one


def test_a_none_default_without_an_annotation_is_refused_at_start(tmp_path):
    path = fork(tmp_path, insert_after("SCALE = ", "FOO = None"))
    result = run_script(str(path), "--help", timeout=120)
    assert result.returncode == 1, result.stdout
    assert "Traceback" not in result.stderr and result.stderr.count("error:") == 1, result.stderr
    assert result.stderr.strip().splitlines()[-1] == \
        "error: train_fork.py: FOO = None needs an annotation, e.g. FOO: int | None = None"
    assert "usage:" not in result.stdout


def test_the_annotation_types_the_flag_whatever_the_default(tmp_path):
    fork_ = load(fork(tmp_path, insert_after("SCALE = ", "FLOOR: float = 0  # written as an int, meant as a float",
                                             "CAP: int | None = None")))
    args = fork_.parse_args(["--floor", "1e-6", "--cap", "3"])
    assert (args.floor, args.cap) == (1e-6, 3) and type(args.floor) is float


@pytest.mark.parametrize("lines, expected", [
    (['NAMES = ["a", "b"]  # a list'], "NAMES = ['a', 'b'] is a list, which no flag can parse"),
    (["SIZES: list[int] = [1, 2]  # a list"], "SIZES: list[int] cannot type a flag"),
    (["LIMIT: int  # an annotation and no value"], "LIMIT has no value: give it a default"),
    (["SCALE = 30.0  # twice"], "SCALE is set twice in the hyperparameter block"),
])
def test_a_constant_no_flag_can_take_is_refused_in_one_line(tmp_path, lines, expected):
    assert expected in refusal(load(fork(tmp_path, insert_after("SCALE = ", *lines))))


def test_a_block_without_its_end_marker_is_refused(tmp_path):
    fork_ = load(fork(tmp_path, lambda text: "\n".join(line for line in text.split("\n")
                                                        if not line.startswith(BLOCK_END))))
    assert f"has no end marker: add the line `{BLOCK_END}` after its last constant" in refusal(fork_)


def test_every_script_block_ends_with_its_marker():
    """The shipped scripts all close their block: without the marker they would not start."""
    for name in sorted(os.listdir(ROOT)):
        if name.endswith(".py"):
            with open(os.path.join(ROOT, name), encoding="utf-8") as f:
                lines = f.read().splitlines()
            if any(line.startswith(BLOCK_START) for line in lines):
                assert any(line.startswith(BLOCK_END) for line in lines), name
