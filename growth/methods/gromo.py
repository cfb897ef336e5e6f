"""TINY and GradMax: grow the hidden widths of a `gromo_mlp` with GroMo (growth/grow/gromo_step.py).

Every `grow.interval` epochs (not after the last one) one step draws `method.batches` training batches
(ctx.train_batches, its own order per event), runs GroMo's statistics on them and adds up to
`method.neurons` neurons to one hidden layer:

| key            | tiny                                      | gradmax                                  |
|----------------|-------------------------------------------|------------------------------------------|
| method.layer   | best: the largest first-order improvement | best: the largest gradient criterion     |
|                | among the layers below model.max_arch; or | (same rule); or a hidden-layer index     |
|                | a hidden-layer index                      |                                          |
| method.neurons | at most this many per event (fewer when GroMo keeps fewer singular directions, or  |
|                | the layer is near its model.max_arch width)                                          |
| method.scale   | line_search (GroMo's) or a float > 0      | a float > 0: each new neuron's fan-out   |
|                |                                           | norm                                     |
| method.delta   | true: also apply the best update of the   | false (GradMax never moves old weights)  |
|                | existing weights                          |                                          |
| method.batches | batches per statistics pass               | same                                     |

GradMax's new neurons have zero fan-in, so the function is kept exactly; TINY changes it (it lowers the
loss on the batches it read). Growth stops at model.max_arch (every hidden layer at its width there),
grow.max_params (deployed params) or grow.max_events. A TINY line search that finds no decrease grows
nothing: no event, counted in summary.json's growth_skipped.

Training cost of a step: the statistics pass (one forward and backward per sample drawn) counts through
ctx.train_batches, at the train MACs per sample of the model after the hook (the engine's rule). TINY's
line search evaluates the loss on the same batches about a hundred times (forward only, the extended
network: old plus candidate neurons): those samples are added with ctx.add_train_macs at the grown
model's forward MACs per sample (ctx.sizes()["macs"]), which is what the extended forward computes.
GroMo's own linear algebra (covariances, the SVD) is not counted.

One process only: each rank would draw its own batches and grow differently.
"""
import logging
from itertools import islice

from growth.arch import parse_arch
from growth.engine.event import Event
from growth.errors import ConfigError
from growth.grow.gromo_step import check_options, grow_step
from growth.measure import count_params
from growth.methods.base import Method
from growth.methods.grow_limits import GrowLimits, positive_int
from growth.methods.registry import register_method

log = logging.getLogger("growth")
FAMILY = "gromo_mlp"
ORDER = 2_000_000  # train_batches order of event k: ORDER + k, no training epoch uses it
SCHEMA = ("params_before", "params_after")  # grow_step details the event row has already


