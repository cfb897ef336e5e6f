"""Depth-wise stacking of transformer layers: G_stack and StackBERT share one operation, `stack`.

- `method=gstack` (G_stack's G_direct, Du et al., NeurIPS 2024): train the small model until
  `method.grow_at` (`method.grow_unit`: epochs | steps | samples), then stack its layer list
  `method.factor` times (L -> factor x L; the paper's g = 4), once. The original restarts a fresh AdamW
  with warmup + cosine from the growth point (`method.optimizer: fresh`); `carry` keeps the optimizer and
  its schedule, the copies taking the state of the layer they copy.
- `method=stackbert` (progressive stacking, Gong et al., ICML 2019): every `grow.interval` epochs, or at
  the epochs of `method.schedule`, double the depth by copying the trained layers on top of themselves
  (L -> 2L), until doubling would pass model.max_arch's depth, or grow.max_events. With
  `method.double_optimizer` (the original's --double-optimizer) the copies take their source layer's
  Adam state; without it they start with none (zero moments on their first step).

Neither keeps the function: each event records `max_abs_output_change`. Hooks run at epoch ends, so a
G_stack growth point in steps or samples takes effect at the end of the first epoch that reaches it.
The depth is in the arch spec (TransformerArch), so a stacked run resumes from its checkpoint exactly.
"""
import logging

from growth.engine.event import Event
from growth.errors import ConfigError
from growth.measure import count_params
from growth.methods.base import Method, choice
from growth.methods.grow_limits import GrowLimits, positive_int
from growth.methods.registry import register_method

log = logging.getLogger("growth")
UNITS = ("epochs", "steps", "samples")
OPTIMIZER = ("fresh", "carry")


def stack(ctx, factor: int, carry: bool) -> Event:
    """Stack the model's layers `factor` times in place; with `carry` the copies take their source's
    optimizer state (the engine clones it when the hook returns). Returns the event, not yet emitted."""
    model = ctx.model
    arch, params, out = model.arch_string(), count_params(model), ctx.probe_output()
    result = model.stack_layers(factor)
    if carry:
        ctx.copied(result.copied)
    change = (ctx.probe_output() - out).abs().max().item()
    return Event("grow_depth", f"x{factor}", arch, model.arch_string(), params, count_params(model), change,
                 {"operation": "stack", **result.details, "optimizer_state": "copied" if carry else "fresh"})


def check_stackable(model, name: str) -> None:
    if not hasattr(model, "stack_layers"):
        raise ConfigError("model", getattr(model, "family", type(model).__name__),
                          f"{name} stacks transformer layers; allowed: vit, bert")


def max_depth(cfg: dict, model) -> int | None:
    """model.max_arch's depth, or None without one."""
    text = cfg["model"].get("max_arch")
    return model.parse_max_arch(text)["depths"][0] if text else None


