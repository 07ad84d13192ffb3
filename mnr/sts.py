"""The STS benchmark: its pairs and gold scores (the hub's GLUE STS-B, a local folder or one file), and a model's
Spearman and Pearson correlation on them. evaluate_sts.py prints it; train_mnr.py scores STSb dev with it during
training; compare_runs.py fills its tables with it.

The score is the Spearman rank correlation between the cosine similarity of each pair's two embeddings and the
gold similarity (0-5, divided by 5 as in the tutorial). Rank correlation only asks whether the model orders the
pairs like the annotators did, not whether the cosines sit on the gold scale.
"""
import math
import os

import numpy as np

from mnr import hub
from mnr.errors import DataError
from mnr.hub import STS_HUB
from mnr.models import load_encoder
from mnr.scoring import unit_embeddings
from mnr.table_file import columns_of
from mnr.tables import load_table

STS_COLUMNS = ("sentence1", "sentence2", "score")
STS_RANGE = (0.0, 5.0)  # the benchmark's gold scale (SICK's 1-5 lies within it); scores are divided by its top
SPLITS = tuple(STS_HUB)  # the benchmark's splits a score is reported on: dev to choose, test once at the end
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
        left, right, scores = columns_of(ds, "sentence1", "sentence2", column)
        return list(zip(left, right)), check_gold(name, [float(s) / divide for s in scores])
    path = source
    if os.path.isdir(source):
        candidates = [os.path.join(source, f"{split}{ext}") for ext in (".tsv.gz", ".tsv", ".csv.gz", ".csv")]
        path = next((c for c in candidates if os.path.exists(c)), candidates[0])
    if not os.path.exists(path):
        raise DataError(f"{path}: no such file or directory; give {LOCAL_STS}")
    ds = load_table(path, STS_COLUMNS)
    low, high = STS_RANGE
    gold = []
    left, right, scores = columns_of(ds, "sentence1", "sentence2", "score")
    for i, value in enumerate(scores):
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
    return list(zip(left, right)), check_gold(path, gold)


def check_gold(where, gold):
    """A correlation needs at least two pairs whose gold scores differ: otherwise it is NaN, or scipy raises."""
    if len(gold) < 2:
        raise DataError(f"{where}: {len(gold)} scored pair(s); a correlation needs at least 2, so give more rows")
    if len(set(gold)) == 1:
        raise DataError(f"{where}: all {len(gold)} gold scores are equal ({gold[0] * STS_RANGE[1]:g}); a rank "
                        "correlation needs scores that differ")
    return gold


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
    from scipy.stats import pearsonr, spearmanr  # here, not at the top: scipy.stats costs a training run 0.5 s to start
    return {"spearman": float(spearmanr(cosines, gold)[0]), "pearson": float(pearsonr(cosines, gold)[0]),
            "n": len(pairs)}


def sample_note(n, split):
    """A warning for a split smaller than the benchmark's: its scores are not the benchmark's."""
    full = STSB_PAIRS.get(split)
    if full and n < full:
        return (f"note: {n} pairs, a sample of the STS benchmark's {full}: its scores differ from the benchmark's "
                "(and from the README's tables), so compare models on the same sample only")
    return None
