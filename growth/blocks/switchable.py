"""Switchable normalisation (ADN's skip-aware BN/LN): two independent copies of one norm layer.

Set 0 serves the full path, set 1 the path whose stage skips its skippable blocks; `active` picks one.
Each set has its own affine parameters and its own running statistics, and a train-mode forward only
ever touches the active set, so the two never mix. The module reads like the active norm to code that
inspects norms (weight, bias, running_mean, running_var, eps), so conv+BN fusion folds the active set.
"""
import copy

from torch import nn

NORM_TYPES = (nn.BatchNorm2d, nn.LayerNorm)


class SwitchableNorm(nn.Module):
    def __init__(self, norm: nn.Module):
        super().__init__()
        self.norms = nn.ModuleList([norm, copy.deepcopy(norm)])
        self.active = 0  # a plain attribute: the model sets it from the skip config (not state)

    def forward(self, x):
        return self.norms[self.active](x)

    @property
    def current(self) -> nn.Module:
        return self.norms[self.active]

    # Read-through to the active set, for code written against a plain BatchNorm2d/LayerNorm.
    weight = property(lambda self: self.current.weight)
    bias = property(lambda self: self.current.bias)
    running_mean = property(lambda self: self.current.running_mean)
    running_var = property(lambda self: self.current.running_var)
    eps = property(lambda self: self.current.eps)


def make_switchable(module: nn.Module, exclude: tuple = ()) -> list[SwitchableNorm]:
    """Replace every BatchNorm2d/LayerNorm below `module` by a SwitchableNorm holding it; returns them.
    Children named in `exclude` (at any depth, e.g. a ResNet block's shared "downsample") are left alone.
    Subclasses count (timm's BatchNormAct2d: the switch then holds its activation too)."""
    made = []
    for name, child in list(module.named_children()):
        if name in exclude:
            continue
        if isinstance(child, NORM_TYPES):
            sw = SwitchableNorm(child)
            setattr(module, name, sw)
            made.append(sw)
        elif not isinstance(child, SwitchableNorm):
            made += make_switchable(child, exclude)
    return made
