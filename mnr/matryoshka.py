"""Matryoshka embeddings (Kusupati et al. 2022, "Matryoshka Representation Learning"): one model whose embedding
still works when cut to its first d dimensions, for several d at once.

The training signal is the ordinary loss applied to each cut and summed: the first 64 dimensions must rank the
batch on their own, and so must the first 128, and the whole vector. The encoder, the batch and the single
backward pass stay as they are; only the loss changes. A user of the trained model keeps the first d dimensions
and renormalises (evaluate_sts.py's --truncate-dim d scores exactly that).

    loss_fn = matryoshka_loss(mnr_loss, dims=[384, 256, 128, 64])
    loss = loss_fn(anchor, positive, negatives, scale)  # same call as mnr_loss itself
"""
import torch

from mnr.errors import ConfigError


class MatryoshkaLoss(torch.nn.Module):
    """Matryoshka: the wrapped loss on the embeddings cut to each of `dims`, weighted and summed.

    As sentence-transformers' MatryoshkaLoss wraps a loss (Kusupati et al. 2022). A wrapped nn.Module stays a
    submodule, so its own parameters are still trained."""

    def __init__(self, loss, dims, weights):
        super().__init__()
        self.loss, self.dims, self.weights = loss, dims, weights

    def forward(self, anchor, positive, negatives=None, *args, **options):
        size = anchor.shape[-1]  # D
        if max(self.dims) > size:
            raise ValueError(f"Matryoshka dimension {max(self.dims)} is larger than the embeddings' {size} dimensions")
        negatives = [negatives] if torch.is_tensor(negatives) else negatives
        return sum(weight * self.loss(anchor[:, :d], positive[:, :d],  # (b, d), (B, d)
                                      None if negatives is None else [n[:, :d] for n in negatives],  # k x (B, d)
                                      *args, **options)
                   for d, weight in zip(self.dims, self.weights))


def matryoshka_loss(loss_fn, dims, weights=None):
    """`loss_fn(anchor, positive, negatives=None, ...)` -> a loss with the same signature that returns
    sum_i weights[i] * loss_fn on the embeddings cut to their first dims[i] dimensions.

    The cut is not renormalised here: the losses score by cosine similarity, which normalises each cut itself.
    Other arguments (scale, exclude=..., ...) reach `loss_fn` unchanged. Weights default to 1 each.
    A dimension larger than the embeddings is a ValueError at call time, when their size is known."""
    dims = list(dims)
    weights = [1.0] * len(dims) if weights is None else list(weights)
    if not dims or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in dims):
        raise ValueError(f"Matryoshka dimensions must be positive integers, got {dims}")
    if len(weights) != len(dims):
        raise ValueError(f"{len(weights)} Matryoshka weights for {len(dims)} dimensions {dims}: give one per dimension")
    return MatryoshkaLoss(loss_fn, dims, weights)


def parse_dims(dims, weights=None):
    """--matryoshka-dims "384,256,..." and --matryoshka-weights "1,0.5,..." -> (dims, weights) as lists, or
    (None, None) when no dims are given. Lists (as a JSON config holds them) are taken as they are."""
    if isinstance(dims, (list, tuple)):
        return [int(d) for d in dims], weights
    if not dims:
        if weights:
            raise ConfigError("--matryoshka-weights needs --matryoshka-dims")
        return None, None
    try:
        dims_list = [int(d) for d in dims.split(",")]
        weights_list = [float(w) for w in weights.split(",")] if weights else None
    except ValueError:
        raise ConfigError(f"--matryoshka-dims takes whole numbers and --matryoshka-weights numbers, separated by "
                          f"commas: got {dims!r}, {weights!r}") from None
    if min(dims_list) < 1 or (weights_list and len(weights_list) != len(dims_list)):
        raise ConfigError(f"--matryoshka-dims must be positive with one --matryoshka-weights value each: got "
                          f"{dims!r}, {weights!r}")
    return dims_list, weights_list


def loss_from_flags(loss_fn, dims, weights, hidden_size):
    """--matryoshka-dims/--matryoshka-weights as given -> `loss_fn` wrapped by matryoshka_loss, once the model's
    size is known: a cut larger than the embeddings is a ConfigError."""
    dims, weights = parse_dims(dims, weights)
    if max(dims) > hidden_size:
        raise ConfigError(f"--matryoshka-dims {max(dims)} is larger than the model's {hidden_size} dimensions")
    return matryoshka_loss(loss_fn, dims, weights)
