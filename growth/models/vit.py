"""A growable ViT: depth (new blocks) and heads (new attention heads), both function-preserving with
the zero initializer. Arch strings `d{depth}h{heads}`, e.g. `d2h6` (the original's default).

Pre-norm blocks, mean-pooled tokens (no class token), 64 dims per head by default as in the original.
We use timm's PatchEmbed and Mlp. The attention is ours because heads must grow without replacing the
existing tensors: each head-growth event adds its own small qkv/proj pair (its proj starts at zero), so
old parameters keep their identity and optimizer state; `deploy()` concatenates them into one qkv and
one proj and folds the LayerNorm affine maps into the linears they feed, which is exactly the same function
(growth/models/transformer_deploy.py).

Hidden size (`grow_hidden`) and FFN width (`grow_ffn`) grow by replacing tensors with larger ones; under
MSG masks (growth/models/transformer_masks.py) the embedding and both residual branches write their new
dims x m, and every LayerNorm is a MaskedLayerNorm until the ramp is folded away.
"""
import copy

import torch
import torch.nn.functional as F
from timm.layers import Mlp, PatchEmbed
from torch import nn

from growth.errors import ConfigError
from growth.models import register
from growth.models.skippable import SkippableMixin
from growth.models.transformer import TransformerArch, check_image_data, parse_vit_arch, vit_init
from growth.models.transformer_deploy import PreNormBlock, fold_norm
from growth.models.transformer_masks import MaskedLayerNorm, Widener


class HeadGroup(nn.Module):
    """`heads` attention heads: their q, k, v projections and their slice of the output projection."""
    ramp = None  # an MSG mask on this group's output while it ramps in (growth/models/transformer_masks.py)

    def __init__(self, dim, heads, head_dim, qkv_bias=True):
        super().__init__()
        self.heads, self.head_dim = heads, head_dim
        self.qkv = nn.Linear(dim, 3 * heads * head_dim, bias=qkv_bias)
        self.proj = nn.Linear(heads * head_dim, dim, bias=False)

    def zero_init_last(self):
        """Output projection 0: the new heads add nothing until they learn (q, k, v stay random)."""
        nn.init.zeros_(self.proj.weight)

    def qkv_heads(self) -> list:
        """Views of q, k, v per head: [(weight (heads, head_dim, dim), bias (heads, head_dim) or None)]
        (bert2BERT's head split, growth/models/transformer_fpi.py)."""
        w = self.qkv.weight.view(3, self.heads, self.head_dim, -1)
        b = None if self.qkv.bias is None else self.qkv.bias.view(3, self.heads, self.head_dim)
        return [(w[k], None if b is None else b[k]) for k in range(3)]


class GrowableAttention(nn.Module):
    def __init__(self, dim, heads, head_dim=64, qkv_bias=True):
        super().__init__()
        self.dim, self.head_dim = dim, head_dim
        self.groups = nn.ModuleList([HeadGroup(dim, heads, head_dim, qkv_bias)])
        self.proj_bias = nn.Parameter(torch.zeros(dim))

    @property
    def heads(self) -> int:
        return sum(g.heads for g in self.groups)

    def add_heads(self, n: int) -> HeadGroup:
        ref = self.proj_bias
        group = HeadGroup(self.dim, n, self.head_dim, self.groups[0].qkv.bias is not None)
        group.to(ref.device, ref.dtype).train(self.training)
        self.groups.append(group)
        return group

    def forward(self, x):
        b, n, _ = x.shape
        qkv = torch.cat([g.qkv(x).view(b, n, 3, g.heads, self.head_dim) for g in self.groups], dim=3)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (b, heads, n, head_dim)
        out = F.scaled_dot_product_attention(q, k, v).transpose(1, 2)  # (b, n, heads, head_dim)
        y, start = self.proj_bias, 0
        for g in self.groups:
            part = g.proj(out[:, :, start:start + g.heads].reshape(b, n, -1))
            y = y + (part if g.ramp is None else part * g.ramp.value)
            start += g.heads
        return y

    @torch.no_grad()
    def merged(self) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """Every head as one group: (qkv weight laid out q | k | v, its bias or None, proj weight). With
        proj_bias that is the same function with one qkv and one proj matmul (the deploy form's)."""
        qkv = torch.cat([g.qkv.weight.view(3, -1, self.dim) for g in self.groups], dim=1).reshape(-1, self.dim)
        bias = None
        if self.groups[0].qkv.bias is not None:
            bias = torch.cat([g.qkv.bias.view(3, -1) for g in self.groups], dim=1).reshape(-1)
        return qkv, bias, torch.cat([g.proj.weight for g in self.groups], dim=1)


