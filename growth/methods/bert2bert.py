"""method=bert2bert (Chen et al., ACL 2022; no official code), for model=vit and model=bert.

Train the small transformer until `method.grow_at` (`method.grow_unit`: epochs | steps; hooks run at
epoch ends, so steps act at the first epoch end reaching it), then widen it once to the targets:
`method.heads` (head count per layer), `method.ffn` (FFN width per layer; null: hidden * mlp_ratio of
the target hidden size, the family's default) and `method.hidden` (the hidden size), each null = keep.
The new weights come from `method.init` (growth/models/transformer_fpi.py):
- fpi: function-preserving initialisation (Net2WiderNet for transformers): exact for heads and FFN, and
  for the hidden size when the target is a multiple of the start; otherwise LayerNorm statistics shift
  and the event says `function_preserving: false` with the measured change (we grow anyway: bert2BERT
  widens 512 -> 768);
- aki: advanced knowledge initialisation: new FFN units and heads from the next layer's, not
  function-preserving; the hidden size still grows by FPI.
Then, with `method.depth_factor` > 1, the widened layers are stacked (TransformerArch.stack_layers, as
gstack), bert2BERT's depth step; the copies take their source layer's optimizer state (gstack's carry).
Each dimension is one event (kind, sizes before / after, init, function_preserving, measured change).

Optimizer: the optimizer and its schedule go on (the paper starts a new pre-training run [its setting
not retrieved]). Replaced tensors keep their state in the old slice and start at zero in the new entries
(the engine's replace_params, as msg); new head groups start with none. We do not give a copied unit its
source's state: the split divides the outgoing weights by c, so the source's moments no longer fit the
copy's gradient scale, and zero is the engine's one well-defined default.
"""
import logging

from growth.engine.event import Event
from growth.errors import ConfigError
from growth.measure import count_params
from growth.methods.base import Method, choice
from growth.methods.grow_limits import positive_int
from growth.methods.registry import register_method
from growth.models.transformer_fpi import INITS, split_ffn, split_heads, split_hidden

log = logging.getLogger("growth")
UNITS = ("epochs", "steps")


def _target(value, key: str) -> int | None:
    return None if value is None else positive_int(value, key)


