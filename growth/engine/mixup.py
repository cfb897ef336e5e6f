"""Mixup/CutMix of training batches (timm's Mixup) with draws that depend only on (seed, rank, step).

timm's Mixup draws from numpy's global RNG. Here each call runs on its own numpy state, derived from
(run seed, rank, optimizer step) and swapped in around the call, so that
- a resume (even inside an epoch, even on several ranks) mixes exactly as the uninterrupted run did: the
  step is in the checkpoint, and the state is a function of it (nothing else to save);
- other numpy users neither shift the mixup draws nor are shifted by them.
"""
import numpy as np
from timm.data import Mixup

from growth.errors import ConfigError

MODES = ("batch", "pair", "elem")


def mixup_active(recipe: dict) -> bool:
    r = recipe or {}
    return float(r.get("mixup") or 0) > 0 or float(r.get("cutmix") or 0) > 0 or r.get("cutmix_minmax") is not None


def _check(recipe: dict) -> None:
    for key in ("mixup", "cutmix"):
        v = recipe.get(key) or 0
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
            raise ConfigError(f"recipe.{key}", v, "allowed: 0 (off) or a positive Beta alpha, e.g. 0.8")
    for key in ("mixup_prob", "switch_prob"):
        v = recipe.get(key, 1.0 if key == "mixup_prob" else 0.5)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1:
            raise ConfigError(f"recipe.{key}", v, "allowed: a probability in [0, 1]")
    if recipe.get("mixup_mode", "batch") not in MODES:
        raise ConfigError("recipe.mixup_mode", recipe.get("mixup_mode"), f"allowed: {', '.join(MODES)}")
    mm = recipe.get("cutmix_minmax")
    numbers = isinstance(mm, (list, tuple)) and len(mm) == 2 and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in mm)
    if mm is not None and not (numbers and 0 < mm[0] < mm[1] <= 1):
        raise ConfigError("recipe.cutmix_minmax", mm, "allowed: null or [min, max] fractions of the image side, "
                          "0 < min < max <= 1")


class Mixer:
    """x, y (class indices) -> mixed x, soft targets (label-smoothed by timm), for one training step."""

    def __init__(self, recipe: dict, num_classes: int, label_smoothing: float, seed: int, rank: int = 0):
        _check(recipe)
        mm = recipe.get("cutmix_minmax")
        self.mixup = Mixup(mixup_alpha=float(recipe.get("mixup") or 0), cutmix_alpha=float(recipe.get("cutmix") or 0),
                           cutmix_minmax=None if mm is None else tuple(float(v) for v in mm),
                           prob=float(recipe.get("mixup_prob", 1.0)), switch_prob=float(recipe.get("switch_prob", 0.5)),
                           mode=recipe.get("mixup_mode", "batch"), label_smoothing=float(label_smoothing),
                           num_classes=int(num_classes))
        self.seed, self.rank = int(seed), int(rank)

    def state(self, step: int):
        """numpy's legacy state for the draws of training step `step` on this rank."""
        bits = np.random.MT19937(np.random.SeedSequence([self.seed % 2 ** 32, self.rank, int(step), 0x6D6978]))
        return np.random.RandomState(bits).get_state()

    def __call__(self, x, y, step: int):
        if len(x) % 2:
            raise ConfigError("trainer.batch_size", len(x), "recipe mixup/cutmix pairs samples within a batch: "
                              "allowed: an even batch size per rank (and a train split of at least one batch)")
        outer = np.random.get_state()
        np.random.set_state(self.state(step))
        try:
            return self.mixup(x, y)
        finally:
            np.random.set_state(outer)
