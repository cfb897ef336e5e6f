"""Counts the way the seed papers' counters make them, to compare our models with the numbers they
printed (experiments/reference/paper_numbers.yaml, tests/test_paper_numbers.py). Neither counter is a
dependency (our own counts are growth/measure.py's), so their rules are replicated here for the layer
types our families use.

thop (pytorch-OpCounter 0.1.x; the AdaGrow thesis's params / compute columns):
- a module counts only if its type is exactly one thop knows (a subclass does not) and the forward pass
  calls it; functional calls (F.relu, F.adaptive_avg_pool2d, +) count nothing;
- params: every parameter of each counted module that ran, conv biases included;
- MACs ("ops"): conv: output elements x in-channels / groups x kernel area (no bias); linear:
  in_features x output elements; BatchNorm / LayerNorm: 2 per input element, 4 when affine; adaptive
  average pool: (input area / output area + 1) per output element; avg pool: 1 per output element;
  ReLU, max pool, dropout, padding: 0.

torchsummaryX (ReduceNet's README "MAdds"): conv / linear MACs of the modules that run, plus 1 per
weight of each BatchNorm that runs; params are the trainable ones (growth.measure.count_params).

    params, macs = thop_counts(model, (3, 32, 32))
    madds = torchsummaryx_madds(model, (3, 32, 32))
"""
import math

import torch
from torch import nn

from growth.measure import forward_macs

_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.LayerNorm)
_ZERO = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AdaptiveMaxPool1d,
         nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d, nn.Dropout, nn.ZeroPad2d)


def norm_ops(module: nn.Module, numel: int) -> int:
    affine = getattr(module, "affine", False) or getattr(module, "elementwise_affine", False)
    return 2 * numel * (2 if affine else 1)


def _ops(m: nn.Module, x: torch.Tensor, y: torch.Tensor) -> int | None:
    """thop's MACs of one call, or None for a type thop does not know (not counted at all)."""
    t = type(m)
    if t in (nn.Conv1d, nn.Conv2d, nn.Conv3d):
        return y.numel() * (x.shape[1] // m.groups) * math.prod(m.weight.shape[2:])
    if t is nn.Linear:
        return m.in_features * y.numel()
    if t in _NORMS:
        return norm_ops(m, x.numel())
    if t in (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d):
        kernel = math.prod(a / b for a, b in zip(x.shape[2:], y.shape[2:]))
        return int((kernel + 1) * y.numel())
    if t in (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d):
        return y.numel()
    if t in _ZERO:
        return 0
    return None


@torch.no_grad()
def thop_counts(model: nn.Module, input_shape, phantom_bn=()) -> tuple[int, int]:
    """(params, MACs) of one eval-mode forward pass on one zero sample, counted as thop counts.

    `phantom_bn`: modules whose input also goes through an affine BatchNorm that we do not allocate,
    counted as thop would count it (2 x channels params, 4 MACs per input element): the original
    AdaGrow's Downstream units compute such a BN and discard its output (growth/models/convnet.py)."""
    ops, ran, hooks = [0], {}, []

    def count(m, inputs, output):
        n = _ops(m, inputs[0], output)
        if n is not None:
            ops[0] += n
            ran[id(m)] = sum(p.numel() for p in m.parameters())

    def phantom(m, inputs):
        x = inputs[0]
        ops[0] += 4 * x.numel()
        ran[("phantom", id(m))] = 2 * x.shape[1]

    for m in model.modules():
        hooks.append(m.register_forward_hook(count))
    for m in phantom_bn:
        hooks.append(m.register_forward_pre_hook(phantom))
    was_training = model.training
    model.eval()
    try:
        p = next(model.parameters())
        model(torch.zeros((1, *input_shape), device=p.device, dtype=p.dtype))
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    return sum(ran.values()), int(ops[0])


def adagrow_thesis_counts(model: nn.Module, input_shape=(3, 32, 32)) -> tuple[int, int]:
    """The AdaGrow thesis's params / compute of one of our AdaGrow conv nets: thop on the single-branch
    training-form model, with the original's discarded Downstream BN (MEASURED.md)."""
    return thop_counts(model, input_shape, phantom_bn=list(getattr(model, "downs", [])))


def torchsummaryx_madds(model: nn.Module, input_shape) -> int:
    """Mult-adds as torchsummaryX reports them: conv / linear MACs (FlopCounterMode, unfolded model) plus
    one per weight of every BatchNorm the forward pass calls (ReduceNet's student skips branch1's)."""
    bn = [0]

    def count(m, inputs, output):
        bn[0] += m.weight.numel() if m.weight is not None else 0

    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    hooks = [m.register_forward_hook(count) for m in norms]
    try:
        macs = forward_macs(model, input_shape)
    finally:
        for h in hooks:
            h.remove()
    return macs + bn[0]
