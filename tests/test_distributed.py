"""Data parallel: 2 CPU processes (gloo, started by torchrun) train exactly like 1 process on the same global batch.

Dropout is off so the two runs are comparable; the learning rate is large so one step moves the weights well
beyond float noise. Hard negatives are on: once a negative column is gathered, wrong labels would pair
anchors with their own negatives (a bug the peer library shipped), and a gradient scaled by the world size
(another) would show up as a different update."""
import json
import os
import sys

import pytest
import torch
from safetensors.torch import load_file

from conftest import ROOT

COMMON = ["--max-steps", "2", "--batch-size", "16", "--lr", "1e-3", "--dropout", "0", "--hard-negatives",
          "--warmup-ratio", "0"]


def run(tmp_path, name, script, *extra, processes=1):
    import subprocess
    out = str(tmp_path / name)
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
    cmd = (launcher if processes > 1 else [sys.executable]) + [script, *extra, "--output-dir", out]
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    with open(os.path.join(out, "train_log.jsonl")) as f:
        losses = [json.loads(line)["loss"] for line in f if '"loss"' in line]
    return losses, load_file(os.path.join(out, "model.safetensors"))


@pytest.mark.parametrize("script,extra", [("train_mnr.py", []),
                                          ("train_bidirectional.py", ["--loss", "bidirectional", "--mini-batch-size", "3"])])
def test_two_processes_equal_one(tmp_path, tiny_model_dir, nli_dir, script, extra):
    args = ["--model-name", tiny_model_dir, "--nli-data", nli_dir, *COMMON, *extra]
    one_loss, one = run(tmp_path, "one", script, *args)
    two_loss, two = run(tmp_path, "two", script, *args, processes=2)
    start = load_file(os.path.join(tiny_model_dir, "model.safetensors"))
    assert len(one_loss) == len(two_loss) == 2
    assert two_loss == pytest.approx(one_loss, abs=1e-5)
    moved = max((one[k] - start[k]).abs().max().item() for k in one)
    assert moved > 1e-4  # the step did change the weights...
    for k in one:  # ...and the same way in both runs
        assert torch.allclose(one[k], two[k], atol=2e-5), k
