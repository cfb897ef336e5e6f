"""Learngene SWS, the auxiliary model: a ViT whose S stages each own one timm Block, applied n_s times.

No class token: tokens are mean-pooled before the head. Drop-path follows the usual linear ramp over the
L = sum(n_s) *applications*, so a shared block gets a different rate each time it is applied.

The learngene (growth/models/learngene.py) is the S stage blocks plus the patch and position embedding;
descendants of any depth (growth/models/sws_descendant.py) start from it.

Norm placement is the one faithful/fixed switch of this model (`norm_first`): the original aux normalises
every token then averages (LayerNorm eps 1e-5), while its timm descendant averages then normalises
(`fc_norm`, eps 1e-6). The fixed variant uses the descendant's placement and eps here too, so a descendant
replaying the aux schedule computes exactly the aux's function.
"""
from functools import partial

import torch
from timm.layers import PatchEmbed, drop_path
from timm.models.vision_transformer import Block
from torch import nn

from growth.errors import ConfigError
from growth.models import register
from growth.models.base import SpecModel
from growth.models.transformer import check_image_data, vit_init

VARIANTS = ("fixed", "faithful")
DEFAULTS = {"stage_repeats": [3, 3, 4, 3, 3], "embed_dim": 48, "heads": 4, "mlp_ratio": 4.0, "patch_size": 2}


def variant_norm(variant: str) -> dict:
    """The aux's final-norm placement and LayerNorm eps per variant (see the module docstring)."""
    return {"norm_first": True, "norm_eps": 1e-5} if variant == "faithful" else {"norm_first": False,
                                                                                  "norm_eps": 1e-6}


def apply_block(block: Block, x: torch.Tensor, rate: float, training: bool) -> torch.Tensor:
    """timm Block.forward with a drop-path rate chosen per application (a shared block is applied at
    several depths of the ramp; Block's own drop_path modules would fix one rate)."""
    x = x + drop_path(block.ls1(block.attn(block.norm1(x))), rate, training)
    return x + drop_path(block.ls2(block.mlp(block.norm2(x))), rate, training)


def check_heads(heads, embed_dim: int, key: str) -> int:
    if isinstance(heads, bool) or not isinstance(heads, int) or heads < 1 or embed_dim % heads:
        raise ConfigError(key, heads, f"a positive integer dividing the embedding width {embed_dim}")
    return heads


@register("sws_aux")
class SWSAux(SpecModel):
    grown_keys = ()

    def __init__(self, stage_repeats=(3, 3, 4, 3, 3), embed_dim=48, heads=4, mlp_ratio=4.0, patch_size=2,
                 img_size=8, in_chans=1, num_classes=10, drop_path=0.1, norm_first=False, norm_eps=1e-6):
        super().__init__()
        self.stage_repeats = [int(n) for n in stage_repeats]
        self.embed_dim, self.num_heads, self.mlp_ratio = int(embed_dim), int(heads), float(mlp_ratio)
        self.patch_size, self.img_size, self.in_chans = int(patch_size), int(img_size), int(in_chans)
        self.num_classes, self.drop_path = int(num_classes), float(drop_path)
        self.norm_first, self.norm_eps = bool(norm_first), float(norm_eps)
        norm = partial(nn.LayerNorm, eps=self.norm_eps)
        self.patch_embed = PatchEmbed(img_size, patch_size, in_chans, self.embed_dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, self.patch_embed.num_patches, self.embed_dim))
        self.stages = nn.ModuleList(Block(self.embed_dim, self.num_heads, self.mlp_ratio, qkv_bias=True,
                                          norm_layer=norm) for _ in self.stage_repeats)
        self.norm = norm(self.embed_dim)
        self.head = nn.Linear(self.embed_dim, self.num_classes)
        vit_init(self)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)

    @property
    def schedule(self) -> list[int]:
        """The stage of each application: [3, 3, 4, 3, 3] -> 0,0,0,1,1,1,2,2,2,2,3,3,3,4,4,4."""
        return [s for s, n in enumerate(self.stage_repeats) for _ in range(n)]

    @property
    def depth(self) -> int:
        return sum(self.stage_repeats)

    def drop_rates(self) -> list[float]:
        return torch.linspace(0, self.drop_path, self.depth).tolist()

    def forward(self, x):
        x = self.patch_embed(x) + self.pos_embed
        # eval skips drop-path whatever the rate: no linspace there, whose floats torch.export cannot trace
        rates = self.drop_rates() if self.training else [0.0] * self.depth
        for stage, rate in zip(self.schedule, rates):
            x = apply_block(self.stages[stage], x, rate, self.training)
        x = self.norm(x).mean(dim=1) if self.norm_first else self.norm(x.mean(dim=1))
        return self.head(x)

    def spec_kwargs(self) -> dict:
        return {"stage_repeats": list(self.stage_repeats), "embed_dim": self.embed_dim, "heads": self.num_heads,
                "mlp_ratio": self.mlp_ratio, "patch_size": self.patch_size, "img_size": self.img_size,
                "in_chans": self.in_chans, "num_classes": self.num_classes, "drop_path": self.drop_path,
                "norm_first": self.norm_first, "norm_eps": self.norm_eps}

    def arch_string(self) -> str:
        return f"s{'-'.join(map(str, self.stage_repeats))}h{self.num_heads}"

    @classmethod
    def from_config(cls, cfg: dict, data: dict) -> "SWSAux":
        patch = check_image_data(data, "sws_aux", cfg.get("patch_size") or DEFAULTS["patch_size"])
        repeats = cfg.get("stage_repeats") or DEFAULTS["stage_repeats"]
        if not isinstance(repeats, list) or not repeats or any(
                isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in repeats):
            raise ConfigError("model.stage_repeats", repeats, "a list of positive integers, e.g. [3,3,4,3,3]")
        embed = int(cfg.get("embed_dim") or DEFAULTS["embed_dim"])
        heads = check_heads(cfg.get("heads") or DEFAULTS["heads"], embed, "model.heads")
        variant = cfg.get("variant") or "fixed"
        if variant not in VARIANTS:
            raise ConfigError("model.variant", variant, f"allowed: {', '.join(VARIANTS)}")
        rate = float(cfg.get("drop_path", 0.1))
        if not 0 <= rate < 1:
            raise ConfigError("model.drop_path", rate, "must be in [0, 1)")
        return cls(repeats, embed, heads, float(cfg.get("mlp_ratio") or DEFAULTS["mlp_ratio"]), patch,
                   data["image_size"], data["in_chans"], data["num_classes"], rate, **variant_norm(variant))
