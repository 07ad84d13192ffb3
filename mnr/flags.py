"""Command lines built from a script's hyperparameter block, so each knob's reason is written once.

Every script opens with a block of constants, grouped under short `# headers`, each with a why-comment:

    # ---- hyperparameters: ...
    # optimisation
    BATCH_SIZE = 32            # each query has BATCH_SIZE - 1 in-batch negatives: the knob that matters most
    MAX_STEPS: int | None = None  # stop after this many steps (smoke runs); None: all of EPOCHS

`add_block_flags` reads that block from the script's own file and makes one flag per constant: BATCH_SIZE ->
--batch-size, its type from the default (or from the annotation when the default is None), booleans as
--flag/--no-flag, the comment as help, the default printed once, one --help section per header. The block ends at
the first blank line: constants after it are not flags. A script edited in place changes its flags' defaults too.
"""
import argparse
import difflib
import re
import types

BLOCK_START = "# ---- hyperparameters"
CONSTANT = re.compile(r"^([A-Z][A-Z0-9_]*)(?:\s*:\s*[^=]+)?\s*=\s*.+?\s+#\s?(.*)$")  # NAME[: type] = value  # why


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


def read_block(path):
    """A script's hyperparameter block -> [(header, [(NAME, why), ...]), ...] in file order; header None for
    constants before any header."""
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(BLOCK_START)) + 1
    groups, constants = [], None
    for line in lines[start:]:
        if not line.strip():
            break
        match = CONSTANT.match(line)
        if match:
            if constants is None:  # constants before any header
                groups.append((None, constants := []))
            constants.append([match[1], match[2].strip()])
        elif line.startswith("#"):
            groups.append((line.lstrip("# ").rstrip("- "), constants := []))
        elif line.lstrip().startswith("#") and constants:  # an indented comment continues the one above
            constants[-1][1] += " " + line.strip().lstrip("# ")
    return [(header, [tuple(c) for c in found]) for header, found in groups if found]


def value_type(name, default, annotations):
    """The flag's type: the default's, or for a None default the annotation's (`int | None` -> int)."""
    if default is not None:
        return type(default)
    hint = annotations.get(name)
    if isinstance(hint, types.UnionType):
        hint = next(t for t in hint.__args__ if t is not type(None))
    if hint is None:
        raise TypeError(f"{name} = None needs an annotation (e.g. `{name}: int | None = None`) to type its flag")
    return hint


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
    for header, constants in read_block(script_globals["__file__"]):
        if header is None:
            group = parser._optionals
        elif (group := sections.get(header)) is None:
            group = sections[header] = parser.add_argument_group(header)
        for name, why in constants:
            default = script_globals[name]
            add_flag(group, name.lower(), default, why, value_type(name, default, annotations),
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