@register_method("bert2bert")
class Bert2Bert(Method):
    name = "bert2bert"

    def __init__(self, cfg: dict):
        super().__init__(cfg)
        m = cfg["method"]
        self.hidden = _target(m.get("hidden"), "method.hidden")
        self.ffn = _target(m.get("ffn"), "method.ffn")
        self.heads = _target(m.get("heads"), "method.heads")
        self.init = choice(m.get("init", "fpi"), "method.init", INITS)
        self.grow_at = positive_int(m.get("grow_at", 1), "method.grow_at")
        self.unit = choice(m.get("grow_unit", "epochs"), "method.grow_unit", UNITS)
        self.depth_factor = positive_int(m.get("depth_factor", 1), "method.depth_factor")
        self.done, self.trajectory = False, []

    @property
    def variants(self) -> dict:
        return {"init": self.init}

    def targets(self, model) -> dict:
        """Per dimension the size to reach (the model's own where the config says null)."""
        hidden = self.hidden or model.hidden_size
        return {"heads": self.heads or model.heads, "ffn": self.ffn or int(hidden * model.mlp_ratio),
                "hidden": hidden}

    def setup(self, ctx) -> None:
        model = ctx.model
        if not hasattr(model, "ffn_linears"):
            raise ConfigError("model", getattr(model, "family", type(model).__name__),
                              "bert2bert widens transformers; allowed: vit, bert")
        if getattr(model, "skippable", False):
            raise ConfigError("model.skippable", True, "bert2bert needs a plain ViT (false)")
        if self.unit == "epochs" and self.grow_at >= ctx.epochs:
            raise ConfigError("method.grow_at", self.grow_at, f"< trainer.epochs={ctx.epochs} (grow_unit epochs)")
        if self.done:  # resumed after growth: the model is the grown one
            return
        widths = sorted({model.ffn_width(b) for b in model.blocks})
        if len(widths) > 1:
            raise ConfigError("method.ffn", self.ffn, f"needs one FFN width in every layer, the model has {widths}")
        now, want = self.current(model), self.targets(model)
        for dim in ("hidden", "heads", "ffn"):
            if now[dim] is not None and want[dim] < now[dim]:
                raise ConfigError(f"method.{dim}", want[dim], f">= the model's {dim} {now[dim]}")
        if all(now[d] in (None, want[d]) for d in want) and self.depth_factor == 1:
            raise ConfigError("method.hidden", self.hidden, "nothing to grow: set method.hidden, method.ffn "
                              "or method.heads above the model's, or method.depth_factor >= 2")

    @staticmethod
    def current(model) -> dict:
        """Heads, FFN width (one for every layer; None at depth 0) and hidden size now."""
        return {"heads": model.heads, "ffn": model.ffn_width(model.blocks[0]) if model.depth else None,
                "hidden": model.hidden_size}

    @staticmethod
    def size(model, dim: str):
        """What an event records: the FFN width per layer, the others as one number."""
        if dim == "ffn":
            return [model.ffn_width(b) for b in model.blocks]
        return {"heads": model.heads, "hidden": model.hidden_size, "depth": model.depth}[dim]

    def on_epoch_end(self, ctx, epoch: int) -> None:
        if self.done or epoch >= ctx.epochs or (epoch if self.unit == "epochs" else ctx.step) < self.grow_at:
            return
        model, want = ctx.model, self.targets(ctx.model)
        # one event each; the hidden size first: new head groups are then built at the new size, whereas
        # growing it after them would replace tensors the optimizer has not been given yet
        for dim in ("hidden", "ffn", "heads"):
            now = self.current(model)[dim]
            if now is not None and want[dim] > now:
                ctx.emit(self.widen(ctx, epoch, dim, want[dim] - now))
        if self.depth_factor > 1 and model.depth:
            ctx.emit(self.stack(ctx, epoch))
        self.done = True

    def _measure(self, ctx, epoch: int, dim: str, grow) -> tuple:
        model = ctx.model
        before = (model.arch_string(), count_params(model), self.size(model, dim), ctx.probe_output())
        details = grow()
        change = (ctx.probe_output() - before[3]).abs().max().item()
        after = self.size(model, dim)
        self.trajectory.append({"epoch": epoch, "step": ctx.step, "grow": dim, "where": dim,
                                "kind": "grow_heads" if dim == "heads" else "grow_width", "before": before[2],
                                "after": after, "arch_after": model.arch_string(), "params_after": count_params(model),
                                "max_abs_output_change": change})
        return before, after, change, details

    def widen(self, ctx, epoch: int, dim: str, n: int) -> Event:
        model = ctx.model
        init = "fpi" if dim == "hidden" else self.init  # AKI has no next layer for the stream (module docstring)
        kept = init == "fpi" or model.depth == 1  # one layer borrows from itself: AKI is FPI

        def grow():
            if dim == "heads":
                split_heads(model, n, init)  # new head groups: the engine adds them with empty state
                return {"function_preserving": kept}
            if dim == "ffn":
                ctx.replaced(split_ffn(model, n, init))
                return {"function_preserving": kept}
            replaced, exact = split_hidden(model, n)
            ctx.replaced(replaced)
            return {"function_preserving": exact}

        before, after, change, details = self._measure(ctx, epoch, dim, grow)
        kind = "grow_heads" if dim == "heads" else "grow_width"
        return Event(kind, f"+{n} {dim}", before[0], model.arch_string(), before[1], count_params(model), change,
                     {"dimension": dim, "n": n, "size_before": before[2], "size_after": after, "init": init,
                      "mapping": "round_robin",
                      **details, "optimizer_state": "transferred"})

    def stack(self, ctx, epoch: int) -> Event:
        model = ctx.model

        def grow():
            ctx.copied(model.stack_layers(self.depth_factor).copied)
            return {}

        before, after, change, _ = self._measure(ctx, epoch, "depth", grow)
        return Event("grow_depth", f"x{self.depth_factor}", before[0], model.arch_string(), before[1],
                     count_params(model), change,
                     {"dimension": "depth", "n": after - before[2], "size_before": before[2], "size_after": after,
                      "init": "stack", "function_preserving": False, "optimizer_state": "copied"})

    # ---- records and resume ------------------------------------------------------------------------
    def summary_extras(self, ctx) -> dict:
        return {"growth_events": len(self.trajectory), "trajectory": self.trajectory}

    def state_dict(self) -> dict:
        return {"done": self.done, "trajectory": self.trajectory}

    def load_state_dict(self, state: dict) -> None:
        self.done, self.trajectory = state["done"], list(state["trajectory"])
