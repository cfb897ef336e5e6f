"""The growth-site protocol: where a growable model can grow, and what one growth step changed.

A growable model lists its sites and grows one at a time:

    for site in model.depth_sites() + model.width_sites() + model.branch_sites() + model.head_sites():
        ...                                   # a policy (saliency, round-robin, random, a score) picks one
    result = model.grow(site, how)            # -> GrowthResult

Site kinds (a family lists only those it has; an empty list means "cannot grow that way"):

| kind     | what grows                                         | families                          |
|----------|----------------------------------------------------|-----------------------------------|
| depth    | a new block at the end of a stage (conv nets) /    | every growable family             |
|          | a new layer at insert position p (ViT, BERT)       |                                   |
| branch   | a new kernel branch in one RepUnit (AdaGrow width) | conv nets (RepUnit)               |
| width    | more channels / neurons in one stage               | conv nets (Net2Net, SplitGrow...) |
| heads    | one more attention head in every layer             | ViT, BERT                         |
| hidden   | a wider embedding (every tensor with the hidden    | ViT, BERT                         |
|          | dim is replaced by a larger one)                   |                                   |
| ffn      | more MLP units in one layer, or in every layer     | ViT, BERT                         |

`how` is a dict; each kind reads its own keys (documented on the family's `grow`). A `GrowthResult`
names the new modules (for initialisers), the new tensors (their optimizer state starts at zero) and the
replaced tensors: a larger tensor put where a smaller one was, with, per grown dimension, the index of
every old entry in the new tensor (`Replaced.index`). The engine's optimizer surgery
(growth/engine/optim.py) copies old state through that map; entries no old index reaches start at zero.
"""
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import torch
from torch import nn

SITE_KINDS = ("depth", "branch", "width", "heads", "hidden", "ffn")


@dataclass(frozen=True)
class Site:
    """One place a model can grow. `index` locates it (a stage, a unit's module name, a layer position);
    `where` is the text events show ("stage 1", "stages.0.1.ru1")."""
    kind: str
    index: int | str
    where: str


@dataclass
class Replaced:
    """`new` took `old`'s place (same module attribute, same parameter name). `index[dim]` is a LongTensor
    of length old.shape[dim]: the new position of each old entry along that grown dimension."""
    name: str
    old: nn.Parameter
    new: nn.Parameter
    index: dict[int, torch.Tensor]


@dataclass
class GrowthResult:
    site: Site
    modules: list[nn.Module] = field(default_factory=list)  # new modules (blocks, branches, head groups)
    new: list[nn.Parameter] = field(default_factory=list)  # tensors that did not exist before
    replaced: list[Replaced] = field(default_factory=list)
    # (new, source) pairs: a new tensor that starts as an exact copy of an existing one (stacking copies
    # whole layers); a method may ask the engine to give the copy its source's optimizer state
    copied: list[tuple[nn.Parameter, nn.Parameter]] = field(default_factory=list)
    details: dict = field(default_factory=dict)  # what the family reports (a kernel, a position, widths)

    @property
    def new_params(self) -> list[nn.Parameter]:
        """Every tensor whose values growth chose (new ones, and the replacements)."""
        return self.new + [r.new for r in self.replaced]


@runtime_checkable
class Growable(Protocol):
    """What a growable model provides (tests/test_growable.py checks every growable family)."""

    def depth_sites(self) -> list[Site]: ...

    def branch_sites(self) -> list[Site]: ...

    def width_sites(self) -> list[Site]: ...

    def head_sites(self) -> list[Site]: ...

    def grow(self, site: Site, how: dict | None = None) -> GrowthResult: ...


def sites(model, kind: str) -> list[Site]:
    """A model's sites of one kind ([] when it cannot grow that way)."""
    if kind not in SITE_KINDS:
        raise ValueError(f"site kind {kind!r}: allowed {', '.join(SITE_KINDS)}")
    lister = getattr(model, "head_sites" if kind == "heads" else f"{kind}_sites", None)  # kind heads: head_sites
    return list(lister()) if lister is not None else []


def is_growable(model) -> bool:
    return isinstance(model, Growable)
