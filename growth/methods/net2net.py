"""Net2Net (Chen, Goodfellow, Shlens, ICLR 2016): grow by function-preserving transformations.

Every `grow.interval` epochs one event: Net2WiderNet widens one stage (new channels copy randomly chosen
old ones, and every copy of a channel divides its outgoing weights by the copy count; BN statistics are
copied with the channel) or Net2DeeperNet adds an identity-initialised block to one stage. The work is
in growth/grow/widen.py; this file decides when, what and where. With `noise: 0` the function is kept
exactly (up to float rounding); `noise > 0` adds the paper's symmetry-breaking noise to the copies'
outgoing weights.

Growth stops at model.max_arch (depth), method.max_widths (width; null = twice the start widths), or
grow.max_params / grow.max_events. Channel widths are part of the arch spec, so checkpoints resume.
"""
import logging
import math

import torch

from growth.arch import parse_arch
from growth.engine.event import Event
from growth.errors import ConfigError
from growth.measure import count_params
from growth.methods.base import Method, choice
from growth.methods.grow_limits import GrowLimits
from growth.methods.registry import register_method

log = logging.getLogger("growth")
OPERATIONS = ("wider", "deeper", "wider-deeper", "deeper-wider")
WHERE = ("round_robin", "random")


@register_method("net2net")
class Net2Net(Method):
    name = "net2net"

    def __init__(self, cfg: dict):
        super().__init__(cfg)
        m, g = cfg["method"], cfg.get("grow", {})
        self.operations = choice(m.get("operations", "wider-deeper"), "method.operations", OPERATIONS).split("-")
        self.where = choice(m.get("where", "round_robin"), "method.where", WHERE)
        self.ratio = float(m.get("widen_ratio", 0.25))
        if not 0 < self.ratio <= 4:
            raise ConfigError("method.widen_ratio", self.ratio, "must be in (0, 4]")
        self.noise = float(m.get("noise", 0.0))
        if self.noise < 0:
            raise ConfigError("method.noise", self.noise, "must be >= 0 (0 keeps the function)")
        self.max_widths_cfg = m.get("max_widths")
        self.limits = GrowLimits(g)
        self.max_arch_text = cfg["model"].get("max_arch")
        seed = g.get("seed")
        self.generator = torch.Generator().manual_seed(int(cfg["seed"] if seed is None else seed))
        self.events, self.next_stage, self.stopped, self.trajectory = 0, 0, None, []

    @property
    def variants(self) -> dict:
        return {"operations": "-".join(self.operations), "where": self.where, "noise": self.noise}

    # ---- setup ----------------------------------------------------------------------------------
    def setup(self, ctx) -> None:
        model = ctx.model
        if not getattr(model, "width_sites", None) or not model.width_sites():
            from growth.models import growable_families
            raise ConfigError("model", getattr(model, "family", type(model).__name__),
                              f"net2net widens conv stages: {', '.join(f for f in growable_families() if f not in ('vit', 'bert'))}")
        n = len(model.widths)
        self.max_depths = parse_arch(self.max_arch_text, "model.max_arch") if self.max_arch_text else list(model.depths)
        if len(self.max_depths) != n or any(m < d for m, d in zip(self.max_depths, model.depths)):
            raise ConfigError("model.max_arch", self.max_arch_text, f"{n} stages, each >= model.arch={model.arch_string()}")
        if self.max_widths_cfg is None:
            self.max_widths = [2 * w for w in self.start_widths(model)]
        else:
            limits = self.max_widths_cfg
            if not isinstance(limits, (list, tuple)) or len(limits) != n or any(
                    isinstance(w, bool) or not isinstance(w, int) for w in limits):
                raise ConfigError("method.max_widths", limits, f"null or {n} integers, one per stage")
            if any(w < c for w, c in zip(limits, model.widths)):
                raise ConfigError("method.max_widths", list(limits), f"each >= model widths {model.widths}")
            self.max_widths = list(limits)

    def start_widths(self, model) -> list[int]:
        """The configured widths (a resumed model may be wider already)."""
        widths = self.cfg["model"].get("widths")
        return list(widths) if widths else list(model.default_widths(len(model.widths)))

    # ---- when, what, where ----------------------------------------------------------------------
    def _stop_reason(self, ctx):
        reason = self.limits.reached(ctx, self.events)
        if reason:
            return reason
        if not self._open("wider", ctx.model) and not self._open("deeper", ctx.model):
            return "every stage reached model.max_arch and method.max_widths"
        return None

    def _open(self, op: str, model) -> list[int]:
        """Stages that operation may still grow."""
        if op == "wider":
            return [i for i, (w, m) in enumerate(zip(model.widths, self.max_widths)) if w < m]
        return [i for i, (d, m) in enumerate(zip(model.depths, self.max_depths)) if d < m]

    def _stage(self, stages: list[int], n: int) -> int:
        if self.where == "random":
            return stages[int(torch.randint(len(stages), (1,), generator=self.generator))]
        stage = next(s % n for s in range(self.next_stage, self.next_stage + n) if s % n in stages)
        self.next_stage = stage + 1
        return stage

    def on_epoch_end(self, ctx, epoch: int) -> None:
        if self.stopped or not self.limits.due(epoch, ctx.epochs):
            return
        self.stopped = self._stop_reason(ctx)
        if self.stopped:
            log.info("growth stopped: %s", self.stopped)
            return
        op = self.operations[self.events % len(self.operations)]
        if not self._open(op, ctx.model):  # that dimension is full: the other one
            op = "deeper" if op == "wider" else "wider"
        stage = self._stage(self._open(op, ctx.model), len(ctx.model.widths))
        event = self.wider(ctx, stage) if op == "wider" else self.deeper(ctx, stage)
        self.events += 1
        self.trajectory.append({"epoch": epoch, "kind": event.kind, "where": event.where,
                                "arch_after": event.arch_after, "params_after": event.params_after,
                                "deploy_params_after": event.details["deploy_params_after"],
                                "widths_after": event.details["widths_after"]})
        ctx.emit(event)

    # ---- the two operations ---------------------------------------------------------------------
    def _event(self, ctx, kind, stage, grow, **details) -> Event:
        model = ctx.model
        before = (model.arch_string(), count_params(model), list(model.widths), ctx.probe_output())
        result = grow()
        change = (ctx.probe_output() - before[3]).abs().max().item()
        return Event(kind, f"stage {stage}", before[0], model.arch_string(), before[1], count_params(model),
                     change, {"stage": stage, "widths_before": before[2], "widths_after": list(model.widths),
                              "deploy_params_after": ctx.sizes()["deploy_params"], **details, **result.details})

    def wider(self, ctx, stage: int) -> Event:
        model = ctx.model
        old = model.widths[stage]
        width = min(self.max_widths[stage], old + max(1, math.ceil(self.ratio * old)))
        source = torch.randint(old, (width - old,), generator=self.generator)
        site = model.width_sites()[stage]
        return self._event(ctx, "grow_width", stage, lambda: ctx.grow(site, {
            "width": width, "source": source.to(model.fc.weight.device), "noise": self.noise,
            "generator": self.generator}), source=source.tolist(), noise=self.noise)

    def deeper(self, ctx, stage: int) -> Event:
        site = ctx.model.depth_sites()[stage]
        return self._event(ctx, "grow_depth", stage, lambda: ctx.grow(site, {"init": "zero"}), init="identity")

    # ---- record and resume ----------------------------------------------------------------------
    def summary_extras(self, ctx) -> dict:
        return {"growth_events": self.events, "growth_stopped": self.stopped, "trajectory": self.trajectory,
                "widths": list(ctx.model.widths)}

    def state_dict(self) -> dict:
        return {"events": self.events, "next_stage": self.next_stage, "stopped": self.stopped,
                "trajectory": self.trajectory, "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.events, self.next_stage = state["events"], state["next_stage"]
        self.stopped, self.trajectory = state["stopped"], list(state["trajectory"])
        self.generator.set_state(state["generator"])