def _bool(value, key: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(key, value, "allowed: true, false")
    return value


class Stacking(Method):
    """What both keep: events, why growth stopped, and the trajectory (for summary.json and resume)."""

    def __init__(self, cfg: dict):
        super().__init__(cfg)
        self.events, self.stopped, self.trajectory = 0, None, []

    def _grow(self, ctx, epoch: int, factor: int, carry: bool) -> Event:
        event = stack(ctx, factor, carry)
        self.events += 1
        self.trajectory.append({"epoch": epoch, "step": ctx.step, "arch_after": event.arch_after,
                                "params_after": event.params_after,
                                "max_abs_output_change": event.max_abs_output_change})
        return event

    def summary_extras(self, ctx) -> dict:
        return {"growth_events": self.events, "growth_stopped": self.stopped, "trajectory": self.trajectory}

    def state_dict(self) -> dict:
        return {"events": self.events, "stopped": self.stopped, "trajectory": self.trajectory}

    def load_state_dict(self, state: dict) -> None:
        self.events, self.stopped = state["events"], state["stopped"]
        self.trajectory = list(state["trajectory"])


@register_method("gstack")
class GStack(Stacking):
    name = "gstack"

    def __init__(self, cfg: dict):
        super().__init__(cfg)
        m = cfg["method"]
        self.factor = m.get("factor", 4)
        if isinstance(self.factor, bool) or not isinstance(self.factor, int) or self.factor < 2:
            raise ConfigError("method.factor", self.factor, "an integer >= 2 (the paper's g = 4)")
        self.grow_at = positive_int(m.get("grow_at", 1), "method.grow_at")
        self.unit = choice(m.get("grow_unit", "epochs"), "method.grow_unit", UNITS)
        self.optimizer = choice(m.get("optimizer", "fresh"), "method.optimizer", OPTIMIZER)

    @property
    def variants(self) -> dict:
        return {"factor": self.factor, "optimizer": self.optimizer}

    def setup(self, ctx) -> None:
        model = ctx.model
        check_stackable(model, "gstack")
        if self.unit == "epochs" and self.grow_at >= ctx.epochs:
            raise ConfigError("method.grow_at", self.grow_at, f"< trainer.epochs={ctx.epochs} (grow_unit epochs)")
        limit = max_depth(self.cfg, model)
        if not self.events and limit is not None and model.depth * self.factor > limit:
            raise ConfigError("method.factor", self.factor,
                              f"depth {model.depth} x factor must be <= model.max_arch's depth {limit} "
                              f"(model.max_arch={self.cfg['model']['max_arch']})")

    def _reached(self, ctx, epoch: int) -> bool:
        done = {"epochs": epoch, "steps": ctx.step, "samples": ctx.train_cost["samples"]}[self.unit]
        return done >= self.grow_at

    def on_epoch_end(self, ctx, epoch: int) -> None:
        if self.events or epoch >= ctx.epochs or not self._reached(ctx, epoch):
            return
        event = self._grow(ctx, epoch, self.factor, carry=self.optimizer == "carry")
        if self.optimizer == "fresh":  # the original: a new AdamW, warmup + cosine over what is left
            ctx.swap_model(ctx.model, restart_schedule=True)
        self.stopped = f"stacked x{self.factor} once"
        ctx.emit(event)


@register_method("stackbert")
class StackBert(Stacking):
    name = "stackbert"

    def __init__(self, cfg: dict):
        super().__init__(cfg)
        m = cfg["method"]
        self.limits = GrowLimits(cfg.get("grow", {}))
        self.schedule = m.get("schedule")
        if self.schedule is not None:
            ok = isinstance(self.schedule, (list, tuple)) and self.schedule and all(
                not isinstance(e, bool) and isinstance(e, int) and e >= 1 for e in self.schedule)
            if not ok or list(self.schedule) != sorted(set(self.schedule)):
                raise ConfigError("method.schedule", self.schedule, "null or increasing epochs >= 1, e.g. [2, 4]")
            self.schedule = list(self.schedule)
        self.double_optimizer = _bool(m.get("double_optimizer", True), "method.double_optimizer")

    @property
    def variants(self) -> dict:
        return {"double_optimizer": self.double_optimizer}

    def setup(self, ctx) -> None:
        check_stackable(ctx.model, "stackbert")
        if self.schedule is not None and self.schedule[-1] >= ctx.epochs:
            raise ConfigError("method.schedule", self.schedule, f"epochs < trainer.epochs={ctx.epochs}")
        self.max_depth = max_depth(self.cfg, ctx.model)

    def _due(self, epoch: int, epochs: int) -> bool:
        if self.schedule is not None:
            return epoch in self.schedule and epoch < epochs
        return self.limits.due(epoch, epochs)

    def on_epoch_end(self, ctx, epoch: int) -> None:
        if self.stopped or not self._due(epoch, ctx.epochs):
            return
        depth = ctx.model.depth
        self.stopped = self.limits.reached(ctx, self.events)
        if self.stopped is None and self.max_depth is not None and 2 * depth > self.max_depth:
            self.stopped = f"doubling depth {depth} would pass model.max_arch's depth {self.max_depth}"
        if self.stopped:
            log.info("growth stopped: %s", self.stopped)
            return
        ctx.emit(self._grow(ctx, epoch, 2, carry=self.double_optimizer))
