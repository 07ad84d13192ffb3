"""What both evaluators share: unit embeddings (cut or whole), the model being scored said on stderr, the MODEL
arguments, and the results as a table or JSON. mnr/sts.py and mnr/retrieval.py score with it; so do the
evaluators' scripts, compare_runs.py and the training loop's STS dev score, so a figure means the same everywhere.
"""
import json
import sys

import torch.nn.functional as F

from mnr.errors import ConfigError
from mnr.models import load_encoder
from pooling import encode  # the tutorial's step 5: the one encoder every score is computed with


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
