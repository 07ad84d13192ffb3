"""The SciFact recipe for any BEIR folder (compare_runs.py --preset beir): the start model and the scifact preset's
best row, replayed from the commands results/cpu-scifact/results.json recorded, with the data folder replaced.

What is a rule here and not a SciFact figure: the dev split is the folder's qrels/dev.tsv, else DEV_SHARE of its
train queries (at most DEV_AT_MOST) drawn with SEED; qrels/test.tsv is read by --report-test only; the run says
its time before it starts, from the folder's rows, the batch and a step measured on this machine, and a run
predicted above LIMIT_MINUTES needs --max-pairs (whole queries, drawn with SEED) or --yes.
"""
import math
import os
import random
import time

import torch

from mnr import beir, prompts, sts
from mnr.errors import ConfigError, DataError
from mnr.files import ROOT, read_json, write_json
from mnr.flags import block_defaults
from mnr.models import MAX_LENGTH, SBERT_CONFIG, SentenceEncoder, folder_json, load_model
from mnr.precision import autocast, resolve
from mnr.presets import SOUP
from pooling import embed_columns, encode

RESULTS = os.path.join(ROOT, "results", "cpu-scifact", "results.json")  # where the recipe is recorded
START = "start model (untrained)"  # compare_runs' name of the untrained row: the recipe's baseline
DEV_SHARE, DEV_AT_MOST = 0.2, 1000  # beyond 1,000 queries a dev interval is narrow: the rest are better trained on
SEED = 42
LIMIT_MINUTES = 60  # longer than this, a run does not start unasked
SPLIT_FILE = "split.json"  # in a folder this module wrote: how its qrels were drawn from the user's folder


def option(command, flag, default=None):
    """The value after `flag` in a command (the last one: a later flag overrides an earlier one)."""
    values = [command[i + 1] for i, arg in enumerate(command[:-1]) if arg == flag]
    return values[-1] if values else default


def without(command, *flags):
    """`command` less each of `flags` and the value after it."""
    kept, skip = [], False
    for arg in command:
        if skip or arg in flags:
            skip = not skip
            continue
        kept.append(arg)
    return kept


def best_row(path=RESULTS):
    """The recorded table's best trained row by ndcg@10: the recipe. A soup row (its models average several runs,
    compare_runs' "soups") is not one: the recipe is one training, at one training's cost, on any folder."""
    rows = read_json(path, None)
    if not rows:
        raise ConfigError(f"{path}: missing or empty; it records the recipe (python compare_runs.py --preset scifact)")
    return max((r for r in rows if r["commands"] and not any(c[0] == SOUP for c in r["commands"])),
               key=lambda r: r["ndcg@10"])


def recorded(row):
    """A row's first-seed commands -> (its mining command or None, its training command, the data folder they
    read, the folder it trained in), as results.json keeps them."""
    mine = next((c for c in row["commands"] if c[0] == "mine_negatives.py"), None)
    train = row["commands"][-1]
    data = option(mine or train, "--train-data")
    return mine, train, data, os.path.dirname(option(train, "--output-dir"))


# The machine's flags, not the recipe's: the scifact preset pins its precision so that one table is made over
# sittings on different CPUs (mnr/presets.py); a run of the recipe computes in what its own machine does best
# (train_mnr.py's "auto": bf16 on CUDA and on CPUs with native bf16, else fp32).
MACHINE_FLAGS = ("--precision",)


def replay(commands, replacements):
    """Recorded commands with each argument in `replacements` (old -> new, a folder also as a path's start)
    replaced, less the machine's flags: what the check compares the commands of a --preset beir run with."""
    def replaced(arg):
        for old, new in replacements.items():
            if arg == old or arg.startswith(old + "/"):
                return new + arg[len(old):]
        return arg
    return [[replaced(arg) for arg in without(command, *MACHINE_FLAGS)] for command in commands]


