"""What the growable transformers (ViT, BERT) share: arch strings `d{depth}h{heads}`, the arch
properties AdaGrow's transformer growth reads, and the growth sites (growth/models/growable.py). A
subclass keeps its layers in `self.blocks`, the head count a new layer gets in `self.num_heads`, and gives
`grow_depth(stage, position)` and `init_new(module)`.

Sites: depth = one per insert position p in 0..depth (the new layer goes in at index p, after layer
p - 1); heads = one site, "one more head group in every layer". No branch or width sites: growing the
hidden size (embedding width) is out of scope, so those lists are empty.
"""
import copy
import re

from torch import nn

from growth.errors import ConfigError
from growth.grow.init import initialize
from growth.models.base import SpecModel
from growth.models.growable import GrowthResult, Site

_ARCH = re.compile(r"^d(\d+)h(\d+)$")


def parse_vit_arch(text, key="model.arch") -> tuple[int, int]:
    m = _ARCH.match(str(text).strip())
    if not m or int(m.group(2)) < 1:
        raise ConfigError(key, text, "expected d<depth>h<heads>, e.g. 'd2h6' (heads >= 1)")
    return int(m.group(1)), int(m.group(2))


def init_linear_and_norm(module, weight_init) -> None:
    """Linear weights by `weight_init` (each family's own), zero biases, LayerNorm 1/0."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            weight_init(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def check_image_data(data: dict, family: str, patch, hint: str = "") -> int:
    """The patch size, after checking the data are images it divides (every ViT family)."""
    if "vocab_size" in data:
        raise ConfigError("model", family, f"needs image data, got data={data['name']!r}{hint}")
    patch = int(patch)
    if data["image_size"] % patch:
        raise ConfigError("model.patch_size", patch, f"must divide the image size {data['image_size']}")
    return patch


def vit_init(module) -> None:
    """timm's ViT init: Linear weights trunc-normal(0.02), zero biases, LayerNorm 1/0 (our ViT, the SWS aux)."""
    init_linear_and_norm(module, lambda w: nn.init.trunc_normal_(w, std=0.02))


class TransformerArch(SpecModel):
    grown_keys = ("depth", "heads", "layer_heads")

    @property
    def depth(self) -> int:
        return len(self.blocks)

    @property
    def heads(self) -> int:
        return self.num_heads

    @property
    def depths(self) -> list[int]:  # one "stage" for the growth policies
        return [self.depth]

    def arch_string(self) -> str:
        return f"d{self.depth}h{self.heads}"

    def init_new(self, module) -> None:
        """Initialise a module this model just built (each family has its own Linear init)."""
        raise NotImplementedError

    def grow_heads(self, n: int = 1) -> list:
        """Add `n` heads to every layer; returns the new head groups."""
        self.num_heads += n
        new = [b.attn.add_heads(n) for b in self.blocks]
        for g in new:
            self.init_new(g)
        return new

    # ---- growth sites (growth/models/growable.py) -------------------------------------------------
    def depth_sites(self) -> list[Site]:
        return [Site("depth", p, f"layer {p}") for p in range(self.depth + 1)]

    def head_sites(self) -> list[Site]:
        return [Site("heads", "all", "all layers")]

    def branch_sites(self) -> list[Site]:
        return []  # no RepUnits

    def width_sites(self) -> list[Site]:
        return []  # hidden-size growth is out of scope

    def grow(self, site: Site, how: dict | None = None) -> GrowthResult:
        """Grow one site. `how` per kind:
        depth: a new layer at position `site.index` (grow_depth, the family's default init);
        heads: {"n": heads per layer} (default 1) more heads in every layer (grow_heads);
        both:  optional "init" (growth/grow/init.py) and "meta" applied to each new module; without
               "init" the family's own init stays (unlike the conv nets' depth sites, whose default is
               the function-preserving "zero")."""
        how = dict(how or {})
        if site.kind == "depth":
            if site.index not in range(self.depth + 1):
                raise ValueError(f"depth site {site.index!r}: positions 0..{self.depth}")
            modules = [self.grow_depth(0, site.index)]
            details = {"position": site.index}
        elif site.kind == "heads":
            n = int(how.get("n", 1))
            modules = self.grow_heads(n)
            details = {"heads": n, "layers": len(modules)}
        else:
            raise ValueError(f"{type(self).__name__} has no {site.kind} sites")
        if "init" in how:
            for module in modules:
                initialize(module, how["init"], how.get("meta", 0.2))
        return GrowthResult(site, modules=modules, new=[p for m in modules for p in m.parameters()],
                            details=details)

    def stack_layers(self, factor: int) -> GrowthResult:
        """Depth-wise stacking (G_stack's G_direct, StackBERT's doubling): the layer list becomes `factor`
        runs of itself, so new layer i*L + j is a deep copy of layer j (weights, head groups, gates). The
        first run is the old layers themselves (same tensors, so they keep their optimizer state); the
        copies are new tensors, listed in `copied` with their source. Embeddings and head are untouched.
        Not function-preserving: the deeper model computes another function."""
        if isinstance(factor, bool) or not isinstance(factor, int) or factor < 2:
            raise ValueError(f"stack_layers: factor {factor!r}, needs an integer >= 2")
        old = list(self.blocks)
        copies, pairs = [], []
        for _ in range(factor - 1):
            for block in old:
                new = self.copy_block(block)
                for p in new.parameters():
                    p.grad = None  # a copy starts without the source's last gradient
                copies.append(new)
                pairs += list(zip(new.parameters(), block.parameters()))
        for new in copies:
            self.blocks.append(new)
        self.after_depth_change()
        return GrowthResult(Site("depth", "stack", "all layers"), modules=copies,
                            new=[p for m in copies for p in m.parameters()], copied=pairs,
                            details={"factor": factor, "depth_before": len(old), "depth_after": self.depth,
                                     "sources": [j for _ in range(factor - 1) for j in range(len(old))]})

    def copy_block(self, block) -> nn.Module:
        return copy.deepcopy(block)

    def after_depth_change(self) -> None:
        """A family that keeps the depth elsewhere too (BERT's config) updates it here."""

    @staticmethod
    def parse_max_arch(text) -> dict:
        depth, heads = parse_vit_arch(text, "model.max_arch")
        return {"depths": [depth], "heads": heads}
