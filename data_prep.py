"""Steps 1-3 of the tutorial: NLI data -> (anchor, positive[, negative]) rows -> duplicate-free, padded batches.

    python data_prep.py --nli-data tests/data/nli           # the sample shipped with the repository
    python data_prep.py --nli-data hub                      # SNLI + MultiNLI from the Hugging Face hub
    python data_prep.py --nli-data ../shared/data/nli --hard-negatives   # local files ("train" in the name)

It prints what training would see (`pairs: N`, `triplets: N`, a few examples) and writes nothing.
Training scripts import `load_nli`, `make_rows`, `sampled_batches` (`epoch_batches` by default) and `collate` from
here; other tables (--train-data) are read by mnr/tables.py.
"""
import os
import random
from collections import defaultdict

from mnr import hub
from mnr.errors import ConfigError, DataError, exit_on_input_error
from mnr.flags import add_block_flags, new_parser, parse_flags
from mnr.models import MAX_LENGTH
from mnr.table_file import Table, columns_of
from mnr.tables import NLI_COLUMNS, data_files, load_table

# ---- hyperparameters: what `python data_prep.py` shows; edit here or pass the flag of the same name ---------
NLI_DATA = "hub"           # "hub" (SNLI + MultiNLI train, as the tutorial) or a local file, folder or list
HARD_NEGATIVES = False     # build (anchor, positive, contradiction) triplets
EXAMPLES = 3               # how many rows to print
# ---- end of hyperparameters ---------------------------------------------------------------------------------

# MNLI's integer labels. The hub's SNLI uses the same ones, plus -1 for pairs annotators could not agree on.
LABELS = {"entailment": 0, "neutral": 1, "contradiction": 2, "-": -1}
ENTAILMENT, CONTRADICTION = 0, 2
# what to give instead of the hub
LOCAL_NLI = "--nli-data PATH (e.g. the sample shipped with the repository: --nli-data tests/data/nli)"


# ---------------------------------------------------------------------------------------------------------
# Loading: the hub (as in the tutorial) or local files. Both end in one Table (mnr/table_file.py) with the columns
# premise, hypothesis, label (int), so everything after loading is the same code, and source: where each row
# came from (snli or mnli from the hub, a local row's file name), for --batch-sampler by-source.

def load_hub_nli():
    """SNLI train + MultiNLI train, as the tutorial builds them (942,854 rows before filtering)."""
    hub.check_inputs([LOCAL_NLI])
    import datasets
    try:
        snli = datasets.load_dataset("stanfordnlp/snli", split="train")
        mnli = datasets.load_dataset("nyu-mll/glue", "mnli", split="train")
    except Exception as e:  # noqa: BLE001 - any hub failure becomes one line
        raise DataError(f"could not load SNLI/MultiNLI from the hub ({type(e).__name__}: {e}); "
                        "use --nli-data PATH for local files") from None
    mnli = mnli.remove_columns([c for c in mnli.column_names if c not in NLI_COLUMNS])
    # SNLI's label is a ClassLabel with the same names as MNLI's; casting makes the two concatenable.
    snli = snli.cast(mnli.features)
    both = datasets.concatenate_datasets([snli.add_column("source", ["snli"] * len(snli)),
                                          mnli.add_column("source", ["mnli"] * len(mnli))])
    return Table(zip(both.column_names, columns_of(both, *both.column_names)))  # as local files give it


def label_to_int(path, value):
    """A label cell, as an integer or a name (entailment/neutral/contradiction, "-" for no gold label) -> 0/1/2/-1."""
    key = str(value).strip().lower()
    if key in LABELS:
        return LABELS[key]
    if key.lstrip("-").isdigit() and int(key) in (-1, 0, 1, 2):
        return int(key)
    raise DataError(f"{path}: bad label {value!r} (expected 0/1/2/-1 or entailment/neutral/contradiction)")


