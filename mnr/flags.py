"""Command lines built from a script's hyperparameter block, so each knob's reason is written once.

Every script opens with a block of constants between two marker lines, grouped under short `# headers`, each
with a why-comment:

    # ---- hyperparameters: ...
    # optimisation
    BATCH_SIZE = 32            # each query has BATCH_SIZE - 1 in-batch negatives: the knob that matters most
    MAX_STEPS: int | None = None  # stop after this many steps (smoke runs); None: all of EPOCHS
    # ---- end of hyperparameters

`add_block_flags` reads that block from the script's own file and makes one flag per UPPER_CASE constant between
the markers: BATCH_SIZE -> --batch-size, its type from the annotation if there is one (`int | None` -> int), else
from the default, booleans as --flag/--no-flag, the comment as help, the default printed once, one --help section
per header (a comment line at column 0). The help is the constant's trailing comment, else the indented comment
line under it, else "(no comment)"; indented comment lines under a constant continue its help. Blank lines may
stand anywhere in the block; constants after the end marker are not flags. A block without its end marker, or a
constant no flag can type (None without an annotation, a list), is refused at start in one `error:` line, so an
edit never drops a flag silently. A script edited in place changes its flags' defaults too.
"""
import argparse
import ast
import difflib
import io
import os
import re
import tokenize
import types
import typing

from mnr.errors import ConfigError, exit_on_input_error

BLOCK_START = "# ---- hyperparameters"
BLOCK_END = "# ---- end of hyperparameters"
CONSTANT = re.compile(r"[A-Z][A-Z0-9_]*")  # an UPPER_CASE name
FLAG_TYPES = (bool, int, float, str)  # what argparse can make of a flag's text; bool as --flag/--no-flag
NO_COMMENT = "(no comment)"


def examples(doc):
    """The docstring's example commands: after its first line, the first run of paragraphs that hold indented
    (command) lines; a paragraph of prose before them (train_bidirectional.py's) is passed over."""
    paragraphs = re.split(r"\n\s*\n", doc.strip())[1:]
    shown = []
    for paragraph in paragraphs:
        if any(line.startswith("    ") for line in paragraph.splitlines()):
            shown.append(paragraph)
        elif shown:
            break
    return "examples:\n" + "\n\n".join(shown) if shown else None


def new_parser(doc):
    """A parser with the docstring's first line as description and its example commands after the flags.
    Abbreviated flags are refused: `--max-step 5` would otherwise silently mean --max-steps."""
    return argparse.ArgumentParser(description=doc.strip().splitlines()[0], epilog=examples(doc),
                                   formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)


def comments_of(source):
    """{line number: (column, text)} of every comment: tokenize, so a `#` inside a string is no comment."""
    return {token.start[0]: (token.start[1], token.string)
            for token in tokenize.generate_tokens(io.StringIO(source).readline) if token.type == tokenize.COMMENT}


def block_bounds(script, comments):
    """The line numbers of the block's two markers. Markers are comments at column 0, never text in a string."""
    def marker(text, after):
        return next((n for n, (column, comment) in sorted(comments.items())
                     if n > after and column == 0 and comment.startswith(text)), None)
    if (start := marker(BLOCK_START, 0)) is None:
        raise ConfigError(f"{script}: no hyperparameter block: open it with a line `{BLOCK_START}: ...`")
    if (end := marker(BLOCK_END, start)) is None:  # without it, where the block stops would be a guess
        raise ConfigError(f"{script}: the hyperparameter block has no end marker: add the line `{BLOCK_END}` "
                          "after its last constant")
    return start, end


def constant_names(statement):
    """The UPPER_CASE names a top-level statement assigns (`A = B = 1`, `A: int | None = None`, `A: int`)."""
    if isinstance(statement, ast.Assign):
        targets = statement.targets
    elif isinstance(statement, ast.AnnAssign):
        targets = [statement.target]
    else:
        return []
    return [node.id for target in targets for node in ast.walk(target)
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store) and CONSTANT.fullmatch(node.id)]


def read_block(path):
    """A script's hyperparameter block -> [(header, [(NAME, why), ...]), ...] in file order; header None for
    constants before any header. ast finds the constants, however they are written; tokenize finds the comments."""
    script = os.path.basename(path)
    with open(path, encoding="utf-8") as f:
        source = f.read()
    lines, comments = source.splitlines(), comments_of(source)
    start, end = block_bounds(script, comments)
    statements = {node.lineno: node for node in ast.parse(source, path).body if start < node.lineno < end}
    groups, constants, last, seen, n = [], None, [], set(), start + 1
    while n < end:
        column, comment = comments.get(n, (None, ""))
        if n in statements:
            statement = statements[n]
            names = constant_names(statement)
            for name in names:
                if name in seen:  # a second flag of the same name is argparse's traceback, not the user's line
                    raise ConfigError(f"{script}: {name} is set twice in the hyperparameter block: keep one")
                seen.add(name)
            # the comments on the statement's own lines: one line's trailing comment, or all of a wrapped value's
            why = " ".join(comments[i][1][1:].strip() for i in range(n, statement.end_lineno + 1) if i in comments)
            last = [[name, why] for name in names]
            if last:
                if constants is None:  # constants before any header
                    groups.append((None, constants := []))
                constants.extend(last)
            n = statement.end_lineno + 1
            continue
        if comment and column == 0:
            groups.append((comment.lstrip("# ").rstrip("- "), constants := []))
            last = []
        elif comment and not lines[n - 1][:column].strip():  # an indented comment continues the constant above
            for constant in last:
                constant[1] = (constant[1] + " " + comment.lstrip("# ").strip()).strip()
        else:  # a blank line: a comment after it belongs to no constant above it
            last = []
        n += 1
    return [(header, [(name, why or NO_COMMENT) for name, why in found]) for header, found in groups if found]