class Block(nn.Module):
    # MSG masks (growth/models/transformer_masks.py): `stream` scales both branches' new hidden dims,
    # `ramp` blends a new block in (x + m * (block(x) - x)); None (no growth in progress): today's forward
    stream = None
    ramp = None

    def __init__(self, dim, heads, head_dim=64, mlp_ratio=4.0, ffn=None):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = GrowableAttention(dim, heads, head_dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(ffn or dim * mlp_ratio))

    def forward(self, x):
        if self.stream is not None or self.ramp is not None:
            return self._masked_forward(x)
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))

    def _masked_forward(self, x):
        scale = self.stream.scale if self.stream is not None else (lambda t: t)
        y = x + scale(self.attn(self.norm1(x)))
        y = y + scale(self.mlp(self.norm2(y)))
        return y if self.ramp is None else x + self.ramp.value * (y - x)

    def zero_init_last(self):
        """Both residual branches end at zero (attention output projection, MLP fc2): the block is the
        identity, and every other new parameter still gets gradient once those move."""
        for g in self.attn.groups:
            nn.init.zeros_(g.proj.weight)
        nn.init.zeros_(self.attn.proj_bias)
        nn.init.zeros_(self.mlp.fc2.weight)
        nn.init.zeros_(self.mlp.fc2.bias)


def group_sizes(depth: int, groups: int | None) -> list[int]:
    """ADN's pseudo-stages: `groups` runs of consecutive blocks, as even as possible (earlier ones
    larger). None: groups of 3 when 3 divides the depth (the original's ViT-B 12 = 4 x 3), else one."""
    if groups is None:
        groups = depth // 3 if depth >= 3 and depth % 3 == 0 else 1
    groups = max(1, min(groups, depth)) if depth else 1
    base, extra = divmod(depth, groups)
    return [base + (g < extra) for g in range(groups)]


