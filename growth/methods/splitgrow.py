"""SplitGrow: splitting steepest descent (Liu, Wu, Wang, NeurIPS 2019) on the stage channels of our conv
nets (resnet_basic, resnet_bottleneck, vgg; mobilenet where a stage's first producer has an activation).

Every grow.interval epochs: one pass over method.batches training batches (ctx.train_batches; their cost
counts as training compute) gives the splitting matrix of every stage channel as its stage's first
producer makes it (growth/grow/split_stage.py); the channels with the most negative smallest eigenvalue,
ranked over all stages together, split into two copies along that eigenvector (+-eps). Per step:
- k = int(method.ratio x the channels of the stages that can split), at least 1; never a channel with
  lambda >= 0 (splitting it cannot lower the loss to second order), so a step may split nothing;
- method.energy_aware: rank by lambda / cost with cost = sqrt(MACs one more channel of its stage adds)
  and take channels while the summed cost stays within method.ratio x the total cost (the energy-aware
  original's rounded LP, growth/grow/splitting.py `choose`);
- a stage stops at method.max_widths[stage]; growth stops at grow.max_params deployed params or after
  grow.max_events split steps (steps that split something).
Each stage that splits writes one grow_width event (its output change, the channels, their eigenvalues).
Stages split from the last to the first, so the eigenvectors of a stage still meet the input they were
computed for (a later split only widens that input, which Net2Net does exactly).
"""
import logging
import math
from itertools import islice

import torch

from growth.engine.event import Event
from growth.errors import ConfigError
from growth.grow.split_stage import energy_costs, split_stage, stage_neurons
from growth.grow.splitting import choose, splitting_eigen_many
from growth.measure import count_params
from growth.methods.base import Method
from growth.methods.grow_limits import GrowLimits, positive_int
from growth.methods.registry import register_method

log = logging.getLogger("growth")
MAX_MATRIX_BYTES = 2 ** 31  # splitting matrices held at once; more neurons take more passes over the batches
ORDER = 2_000_000  # train_batches orders of split steps: ORDER + step (no training epoch uses them)


