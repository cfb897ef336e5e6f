"""Where to grow: which stage gets a new block, which RepUnits get a new branch, which kernel.

Saliency is read from BatchNorm scales (gamma). `faithful` reproduces the original's probes, which
are partly dead (see METHODS.md 1.3); `fixed` reads live BNs.
"""
import random

import torch

from growth.blocks import ConvBN, RepUnit
from growth.blocks.repunit import odd_kernels_up_to


def unit_bns(module) -> list[torch.nn.BatchNorm2d]:
    if isinstance(module, RepUnit):
        return [b.bn for b in module.branches]
    if isinstance(module, ConvBN):
        return [module.bn]
    return [m for m in module.modules() if isinstance(m, torch.nn.BatchNorm2d)]


def stage_saliency(model, stage: int, faithful: bool) -> float:
    if faithful:
        # The original reads the stem BN for stage 0 and, for later stages, a BN whose output the
        # network discards, so it never trains and its gamma stays exactly 1.0.
        bn = model.stage_input_bn(stage)
        return bn.weight.detach().mean().item() if bn is not None else 1.0
    bns = unit_bns(model.stage_input_unit(stage))
    return torch.cat([bn.weight.detach().abs().flatten() for bn in bns]).mean().item()


def candidate_stages(depths, max_depths, last_stage) -> list[int]:
    """Stages below their max; the stage grown last time is left out unless it is the only one."""
    cands = [i for i, (d, m) in enumerate(zip(depths, max_depths)) if d < m]
    if last_stage in cands and len(cands) > 1:
        cands.remove(last_stage)
    return cands


def choose_stage(model, max_depths, last_stage, faithful: bool):
    """(stage, saliency per candidate); the first maximum wins, as Python's max does in the original."""
    cands = candidate_stages(model.depths, max_depths, last_stage)
    if not cands:
        return None, {}
    scores = {i: stage_saliency(model, i, faithful) for i in cands}
    return max(cands, key=lambda i: scores[i]), scores


def unit_saliency(unit: RepUnit, faithful: bool) -> float:
    """Mean over branches of the branch BN's mean gamma (faithful: signed, as the original; fixed: |gamma|,
    so that a branch initialised with negative scales does not rank as least important)."""
    per_branch = [(bn.weight.detach() if faithful else bn.weight.detach().abs()).mean().item()
                  for bn in unit_bns(unit)]
    return sum(per_branch) / len(per_branch)


def units_to_grow(ratio: float, n_units: int, at_least_one: bool) -> int:
    """int(ratio x units): the original's count, 0 for small nets; `at_least_one` (fixed) makes it >= 1."""
    n = int(ratio * n_units)
    return max(n, min(1, n_units)) if at_least_one else n


def rank_units(model, ratio: float, faithful: bool, at_least_one: bool = False) -> list[tuple[str, RepUnit, float]]:
    """The units_to_grow(...) most salient RepUnits, stable for ties (module order)."""
    units = [(name, m) for name, m in model.named_modules() if isinstance(m, RepUnit)]
    n = units_to_grow(ratio, len(units), at_least_one)
    scored = [(name, m, unit_saliency(m, faithful)) for name, m in units]
    return sorted(scored, key=lambda t: -t[2])[:n]


def sample_kernel(unit: RepUnit, rng: random.Random) -> tuple[int, int]:
    """A random odd kernel up to the unit's base kernel (3x3 -> 1x1, 1x3, 3x1, 3x3)."""
    return rng.choice(odd_kernels_up_to(unit.base_kernel))