def preset(row, folder, split, sts_folder, max_length=None):
    """The beir preset: `row`'s commands as compare_runs builds them (shared flags, the run's own, mining
    flags), reading `folder` and scored on its `split` against the start model; `max_length` in place of the
    recorded --max-length where given (max_length_rule)."""
    mine, train, _, _ = recorded(row)
    if max_length is not None:  # in place, so a model of the recorded length replays the command as recorded
        train = [str(max_length) if i and train[i - 1] == "--max-length" else arg for i, arg in enumerate(train)]
    short = os.path.basename(option(train, "--output-dir"))
    own = without(train, "--model-name", "--sts-data", "--output-dir", *MACHINE_FLAGS)[1:]  # in recorded order
    cut = own.index("--train-data")
    mined = mine is not None
    script = [train[0], *(["--train-data", "MINED"] if mined else []), *own[cut + 2:]]
    return {"train": folder, "sts": sts_folder, "beir": [folder, split], "seeds": 1, "score_precision": "auto",
            "baseline": START, "sort": "ndcg@10", "columns": ["ndcg@10", "ndcg@10_delta", "mrr@10", "recall@100",
                                                              "sts_test"],
            "flags": own[:cut], "runs": [(row["run"], short, script)],
            "mine": {short: without(mine, "--model-name", "--train-data", "--corpus", "--output", *MACHINE_FLAGS)[1:]}
            if mined else {}}


def max_length_rule(model, recorded_length):
    """The recipe's max length for start model `model`: its own max_seq_length (sentence_bert_config.json), the
    length it was trained and is used at, as the recorded 256 was all-MiniLM-L6-v2's, not a length tuned on
    SciFact; the recorded one where the model declares none. -> (length, what to say at start)."""
    folder = prompts.model_folder(model, SBERT_CONFIG)  # a hub model's too: fetched when the hub answers
    own = ((folder_json(folder, SBERT_CONFIG) if folder else None) or {}).get("max_seq_length")
    if own is None:
        return recorded_length, (f"max length: {recorded_length}, as recorded ({model} declares no "
                                 "max_seq_length in a sentence_bert_config.json)")
    return own, f"max length: {own}, the start model's own max_seq_length (recorded: {recorded_length})"


# ---- the data: dev carved from train where the folder has none, train capped on request ------------------------

def by_query(judgements):
    """[(query id, document id, grade)] -> {query id: its judgements}, queries in file order."""
    groups = {}
    for j in judgements:
        groups.setdefault(j[0], []).append(j)
    return groups


def positives(judgements):
    return sum(1 for *_, grade in judgements if grade > 0)


def carve_dev(query_ids, seed=SEED, share=DEV_SHARE, at_most=DEV_AT_MOST):
    """Train query ids -> the dev queries: `share` of them, at least 1 and at most `at_most`, drawn with `seed`.
    Queries, not pairs: a query's documents all stay on one side, so dev never scores a query trained on."""
    ids = sorted(set(query_ids))
    if len(ids) < 2:
        raise DataError(f"{len(ids)} train query: a dev split needs at least 2 (one to train on, one to score)")
    return set(random.Random(seed).sample(ids, min(at_most, max(1, round(share * len(ids))), len(ids) - 1)))


def cap(groups, max_pairs, seed=SEED):
    """{query: judgements} -> those of whole queries drawn with `seed` while their positive pairs fit `max_pairs`."""
    order = sorted(groups)
    random.Random(seed).shuffle(order)
    kept, total = set(), 0
    for q in order:
        if total + positives(groups[q]) <= max_pairs:
            kept.add(q)
            total += positives(groups[q])
    if not kept:
        raise ConfigError(f"--max-pairs {max_pairs}: every train query has more positive pairs than that; give more")
    return {q: js for q, js in groups.items() if q in kept}


def plan(folder, max_pairs=None, seed=SEED):
    """What the recipe trains and scores on -> {"train": [...], "dev": [...] or None (the folder's own dev.tsv,
    unchanged), "dev_queries", "lines": what to say at start, "derived": whether a folder must be written}.
    Reads qrels/train.tsv and qrels/dev.tsv, never qrels/test.tsv."""
    train = by_query(beir.read_graded_qrels(folder, "train"))
    has_dev = os.path.isfile(beir.qrels_path(folder, "dev"))
    lines, dev = [], None
    if has_dev:
        dev_queries = len(by_query(beir.read_graded_qrels(folder, "dev")))
        lines.append(f"dev: {beir.qrels_path(folder, 'dev')} ({dev_queries} queries)")
    else:
        carved = carve_dev([q for q, js in train.items() if positives(js)], seed)
        dev = [j for q in train if q in carved for j in train[q]]
        train, dev_queries = {q: js for q, js in train.items() if q not in carved}, len(carved)
        lines.append(f"no qrels/dev.tsv in {folder}: dev = {len(carved)} queries carved from its train queries "
                     f"({DEV_SHARE:.0%}, at most {DEV_AT_MOST}, seed {seed}); training on the other {len(train)}")
    pairs = sum(positives(js) for js in train.values())
    if max_pairs is not None and max_pairs < pairs:
        train = cap(train, max_pairs, seed)
        lines.append(f"--max-pairs {max_pairs}: training on {sum(positives(js) for js in train.values())} of the "
                     f"{pairs} train pairs ({len(train)} whole queries, seed {seed})")
    lines.append(f"test: {beir.qrels_path(folder, 'test')} is not read (the final run: --report-test)")
    return {"train": [j for js in train.values() for j in js], "dev": dev, "dev_queries": dev_queries, "lines": lines,
            "derived": dev is not None or (max_pairs is not None and max_pairs < pairs)}


