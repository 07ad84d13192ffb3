"""Numeric precision of the forward pass: bf16 where the hardware computes it natively, fp32 elsewhere.

bf16 keeps fp32's exponent range with an 8-bit mantissa, so it needs no loss scaling (fp16 does). Under
`torch.autocast` the matrix products run in bf16 while weights, optimiser state and the loss stay fp32: the
update is as precise as before, only the forward's products are rounded. Native bf16 is a GPU's matter of
course (Ampere and later); on a CPU only AVX512-BF16 or AMX compute it natively: elsewhere bf16 is emulated
and slower than fp32, so `auto` is fp32 there.
"""
import torch

from mnr.errors import ConfigError

PRECISIONS = ("auto", "fp32", "bf16")
CPU_FLAGS = "/proc/cpuinfo"
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # the instruction sets that compute bf16 products in hardware


def cpu_info(path=CPU_FLAGS):
    """The CPU's model name and feature flags as Linux lists them: (None, set()) where there is no such file
    (macOS, Windows). One reader for both, so a results file's machine line and `auto` see the same CPU."""
    name, flags = None, set()
    try:
        with open(path) as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and name is None:
                    name = value.strip()
                elif key.strip() == "flags" and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    return name, flags


def cpu_flags(path=CPU_FLAGS):
    return cpu_info(path)[1]


def native_bf16(flags):
    """Whether a CPU with these flags computes bf16 products in hardware."""
    return any(flag in flags for flag in NATIVE_BF16_FLAGS)


def cpu_has_native_bf16(path=CPU_FLAGS):
    return native_bf16(cpu_flags(path))


def resolve(precision, device, cpu_native_bf16=None):
    """--precision auto|fp32|bf16 on `device` -> "bf16" or "fp32", what the run computes in. `auto`: bf16 on CUDA
    devices that support it and on CPUs with native bf16, fp32 elsewhere. An explicit choice is kept."""
    if precision not in PRECISIONS:
        raise ConfigError(f"--precision {precision}: choose one of {', '.join(PRECISIONS)}")
    if device.type == "cuda":
        native = torch.cuda.is_bf16_supported()
    else:
        native = cpu_has_native_bf16() if cpu_native_bf16 is None else cpu_native_bf16
    if precision == "auto":
        return "bf16" if native else "fp32"
    if precision == "bf16" and device.type == "cuda" and not native:
        raise ConfigError(f"--precision bf16: {torch.cuda.get_device_name(device)} has no bf16; use fp32")
    return precision


def autocast(device, precision):
    """The forward's context: bf16 autocast when `precision` is "bf16", plain fp32 otherwise."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
