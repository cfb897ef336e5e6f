"""A run directory keeps the config it was started with (`config_resolved.yaml`); resuming under another
config would write a record that describes neither. This module says what changed.

Keys that only change how the job runs (where, how fast, how verbose), not what it computes, may differ
between a run and its resume: a requeued job lands on another node, a user turns the progress bar off.
"""
from pathlib import Path

import yaml

from growth.engine.io import atomic_write_text

# Exact keys, or prefixes ending in "." for a whole group.
RUNTIME_KEYS = (
    "trainer.device", "trainer.num_workers", "trainer.progress", "trainer.eval_batch_size",
    "trainer.data_on_device", "trainer.resume", "trainer.on_config_change", "trainer.checkpoint_every",
    "trainer.threads", "trainer.trust_pickles", "trainer.compile", "data.root", "data.num_workers",
    "run_name", "logger.", "hydra.", "local.",
)
POLICIES = ("error", "continue")


def _runtime(key: str) -> bool:
    return any(key == k or (k.endswith(".") and key.startswith(k)) for k in RUNTIME_KEYS)


def flatten(tree, prefix: str = "") -> dict:
    flat = {}
    for key, value in (tree or {}).items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def changed_keys(old: dict, new: dict) -> dict:
    """{key: (old, new)} for every key that differs and is not a runtime key (a missing key is None)."""
    a, b = flatten(old), flatten(new)
    keys = list(dict.fromkeys([*a, *b]))
    return {k: (a.get(k), b.get(k)) for k in keys if not _runtime(k) and a.get(k) != b.get(k)}


def read_config(path) -> dict | None:
    path = Path(path)
    if not path.is_file():
        return None
    try:
        return yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError:
        return None  # a file cut by a kill: nothing to compare with, the checkpoint still checks the model


def write_config(path, cfg: dict) -> None:
    atomic_write_text(path, yaml.safe_dump(cfg, sort_keys=False, default_flow_style=None))


def describe(changes: dict, limit: int = 8) -> str:
    parts = [f"{k}: {old!r} -> {new!r}" for k, (old, new) in list(changes.items())[:limit]]
    more = len(changes) - limit
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")
