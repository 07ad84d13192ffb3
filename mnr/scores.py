"""The figures of a preset's models, as compare_runs.py tables them: each model scored alike (STSb dev and test,
the retrieval task, Matryoshka cuts), cached in a trained folder by what made it; each row's difference to the
baseline with a paired interval over the queries; and a batch preset's false-negative share."""
import functools
import os

import torch

import data_prep
from mnr import prompts, retrieval, samplers, sts
from mnr.files import ROOT, code_version, read_json, write_json_atomic
from mnr.ledger import stamp_of
from mnr.models import load_encoder
from mnr.precision import resolve
from mnr.stats import paired_over_seeds
from mnr.tables import load_train_data
from pooling import encode

SCORING_SCRIPTS = ["mnr/sts.py", "mnr/retrieval.py", "mnr/prompts.py"]  # what score() computes with, imports included


def score(path, preset, dev, test, task):
    """One model's figures: STSb dev and test, retrieval, and STSb test at each Matryoshka cut. A trained
    folder keeps them in scores.json, reused while the model, the scoring code and the data stay the same: a
    table completed over several sittings (more seeds) scores only the new models."""
    cache = os.path.join(path, "scores.json")
    made_by = stamp_of(path)  # None: not trained here (the start model's folder is not ours to write in)
    key = None if made_by is None else score_key(made_by, preset, task)  # never cached
    saved = read_json(cache, {}) if key else {}
    if key and saved.get("key") == key:
        return saved["scores"]
    encoder = load_encoder(path)
    precision = scoring_precision(preset)
    row = {"sts_dev": sts.evaluate(encoder, *dev, precision=precision)["spearman"],
           "sts_test": sts.evaluate(encoder, *test, precision=precision)["spearman"]}
    for d in preset.get("dims", []):
        row[f"sts_test@{d}"] = sts.evaluate(encoder, *test, truncate_dim=d, precision=precision)["spearman"]
    if task:  # per query too: the paired bootstrap against the preset's baseline run needs them
        # With the model's own prompts, as evaluate_retrieval.py scores it: an e5-like start model, or a run
        # trained with --query-prompt, scored without its prompts would say little of the model.
        prompted = prompts.prompted_task(task, *prompts.saved_prompts(path))
        row.update(retrieval.evaluate(encoder, prompted, precision=precision, per_query=True))
    if key is not None:
        write_json_atomic(cache, {"key": key, "scores": row})
    return row


def score_key(made_by, preset, task):
    """What a trained model's scores depend on: the model (what made it), the scoring code, data and precision."""
    return {"model": made_by, "code": code_version(SCORING_SCRIPTS), "sts": preset["sts"],
            "precision": scoring_precision(preset),  # what "auto" resolves to here: a folder moved elsewhere rescored
            "retrieval": preset.get("beir") or preset.get("retrieval") if task else None,
            "dims": preset.get("dims", [])}


def scoring_precision(preset):
    """The preset's "score_precision" as it computes here: "auto" resolved for the device load_encoder uses."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return resolve(preset.get("score_precision", "fp32"), device)


def retrieval_task(preset):
    """The preset's retrieval task: a BEIR folder's split, else the NLI file (None when that file is missing)."""
    if preset.get("beir"):
        return retrieval.load_beir(*preset["beir"])
    nli_file = preset.get("retrieval")
    return retrieval.load_nli_retrieval(nli_file) if nli_file and os.path.exists(nli_file) else None


@functools.lru_cache(maxsize=1)
def start_embeddings(model, texts):
    """The start model's embeddings of `texts` (a tuple): every run of a preset trains on the same texts."""
    return encode(load_encoder(model), list(texts), progress="embedding for the false-negative share")


def false_negative_share(model, command):
    """The false-negative share (mnr/samplers.py) that the start model sees in the first epoch's batches of a
    train_mnr.py `command`: the run's own rows, sampler, batch size and seed, measured before any training. The
    flags are read from the trained folder's training_config.json (each as train_mnr.py parsed it, defaults
    included): a script does not import another, and the folder says what the run did."""
    config = read_json(os.path.join(ROOT, command[command.index("--output-dir") + 1], "training_config.json"), None)
    if config["TRAIN_DATA"]:  # the rows as train_mnr.load_batches reads them
        rows, sources = load_train_data(config["TRAIN_DATA"], with_sources=True)
    else:
        rows, sources = data_prep.make_rows(data_prep.load_nli(config["NLI_DATA"]), config["HARD_NEGATIVES"],
                                            with_sources=True)
    batches = data_prep.sampled_batches(rows, sources, config["BATCH_SAMPLER"], config["BATCH_SIZE"], config["SEED"],
                                        1, config["CLUSTERS"], config["MODEL_NAME"])  # the first epoch's
    texts = list(dict.fromkeys(text for row in rows for text in row))
    index, vectors = {text: i for i, text in enumerate(texts)}, start_embeddings(model, tuple(texts))
    columns = [vectors[torch.tensor([index[row[j]] for row in rows])] for j in range(len(rows[0]))]  # (N, D) each
    return samplers.false_negative_share(columns, batches)


def compare_with_baseline(rows, baseline, metric="ndcg@10"):
    """Each row's `metric` minus the baseline row's, with a paired bootstrap 95 % interval over the queries
    (mnr/stats.py): a row's per-query score is its mean over the seeds, so the interval is about the queries and
    the seed spread stays the ± next to it. An interval that excludes 0 is a difference these queries show."""
    per_query = {r["run"]: [s["per_query"][metric] for s in r["per_seed"]]
                 for r in rows if r["per_seed"] and "per_query" in r["per_seed"][0]}
    if baseline not in per_query:
        print(f"no run named {baseline!r} with per-query scores: no differences to it", flush=True)
        return
    for r in rows:
        if r["run"] in per_query and r["run"] != baseline:
            r[f"{metric}_delta"], low, high = paired_over_seeds(per_query[r["run"]], per_query[baseline])
            r[f"{metric}_delta_ci95"] = [low, high]
