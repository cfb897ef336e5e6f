"""Splitting steepest descent on the stage channels of a StagedRepNet (growth/models/convnet.py).

A stage's channels are a residual stream with several producers (the stem or the stride-2 unit into the
stage, then every block's last conv) and several consumers. The neuron SplitGrow splits is a stage
channel as the stage's FIRST producer makes it: stage 0's stem ConvBN and the ReLU after it
(model.stem[1]); stage i's downstream unit (a RepUnit of one conv+BN branch) and its ReLU
(model.downs[i-1].act). Its splitting matrix is that conv's, with the BN folded and ReLU's second
derivative by the originals' softplus surrogate (growth/grow/splitting.py).

Splitting channels `chosen` of a stage: Net2Net widens the stage with source = chosen
(growth/grow/widen.py: every producer copies the rows, every consumer divides the columns by the copy
count; the function is kept exactly), then only the first producer's conv rows move: row i += eps v_i,
its new copy -= eps v_i. Swapping the two copies turns the +eps net into the -eps net, and every
consumer reads them alike, so the output is an even function of eps: it changes by O(eps^2).

What S covers. In VGG each block rebuilds the stage's channels from its consumers' (symmetric) read, so
the copies differ only between the first producer and the first block: S is the paper's. In the
residual families the identity path carries the difference to every later activation on the stream
(relu(x + f(x)) after each ResNet block); their second-order terms are not in S (for ReLU they are
zero almost everywhere, as is the first producer's own term without the surrogate). MobileNet's stream
has no activation after the add (out_act none): nothing is left out there.

A stage whose first producer has no activation (MobileNet's downstream units unless
model.downstream_act=true) has no neuron to split: `stage_neurons` leaves it out and says why. A first
producer with more than one branch (an AdaGrow-grown unit) is refused: SplitGrow never adds branches,
and a sum of branches has no single incoming weight row to perturb.
"""
import math
from dataclasses import dataclass

import torch
from torch import nn

from growth.blocks import ConvBN, RepUnit
from growth.grow.splitting import Neurons
from growth.measure import forward_macs


@dataclass(frozen=True)
class StageNeuron:
    """The first producer of one stage: its conv+BN and the activation that follows."""
    stage: int
    convbn: ConvBN
    act: nn.Module

    def spec(self) -> Neurons:
        act = "relu" if type(self.act) is nn.ReLU else self.act  # the name picks the originals' surrogate
        return Neurons(self.convbn.conv, self.act, act, self.convbn.bn, tap_side="output")


def first_producer(model, stage: int) -> StageNeuron | str:
    """The stage's first producer, or why the stage has no neuron to split (a str). Raises ValueError
    for a producer SplitGrow cannot split (several branches, a switchable norm)."""
    unit = model.stage_input_unit(stage)
    act = model.stem[1] if stage == 0 else model.downs[stage - 1].act
    where = "the stem" if stage == 0 else f"downs.{stage - 1}.unit"
    if isinstance(unit, RepUnit):
        if len(unit.branches) != 1:
            raise ValueError(f"stage {stage}'s first producer ({where}) has {len(unit.branches)} branches: "
                             "splitgrow splits single-branch producers only")
        unit = unit.branches[0]
    if isinstance(act, nn.Identity):
        return f"stage {stage}: {where} has no activation after it (model.downstream_act=false)"
    if type(unit.bn) is not nn.BatchNorm2d:
        raise ValueError(f"stage {stage}'s first producer ({where}) normalises with {type(unit.bn).__name__}: "
                         "splitgrow needs a plain BatchNorm2d there")
    return StageNeuron(stage, unit, act)


def stage_neurons(model) -> tuple[dict[int, StageNeuron], dict[int, str]]:
    """({stage: its first producer} for the stages that can split, {stage: why not} for the others)."""
    found, skipped = {}, {}
    for stage in range(len(model.widths)):
        p = first_producer(model, stage)
        (skipped if isinstance(p, str) else found)[stage] = p
    return found, skipped


@torch.no_grad()
def perturb(neuron: StageNeuron, channels, vecs: torch.Tensor, old: int, eps: float) -> None:
    """After widening: row channels[j] of the first producer's conv += eps v_j, its copy old + j -= eps v_j."""
    w = neuron.convbn.conv.weight
    idx = torch.as_tensor(channels, dtype=torch.long, device=w.device)
    v = vecs.to(w.device, w.dtype).reshape(len(idx), *w.shape[1:])  # D = cin*kh*kw, weight[i].flatten()'s order
    w[idx] += eps * v
    w[old:old + len(idx)] -= eps * v


def split_stage(model, neuron: StageNeuron, channels, vecs: torch.Tensor, eps: float, grow=None):
    """Split `channels` (old indices, each at most once) of the neuron's stage along `vecs` (one row per
    channel, the splitting eigenvectors); `grow(site, how)` does the widening (ctx.grow, so the engine
    gets the replaced tensors; default model.grow). Returns the width site's GrowthResult."""
    stage = neuron.stage
    old, channels = model.widths[stage], [int(c) for c in channels]
    if len(set(channels)) != len(channels):
        raise ValueError(f"channels {channels}: each at most once")
    site = model.width_sites()[stage]
    result = (grow or model.grow)(site, {"width": old + len(channels), "source": torch.tensor(channels)})
    perturb(neuron, channels, vecs, old, eps)
    return result


def channel_macs(model, stage: int, input_shape, n: int = 1) -> float:
    """MACs one more channel of `stage` adds to a forward of one sample: every producer's and consumer's
    share and the block widths that follow the stage width, averaged over n more channels (a bottleneck's
    inner width moves in steps). Measured on meta-device copies: no memory, no RNG draw."""
    spec = model.arch_spec()
    wider = {**spec, "kwargs": {**spec["kwargs"], "widths": list(spec["kwargs"]["widths"])}}
    wider["kwargs"]["widths"][stage] += n
    with torch.device("meta"):
        now, grown = type(model).from_spec(spec), type(model).from_spec(wider)
    return (forward_macs(grown, input_shape) - forward_macs(now, input_shape)) / n


def energy_costs(model, stages, input_shape, ratio: float) -> list[float]:
    """The energy-aware original's cost per neuron, sqrt(MACs one more neuron adds), per stage; the MACs
    are averaged over about one event's worth of channels (ratio x width)."""
    return [math.sqrt(max(channel_macs(model, s, input_shape, max(1, math.ceil(ratio * model.widths[s]))), 1.0))
            for s in stages]
