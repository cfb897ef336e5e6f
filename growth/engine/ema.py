"""A model EMA (timm's ModelEmaV3), evaluated beside the trained model when recipe.ema.enabled.

It lives on the model's device, outside the model (not counted in its params, never in the optimizer),
and is updated after every `every`-th optimizer step (torchvision's --model-ema-steps). Growth and phase
switches change the model's tensors; an average over tensors that no longer match would be silently
wrong, so the trainer re-creates the EMA from the model then (`reset`), and says so.
"""
from timm.utils import ModelEmaV3

from growth.errors import ConfigError


def ema_config(recipe: dict | None, global_batch: int, epochs: int) -> dict | None:
    """recipe.ema as checked settings (the decay per EMA update), or None when off. With `adjust`, the
    decay is rescaled as torchvision's reference script does: 1 - (1 - decay) * global_batch * every /
    epochs (capped at 1), so the EMA's horizon in epochs does not depend on the batch or the update rate."""
    cfg = (recipe or {}).get("ema") or {}
    if not cfg.get("enabled", False):
        return None
    decay, every = cfg.get("decay", 0.9999), cfg.get("every", 1)
    if isinstance(decay, bool) or not isinstance(decay, (int, float)) or not 0 <= decay < 1:
        raise ConfigError("recipe.ema.decay", decay, "allowed: a number in [0, 1), e.g. 0.99996 (per EMA update)")
    if isinstance(every, bool) or not isinstance(every, int) or every <= 0:
        raise ConfigError("recipe.ema.every", every, "allowed: a positive integer (optimizer steps per EMA update)")
    warmup = cfg.get("warmup", False)
    if warmup not in (True, False):
        raise ConfigError("recipe.ema.warmup", warmup, "allowed: true, false")
    adjust = cfg.get("adjust", False)
    if adjust not in (True, False):
        raise ConfigError("recipe.ema.adjust", adjust, "allowed: true, false")
    if adjust:
        decay = 1.0 - min(1.0, (1.0 - decay) * global_batch * every / max(1, epochs))
    return {"decay": float(decay), "every": every, "warmup": warmup}


class ModelEma:
    def __init__(self, model, cfg: dict):
        self.cfg = cfg
        self.ema = self._make(model)

    def _make(self, model):
        self.source = model  # the model whose tensors it averages
        ema = ModelEmaV3(model, decay=self.cfg["decay"], use_warmup=self.cfg["warmup"])
        ema.module.requires_grad_(False)  # an average, not a trained model
        return ema

    def restart_reason(self, model, events, replaced: bool) -> str | None:
        """Why the EMA cannot go on averaging `model` after a hook (None: it can). Events that leave the
        structure alone (evaluations such as ADN's skip_eval) do not restart it."""
        if model is not self.source:
            return "a phase switch"
        if replaced:
            return "replaced tensors"
        if any(e.arch_before is not None and (e.arch_before, e.params_before) != (e.arch_after, e.params_after)
               for e in events):  # a width growth keeps the arch string, not the params
            return "a growth event"
        if _signature(self.ema.module) != _signature(model):
            return "a new structure"
        return None

    @property
    def module(self):
        return self.ema.module

    def update(self, model, step: int) -> None:
        """After optimizer step `step` (counted from 1)."""
        every = self.cfg["every"]
        if step % every == 0:
            # with warmup timm's decay ramps over the EMA updates; without, it is constant from the first
            self.ema.update(model, step=step // every if self.cfg["warmup"] else None)

    def reset(self, model) -> None:
        """Start again from the model as it is now (its structure changed)."""
        self.ema = self._make(model)

    def state_dict(self) -> dict:
        return self.ema.module.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.ema.module.load_state_dict(state)


def _signature(model) -> list:
    """Names, shapes and dtypes of a model's state: what an EMA must share with the model it follows."""
    return [(k, tuple(v.shape), v.dtype) for k, v in model.state_dict().items()]