def load_local_nli(path):
    """Local NLI files -> Table(premise, hypothesis, label, source), read without `datasets` (mnr/table_file.py)."""
    columns = {"premise": [], "hypothesis": [], "label": [], "source": []}
    for f in data_files(path):
        premises, hypotheses, labels = columns_of(load_table(f, NLI_COLUMNS), *NLI_COLUMNS)
        columns["premise"] += premises
        columns["hypothesis"] += hypotheses
        columns["label"] += [label_to_int(f, y) for y in labels]
        columns["source"] += [os.path.basename(f)] * len(labels)
    return Table(columns)


def load_nli(source="hub"):
    """`hub` or a local path -> Table(premise, hypothesis, label, source) with every label in {-1, 0, 1, 2}."""
    missing = [] if source == "hub" else [part for part in source.split(",") if not os.path.exists(part)]
    if missing:  # e.g. ../shared/data/nli in a fresh clone: name the sample that is there
        raise DataError(f"{missing[0]}: no such file or directory; give {LOCAL_NLI}")
    return load_hub_nli() if source == "hub" else load_local_nli(source)


# ---------------------------------------------------------------------------------------------------------
# Rows: MNR needs only (anchor, positive) pairs, so every label but entailment is dropped (the tutorial's
# filter; this also drops the hub's -1 "no gold label" rows). With hard negatives, a row becomes
# (premise, entailed hypothesis, contradicted hypothesis of the same premise): a contradiction is the
# closest thing NLI has to a near-miss document, which is what makes a negative "hard".

def make_rows(nli, hard_negatives=False, with_sources=False):
    """Table(premise, hypothesis, label) -> list of (anchor, positive) or (anchor, positive, negative) tuples.

    Triplets: every (entailment, contradiction) combination for each premise, in the data's order; premises
    with no contradiction produce none. Identical premise strings count as the same premise.
    `with_sources`: -> (rows, each row's source), the source of its entailment pair (the table's source column)."""
    premises, hypotheses, labels, sources = columns_of(nli, "premise", "hypothesis", "label", "source")
    sources = sources if with_sources else [None] * len(labels)
    if not hard_negatives:
        found = [((p, h), s) for p, h, y, s in zip(premises, hypotheses, labels, sources) if y == ENTAILMENT]
    else:
        entailed, contradicted = defaultdict(list), defaultdict(list)
        for p, h, y, s in zip(premises, hypotheses, labels, sources):
            if y == ENTAILMENT:
                entailed[p].append((h, s))
            elif y == CONTRADICTION:
                contradicted[p].append(h)
        found = [((p, pos, neg), s) for p, positives in entailed.items() for pos, s in positives
                 for neg in contradicted.get(p, ())]
    rows = [row for row, _ in found]
    return (rows, [s for _, s in found]) if with_sources else rows


# ---------------------------------------------------------------------------------------------------------
# Batches. With in-batch negatives every other row's texts are negatives for this row. If the same sentence
# sits in two rows of a batch, the model is told to push a sentence away from itself: a false negative.
# So a batch never holds the same string twice, in any column.

def epoch_batches(rows, batch_size, seed, epoch=0):
    """Row indices of one epoch, as full batches with no repeated text (compared as exact strings).

    Deterministic for (seed, epoch); each epoch is a new shuffle. Greedy: walk a shuffled order and put a
    row in the first batch it fits without a clash; a row that clashes waits and gets first pick at the next
    batch. Every row is used at most once per epoch. Leftovers are dropped: the last incomplete batch, any
    row that never found a batch without a clash (with rows that share text this happens to a handful at the
    end), and rows that repeat a text within themselves (an anchor identical to its positive teaches nothing).
    Dropping keeps every batch the same size, so each query always has the same number of negatives
    and a batch splits evenly across processes. The next epoch's shuffle drops different rows."""
    if batch_size < 1:
        raise DataError(f"batch size must be at least 1, got {batch_size}")
    if batch_size > len(rows):
        raise DataError(f"batch size {batch_size} is larger than the {len(rows)} usable rows, so there would be no "
                        "step; lower --batch-size or give more rows")
    order = list(range(len(rows)))
    random.Random(f"{seed}-{epoch}").shuffle(order)
    waiting = dict.fromkeys(order)  # insertion-ordered: rows that clashed stay at the front, first in line
    # A row whose own columns repeat a text (premise == hypothesis: 34 of the local pairs) never fits either.
    self_repeating = {j for j, row in enumerate(rows) if len(set(row)) < len(row)}
    batches = []
    while True:
        batch, texts = [], set()
        for j in waiting:
            if texts.isdisjoint(rows[j]) and j not in self_repeating:
                batch.append(j)
                texts.update(rows[j])
                if len(batch) == batch_size:
                    break
        if len(batch) < batch_size:
            return batches  # leftovers: fewer than a batch's worth of rows that fit together
        for j in batch:
            del waiting[j]
        batches.append(batch)