@register_method("splitgrow")
class SplitGrow(Method):
    name = "splitgrow"

    def __init__(self, cfg: dict):
        super().__init__(cfg)
        m, g = cfg["method"], cfg.get("grow", {})
        self.limits = GrowLimits(g)
        self.ratio = float(m.get("ratio", 0.1))
        if not 0 < self.ratio <= 1:
            raise ConfigError("method.ratio", self.ratio, "must be in (0, 1]")
        self.eps = float(m.get("eps", 1e-2))
        if not self.eps >= 0:
            raise ConfigError("method.eps", self.eps, "must be >= 0")
        batches = m.get("batches", 16)
        self.batches = None if batches is None else positive_int(batches, "method.batches")
        self.energy_aware = m.get("energy_aware", False)
        if not isinstance(self.energy_aware, bool):
            raise ConfigError("method.energy_aware", self.energy_aware, "allowed: true or false")
        self.max_widths = m.get("max_widths")
        if self.max_widths is not None:
            self.max_widths = [positive_int(w, "method.max_widths") for w in self.max_widths]
        self.steps, self.events, self.stopped, self.trajectory = 0, 0, None, []

    # ---- setup: the model must have stages SplitGrow can split ------------------------------------
    def setup(self, ctx) -> None:
        model = ctx.model
        if not (hasattr(model, "widths") and hasattr(model, "stage_input_unit")):
            from growth.models import growable_families
            raise ConfigError("model", getattr(model, "family", type(model).__name__),
                              f"splitgrow splits the stage channels of {', '.join(growable_families())} "
                              "(conv families)")
        try:
            neurons, skipped = stage_neurons(model)
        except ValueError as e:
            raise ConfigError("model", model.arch_string(), str(e)) from None
        if not neurons:
            raise ConfigError("model.downstream_act", model.downstream_act,
                              "no stage can split: " + "; ".join(skipped.values()))
        for reason in skipped.values():
            log.warning("splitgrow skips %s", reason)
        self.skipped = skipped
        if self.max_widths is not None and len(self.max_widths) != len(model.widths):
            raise ConfigError("method.max_widths", self.max_widths,
                              f"one width per stage ({len(model.widths)}), or null")

    # ---- when -------------------------------------------------------------------------------------
    def _room(self, model, stage: int) -> float:
        return math.inf if self.max_widths is None else self.max_widths[stage] - model.widths[stage]

    def _stop_reason(self, ctx, stages) -> str | None:
        if not any(self._room(ctx.model, s) > 0 for s in stages):
            return f"every stage reached method.max_widths={self.max_widths}"
        return self.limits.reached(ctx, len(self.trajectory), "split steps")  # steps that split something

    def on_epoch_end(self, ctx, epoch: int) -> None:
        if self.stopped or not self.limits.due(epoch, ctx.epochs):
            return
        neurons, _ = stage_neurons(ctx.model)
        self.stopped = self._stop_reason(ctx, neurons)
        if self.stopped:
            log.info("growth stopped: %s", self.stopped)
            return
        self.split(ctx, epoch, neurons)

    # ---- what and how -------------------------------------------------------------------------------
    def eigen(self, ctx, neurons: dict, stages: list[int]):
        """{stage: (lambda, v)} over one pass of this step's batches, and the samples of that pass."""
        batches = _Batches(ctx, ORDER + self.steps, self.batches)
        loss_fn = ctx.label_loss  # training's loss (the pass's labels are hard)
        pairs = splitting_eigen_many(ctx.model, [neurons[s].spec() for s in stages], batches, loss_fn,
                                     max_matrix_bytes=MAX_MATRIX_BYTES, all_sum=ctx.all_sum)
        return dict(zip(stages, pairs)), batches.samples

    def pick(self, ctx, stages: list[int], eig: dict) -> dict[int, list[int]]:
        """{stage: channels to split, most negative lambda first}, capped by method.max_widths."""
        model, lams = ctx.model, [eig[s][0] for s in stages]
        if self.energy_aware:
            costs = energy_costs(model, stages, tuple(ctx.probe.shape[1:]), self.ratio)
            picked = choose(lams, cost=costs, ratio=self.ratio)
        else:
            picked = choose(lams, k=max(1, int(self.ratio * sum(len(lam) for lam in lams))))
        out = {}
        for s, idx in zip(stages, picked):
            room = self._room(model, s)
            idx = idx.tolist()[:int(room) if room < math.inf else None]
            if idx:
                out[s] = idx
        return out

    def split(self, ctx, epoch: int, neurons: dict) -> None:
        model = ctx.model
        stages = [s for s in sorted(neurons) if self._room(model, s) > 0]
        eig, samples = self.eigen(ctx, neurons, stages)
        chosen = self.pick(ctx, stages, eig)
        lam_min = {str(s): eig[s][0].min().item() for s in stages}
        self.steps += 1  # every step draws its own batches, splitting or not
        if not chosen:
            log.info("split step %d: no channel has a negative splitting eigenvalue (min %s)", self.steps, lam_min)
        for s in sorted(chosen, reverse=True):  # the last stage first: see the module docstring
            lam, vecs = eig[s]
            ctx.emit(self._split_one(ctx, neurons[s], chosen[s], lam, vecs, samples))
        if chosen:  # the keys run.py's report prints, then SplitGrow's own
            self.trajectory.append({
                "epoch": epoch, "kind": "grow_width", "where": "widths " + "-".join(map(str, model.widths)),
                "arch_after": model.arch_string(), "params_after": count_params(model),
                "deploy_params_after": ctx.sizes()["deploy_params"],
                "split": {str(s): len(c) for s, c in sorted(chosen.items())}, "widths_after": list(model.widths),
                "lambda_min": lam_min})

    def _split_one(self, ctx, neuron, channels: list[int], lam, vecs, samples: int) -> Event:
        model, s = ctx.model, neuron.stage
        arch, params, width = model.arch_string(), count_params(model), model.widths[s]
        out = ctx.probe_output()
        idx = torch.tensor(channels, device=vecs.device)
        split_stage(model, neuron, channels, vecs[idx], self.eps, ctx.grow)
        self.events += 1
        change = (ctx.probe_output() - out).abs().max().item()
        return Event("grow_width", f"stage {s}", arch, model.arch_string(), params, count_params(model), change, {
            "split": {str(s): channels}, "eigenvalues": lam[idx].tolist(), "eps": self.eps, "samples": samples,
            "width_before": width, "width_after": model.widths[s], "widths_after": list(model.widths),
            "energy_aware": self.energy_aware})

    # ---- record and resume --------------------------------------------------------------------------
    def summary_extras(self, ctx) -> dict:
        return {"growth_events": self.events, "split_steps": self.steps, "growth_stopped": self.stopped,
                "trajectory": self.trajectory, "widths": list(getattr(ctx.model, "widths", [])),
                "skipped_stages": {str(s): why for s, why in getattr(self, "skipped", {}).items()}}

    def state_dict(self) -> dict:
        return {"steps": self.steps, "events": self.events, "stopped": self.stopped,
                "trajectory": self.trajectory}

    def load_state_dict(self, state: dict) -> None:
        self.steps, self.events, self.stopped = state["steps"], state["events"], state["stopped"]
        self.trajectory = list(state["trajectory"])


class _Batches:
    """Re-iterable: every pass draws the same first `limit` batches (all: None) of
    ctx.train_batches(order); the engine counts every pass's samples as training compute. `samples`:
    the first pass's count on this rank (what the splitting matrices average over, per rank)."""

    def __init__(self, ctx, order: int, limit: int | None):
        self.ctx, self.order, self.limit = ctx, order, limit
        self.passes, self.samples = 0, 0

    def __iter__(self):
        first = self.passes == 0
        self.passes += 1
        for x, y in islice(self.ctx.train_batches(self.order), self.limit):
            if first:
                self.samples += len(y)
            yield x, y


