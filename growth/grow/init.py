"""Initializers for the parameters that growth adds (a new block or a new branch).

| name           | new parameters start as                                  | function preserved |
|----------------|----------------------------------------------------------|--------------------|
| zero (fixed)   | default init, but the last BN of the new residual path / | yes, exactly       |
|                | new branch has gamma = beta = 0, so its output is 0 and  |                    |
|                | every new parameter still learns                         |                    |
|                | (a plain block without residual, VGG, starts as the      |                    |
|                | identity instead: relu(0) would cut the signal)          |                    |
| zero (faithful)| every tensor 0 (the original): function preserved, but   | yes (not VGG depth)|
|                | conv weights and gammas never get a gradient (dead)      |                    |
| original       | the module's default init                                | no                 |
| uniform        | U(-meta, meta)                                           | no                 |
| gaussian       | N(0, meta^2) (the original's default, meta 0.2)          | no                 |
| global_fitting | N(mean, std) of all existing parameters                  | no                 |
| local_fitting  | N(mean, std) of the neighbouring block / same unit       | no                 |
| adam           | default init, then only new parameters train briefly     | no                 |

`-` and `_` spellings are both accepted (the seed writes global-fitting; the original accepts only _).
"""
import torch

from growth.blocks import ConvBN, RepUnit
from growth.errors import ConfigError

INITIALIZERS = ("zero", "original", "uniform", "gaussian", "adam", "global_fitting", "local_fitting")
PRESERVING = ("zero",)


def normalize(name: str) -> str:
    key = str(name).replace("-", "_")
    if key not in INITIALIZERS:
        raise ConfigError("initializer", name, f"allowed: {', '.join(INITIALIZERS)} ('-' or '_')")
    return key


def _zero_last_bn(module) -> None:
    """gamma = beta = 0 on the BN(s) that end the new path: its output is exactly 0 in train and eval.
    A module whose path ends elsewhere (a bottleneck's 1x1, a transformer's projections) says so with
    a `zero_init_last()` method; a block without residual path says how it becomes the identity with
    `identity_init()`."""
    if hasattr(module, "identity_init"):
        module.identity_init()
        return
    if hasattr(module, "zero_init_last"):
        module.zero_init_last()
        return
    if isinstance(module, ConvBN):
        bns = [module.bn]
    else:
        units = [m for m in module.modules() if isinstance(m, RepUnit)]
        bns = [b.bn for b in units[-1].branches] if units else \
            [m for m in module.modules() if isinstance(m, torch.nn.BatchNorm2d)][-1:]
    for bn in bns:
        torch.nn.init.zeros_(bn.weight)
        torch.nn.init.zeros_(bn.bias)


def _stats(params) -> tuple[float, float] | None:
    flat = [p.detach().flatten() for p in params]
    if not flat:
        return None
    cat = torch.cat(flat)
    return cat.mean().item(), cat.std().item() if cat.numel() > 1 else 0.0


@torch.no_grad()
def initialize(module, name: str, meta: float, *, faithful_zero: bool = False, reference=None) -> None:
    """Initialise every parameter of `module` (all new) in place. `reference`: existing parameters to
    fit for global/local fitting (None or empty falls back to N(0, meta^2), as the original does)."""
    name = normalize(name)
    params = list(module.parameters())
    if name in ("original", "adam"):
        return
    if name == "zero":
        if faithful_zero:
            for p in params:
                p.zero_()
        else:
            _zero_last_bn(module)
        return
    if name == "uniform":
        for p in params:
            p.uniform_(-meta, meta)
        return
    mean, std = 0.0, meta
    if name in ("global_fitting", "local_fitting"):
        stats = _stats(reference or [])
        if stats is not None:
            mean, std = stats
    for p in params:
        p.normal_(mean, std)
