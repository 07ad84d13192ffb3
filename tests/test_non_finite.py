"""A NaN stops the run at the step it appears in, naming what went non-finite (the loss with finite weights, a
weight broken by the previous update, the gradient norm of a finite loss), not always blaming the same knob."""
import pytest
import torch

import train_mnr
from conftest import run_in_process


def flags(model, data, out, *extra):
    return ["--model-name", model, "--nli-data", data, "--batch-size", "8", "--output-dir", str(out), *extra]


class InfiniteGradient(torch.autograd.Function):
    """The identity forward, an infinite backward: a finite loss whose gradient overflows."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad * float("inf")


def test_a_finite_loss_with_an_infinite_gradient_stops_before_the_update(tmp_path, tiny_model_dir, nli_dir):
    args = train_mnr.parse_args(flags(tiny_model_dir, nli_dir, tmp_path / "out", "--max-steps", "3"))
    with pytest.raises(FloatingPointError, match=r"^step 1: the gradient norm is (inf|nan) \(the loss, [0-9.]+, is "
                                                 r"finite\): the backward overflowed and the step was not applied"):
        train_mnr.train(args, loss_fn=lambda *a, **k: InfiniteGradient.apply(train_mnr.mnr_loss(*a, **k)))


def test_a_weight_broken_by_an_update_is_named(tmp_path, tiny_model_dir, nli_dir):
    message = run_in_process(flags(tiny_model_dir, nli_dir, tmp_path / "out", "--max-steps", "3", "--lr", "inf"))
    assert message.startswith("error: step 2: the weight ") and "is not finite, made so by step 1's update" in message
    assert "the learning rate (inf) is likely too high" in message


def test_the_last_update_is_checked_too(tmp_path, tiny_model_dir, nli_dir):
    """No later loss would show a weight the last step broke: it is checked before the model is saved."""
    out = tmp_path / "out"
    message = run_in_process(flags(tiny_model_dir, nli_dir, out, "--max-steps", "1", "--lr", "inf"))
    assert message.startswith("error: step 1: the weight ") and "is not finite after the last update" in message
    assert not (out / "model.safetensors").exists()
