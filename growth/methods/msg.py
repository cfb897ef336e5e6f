"""method=msg: Masked Structural Growth (Yao, Zhang, Li, Wang; ICLR 2024), for model=vit and model=bert.

`method.schedule` lists growth events, each {at, grow, n}: after epoch `at` (or, with `method.grow_unit:
steps`, at the first epoch end with at least `at` optimizer steps done) grow one dimension by n:
- hidden: n more embedding dims (every tensor with the hidden dim grows, TransformerArch.grow_hidden);
- ffn:    n more intermediate units in every layer;
- heads:  n more heads in every layer;
- depth:  n new layers on top, one after another.
Every new structure is multiplied by a mask m (growth/models/transformer_masks.py), 0 at the event, so
the function is exactly kept whatever the new weights hold (they get the family's random init, as in the
original); m then rises linearly over `method.ramp_steps` optimizer steps (the k-th step after the event
trains with m = k / ramp_steps) and, at 1, the mask is folded away: the plain model again. Masks are set
in `loss` (called once per training step), and their values are in the arch spec, so a run stopped
mid-ramp resumes exactly. An event waits for the previous event's ramp to finish; with grow_unit epochs,
setup checks that it always has.

Optimizer: the grown tensors keep their optimizer state in their old slice and start at zero in the new
entries (the engine's replace_params, through GrowthResult.replaced's index maps), and new tensors (head
groups, layers) start with none, as the original's transfer_states does (model_ex/utils_ex_v2.py: step,
exp_avg, exp_avg_sq copied into the old slice, the rest zero). The original's "rewind" LR schedule is
not reproduced: the run's schedule goes on.
"""
import logging

from growth.engine.event import Event
from growth.errors import ConfigError
from growth.measure import count_params
from growth.methods.base import Method, choice
from growth.methods.grow_limits import positive_int
from growth.methods.registry import register_method

log = logging.getLogger("growth")
DIMS = ("hidden", "ffn", "heads", "depth")
UNITS = ("epochs", "steps")
KIND = {"hidden": "grow_width", "ffn": "grow_width", "heads": "grow_heads", "depth": "grow_depth"}  # events.jsonl kinds
EVENT_HELP = "a non-empty list of {at: int >= 1, grow: hidden|ffn|heads|depth, n: int >= 1}, `at` increasing"


def parse_schedule(value) -> list[dict]:
    if not isinstance(value, (list, tuple)) or not value:
        raise ConfigError("method.schedule", value, EVENT_HELP)
    out = []
    for e in value:
        if not isinstance(e, dict) or set(e) != {"at", "grow", "n"} or e["grow"] not in DIMS or any(
                isinstance(e[k], bool) or not isinstance(e[k], int) or e[k] < 1 for k in ("at", "n")):
            raise ConfigError("method.schedule", value, EVENT_HELP)
        out.append({"at": e["at"], "grow": e["grow"], "n": e["n"]})
    if any(b["at"] <= a["at"] for a, b in zip(out, out[1:])):
        raise ConfigError("method.schedule", value, EVENT_HELP)
    return out


