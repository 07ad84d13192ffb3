"""--compile (torch.compile, as nanoGPT has it): the same training, only faster or slower. The compiled run's losses
and final weights equal the eager run's (fused kernels round differently: 1e-5 on the losses), and the saved folder
is the plain model's (no `_orig_mod.` prefixes), as train_mnr.py saves it uncompiled. Compiling takes a minute here."""
import json
import os

import pytest
import torch
from safetensors.torch import load_file

from conftest import run_in_process


def run(tiny_model_dir, nli_dir, out, *extra):
    argv = ["--model-name", tiny_model_dir, "--nli-data", nli_dir, "--batch-size", "8", "--max-steps", "3",
            "--dropout", "0", "--precision", "fp32", "--output-dir", str(out), *extra]
    assert run_in_process(argv) is None
    with open(os.path.join(out, "train_log.jsonl")) as f:
        losses = [json.loads(line)["loss"] for line in f if '"loss"' in line]
    return losses, load_file(os.path.join(out, "model.safetensors"))


def test_compiled_training_equals_eager(tiny_model_dir, nli_dir, tmp_path):
    eager_losses, eager = run(tiny_model_dir, nli_dir, tmp_path / "eager")
    compiled_losses, compiled = run(tiny_model_dir, nli_dir, tmp_path / "compiled", "--compile")
    assert len(compiled_losses) == 3
    assert compiled_losses == pytest.approx(eager_losses, rel=1e-5, abs=1e-6)
    assert compiled.keys() == eager.keys()  # saved as the plain model: no compile wrapper's names
    for name, weight in eager.items():
        torch.testing.assert_close(compiled[name], weight, rtol=1e-4, atol=1e-5, msg=name)
    moved = [name for name, weight in eager.items() if not torch.equal(weight, load_file(
        os.path.join(tiny_model_dir, "model.safetensors")).get(name, weight))]
    assert moved  # both runs trained: the comparison is between two trained models, not two copies of the start
