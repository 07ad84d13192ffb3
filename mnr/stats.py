"""The two statistics the comparison tables use: mean and spread over seeds, and a paired bootstrap over queries.

Seeds and queries are two different kinds of noise. Training the same recipe with another seed moves a score by
the seed spread; but the score itself is an average over a few queries (SciFact dev has 100), and another 100
queries from the same kind would move it too. A paired bootstrap answers the second question for a difference:
both models are scored on the same queries, so the per-query differences are resampled together and what the
queries share (an easy query is easy for both models) cancels out (Efron & Tibshirani 1993, ch. 16; Sakai 2006
for retrieval).
"""
import statistics

import torch


def mean_std(values):
    """Mean and sample standard deviation (0.0 for one value)."""
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def paired_bootstrap(a, b, resamples=10_000, confidence=0.95, seed=0):
    """a, b: one score per query for two systems, same queries in the same order -> (mean of a - b, low, high):
    the observed mean difference and its percentile bootstrap interval. Each resample draws len(a) queries with
    replacement and takes the mean difference over them; the interval holds the middle `confidence` of those
    means. Seeded, so a table's interval does not move between runs."""
    if len(a) != len(b) or not a:
        raise ValueError(f"paired_bootstrap needs two equally long, non-empty lists (got {len(a)} and {len(b)})")
    differences = torch.tensor(a, dtype=torch.float64) - torch.tensor(b, dtype=torch.float64)
    draws = torch.randint(len(differences), (resamples, len(differences)),
                          generator=torch.Generator().manual_seed(seed))  # (resamples, queries): indices
    means = differences[draws].mean(dim=1)
    tail = (1 - confidence) / 2
    low, high = torch.quantile(means, torch.tensor([tail, 1 - tail], dtype=torch.float64)).tolist()
    return differences.mean().item(), low, high


def paired_over_seeds(a_per_seed, b_per_seed, resamples=10_000, confidence=0.95, seed=0):
    """Two recipes, each trained with several seeds: a_per_seed, b_per_seed are lists (one per seed) of per-query
    scores, the queries in the same order -> paired_bootstrap of the per-query means over each recipe's seeds.
    Averaging over the seeds first makes the interval about the queries alone; the seed spread is told beside
    it (mean_std of the seeds' scores). The two may have different numbers of seeds."""
    means = [[statistics.mean(q) for q in zip(*per_seed)] for per_seed in (a_per_seed, b_per_seed)]
    return paired_bootstrap(*means, resamples=resamples, confidence=confidence, seed=seed)
