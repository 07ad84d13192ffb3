"""Data parallel training across processes, the few pieces it needs. Started by torchrun, which sets RANK.

Every process holds a full copy of the model and embeds its share of the global batch. For in-batch negatives
that is not enough: each query must be scored against the *whole* global batch, so the embeddings are
all-gathered (with their graph) before the loss. One process = world size 1, and every function here is then
a no-op, so the same training script runs on CPU, on one GPU and on N GPUs.
"""
import os

import torch
import torch.distributed as dist

from mnr.errors import ConfigError


def check_device(device_flag):
    """Refuse a --device this machine cannot compute on, before anything loads: torch itself only fails at the
    first tensor moved there, with an AssertionError from deep inside."""
    if device_flag == "auto":
        return
    try:
        device = torch.device(device_flag)
    except (RuntimeError, ValueError):
        raise ConfigError(f"--device {device_flag}: not a device; give auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {device_flag}: no CUDA device here (this PyTorch "
                          f"{'has no CUDA support' if torch.version.cuda is None else 'finds no GPU'}); "
                          "give --device cpu, or auto")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ConfigError(f"--device {device_flag}: this machine has {torch.cuda.device_count()} CUDA device(s), "
                          f"cuda:0 to cuda:{torch.cuda.device_count() - 1}")
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"--device {device_flag}: the scripts compute on cpu or cuda only")


def setup(device_flag="auto"):
    """-> (rank, world_size, device). Joins the process group when started by torchrun (RANK is set)."""
    if "RANK" not in os.environ:
        device = torch.device("cuda" if device_flag == "auto" and torch.cuda.is_available()
                              else "cpu" if device_flag == "auto" else device_flag)
        return 0, 1, device
    use_cuda = device_flag != "cpu" and torch.cuda.is_available()
    # NCCL moves GPU tensors GPU-to-GPU; gloo is the CPU backend (and what the tests here use).
    dist.init_process_group("nccl" if use_cuda else "gloo")
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if use_cuda:
        torch.cuda.set_device(local_rank)
        return dist.get_rank(), dist.get_world_size(), torch.device("cuda", local_rank)
    return dist.get_rank(), dist.get_world_size(), torch.device("cpu")


def world_size():
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


class _AllGather(torch.autograd.Function):
    """(b, D) on each of N ranks -> (N*b, D) on every rank, rank 0's rows first, keeping the graph.

    Why the backward is an all-reduce: each rank's loss used the whole gathered matrix, so the rows this rank
    contributed received gradient from every rank's loss, and only this rank can push that gradient back
    through its own forward. Summing the gathered gradient over ranks and keeping this rank's slice gives
    it d(sum of all ranks' losses)/d(its rows). DDP then averages parameter gradients over the N ranks,
    which turns that sum into the gradient of the mean loss over the global batch: exactly what one
    process with the whole batch would compute. (Returning the slice without the all-reduce would silently
    drop every other rank's contribution to this rank's gradient.)"""

    @staticmethod
    def forward(ctx, x):
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad):
        grad = grad.contiguous()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        per_rank = grad.shape[0] // dist.get_world_size()
        return grad[dist.get_rank() * per_rank:(dist.get_rank() + 1) * per_rank]


def gather(x):
    """All ranks' rows of `x`, differentiable, this rank's own rows first (then the next ranks', wrapping round);
    `x` itself in a single process. Own rows first is what lets every loss keep the tutorial's labels: query i's
    positive is candidate i in every process, and its hard negatives sit B, 2B, ... further on, as in one process.
    A softmax does not care in which order its candidates come."""
    if world_size() == 1:
        return x
    return torch.roll(_AllGather.apply(x), -rank() * len(x), dims=0)  # (N*b, D): the gather's order is rank 0's


class InBatch(torch.nn.Module):
    """One step's embeddings -> the wrapped loss of this process's queries against every process's candidates.

    The training loop calls it with this process's per-column embeddings [anchor, positive, negative...] and
    `rows`, their texts (only a loss that reads texts uses them); the wrapped loss gets (anchor, positive,
    negatives, **options), the candidates gathered with their graph, in fp32. A wrapped nn.Module becomes a
    submodule, so its parameters are trained."""

    def __init__(self, loss):
        super().__init__()
        self.loss = loss

    def forward(self, embeddings, rows=None, **options):
        anchor, positive, *negatives = [e.float() for e in embeddings]
        return self.loss(anchor, gather(positive), [gather(n) for n in negatives], **options)


def average_gradients(module):
    """Under torchrun, a loss's own parameters (a learned temperature) get their gradient averaged over processes as
    DDP averages the model's: each process's loss saw only its own queries. A no-op in one process."""
    if world_size() > 1 and isinstance(module, torch.nn.Module):
        for parameter in module.parameters():
            parameter.register_hook(lambda grad: mean_across_ranks(grad))


def rank():
    return dist.get_rank() if world_size() > 1 else 0


def local_share(batch_size):
    """The slice of the global batch this rank embeds (and whose queries' losses it computes)."""
    n = world_size()
    if batch_size % n:
        raise ConfigError(f"the global batch size {batch_size} must divide evenly over {n} processes")
    per_rank = batch_size // n
    return slice(rank() * per_rank, (rank() + 1) * per_rank)


def mean_across_ranks(value):
    """A scalar tensor averaged over ranks: the global-batch loss, for logging and the NaN check."""
    if world_size() == 1:
        return value
    value = value.detach().clone()
    dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value / world_size()


def sum_across_ranks(numbers):
    """A few numbers -> their sums over ranks, the same on every rank (a tiny all-reduce; one process: as given)."""
    if world_size() == 1:
        return list(numbers)
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
    summed = torch.tensor(numbers, dtype=torch.float64, device=device)  # NCCL reduces GPU tensors only
    dist.all_reduce(summed, op=dist.ReduceOp.SUM)
    return summed.tolist()


def gather_objects(obj):
    """A picklable object from every rank -> the list of them, on every rank (used for RNG states)."""
    if world_size() == 1:
        return [obj]
    out = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def cleanup():
    if world_size() > 1:
        dist.barrier()
        dist.destroy_process_group()