class GromoGrowth(Method):
    how = ""  # "tiny" or "gradmax": grow_step's preset

    def __init__(self, cfg: dict):
        super().__init__(cfg)
        m, g = cfg["method"], cfg.get("grow", {})
        self.limits = GrowLimits(g)
        self.max_arch_text = cfg["model"].get("max_arch")
        self.batches = positive_int(m.get("batches", 4), "method.batches")
        self.neurons = positive_int(m.get("neurons", 4), "method.neurons")
        self.layer = m.get("layer", "best")
        self.scale = m.get("scale", "line_search" if self.how == "tiny" else 1.0)
        self.delta = m.get("delta", self.how == "tiny")
        self.events, self.skipped, self.stopped, self.trajectory = 0, 0, None, []

    # ---- setup: the model must be a gromo_mlp, and the settings must fit it ------------------------
    def setup(self, ctx) -> None:
        model = ctx.model
        family = getattr(model, "family", type(model).__name__)
        if family != FAMILY:
            raise ConfigError("model", family, f"method={self.name} grows only the {FAMILY} family (model={FAMILY})")
        if ctx.distributed:
            raise ConfigError("method", self.name, "one process only (each rank would grow its own way)")
        hidden = model.hidden
        if self.max_arch_text is None:
            raise ConfigError("model.max_arch", None, "set the largest hidden widths growth may reach, e.g. '32-32'")
        self.max_arch = parse_arch(self.max_arch_text, "model.max_arch")
        if len(self.max_arch) != len(hidden) or any(m < h for m, h in zip(self.max_arch, hidden)):
            raise ConfigError("model.max_arch", self.max_arch_text,
                              f"{len(hidden)} widths, each >= model.arch={model.arch_string()}")
        if self.layer != "best" and not (isinstance(self.layer, int) and 0 <= self.layer < len(hidden)):
            raise ConfigError("method.layer", self.layer, f"best or a hidden-layer index 0..{len(hidden) - 1}")
        try:  # scale, delta and the activation, checked now rather than at the first event
            check_options(model, self._options(self.layer, self.neurons))
        except ConfigError as e:
            raise ConfigError(e.key.replace("gromo.", "method.", 1), e.value, e.allowed) from None

    def _options(self, layer, neurons: int) -> dict:
        return {"how": self.how, "layer": layer, "neurons": neurons, "scale": self.scale, "delta": self.delta}

    # ---- when and where ------------------------------------------------------------------------------
    def _room(self, model) -> dict:
        """Hidden index -> neurons it may still get (layers not at model.max_arch only)."""
        return {j: m - h for j, (h, m) in enumerate(zip(model.hidden, self.max_arch)) if h < m}

    def _stop_reason(self, ctx, room: dict):
        if not room or (self.layer != "best" and self.layer not in room):
            return f"reached max arch {self.max_arch_text}"
        return self.limits.reached(ctx, self.events)

    def on_epoch_end(self, ctx, epoch: int) -> None:
        if self.stopped or not self.limits.due(epoch, ctx.epochs):
            return
        room = self._room(ctx.model)
        self.stopped = self._stop_reason(ctx, room)
        if self.stopped:
            log.info("growth stopped: %s", self.stopped)
            return
        if self.layer != "best":
            layer, neurons = self.layer, min(self.neurons, room[self.layer])
        else:  # GroMo's best among the layers with room; no layer may pass its max width
            layer = "best" if len(room) == len(ctx.model.hidden) else sorted(room)
            neurons = min(self.neurons, *room.values())
        self.grow(ctx, epoch, layer, neurons)

    # ---- one step ----------------------------------------------------------------------------------
    def _draw(self, ctx) -> list:
        """The first `method.batches` batches of a pass in this event's own order (their samples count
        as training cost when the hook returns)."""
        source = ctx.train_batches(ORDER + self.events + self.skipped)
        batches = list(islice(source, self.batches))
        source.close()
        return batches

    def grow(self, ctx, epoch: int, layer, neurons: int) -> None:
        model = ctx.model
        arch, params, out = model.arch_string(), count_params(model), ctx.probe_output()
        deploy = ctx.sizes()["deploy_params"]
        result, det = grow_step(model, self._draw(ctx), self._options(layer, neurons))
        ctx.replaced(result.replaced)  # GroMo rebuilt these tensors: the engine moves their optimizer state
        macs = ctx.sizes()["macs"]  # the grown model: what GroMo's extended forward computes
        search = det.get("line_search_samples", 0)
        if search:
            ctx.add_train_macs(search, macs)
        if not det["neurons_added"]:  # the line search found no decrease: nothing grew
            self.skipped += 1
            log.info("%s at epoch %d: no loss decrease along the new neurons, nothing grown", self.name, epoch)
            return
        self.events += 1
        change = (ctx.probe_output() - out).abs().max().item()
        details = {k: v for k, v in det.items() if k not in SCHEMA}
        details.update(neurons=det["neurons_added"], line_search_macs=search * macs,
                       deploy_params_before=deploy, deploy_params_after=ctx.sizes()["deploy_params"])
        # AdaGrow's trajectory rows (run.py prints them), plus the neurons added
        self.trajectory.append({"epoch": epoch, "kind": "grow_width", "where": result.site.where,
                                "arch_after": model.arch_string(), "params_after": count_params(model),
                                "deploy_params_after": details["deploy_params_after"],
                                "neurons": det["neurons_added"]})
        ctx.emit(Event("grow_width", result.site.where, arch, model.arch_string(), params, count_params(model),
                       change, details))

    # ---- record and resume ---------------------------------------------------------------------------
    def summary_extras(self, ctx) -> dict:
        return {"growth_events": self.events, "growth_skipped": self.skipped, "growth_stopped": self.stopped,
                "trajectory": self.trajectory}

    def state_dict(self) -> dict:
        return {"events": self.events, "skipped": self.skipped, "stopped": self.stopped,
                "trajectory": list(self.trajectory)}

    def load_state_dict(self, state: dict) -> None:
        self.events, self.skipped, self.stopped = state["events"], state["skipped"], state["stopped"]
        self.trajectory = list(state["trajectory"])


@register_method("tiny")
class Tiny(GromoGrowth):
    """TINY (Verbockhaven et al. 2024): new neurons and an update of the old weights that best follow
    the functional gradient, whitened by the input covariance, scaled by a line search."""
    name, how = "tiny", "tiny"


@register_method("gradmax")
class GradMax(GromoGrowth):
    """GradMax (Evci et al. 2022): zero fan-in, fan-out along the top singular vectors of the gradient,
    so the function is kept and the new weights' gradient norm is largest."""
    name, how = "gradmax", "gradmax"
