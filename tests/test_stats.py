"""The statistics behind the comparison tables: per-query retrieval metrics, the paired bootstrap over queries,
and each row's difference to the baseline run as compare_runs.py writes it."""
import math

import pytest
import torch

import compare_runs
import evaluate_retrieval as er
from mnr import report
from mnr.stats import mean_std, paired_bootstrap


def test_query_metrics_are_each_querys_own_and_average_to_the_reported_figures():
    ranking = list(range(100))
    relevant = [{1, 4, 50}, {200}, {0}]
    values = er.query_metrics([ranking] * 3, relevant)
    # query 1: hits at ranks 2 and 5 of 3 relevant (ideal: ranks 1-3); query 2: nothing; query 3: rank 1
    ideal = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert values["ndcg@10"] == pytest.approx([(1 / math.log2(3) + 1 / math.log2(6)) / ideal, 0.0, 1.0])
    assert values["mrr@10"] == [0.5, 0.0, 1.0]
    assert values["recall@100"] == pytest.approx([1.0, 0.0, 1.0])
    assert values["recall@10"] == pytest.approx([2 / 3, 0.0, 1.0])
    means = er.retrieval_metrics([ranking] * 3, relevant)
    assert means == {m: pytest.approx(sum(v) / 3) for m, v in values.items()}


def test_paired_bootstrap_of_a_constant_difference_is_that_difference():
    a = [0.1 * i for i in range(50)]
    assert paired_bootstrap(a, a) == (0.0, 0.0, 0.0)
    mean, low, high = paired_bootstrap([x + 0.25 for x in a], a)
    assert (mean, low, high) == pytest.approx((0.25, 0.25, 0.25), abs=1e-12)


def test_paired_bootstrap_interval_width_matches_the_normal_approximation():
    # 400 differences: the bootstrap distribution of their mean is close to normal, sd = sd(d) / sqrt(n)
    d = torch.randn(400, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    mean, low, high = paired_bootstrap((d + 1).tolist(), [1.0] * 400, resamples=20_000)
    half = 1.96 * d.std(correction=0).item() / math.sqrt(400)
    assert mean == pytest.approx(d.mean().item())
    assert (high - low) / 2 == pytest.approx(half, rel=0.08)
    assert low < mean < high


def test_paired_bootstrap_covers_the_true_difference_about_95_times_in_100():
    # Two systems whose per-query scores share a large query effect (easy and hard queries) and differ by 0.02 on
    # average: pairing cancels the query effect, so the interval is narrow and still covers 0.02 as often as it says.
    g = torch.Generator().manual_seed(7)
    covered = 0
    for trial in range(200):
        query = torch.rand(100, generator=g, dtype=torch.float64)
        a = query + 0.02 + 0.05 * torch.randn(100, generator=g, dtype=torch.float64)
        b = query + 0.05 * torch.randn(100, generator=g, dtype=torch.float64)
        _, low, high = paired_bootstrap(a.tolist(), b.tolist(), resamples=2_000, seed=trial)
        covered += low <= 0.02 <= high
        assert high - low < 0.04  # unpaired, the query effect (sd 0.29) would make it about 0.16 wide
    assert 0.89 <= covered / 200 <= 0.99


def test_paired_bootstrap_refuses_unpaired_lists():
    with pytest.raises(ValueError, match="equally long"):
        paired_bootstrap([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="non-empty"):
        paired_bootstrap([], [])


def test_mean_std():
    assert mean_std([1.0, 2.0, 3.0]) == (2.0, 1.0)
    assert mean_std([5.0]) == (5.0, 0.0)


def run(name, *seeds):
    """A table row as compare_runs builds it: per-seed per-query ndcg@10 and its mean over queries and seeds."""
    per_seed = [{"ndcg@10": sum(s) / len(s), "per_query": {"ndcg@10": list(s)}} for s in seeds]
    return {"run": name, "per_seed": per_seed, "ndcg@10": sum(r["ndcg@10"] for r in per_seed) / len(per_seed)}


def test_each_row_is_compared_with_the_baseline_over_the_same_queries_seed_means_first():
    rows = [run("start", [0.5, 0.5, 0.5, 0.5]),
            run("MNR", [0.6, 0.4, 0.8, 0.2], [0.6, 0.6, 0.6, 0.2]),
            run("mined", [0.7, 0.5, 0.9, 0.3], [0.9, 0.7, 0.7, 0.3])]
    compare_runs.compare_with_baseline(rows, "MNR")
    start, mnr, mined = rows
    assert "ndcg@10_delta" not in mnr
    # per query, seed means: MNR [0.6, 0.5, 0.7, 0.2], mined [0.8, 0.6, 0.8, 0.3]: 0.125 better on average
    assert mined["ndcg@10_delta"] == pytest.approx(0.125)
    assert mined["ndcg@10_delta_ci95"][0] >= 0.1 - 1e-12 and mined["ndcg@10_delta_ci95"][1] <= 0.2 + 1e-12
    assert start["ndcg@10_delta"] == pytest.approx(0.5 - 0.5)
    assert report.cell(mined, "ndcg@10_delta").startswith("+0.1250 [+0.1")


def test_a_table_without_its_baseline_run_has_no_differences(capsys):
    rows = [run("start", [0.5, 0.5]), run("mined", [0.7, 0.5])]
    compare_runs.compare_with_baseline(rows, "MNR")
    assert all("ndcg@10_delta" not in r for r in rows) and "no run named 'MNR'" in capsys.readouterr().out


def test_table_cells_show_the_seed_spread_only_with_several_seeds():
    one, three = run("a", [0.5]), run("b", [0.5], [0.6], [0.7])
    one["ndcg@10_std"], three["ndcg@10_std"] = 0.0, 0.1
    assert report.cell(one, "ndcg@10") == "0.5000" and report.cell(three, "ndcg@10") == "0.6000 ± 0.1000"
    assert report.cell(one, "mrr@10") == "-"
    table = report.markdown_table([three], ["ndcg@10"], {"ndcg@10": "nDCG@10"})
    assert table.splitlines()[0].startswith("| run | nDCG@10 |") and "| 0.6000 ± 0.1000 | - | - |" in table