def write_folder(out, source, data, max_pairs):
    """A BEIR folder at `out` for a plan: the source's corpus and queries linked, not copied (they may be
    gigabytes), and the planned qrels; never anything in the user's folder."""
    os.makedirs(os.path.join(out, "qrels"), exist_ok=True)
    for name in ("corpus.jsonl", "queries.jsonl"):
        link = os.path.join(out, name)
        if os.path.lexists(link):
            os.remove(link)
        os.symlink(os.path.abspath(os.path.join(source, name)), link)
    dev = data["dev"] or beir.read_graded_qrels(source, "dev")
    for split, judgements in (("train", data["train"]), ("dev", dev)):
        with open(beir.qrels_path(out, split), "w", encoding="utf-8") as f:
            f.write("query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t{g:g}\n" for q, d, g in judgements))
    write_json(os.path.join(out, SPLIT_FILE), {"source": os.path.abspath(source), "seed": SEED,
                                               "dev": "carved from train" if data["dev"] else "qrels/dev.tsv",
                                               "max_pairs": max_pairs})
    return out


def derived_name(data, max_pairs):
    """The derived folder's name says how it was drawn: another cap is another folder, so no model trained on
    other pairs is taken for this one."""
    return "data" + ("-dev-carved" if data["dev"] else "") + (f"-max-pairs-{max_pairs}" if max_pairs else "")


# ---- the time it will take, said before it starts -------------------------------------------------------------

def predict(pairs, epochs, batch_size, step_seconds, texts, text_seconds):
    """-> (seconds, training steps): steps of `batch_size` rows over `epochs` epochs, each `step_seconds`, plus
    `texts` embedded (mining, scoring) at `text_seconds` each."""
    steps = math.ceil(pairs / batch_size) * epochs
    return steps * step_seconds + texts * text_seconds, steps


