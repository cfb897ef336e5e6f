"""Net2Net for the growable conv nets (growth/models/convnet.py): widen a stage, deepen a stage.

Net2WiderNet (Chen, Goodfellow, Shlens 2016). A stage grows from c to C channels; new channel c + k copies
old channel `source[k]`. Old channels keep their positions and the new ones are appended, so every grown
dimension's `Replaced.index` is arange(old size).
- A *producer* writes the stage's channels (the stem or the downstream unit into the stage, and every
  block's last conv): its conv rows, conv bias and BN weight, bias, running mean and variance copy the
  source rows, so copies of a channel carry the same values (BN and the activations act per channel).
- A *consumer* reads them (every block's first conv, the next downstream unit or the fc): its columns copy
  the source columns and every copy of a channel (the original included) is divided by that channel's
  copy count, so the copies sum back to the old weight: the function is kept up to float rounding, in
  train mode too (copies have the same batch statistics).
Widths inside a block that are computed from the stage width (a basic block's ru1 -> ru2 channels, a
bottleneck's inner width, MobileNet's hidden = expand * c and its squeeze-excite's hidden) are widened the
same way, to exactly the sizes a block built at the new width has, so `from_spec(arch_spec())` rebuilds
the widened net. Their maps follow the stage's source (`derived_map`), so `source` alone fixes the result.
A depthwise unit (groups = channels) copies whole per-channel kernels and divides nothing.

`noise` > 0 breaks the copies' symmetry as the paper suggests: N(0, (noise * std(W))^2) is added to the
columns of the new channels in every consumer weight W (their outgoing weights), so copies get different
gradients and can diverge; the function then changes slightly. noise = 0 keeps it.

Net2DeeperNet is depth growth with the function-preserving 'zero' init (growth/grow/init.py): a residual
block whose last BN is zeroed, or, for VGG's plain block, the identity.
"""
from dataclasses import dataclass, field

import torch
from torch import nn

from growth.blocks import ConvBN, RepUnit
from growth.blocks.switchable import SwitchableNorm
from growth.grow.init import initialize
from growth.models.growable import GrowthResult, Replaced, Site
from growth.models.mobilenet import MobileBlock
from growth.models.resnet_basic import BasicBlock
from growth.models.resnet_bottleneck import BottleneckBlock
from growth.models.vgg import PlainBlock


@dataclass(frozen=True)
class ChannelMap:
    """`index[j]` = the old channel that new channel j copies; index[:old] = arange(old)."""
    index: torch.Tensor
    old: int

    @property
    def new(self) -> int:
        return len(self.index)

    def counts(self) -> torch.Tensor:
        """Per new channel, how many copies its old channel has (the original included)."""
        return torch.bincount(self.index, minlength=self.old)[self.index]


def channel_map(old: int, source: torch.Tensor) -> ChannelMap:
    return ChannelMap(torch.cat([torch.arange(old, device=source.device), source]), old)


def derived_map(stream: ChannelMap, old: int, new: int) -> ChannelMap:
    """The map of a block-internal width old -> new that follows the stage's map: new internal channel t
    copies the internal channel at the relative position of the stage channel it follows,
    source[t mod n] * old // c + t div n (mod old), n = new stage channels. A width equal to the stage's
    gets the stage's own map; MobileNet's hidden (expand per stage channel) copies the expand channels
    `expand * source[k] + e` for each new stage channel k."""
    src = stream.index[stream.old:]
    t = torch.arange(new - old, device=src.device)
    picks = (src[t % len(src)] * old) // stream.old + t // len(src)
    return channel_map(old, picks % old)