# Other batch compositions (mnr/samplers.py): the same duplicate-free batches, each drawn from one group of rows,
# a topic cluster (TAS-B) or a data source.

def sampled_batches(rows, sources, sampler, batch_size, seed, epochs, clusters=None, model_name=None):
    """Every epoch's batches, in order, as --batch-sampler composes them: "no-duplicates" is epoch_batches;
    "by-source" draws each batch from one source (`sources`: each row's), "clustered" from one k-means cluster of
    the anchors as `model_name` embeds them (`clusters` clusters; None: samplers.default_clusters)."""
    from mnr import samplers
    if clusters is not None and (clusters < 2 or sampler != "clustered"):
        raise ConfigError(f"--clusters {clusters}: give 2 or more, with --batch-sampler clustered")
    groups = None
    if sampler == "by-source":
        if len(set(sources)) < 2:
            raise ConfigError(f"--batch-sampler by-source: all rows come from one source ({sources[0]}); give "
                              "several files (a folder or a comma-separated list)")
        groups = sources
    elif sampler == "clustered":
        groups = anchor_clusters(rows, model_name, clusters or samplers.default_clusters(len(rows), batch_size), seed)
    return [batch for epoch in range(epochs) for batch in (
        epoch_batches(rows, batch_size, seed, epoch) if groups is None else
        samplers.grouped_batches(rows, groups, batch_size, seed, epoch, epoch_batches))]


def anchor_clusters(rows, model_name, k, seed):
    """TAS-B's topics: each row's cluster, k-means (mnr/samplers.py) over the start model's embeddings of the
    anchors, each distinct anchor embedded once. Under torchrun only rank 0 embeds and clusters, and every
    process takes its clusters, so all draw the same batches."""
    from mnr import distributed, samplers
    from mnr.models import load_encoder
    from pooling import encode
    anchors = list(dict.fromkeys(row[0] for row in rows))
    clusters = None
    if distributed.rank() == 0:
        found = samplers.kmeans(encode(load_encoder(model_name), anchors, progress="embedding anchors"), k, seed)
        clusters = dict(zip(anchors, found.tolist()))
    clusters = distributed.gather_objects(clusters)[0]  # a collective: every process takes part
    return [clusters[row[0]] for row in rows]


def collate(rows, tokenizer, max_length=MAX_LENGTH, pad_to_max_length=False):
    """A batch of row tuples -> one tokenizer dict per column (anchor, positive, negatives...).

    Padding is per batch: each column is padded to its own longest row. The tutorial padded every row to
    128 tokens, but NLI sentences average ~15 tokens, so most of a 128-wide forward would be padding that the
    attention mask then ignores: the same embeddings for several times the compute.
    `pad_to_max_length=True` reproduces the tutorial so the difference can be measured."""
    columns = list(zip(*rows))
    return [tokenizer(list(col), max_length=max_length, truncation=True, return_tensors="pt",
                      padding="max_length" if pad_to_max_length else "longest") for col in columns]


# ---------------------------------------------------------------------------------------------------------

def main(argv=None):
    args = parse_flags(add_block_flags(new_parser(__doc__), globals()), argv)
    with exit_on_input_error():
        nli = load_nli(args.nli_data)
    print(f"source: {args.nli_data}")
    print(f"NLI rows (every label): {len(nli)}")
    print(f"pairs: {len(make_rows(nli))}")
    rows = make_rows(nli, hard_negatives=args.hard_negatives)
    if args.hard_negatives:
        print(f"triplets: {len(rows)}")
    for row in rows[:args.examples]:
        print("  " + " | ".join(row))


if __name__ == "__main__":
    main()