def pairs_that_fit(limit_seconds, epochs, batch_size, step_seconds, texts, text_seconds):
    """The most train pairs whose predicted time stays within `limit_seconds` (0: embedding alone is longer)."""
    steps = int((limit_seconds - texts * text_seconds) // step_seconds) // epochs
    return max(0, steps * batch_size)


def measure(model_name, rows, batch_size, max_length, precision="auto"):
    """Seconds per training step of `batch_size` rows (query, positive, negative) and per text embedded, on this
    machine: a few real steps of the start model (forward, loss, backward, AdamW) on `rows`; the first is not
    timed (allocation, kernel choice)."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    precision = resolve(precision, device)
    model, tokenizer = load_model(model_name)
    model.to(device).train()
    batch = [rows[i % len(rows)] for i in range(batch_size)]
    columns = [tokenizer([r[j] for r in batch], max_length=max_length, truncation=True, padding=True,
                         return_tensors="pt") for j in range(len(batch[0]))]
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    times = []
    for _ in range(3):
        started = time.perf_counter()
        with autocast(device, precision):
            anchors, *others = embed_columns(model, columns)  # (B, D) each
        scores = anchors.float() @ torch.cat(others).float().T  # (B, B * columns): in-batch negatives, as MNR
        torch.nn.functional.cross_entropy(scores, torch.arange(len(batch), device=device)).backward()
        optimizer.step()
        optimizer.zero_grad()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    texts = [r[1] for r in batch]
    started = time.perf_counter()
    encode(SentenceEncoder(model, tokenizer, "mean", max_length), texts, precision=precision)
    return sum(times[1:]) / len(times[1:]), (time.perf_counter() - started) / len(texts)


def texts_embedded(corpus, train_queries, scored_queries, sts_texts, models):
    """Texts a recipe run embeds: mining (the corpus and the train queries), then each model's scoring."""
    return corpus + train_queries + models * (corpus + scored_queries + sts_texts)


def build(folder, model, models_dir, sts_folder, max_pairs=None, yes=False, report_test=False, seeds=1):
    """--preset beir on `folder`: the data planned and said, the time predicted and said (refused above
    LIMIT_MINUTES unless capped or `yes`), a derived folder written under `models_dir` where the plan needs one,
    and the preset (compare_runs.PRESETS' form) that replays the recorded recipe on it."""
    row = best_row()
    mine, train, _, _ = recorded(row)
    if report_test:  # read now, so that a damaged test split is said before hours of training, not after
        beir.read_graded_qrels(folder, "test")
    data = plan(folder, max_pairs)
    for line in data["lines"]:
        print(line, flush=True)
    documents, queries = dict(beir.read_documents(folder)), beir.read_queries(folder)
    # the rows a step of the recipe sees: a query, its document, another document (the mined negative's place)
    pairs = [(queries[q], documents[d]) for q, d, grade in data["train"]
             if grade > 0 and q in queries and d in documents]
    if not pairs:
        raise DataError(f"{beir.qrels_path(folder, 'train')}: no (query, document) pair to train on")
    defaults = block_defaults(os.path.join(ROOT, train[0]))
    batch, epochs = (int(option(train, f"--{name}", defaults[name.upper().replace("-", "_")]))
                     for name in ("batch-size", "epochs"))
    draw, others = random.Random(SEED), list(documents.values())
    sample = [(q, d, draw.choice(others)) for q, d in draw.sample(pairs, min(batch, len(pairs)))]
    max_length, said = max_length_rule(model, int(option(train, "--max-length", MAX_LENGTH)))
    print(said, flush=True)
    step_seconds, text_seconds = measure(model, sample, batch, max_length)  # "auto", as the run will train
    scored = len(queries) if report_test else data["dev_queries"]  # test's are not read before: at most all
    sts_texts = sum(2 * len(sts.load_sts(sts_folder, split)[0]) for split in ("dev", "test"))
    texts = texts_embedded(len(documents), len({q for q, _, _ in data["train"]}), scored, sts_texts, 1 + seeds)
    seconds, steps = predict(len(pairs) * seeds, epochs, batch, step_seconds, texts, text_seconds)
    minutes = math.ceil(seconds / 60)
    print(f"time: about {minutes} minute{'s' * (minutes != 1)} on this machine: {steps} training steps of {batch} rows "
          f"x {step_seconds:.2f} s and {texts} texts embedded (mining, scoring) x {text_seconds * 1000:.1f} ms, "
          f"a step and an embedding measured now", flush=True)
    if seconds > LIMIT_MINUTES * 60 and not yes:
        fit = pairs_that_fit(LIMIT_MINUTES * 60, epochs * seeds, batch, step_seconds, texts, text_seconds)
        offer = (f"give --max-pairs {fit} to train on whole queries drawn with seed {SEED} (about {LIMIT_MINUTES} "
                 f"minutes), or --yes to train on all {len(pairs)} pairs" if fit >= batch else
                 "embedding the corpus alone takes longer; give --yes to run it")
        raise ConfigError(f"--beir {folder}: about {minutes} minutes on this machine, more than the "
                          f"{LIMIT_MINUTES} a run starts without asking; {offer}")
    data_folder = folder
    if data["derived"]:
        data_folder = write_folder(os.path.join(models_dir, derived_name(data, max_pairs)), folder, data, max_pairs)
        print(f"wrote {data_folder}: the qrels trained and scored on, beside links to the corpus and queries",
              flush=True)
    if report_test:
        print(f"--report-test: scoring {beir.qrels_path(folder, 'test')}: the final figure; choose nothing more on "
              "it", flush=True)
    recipe = preset(row, data_folder, "dev", sts_folder, max_length)
    recipe["beir"] = [folder, "test"] if report_test else [data_folder, "dev"]
    recipe["notes"] = data["lines"][:-1] + [said] + [f"test: {beir.qrels_path(folder, 'test')}, the final run"] * report_test
    return recipe
