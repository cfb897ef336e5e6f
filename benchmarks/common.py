"""What every benchmark shares: interleaved A/B timing, medians and ratios, the config, the machine.

Every number a benchmark reports is a ratio of two things timed side by side in one process: the
repetitions of A and B alternate (A B, B A, A B, ...) so that drift in machine load (other processes,
thermal state) falls on both, and medians drop the odd slow repetition.
"""
import math
import os
import platform
import statistics
from pathlib import Path

import torch

from growth.measure import interleave, timed  # noqa: F401  (one timing helper, shared with growth/)

ROOT = Path(__file__).resolve().parents[1]


def median(values) -> float:
    values = list(values)
    if not values:
        raise ValueError("median of no values")
    return float(statistics.median(values))


def ratio(numerator: float, denominator: float):
    """numerator / denominator, or None when that is not a positive finite number."""
    if not denominator or not math.isfinite(numerator) or not math.isfinite(denominator):
        return None
    r = numerator / denominator
    return r if math.isfinite(r) and r > 0 else None


def compose(**overrides) -> dict:
    """The Hydra config as run.py builds it, as a plain dict; keys as on the command line."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from omegaconf import OmegaConf

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = hydra_compose(config_name="config", overrides=[f"{k}={v}" for k, v in overrides.items()])
    return OmegaConf.to_container(cfg, resolve=True)


def cpu_name() -> str:
    from growth.engine.env import device_name
    return device_name()  # the CPU model: one reader of /proc/cpuinfo, the one summary.json uses


def machine() -> dict:
    return {"device": f"cpu: {cpu_name()}, {os.cpu_count()} cores, torch threads: {torch.get_num_threads()}",
            "torch": torch.__version__, "python": platform.python_version()}


def timing_sizes(quick: bool) -> dict:
    """(batch, repetitions) of the throughput run and of the batch-1 latency run. Batch 1 is cheap and
    noisier per call, so it gets more repetitions."""
    return {"batch": (8, 3), "latency": (1, 5)} if quick else {"batch": (32, 15), "latency": (1, 61)}


def shown(ratios: dict) -> str:
    return ", ".join(f"{f} {r:.2f}" if r else f"{f} null" for f, r in ratios.items())


def batch_and_latency(what: str, sizes: dict, ratios: dict, details: dict) -> dict:
    """A benchmark's entry from its per-family ratios at both sizes: the smallest is the headline."""
    every = [r for fams in ratios.values() for r in fams.values()]
    (big, big_reps), (_, small_reps) = sizes["batch"], sizes["latency"]
    return {
        "ratio": min(every) if all(every) else None,
        "measured": (f"{what}, smallest over families and batch sizes; batch {big} (median of {big_reps} "
                     f"interleaved): {shown(ratios['batch'])}; batch 1 (median of {small_reps}): "
                     f"{shown(ratios['latency'])}"),
        "ratios": ratios["batch"],
        "ratios_batch1": ratios["latency"],
        "details": {**details, "reps": {"batch": big_reps, "batch1": small_reps}},
    }
