"""A sitting of compare_runs: which of a preset's rows it trains (--rows), and what they cost on this machine.

A preset's table may take several sittings (its finished runs kept as records, mnr/ledger.py). Each sitting says
at start what it will do where that could surprise: a preset pinned to bf16 on a CPU that only emulates bf16.
"""
import torch

from mnr.errors import ConfigError
from mnr.precision import cpu_has_native_bf16, cpu_info
from mnr.recipe import option


def emulated_bf16(preset, native=None):
    """The line said at start where `preset` computes in bf16 (its runs' flags or its scoring) and this machine only
    emulates bf16 (no CUDA, a CPU without AVX512-BF16 or AMX), else None. Emulated bf16 is an order of magnitude
    slower than fp32 (README, "Precision"): the scifact preset's hours of runs would become days, unannounced.
    Explicit bf16 is kept (a table in one precision); runs restored from their records do not train."""
    if native is None:
        native = torch.cuda.is_available() or cpu_has_native_bf16()
    trained = [(short, script) for _, short, script in preset.get("runs", []) if short not in preset.get("soups", {})]
    # a run's own flags come after the preset's: its last --precision is the one it computes in
    runs = [short for short, script in trained if option([*preset.get("flags", []), *script], "--precision") == "bf16"]
    scoring = preset.get("score_precision") == "bf16"
    if native or not (runs or scoring):
        return None
    which = " and ".join(part for part in (runs and f"the training of {len(runs)} of its {len(trained)} runs",
                                           scoring and "its scoring") if part)
    return (f"note: this preset computes {which} in bf16 (--precision bf16), and this CPU ({cpu_info()[0] or 'unknown'}) "
            "has no native bf16 (AVX512-BF16 or AMX): PyTorch emulates it, about 14x slower than fp32 where measured "
            "(README, \"Precision\"); runs restored from their records are not trained again")


def chosen_rows(given, preset, preset_name):
    """--rows ROW,ROW -> the set of those short names, each a row of `preset` (None: every row)."""
    if given is None:
        return None
    shorts = [short for _, short, _ in preset["runs"]]
    rows = {row.strip() for row in given.split(",") if row.strip()}
    unknown = sorted(rows - set(shorts))
    if unknown or not rows:
        raise ConfigError(f"--rows {given}: {'no row given' if not rows else 'no row ' + repr(unknown[0])} in the "
                          f"{preset_name} preset; its rows: {', '.join(shorts)}")
    return rows
