"""Two recipes' trained models, seed by seed, on one BEIR split: the comparison compare_runs.py's tables make,
for models trained outside a preset (a lever tried by hand, as in results/cpu-scifact/dev-choices.md).

    python benchmarks/paired_runs.py --beir ../shared/data/beir/scifact --split dev \\
        --runs output/s5/epochs5-seed42 output/s5/epochs5-seed43 output/s5/epochs5-seed44 \\
        --baseline output/dedup/mined-top100-seed42 output/dedup/mined-top100-seed43 output/dedup/mined-top100-seed44

Prints each model's figure, each recipe's mean +/- standard deviation over its seeds (the seed noise), and the
difference of the means with its paired bootstrap 95 % interval over the queries (mnr/stats.py): both recipes
answer the same queries, so what a query shares across models (an easy query is easy for all) cancels. The
models pair by position, seed with seed, so the per-seed differences are printed too. Each model is scored as
evaluate_retrieval.py scores it (fp32, its own prompts), so a figure here is the figure it gives.
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mnr import prompts  # noqa: E402
from mnr.errors import ConfigError, exit_on_input_error  # noqa: E402
from mnr.models import check_model_names  # noqa: E402
from mnr.retrieval import METRICS, evaluate, load_beir  # noqa: E402
from mnr.scoring import load_scored_encoder  # noqa: E402
from mnr.stats import mean_std, paired_over_seeds  # noqa: E402


def scored(models, task, what, done):
    """Each model's retrieval figures on the task, with "per_query" (the task's query order), its own prompts.
    `done`: figures already computed, by folder: a folder named twice (a soup against the runs it averages, given
    as --runs SOUP SOUP SOUP) is scored once."""
    for model in models:
        if os.path.realpath(model) not in done:
            encoder = load_scored_encoder(model, what, None)
            prompted = prompts.prompted_task(task, *prompts.saved_prompts(model))
            done[os.path.realpath(model)] = evaluate(encoder, prompted, progress=True, per_query=True)
    return [done[os.path.realpath(model)] for model in models]


def compare(runs, baseline, task, what, metric="ndcg@10"):
    """-> the comparison as a dict: per model its figure, per recipe mean and std over its seeds, the difference
    of the means with its paired interval over the queries, and the per-seed differences."""
    done = {}
    a, b = (scored(models, task, what, done) for models in (runs, baseline))
    a_means, b_means = ([r[metric] for r in results] for results in (a, b))
    delta, low, high = paired_over_seeds(*([r["per_query"][metric] for r in results] for results in (a, b)))
    return {"metric": metric, "queries": len(task["queries"]),
            "runs": [{"model": m, metric: x} for m, x in zip(runs, a_means)],
            "baseline": [{"model": m, metric: y} for m, y in zip(baseline, b_means)],
            "runs_mean_std": mean_std(a_means), "baseline_mean_std": mean_std(b_means),
            "delta": delta, "delta_ci95": [low, high],
            "per_seed_delta": [x - y for x, y in zip(a_means, b_means)]}


def markdown(result):
    m = result["metric"]
    lines = [f"| seed | runs {m} | baseline {m} | difference |", "| --- | --- | --- | --- |"]
    for i, (x, y) in enumerate(zip(result["runs"], result["baseline"]), 1):
        lines.append(f"| {i} | {x[m]:.4f} | {y[m]:.4f} | {x[m] - y[m]:+.4f} |")
    (am, asd), (bm, bsd) = result["runs_mean_std"], result["baseline_mean_std"]
    low, high = result["delta_ci95"]
    lines.append(f"| mean ± std | {am:.4f} ± {asd:.4f} | {bm:.4f} ± {bsd:.4f} | "
                 f"{result['delta']:+.4f} [{low:+.4f}, {high:+.4f}] |")
    lines.append(f"\nruns: {', '.join(r['model'] for r in result['runs'])}\n"
                 f"baseline: {', '.join(r['model'] for r in result['baseline'])}\n"
                 f"difference: of the means, with a paired bootstrap 95 % interval over the {result['queries']} "
                 "queries (per query, each recipe's mean over its seeds)")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--beir", required=True, help="a BEIR folder (corpus.jsonl, queries.jsonl, qrels/SPLIT.tsv)")
    parser.add_argument("--split", default="dev", help="the qrels to score (default dev: choose on dev)")
    parser.add_argument("--runs", nargs="+", required=True, help="the recipe's model folders, one per seed")
    parser.add_argument("--baseline", nargs="+", required=True, help="the other recipe's, seeds in the same order")
    parser.add_argument("--metric", default="ndcg@10", choices=METRICS, help="the metric compared (default ndcg@10)")
    parser.add_argument("--json", action="store_true", help="print the comparison as JSON instead of a table")
    args = parser.parse_args(argv)
    with exit_on_input_error():
        if len(args.runs) != len(args.baseline):
            raise ConfigError(f"--runs has {len(args.runs)} models and --baseline {len(args.baseline)}: give one "
                              "per seed to each, in the same seed order")
        task = load_beir(args.beir, args.split)
        check_model_names(args.runs + args.baseline)  # all of them, before minutes go into scoring the first
        result = compare(args.runs, args.baseline, task, f"{args.beir} ({args.split})", args.metric)
    print(json.dumps(result, indent=2) if args.json else markdown(result))


if __name__ == "__main__":
    main()
