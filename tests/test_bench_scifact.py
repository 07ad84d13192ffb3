"""benchmarks/bench_scifact.py: its smoke run on the tiny model and a tiny (anchor, positive, negative) table prints
the peak and both configurations with sane figures; the work it counts per pair follows its formula; --write
replaces its own section of RESULTS.md and keeps every other byte."""
import os
import re
import sys

import pytest
import torch

from conftest import ROOT, run_script, write_tsv

sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
import bench_scifact  # noqa: E402
from mnr.precision import resolve  # noqa: E402


@pytest.fixture
def table(tmp_path):
    """100 rows of distinct sentences (3 batches of 32 with no repeated text), long enough to be cut at 8 tokens."""
    topics = ["proteins fold", "cells divide", "genes express", "viruses spread", "neurons fire"]
    rows = [(f"why do {topics[i % 5]} in case {i} of the study?",
             f"in case {i} the {topics[i % 5]} quickly because of a measured and repeated cause",
             f"an unrelated abstract {i} says that {topics[(i + 1) % 5]} slowly for other reasons entirely")
            for i in range(100)]
    return write_tsv(tmp_path / "negatives.tsv", ("anchor", "positive", "negative"), rows)


def test_smoke_prints_the_peak_and_both_configurations(tiny_model_dir, table):
    result = run_script("benchmarks/bench_scifact.py", "--smoke", "--write", "--model-name", tiny_model_dir,
                        "--table", table)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    bf16, fp32 = map(float, re.search(r"bf16 (\d+) GFLOP/s, fp32 (\d+) GFLOP/s", out).groups())
    assert bf16 > 0 and fp32 > 0, out
    assert "6 N + 12 L d T" in out and "L 2, d 32" in out, out
    for name in ("ours", "sentence-transformers, bf16=True"):
        cells = re.search(rf"^\| {re.escape(name)} \| (.*) \|$", out, re.M).group(1).split(" | ")
        pairs, tokens, gflops, share = (float(cell.split()[0]) for cell in cells)
        assert pairs > 0 and tokens > pairs and gflops > 0, cells
        assert 0 < share < 100, cells  # per cent of the peak of the precision it computes in
    # Each share names the peak it is of: ours computes in what PRECISION auto picks here (fp32 on a CPU without
    # native bf16); a bf16 run is held to the faster product (fp32's where bf16 is emulated, and so slower).
    ours = resolve("auto", torch.device("cpu"))
    library = "bf16" if bf16 >= fp32 else "fp32"
    assert re.search(rf"^\| ours \| .* of {ours if ours == 'fp32' else library} \|$", out, re.M), out
    assert re.search(rf"^\| sentence-transformers, bf16=True \| .* of {library} \|$", out, re.M), out
    ratio = re.search(r"^ours / sentence-transformers, bf16=True: (\d+\.\d\d) \(.*\)x", out, re.M)
    assert ratio and float(ratio.group(1)) > 0, out
    assert "wrote" not in out  # a smoke run never writes RESULTS.md


def test_work_per_pair_follows_the_formula(tiny_model_dir, table):
    from transformers import BertModel
    tokens, flops, n, layers, width = bench_scifact.work_per_pair(table, tiny_model_dir, steps=3, max_length=8)
    # Every text is longer than 8 tokens, so each is cut to exactly 8: 24 tokens a pair.
    assert tokens == 24
    assert n == sum(p.numel() for p in BertModel.from_pretrained(tiny_model_dir).encoder.parameters())
    assert (layers, width) == (2, 32)
    assert flops == 3 * (6 * n * 8 + 12 * 2 * 32 * 8 * 8)


def test_write_replaces_its_own_section_and_keeps_the_others(tmp_path):
    path = tmp_path / "RESULTS.md"
    before, after = "# Title\n\nfigures\n\n## First\n\ntext  \n", "\n## Last\n\nmore\n"
    old = "## The SciFact recipe's training: an older title\n\nold figures\n"
    path.write_text(before + old + after)
    new = bench_scifact.HEADING + "\n\nnew figures\n"
    bench_scifact.write_section(str(path), new)
    assert path.read_text() == before + new + after
    path.write_text(before)  # no such section yet: it goes after the last one
    bench_scifact.write_section(str(path), new)
    assert path.read_text() == before + "\n" + new
    bench_scifact.write_section(str(path), new)  # the last section, replaced to the end of the file
    assert path.read_text() == before + "\n" + new
    assert not [p for p in os.listdir(tmp_path) if ".tmp" in p]
