"""The random streams dropout draws from, saved and restored: what makes GradCache's replay and resume exact."""
import torch


def rng_state(device):
    """Every RNG that dropout in a forward on `device` draws from: the CPU's, and the GPU's own on CUDA."""
    return torch.get_rng_state(), (torch.cuda.get_rng_state(device) if device.type == "cuda" else None)


def set_rng_state(state, device):
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state(state[1], device)
