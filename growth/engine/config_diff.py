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
    "optimized_metric", "optimized_budget_macs",  # what a search is told of the run, not what it trains
)
POLICIES = ("error", "continue")

# Keys added to the configs after runs were started (issue 18), with the value under which a job computes
# what it did before the key existed. A run directory whose config lacks such a key resumes when the new
# config holds that value: an upgrade alone does not stop a requeued sweep. Any other value is a change.
# The recipe values are conf/recipe/none.yaml's (tests/test_config_diff.py holds them equal).
RECIPE_NONE = {
    "name": "none", "transforms": "none", "train_size": None, "scale": [0.08, 1.0], "hflip": 0.5,
    "color_jitter": None, "auto_augment": None, "interpolation": "bilinear", "re_prob": 0.0, "re_mode": "const",
    "re_count": 1, "eval_size": None, "eval_crop_pct": None, "mixup": 0.0, "cutmix": 0.0, "cutmix_minmax": None,
    "mixup_prob": 1.0, "switch_prob": 0.5, "mixup_mode": "batch", "label_smoothing": None, "repeated_aug": None,
    "ema.enabled": False, "ema.decay": 0.9999, "ema.every": 1, "ema.adjust": False, "ema.warmup": False,
}
ADDED_NEUTRAL = {
    **{f"recipe.{k}": v for k, v in RECIPE_NONE.items()},
    "paper": None, "trainer.dry_run": False, "trainer.dry_run_batch": 2, "optim.lr_scale_batch": None,
    "data.num_classes": None, "method.fpn": False, "method.descendant_epochs": None,
    "model.skippable": False, "model.skip_groups": None, "trainer.quantize": None,
    "trainer.quantize_calib_batches": 8,
}
_MISSING = object()


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


def _same(key: str, a: dict, b: dict) -> bool:
    old, new = a.get(key, _MISSING), b.get(key)
    if old is _MISSING and key in ADDED_NEUTRAL:  # a run started before the key existed
        return new == ADDED_NEUTRAL[key]
    return (None if old is _MISSING else old) == new


def changed_keys(old: dict, new: dict) -> dict:
    """{key: (old, new)} for every key that differs and is not a runtime key (a missing key is None, but
    one of ADDED_NEUTRAL's keys, missing from OLD, is unchanged when NEW holds its neutral value)."""
    a, b = flatten(old), flatten(new)
    keys = list(dict.fromkeys([*a, *b]))
    return {k: (a.get(k), b.get(k)) for k in keys if not _runtime(k) and not _same(k, a, b)}


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