@register_method("msg")
class MSG(Method):
    name = "msg"

    def __init__(self, cfg: dict):
        super().__init__(cfg)
        m = cfg["method"]
        self.schedule = parse_schedule(m.get("schedule"))
        self.unit = choice(m.get("grow_unit", "epochs"), "method.grow_unit", UNITS)
        self.ramp_steps = positive_int(m.get("ramp_steps", 100), "method.ramp_steps")
        # done: events grown; active: [ramp name, step the event happened at] of masks not yet folded
        self.done, self.active, self.trajectory = 0, [], []

    @property
    def variants(self) -> dict:
        return {"ramp_steps": self.ramp_steps}

    def setup(self, ctx) -> None:
        model = ctx.model
        if not hasattr(model, "set_mask"):
            raise ConfigError("model", getattr(model, "family", type(model).__name__),
                              "msg grows transformers; allowed: vit, bert")
        if getattr(model, "skippable", False):
            raise ConfigError("model.skippable", True, "msg needs a plain ViT (false)")
        if self.unit == "steps":
            return
        if self.schedule[-1]["at"] >= ctx.epochs:
            raise ConfigError("method.schedule", self.schedule, f"epochs `at` < trainer.epochs={ctx.epochs}")
        gap = min([b["at"] - a["at"] for a, b in zip(self.schedule, self.schedule[1:])] or [ctx.epochs])
        if len(self.schedule) > 1 and self.ramp_steps > gap * ctx.steps_per_epoch:
            raise ConfigError("method.ramp_steps", self.ramp_steps,
                              f"<= {gap * ctx.steps_per_epoch} (the shortest gap between events, {gap} "
                              f"epoch(s) of {ctx.steps_per_epoch} steps: a ramp ends before the next event)")

    # ---- the masks, every step ---------------------------------------------------------------------
    def loss(self, model, x, y, ctx):
        if self.active:
            self.ramp(ctx)
        return super().loss(model, x, y, ctx)

    def ramp(self, ctx) -> None:
        """Before training step ctx.step + 1: each mask k / ramp_steps, k steps after its event; at 1 the
        mask is folded away (the plain model computes the same function as the mask at 1)."""
        for name, start in list(self.active):
            value = min(1.0, (ctx.step + 1 - start) / self.ramp_steps)
            ctx.model.set_mask(name, value)
            if value >= 1.0:
                ctx.model.fold_mask(name)
                self.active.remove([name, start])
                self.trajectory.append({"folded": name, "step": ctx.step})

    # ---- growth at epoch ends ----------------------------------------------------------------------
    def on_epoch_end(self, ctx, epoch: int) -> None:
        if self.done == len(self.schedule):
            return
        event = self.schedule[self.done]
        if (epoch if self.unit == "epochs" else ctx.step) < event["at"] or epoch >= ctx.epochs:
            return
        if self.active:  # the previous ramp is still going (grow_unit steps): wait for it
            log.info("msg: event %d waits for mask %s to finish", self.done, self.active[0][0])
            return
        ctx.emit(self.grow(ctx, epoch, event))

    def grow(self, ctx, epoch: int, event: dict) -> Event:
        model, dim, n = ctx.model, event["grow"], event["n"]
        arch, params, out = model.arch_string(), count_params(model), ctx.probe_output()
        before = {"hidden": model.hidden_size, "ffn": [model.ffn_width(b) for b in model.blocks],
                  "heads": model.heads, "depth": model.depth}[dim]
        if dim == "depth":
            results = [ctx.grow(model.depth_sites()[-1], {"mask": True}) for _ in range(n)]
        else:
            site = {"hidden": model.hidden_sites, "ffn": model.ffn_sites, "heads": model.head_sites}[dim]()[0]
            results = [ctx.grow(site, {"n": n, "mask": True})]
        masks = [r.details["mask"] for r in results]
        self.active += [[name, ctx.step] for name in masks]
        self.done += 1
        after = {"hidden": model.hidden_size, "ffn": [model.ffn_width(b) for b in model.blocks],
                 "heads": model.heads, "depth": model.depth}[dim]
        change = (ctx.probe_output() - out).abs().max().item()
        self.trajectory.append({"epoch": epoch, "step": ctx.step, "grow": dim, "kind": KIND[dim], "where": dim,
                                "before": before, "after": after, "arch_after": model.arch_string(),
                                "params_after": count_params(model), "max_abs_output_change": change})
        return Event(KIND[dim], f"+{n} {dim}", arch, model.arch_string(), params, count_params(model), change,
                     {"dimension": dim, "n": n, "size_before": before, "size_after": after, "masks": masks,
                      "ramp_steps": self.ramp_steps, "function_preserving": True, "optimizer_state": "transferred"})

    # ---- records and resume ------------------------------------------------------------------------
    def summary_extras(self, ctx) -> dict:
        return {"growth_events": self.done, "trajectory": self.trajectory}

    def state_dict(self) -> dict:
        return {"done": self.done, "active": [list(a) for a in self.active], "trajectory": self.trajectory}

    def load_state_dict(self, state: dict) -> None:
        self.done, self.active = state["done"], [list(a) for a in state["active"]]
        self.trajectory = list(state["trajectory"])
