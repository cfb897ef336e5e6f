"""What the growable transformers (ViT, BERT) share: arch strings `d{depth}h{heads}`, the arch
properties AdaGrow's transformer growth reads, and the growth sites (growth/models/growable.py). A
subclass keeps its layers in `self.blocks`, the head count a new layer gets in `self.num_heads`, and gives
`grow_depth(stage, position)` and `init_new(module)`.

Sites: depth = one per insert position p in 0..depth (the new layer goes in at index p, after layer
p - 1); heads = one site, "one more head group in every layer"; hidden = one site, the embedding width
(every tensor with the hidden dim grows: `grow_hidden`); ffn = one site per layer and "all" (the MLP's
intermediate width: `grow_ffn`). No branch or width sites (those are the conv nets' RepUnits and
channels). Hidden and FFN growth replace tensors by larger ones (`Replaced`, the old entries in the
leading slice), so the optimizer surgery keeps their state.

Any growth can carry an MSG mask (`how["mask"]: true`, growth/models/transformer_masks.py): the new
structure is multiplied by a `Ramp` whose value the method sets each step (`set_mask`), 0 at growth, so
the function is exactly kept whatever the new weights are, and `fold_mask` removes it once it is 1. The
ramps' values and what they mask are in the arch spec (`masks`), so a checkpoint mid-ramp resumes.
"""
import copy
import re

from torch import nn

from growth.errors import ConfigError
from growth.grow.init import initialize
from growth.models.base import SpecModel
from growth.models.growable import GrowthResult, Site
from growth.models.transformer_masks import Masked, MaskMixin, RampedAct, Widener

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


class TransformerArch(MaskMixin, SpecModel):
    grown_keys = ("depth", "heads", "layer_heads", "embed_dim", "layer_ffn", "masks")

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
        return []  # conv channels; a transformer's widths are its hidden and ffn sites

    def hidden_sites(self) -> list[Site]:
        return [Site("hidden", "all", "hidden size")]

    def ffn_sites(self) -> list[Site]:
        return [Site("ffn", "all", "all layers")] + [Site("ffn", i, f"layer {i}") for i in range(self.depth)]

    def grow(self, site: Site, how: dict | None = None) -> GrowthResult:
        """Grow one site. `how` per kind:
        depth: a new layer at position `site.index` (grow_depth, the family's default init);
        heads: {"n": heads per layer} (default 1) more heads in every layer (grow_heads);
        both:  optional "init" (growth/grow/init.py) and "meta" applied to each new module; without
               "init" the family's own init stays (unlike the conv nets' depth sites, whose default is
               the function-preserving "zero");
        hidden: {"n": dims} more embedding dims (grow_hidden): every tensor with the hidden dim is
               replaced by a larger one, new entries by the family's init (LayerNorms 1 / 0, biases 0);
        ffn:   {"n": units} more intermediate units in layer `site.index`, or every layer ("all")
               (grow_ffn), replaced tensors as for hidden;
        all:   "mask": true puts the new structure under an MSG mask at 0 (module docstring): the
               function is exactly kept; details["mask"] names the ramp for set_mask / fold_mask. No
               growth while a hidden-size mask is in force (it covers every LayerNorm)."""
        how = dict(how or {})
        if self.hidden_masked() is not None:
            raise ValueError("a hidden-size mask is in force: fold it (fold_mask) before growing again")
        ramp = self.new_ramp() if how.get("mask") else None
        modules, replaced = [], []
        if site.kind == "depth":
            if site.index not in range(self.depth + 1):
                raise ValueError(f"depth site {site.index!r}: positions 0..{self.depth}")
            modules = [self.grow_depth(0, site.index, **({"gated": False} if ramp else {}))]
            details = {"position": site.index}
        elif site.kind == "heads":
            n = int(how.get("n", 1))
            modules = self.grow_heads(n)
            details = {"heads": n, "layers": len(modules)}
        elif site.kind == "hidden":
            n, old = self._units(how), self.hidden_size
            replaced = self.grow_hidden(n)
            details = {"hidden_before": old, "hidden_after": self.hidden_size}
            if ramp:
                self.attach_hidden(Masked(ramp, old))
        elif site.kind == "ffn":
            n = self._units(how)
            layers = range(self.depth) if site.index == "all" else [site.index]
            if any(i not in range(self.depth) for i in layers):
                raise ValueError(f"ffn site {site.index!r}: layers 0..{self.depth - 1} or 'all'")
            before = [self.ffn_width(self.blocks[i]) for i in layers]
            if ramp and any(isinstance(self.act_of(self.blocks[i]), RampedAct) for i in layers):
                raise ValueError("an FFN there is still under a mask: fold it first")
            for i, width in zip(layers, before):
                replaced += self.grow_ffn(self.blocks[i], n)
                if ramp:
                    self.attach_ffn(self.blocks[i], Masked(ramp, width))
            details = {"ffn_before": before, "ffn_after": [self.ffn_width(self.blocks[i]) for i in layers]}
        else:
            raise ValueError(f"{type(self).__name__} has no {site.kind} sites")
        if "init" in how:
            for module in modules:
                initialize(module, how["init"], how.get("meta", 0.2))
        if ramp:
            for module in modules:  # head groups and layers: a scalar mask on their output
                module.ramp = ramp
            self.ramps[ramp.name] = ramp
            details["mask"] = ramp.name
        return GrowthResult(site, modules=modules, new=[p for m in modules for p in m.parameters()],
                            replaced=replaced, details=details)

    @staticmethod
    def _units(how) -> int:
        n = how.get("n", 1)
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"grow: n={n!r}, needs an integer >= 1")
        return n

    # ---- widths (the family gives grow_hidden, ffn_linears, ffn_act, attach_hidden and weight_init) -----
    @staticmethod
    def weight_init(weight) -> None:
        """The family's init for a new Linear weight (ViT: trunc-normal 0.02, BERT: normal 0.02)."""
        raise NotImplementedError

    def ffn_linears(self, block) -> tuple[nn.Linear, nn.Linear]:
        """A layer's FFN: the Linear into the intermediate units and the one out of them."""
        raise NotImplementedError

    def ffn_width(self, block) -> int:
        return self.ffn_linears(block)[0].out_features

    def grow_ffn(self, block, n: int) -> list:
        """n more intermediate units in `block` (rows of the first FFN Linear, columns of the second):
        the Replaced entries."""
        fc1, fc2 = self.ffn_linears(block)
        w = Widener(self, self.weight_init)
        width = fc1.out_features + n
        w.linear(fc1, n_out=width)
        w.linear(fc2, n_in=width)
        return w.replaced

    def layer_ffn(self) -> list[int] | None:
        """Per layer FFN width, or None when every layer has the default int(hidden * mlp_ratio)."""
        widths = [self.ffn_width(b) for b in self.blocks]
        return None if all(w == int(self.hidden_size * self.mlp_ratio) for w in widths) else widths

    def stack_layers(self, factor: int) -> GrowthResult:
        """Depth-wise stacking (G_stack's G_direct, StackBERT's doubling): the layer list becomes `factor`
        runs of itself, so new layer i*L + j is a deep copy of layer j (weights, head groups, gates). The
        first run is the old layers themselves (same tensors, so they keep their optimizer state); the
        copies are new tensors, listed in `copied` with their source. Embeddings and head are untouched.
        Not function-preserving: the deeper model computes another function."""
        if isinstance(factor, bool) or not isinstance(factor, int) or factor < 2:
            raise ValueError(f"stack_layers: factor {factor!r}, needs an integer >= 2")
        if self.ramps:
            raise ValueError("stack_layers: MSG masks are in force (fold them first)")
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