def block_defaults(path):
    """{NAME: default} of a script's hyperparameter block, read from the file without running it, so a benchmark
    takes train_mnr.py's defaults without importing a script. Literal defaults only: one computed from an import
    (MAX_LENGTH = DEFAULT_MAX_LENGTH) is left out."""
    names = {name for _, constants in read_block(path) for name, _ in constants}
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    found = {}
    for statement in tree.body:
        for name in (n for n in constant_names(statement) if n in names and statement.value is not None):
            try:
                found[name] = ast.literal_eval(statement.value)
            except ValueError:
                continue
    return found


def value_type(script, name, default, annotations):
    """The flag's type: the annotation's when there is one (`int | None` -> int), else the default's. A type no
    flag can parse is refused here, at start, rather than failing later as the wrong value."""
    hint = annotations.get(name)
    if hint is None:
        if default is None:
            raise ConfigError(f"{script}: {name} = None needs an annotation, e.g. {name}: int | None = None")
        if type(default) in FLAG_TYPES:
            return type(default)
        shown = repr(default) if len(repr(default)) <= 40 else repr(default)[:37] + "..."
        raise ConfigError(f"{script}: {name} = {shown} is a {type(default).__name__}, which no flag can parse: "
                          "make it an int, float, str or bool (a list as a comma-separated str)")
    union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    options = [t for t in typing.get_args(hint) if t is not type(None)] if union else [hint]
    if len(options) == 1 and options[0] in FLAG_TYPES:
        return options[0]
    shown = hint.__name__ if isinstance(hint, type) else str(hint)
    raise ConfigError(f"{script}: {name}: {shown} cannot type a flag: annotate it int, float, str or bool "
                      f"(`| None` for a None default), e.g. {name}: int | None = None")


def add_flag(parser, name, default, why, flag_type, **kwargs):
    """--name-with-dashes, help = the why-comment plus its default (once), choices shown when there are some."""
    help_text = why.replace("%", "%%")
    if flag_type is bool:
        kwargs["action"] = argparse.BooleanOptionalAction  # never type=bool: bool("False") is True
    else:
        kwargs.setdefault("type", flag_type)
        if "choices" not in kwargs:
            kwargs.setdefault("metavar", name.upper())
    action = parser.add_argument("--" + name.replace("_", "-"), default=default, help=help_text, **kwargs)
    if default is not None and "%(default)" not in action.help:  # BooleanOptionalAction adds it on some Pythons
        action.help += " (default: %(default)s)"
    return action


def add_block_flags(parser, script_globals, **overrides):
    """One flag per constant of the block in the script whose globals() these are. `overrides`: per flag name
    (lowercase), extra add_argument keywords, e.g. pooling={"choices": POOLINGS}. -> the parser.
    A header the parser already has (a script adding its block to another's, as train_bidirectional.py's `loss`)
    adds to that section instead of printing a second one; constants under no header join argparse's own
    "options" (with -h), not a second section of that name."""
    annotations = script_globals.get("__annotations__", {})
    sections = {group.title: group for group in parser._action_groups}
    script = os.path.basename(script_globals["__file__"])
    with exit_on_input_error():  # parsers are built before the scripts' own `with`: a refusal is still one line
        for header, constants in read_block(script_globals["__file__"]):
            if header is None:
                group = parser._optionals
            elif (group := sections.get(header)) is None:
                group = sections[header] = parser.add_argument_group(header)
            for name, why in constants:
                if name not in script_globals:  # `NAME: int` alone: an annotation, no value
                    raise ConfigError(f"{script}: {name} has no value: give it a default, "
                                      f"e.g. {name}: int | None = None")
                default = script_globals[name]
                add_flag(group, name.lower(), default, why, value_type(script, name, default, annotations),
                         **overrides.get(name.lower(), {}))
    return parser


def parse_flags(parser, argv=None):
    """`parser.parse_args(argv)`, but an unknown or misspelt flag is named with the closest known one:
    `--batchsize 8` gets "did you mean --batch-size?". Exit status 2, as argparse's own usage errors."""
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        known = [option for action in parser._actions for option in action.option_strings]
        hints = [(flag.split("=")[0], close[0]) for flag in unknown if flag.startswith("-")
                 if (close := difflib.get_close_matches(flag.split("=")[0], known, 1, cutoff=0.6))]
        hint = (f"; did you mean {hints[0][1]}?" if len(hints) == 1 else
                "; did you mean " + ", ".join(f"{close} for {flag}" for flag, close in hints) + "?" if hints else "")
        parser.error(f"unrecognized arguments: {' '.join(unknown)}{hint}")
    return args


def config_of(args):
    """The flags as the hyperparameter block names them ({"BATCH_SIZE": 32, ...}): for logs and checkpoints."""
    return {name.upper(): value for name, value in vars(args).items()}