def draw_source(old: int, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """n old channels drawn uniformly with replacement (the paper's random mapping). With `generator`
    the draw is reproducible and the global RNG is untouched; None draws from the global RNG."""
    device = generator.device if generator is not None else "cpu"
    return torch.randint(old, (n,), generator=generator, device=device)


# ---- the plan: per leaf module (Conv2d, Linear, BatchNorm2d), which dimension grows by which map ----
@dataclass
class _Edit:
    module: nn.Module
    out: ChannelMap | None = None  # rows: copied
    inp: ChannelMap | None = None  # columns: copied and divided by copy count
    depthwise: bool = False


@dataclass
class _Plan:
    edits: dict = field(default_factory=dict)  # id(leaf) -> _Edit
    units: list = field(default_factory=list)  # (RepUnit, cin map, cout map): their cin/cout follow

    def edit(self, module) -> _Edit:
        return self.edits.setdefault(id(module), _Edit(module))


def _norms(bn) -> list[nn.BatchNorm2d]:
    return list(bn.norms) if isinstance(bn, SwitchableNorm) else [bn]  # ADN: both norm sets


def _convbns(module) -> list[ConvBN]:
    return list(module.branches) if isinstance(module, RepUnit) else [module]


def produce(plan: _Plan, module, m: ChannelMap) -> None:
    """`module` (ConvBN or RepUnit) writes channels that grow by `m`: rows copied."""
    for cb in _convbns(module):
        plan.edit(cb.conv).out = m
        for bn in _norms(cb.bn):
            plan.edit(bn).out = m
    if isinstance(module, RepUnit):
        plan.units.append((module, None, m))


def consume(plan: _Plan, module, m: ChannelMap) -> None:
    """`module` (ConvBN, RepUnit, Conv2d or Linear) reads channels that grow by `m`: columns split."""
    if isinstance(module, (nn.Conv2d, nn.Linear)):
        if isinstance(module, nn.Conv2d) and module.groups != 1:
            raise NotImplementedError(f"widening the input of a grouped conv ({module})")
        plan.edit(module).inp = m
        return
    for cb in _convbns(module):
        consume(plan, cb.conv, m)
    if isinstance(module, RepUnit):
        plan.units.append((module, m, None))


def depthwise(plan: _Plan, unit: RepUnit, m: ChannelMap) -> None:
    """A depthwise unit (groups = channels): whole per-channel kernels copied, nothing divided."""
    produce(plan, unit, m)
    for cb in unit.branches:
        plan.edit(cb.conv).depthwise = True
    plan.units.append((unit, m, m))


# ---- which modules of a stage read and write which widths -------------------------------------------
def _plan_block(plan: _Plan, block, ref, s: ChannelMap) -> None:
    """`block` at the old width, `ref` the same block type built at the new width (its sizes are the
    target ones), `s` the stage's map."""
    def inner(old: int, new: int) -> ChannelMap:
        return derived_map(s, old, new)

    if isinstance(block, BasicBlock):
        i = inner(block.ru1.cout, ref.ru1.cout)
        consume(plan, block.ru1, s), produce(plan, block.ru1, i)
        consume(plan, block.ru2, i), produce(plan, block.ru2, s)
    elif isinstance(block, PlainBlock):
        consume(plan, block.ru, s), produce(plan, block.ru, s)
    elif isinstance(block, BottleneckBlock):
        i = inner(block.ru.cout, ref.ru.cout)
        consume(plan, block.reduce, s), produce(plan, block.reduce, i)
        consume(plan, block.ru, i), produce(plan, block.ru, i)
        consume(plan, block.expand, i), produce(plan, block.expand, s)
    elif isinstance(block, MobileBlock):
        h = inner(block.dw.cout, ref.dw.cout)
        consume(plan, block.expand, s), produce(plan, block.expand, h)
        depthwise(plan, block.dw, h)
        if not isinstance(block.se, nn.Identity):
            squeeze, excite = block.se.gate[1], block.se.gate[3]
            e = inner(squeeze.conv.out_channels, ref.se.gate[1].conv.out_channels)
            consume(plan, squeeze, h), produce(plan, squeeze, e)
            consume(plan, excite, e)
            plan.edit(excite).out = h
        consume(plan, block.project, h), produce(plan, block.project, s)
    else:
        raise TypeError(f"widen_stage does not know the block {type(block).__name__}")


def _plan_stage(model, stage: int, s: ChannelMap) -> _Plan:
    plan = _Plan()
    produce(plan, model.stage_input_unit(stage), s)
    blocks = list(model.stages[stage])
    if blocks:
        with torch.device("meta"):  # target sizes only: no memory, no draw from the global RNG
            ref = model.make_block(stage)  # model.widths[stage] is the new width already
        for block in blocks:
            _plan_block(plan, block, ref, s)
    consume(plan, model.downs[stage].unit if stage + 1 < len(model.stages) else model.fc, s)
    return plan


# ---- applying the plan ------------------------------------------------------------------------------
def _grown(t: torch.Tensor, rows: ChannelMap | None, cols: ChannelMap | None, noise: float,
           generator) -> torch.Tensor:
    new = t.detach()
    if rows is not None:
        new = new.index_select(0, rows.index)
    if cols is not None:
        shape = [1] * new.dim()
        shape[1] = -1
        new = new.index_select(1, cols.index) / cols.counts().to(new.dtype).view(shape)
        if noise > 0:
            fresh = new.narrow(1, cols.old, cols.new - cols.old)
            device = generator.device if generator is not None else new.device
            eps = torch.randn(fresh.shape, generator=generator, device=device, dtype=new.dtype)
            fresh.add_(eps.to(new.device) * noise * t.detach().std())
    return new.contiguous()


def _apply(edit: _Edit, names: dict, noise: float, generator) -> list[Replaced]:
    module, replaced = edit.module, []
    cols = None if edit.depthwise else edit.inp
    for attr, t in list(module._parameters.items()) + list(module._buffers.items()):
        if t is None or t.dim() == 0:  # num_batches_tracked
            continue
        new = _grown(t, edit.out, cols if t.dim() > 1 else None, noise, generator)  # 1-d: per out channel
        if new.shape == t.shape:
            continue
        if attr in module._parameters:
            param = nn.Parameter(new, requires_grad=t.requires_grad)
            setattr(module, attr, param)
            index = {d: torch.arange(n, device=t.device) for d, n in enumerate(t.shape) if new.shape[d] != n}
            replaced.append(Replaced(names[id(t)], t, param, index))
        else:
            setattr(module, attr, new)
    _resize(edit)
    return replaced


def _resize(edit: _Edit) -> None:
    """The module's size attributes follow its tensors (repr, later add_branch, fusion)."""
    m = edit.module
    if isinstance(m, nn.BatchNorm2d):
        m.num_features = m.weight.shape[0]
    elif isinstance(m, nn.Linear):
        m.out_features, m.in_features = m.weight.shape
    elif isinstance(m, nn.Conv2d):
        m.out_channels = m.weight.shape[0]
        if edit.depthwise:
            m.in_channels = m.groups = m.out_channels
        else:
            m.in_channels = m.weight.shape[1] * m.groups


def _check_shapes(model) -> None:
    """The widened net has exactly the shapes its spec builds (what a checkpoint reload needs)."""
    with torch.device("meta"):
        ref = type(model).from_spec(model.arch_spec())
    want = {k: tuple(v.shape) for k, v in ref.state_dict().items()}
    have = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    if want != have:
        bad = sorted(k for k in want.keys() | have.keys() if want.get(k) != have.get(k))
        raise RuntimeError(f"widened model does not match its spec at {bad[:5]}")


@torch.no_grad()
def widen_stage(model, stage: int, new_width: int, source: torch.Tensor | None = None,
                generator: torch.Generator | None = None, noise: float = 0.0) -> GrowthResult:
    """Net2WiderNet on stage `stage` of a StagedRepNet, in place: widths[stage] becomes `new_width`.
    `source` (length new_width - old width): the old channel each new one copies; default drawn
    uniformly with `generator`. Returns the replaced parameters (BN buffers are replaced too)."""
    if not 0 <= stage < len(model.widths):
        raise ValueError(f"stage {stage}: the model has stages 0..{len(model.widths) - 1}")
    old = model.widths[stage]
    n = int(new_width) - old
    if n <= 0:
        raise ValueError(f"new width {new_width} must exceed stage {stage}'s width {old}")
    if source is None:
        source = draw_source(old, n, generator)
    source = torch.as_tensor(source, dtype=torch.long).flatten()
    if len(source) != n or (source < 0).any() or (source >= old).any():
        raise ValueError(f"source must be {n} channels in [0, {old}), got {source.tolist()}")
    device = model.fc.weight.device
    s = channel_map(old, source.to(device))
    names = {id(p): name for name, p in model.named_parameters()}
    model.widths[stage] = old + n  # the reference block for the target sizes is built at the new width
    try:
        plan = _plan_stage(model, stage, s)
    except Exception:
        model.widths[stage] = old  # nothing else was touched yet
        raise
    replaced = [r for edit in plan.edits.values() for r in _apply(edit, names, noise, generator)]
    for unit, cin, cout in plan.units:
        unit.cin = cin.new if cin is not None else unit.cin
        unit.cout = cout.new if cout is not None else unit.cout
        unit.groups = unit.branches[0].conv.groups
    _check_shapes(model)
    return GrowthResult(Site("width", stage, f"stage {stage} width"), replaced=replaced,
                        details={"stage": stage, "width_before": old, "width_after": old + n,
                                 "source": source.tolist(), "noise": noise})


def deepen_stage(model, stage: int, init: str = "zero", meta: float = 0.2) -> GrowthResult:
    """Net2DeeperNet: a new block at the end of `stage`, initialised with `init` (default 'zero': the
    identity in eval mode, so the function is kept)."""
    block = model.grow_depth(stage)
    initialize(block, init, meta)
    return GrowthResult(Site("depth", stage, f"stage {stage}"), modules=[block], new=list(block.parameters()),
                        details={"stage": stage, "init": init})