@register("vit")
class ViT(SkippableMixin, TransformerArch):
    supports_skip = True
    stream = None  # MSG: the embedding's new hidden dims x m while a hidden-size mask ramps

    def __init__(self, depth=2, heads=6, embed_dim=None, head_dim=64, patch_size=2, img_size=8, in_chans=1,
                 num_classes=10, mlp_ratio=4.0, layer_heads=None, skippable=False, skip_groups=None,
                 layer_ffn=None, masks=None):
        super().__init__()
        self.embed_dim = int(embed_dim or head_dim * heads)
        self.head_dim, self.patch_size, self.img_size = head_dim, patch_size, img_size
        self.in_chans, self.num_classes, self.mlp_ratio = in_chans, num_classes, mlp_ratio
        self.num_heads = int(heads)  # what a new block gets; kept even at depth 0
        self.patch_embed = PatchEmbed(img_size, patch_size, in_chans, self.embed_dim)
        self.pos_embed = nn.Parameter(torch.randn(1, self.patch_embed.num_patches, self.embed_dim) * 0.02)
        # layer_heads: per layer, the head count of each head group (grown models differ from `heads`)
        layer_heads = layer_heads or [[heads]] * depth
        layer_ffn = layer_ffn or [None] * len(layer_heads)  # per layer FFN width (None: mlp_ratio x dim)
        self.blocks = nn.ModuleList(self._block(groups[0], ffn) for groups, ffn in zip(layer_heads, layer_ffn))
        for block, groups in zip(self.blocks, layer_heads):
            for n in groups[1:]:
                block.attn.add_heads(n)
        self.norm = nn.LayerNorm(self.embed_dim)
        self.head = nn.Linear(self.embed_dim, num_classes)
        vit_init(self)
        self.apply_masks(masks)
        self.skip_groups = skip_groups
        if skippable:  # ADN (growth/models/skippable.py); off by default
            self.skippable = True
            self.make_norms_switchable()
            self.set_skip(None)

    def _block(self, heads, ffn=None) -> Block:
        return Block(self.embed_dim, heads, self.head_dim, self.mlp_ratio, ffn)

    @property
    def hidden_size(self) -> int:
        return self.embed_dim

    # ---- arch -----------------------------------------------------------------------------------
    def spec_kwargs(self) -> dict:
        return {"depth": self.depth, "heads": self.heads, "embed_dim": self.embed_dim, "head_dim": self.head_dim,
                "patch_size": self.patch_size, "img_size": self.img_size, "in_chans": self.in_chans,
                "num_classes": self.num_classes, "mlp_ratio": self.mlp_ratio,
                "layer_heads": [[g.heads for g in b.attn.groups] for b in self.blocks],
                **({"layer_ffn": self.layer_ffn()} if self.layer_ffn() else {}),
                **({"masks": self.masks_spec()} if self.ramps else {}),
                **({"skippable": True, "skip_groups": self.skip_groups} if self.skippable else {})}

    # ---- skip groups (ADN) ----------------------------------------------------------------------
    def group_blocks(self) -> list[list[nn.Module]]:
        if not self.skippable:
            return [list(self.blocks)]
        blocks, out = list(self.blocks), []
        for n in group_sizes(len(blocks), self.skip_groups):
            out.append(blocks[:n])
            blocks = blocks[n:]
        return out

    def plain_kwargs(self, keep: list[int]) -> dict:
        kwargs = {k: v for k, v in self.spec_kwargs().items() if k not in ("skippable", "skip_groups")}
        kept = [b for g, blocks in enumerate(self.group_blocks()) for b in blocks[:keep[g]]]
        return {**kwargs, "depth": len(kept), "layer_heads": [[g.heads for g in b.attn.groups] for b in kept]}

    @classmethod
    def from_config(cls, cfg: dict, data: dict) -> "ViT":
        patch = check_image_data(data, "vit", cfg.get("patch_size", 2), "; for text use model=bert")
        depth, heads = parse_vit_arch(cfg.get("arch", "d2h6"))
        # heads are decoupled from the embedding width (attention dim = heads * head_dim): any embed_dim
        # works; null gives the original's 64 * heads
        embed = cfg.get("embed_dim")
        groups = cfg.get("skip_groups")
        if groups is not None and (isinstance(groups, bool) or not isinstance(groups, int)
                                   or not 1 <= groups <= depth):
            raise ConfigError("model.skip_groups", groups, f"null or an integer in [1, depth={depth}]")
        return cls(depth, heads, embed, int(cfg.get("head_dim", 64)), patch, data["image_size"], data["in_chans"],
                   data["num_classes"], float(cfg.get("mlp_ratio", 4.0)),
                   skippable=bool(cfg.get("skippable", False)), skip_groups=groups)

    def layer_saliency(self) -> list[float]:
        """Per block, mean |gamma| of its first LayerNorm: where AdaGrow inserts a new block."""
        return [b.norm1.weight.detach().abs().mean().item() for b in self.blocks]

    # ---- growth API -------------------------------------------------------------------------------
    def grow_depth(self, stage: int = 0, position: int | None = None, gated=None) -> Block:
        """Insert a fresh block (default init) at `position` (default: at the end). (`gated`: BERT's;
        ViT blocks have no gate.)"""
        block = self._block(self.heads).to(self.head.weight.device, self.head.weight.dtype)
        vit_init(block)
        block.train(self.training)
        self.blocks.insert(len(self.blocks) if position is None else position, block)
        return block

    def init_new(self, module) -> None:
        vit_init(module)

    def grow_hidden(self, n: int) -> list:
        """embed_dim += n: every tensor with the hidden dim is replaced by a larger one (old entries first,
        new ones trunc-normal 0.02 / bias 0 / LayerNorm 1, 0). Returns the Replaced entries."""
        if self.skippable:
            raise ValueError("grow_hidden: not for a skippable (ADN) ViT")
        d, zero = self.embed_dim + n, nn.init.zeros_
        w = Widener(self, self.weight_init)
        proj = self.patch_embed.proj
        w.param(proj, "weight", {0: d})
        w.param(proj, "bias", {0: d}, zero)
        proj.out_channels = d
        w.param(self, "pos_embed", {2: d})
        for b in self.blocks:
            w.norm(b.norm1, d)
            for g in b.attn.groups:
                w.linear(g.qkv, n_in=d)
                w.linear(g.proj, n_out=d)
            w.param(b.attn, "proj_bias", {0: d}, zero)
            b.attn.dim = d
            w.norm(b.norm2, d)
            w.linear(b.mlp.fc1, n_in=d)
            w.linear(b.mlp.fc2, n_out=d)
        w.norm(self.norm, d)
        w.linear(self.head, n_in=d)
        self.embed_dim = d
        return w.replaced

    def ffn_linears(self, block) -> tuple[nn.Linear, nn.Linear]:
        return block.mlp.fc1, block.mlp.fc2

    @staticmethod
    def weight_init(weight) -> None:
        nn.init.trunc_normal_(weight, std=0.02)

    def ffn_act(self, block):
        return block.mlp, "act"

    def attach_hidden(self, masked) -> None:
        """MSG's hidden-size mask: every LayerNorm masked, the embedding and branches' new dims x m."""
        for b in self.blocks:
            b.norm1, b.norm2, b.stream = MaskedLayerNorm(b.norm1, masked), MaskedLayerNorm(b.norm2, masked), masked
        self.norm, self.stream = MaskedLayerNorm(self.norm, masked), masked

    def forward(self, x):
        x = self.patch_embed(x) + self.pos_embed
        if self.stream is not None:
            x = self.stream.scale(x)
        blocks = self.blocks
        if self.skippable and any(self.skip):
            blocks = [b for g in range(len(self.group_blocks())) for b in self.active_blocks(g)]
        for block in blocks:
            x = block(x)
        return self.head(self.norm(x.mean(dim=1)))

    def deploy(self) -> nn.Module:
        if self.skippable:  # the plain export of the active skip config, then fused
            return self.export_plain().deploy()
        if self.ramps:  # mid-ramp (MSG): the masks have no fused form; the same function, unfused
            return copy.deepcopy(self).eval()
        # a ViT copy (same forward, arch string) with each block and the final norm in deploy
        # form: head groups merged, LayerNorm affine maps folded (growth/models/transformer_deploy.py).
        # For inference only: it cannot grow or give arch_spec() (checkpoints store the training model's).
        fused = copy.deepcopy(self).eval()
        fused.blocks = nn.ModuleList(PreNormBlock(b) for b in fused.blocks)
        fused.norm, fused.head = fold_norm(fused.norm, fused.head)
        return fused
