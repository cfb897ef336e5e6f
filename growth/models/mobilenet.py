"""Growable MobileNet of inverted-residual blocks around a depthwise RepUnit (AdaGrow's
`get_ada_growing_mobilenetv3`, which the original calls MobileNetV3).

Widths 32/64/96 with depthwise kernels 3/5/5 (three stages) or 16/32/64/96 with 3/5/5/5 (four). Stem:
conv3x3 (no bias) + BN + ReLU at stride 2 (`stem_stride: auto` keeps stride 1 below 32 px, e.g. 8x8
digits). Between stages a stride-2 3x3 RepUnit with no activation (as the original; `downstream_act`
adds a ReLU). A block at width c, hidden h = expand * c (expand 4):
  1x1 conv (c -> h, no bias) + BN + SiLU -> depthwise kxk RepUnit (groups = h) + SiLU
  -> squeeze-excite (`se`, default on: avgpool, 1x1 conv h -> max(h//4, 8) no bias, BN, ReLU,
     1x1 conv back no bias, hardsigmoid; scales the features)
  -> 1x1 conv (h -> c, no bias) + BN, + x, then `out_act`.
Every conv+BN pair is a ConvBN and every kxk conv a RepUnit, so `deploy()` folds all BNs (the original
fuses only the RepUnits). Live parameters match the original (811,210 for 2-3-3, 3x32x32, 10 classes).

`out_act` is the activation after the residual add. The original applies SiLU there (`out_act: silu`),
which makes zero-init depth growth impossible to preserve exactly: a new block whose residual path
outputs 0 computes silu(x), not x. The default `none` (as in MobileNetV2/V3's linear bottlenecks)
makes the new block exactly the identity, at the same parameter count and MACs.
"""
from torch import nn

from growth.blocks import ConvBN, RepUnit
from growth.errors import ConfigError
from growth.models import register
from growth.models.convnet import StagedRepNet

OUT_ACTS = ("none", "silu")


class SqueezeExcite(nn.Module):
    def __init__(self, channels, reduction=4, min_hidden=8):
        super().__init__()
        hidden = max(channels // reduction, min_hidden)
        self.gate = nn.Sequential(nn.AdaptiveAvgPool2d(1), ConvBN(channels, hidden, (1, 1), conv_bias=False),
                                  nn.ReLU(), nn.Conv2d(hidden, channels, 1, bias=False), nn.Hardsigmoid())

    def forward(self, x):
        return x * self.gate(x)


class MobileBlock(nn.Module):
    def __init__(self, width, kernel=3, expand=4, se=True, out_act="none"):
        super().__init__()
        if out_act not in OUT_ACTS:
            raise ValueError(f"out_act={out_act!r}: allowed {', '.join(OUT_ACTS)}")
        hidden = expand * width
        self.expand = ConvBN(width, hidden, (1, 1), conv_bias=False)
        self.dw = RepUnit(hidden, hidden, (kernel, kernel), groups=hidden)
        self.se = SqueezeExcite(hidden) if se else nn.Identity()
        self.project = ConvBN(hidden, width, (1, 1), conv_bias=False)
        self.act = nn.SiLU()
        self.out_act = nn.SiLU() if out_act == "silu" else nn.Identity()

    def forward(self, x):
        out = self.act(self.dw(self.act(self.expand(x))))
        return self.out_act(self.project(self.se(out)) + x)

    def zero_init_last(self) -> None:
        """gamma = beta = 0 on the BN that ends the residual path (after the projecting 1x1)."""
        nn.init.zeros_(self.project.bn.weight)
        nn.init.zeros_(self.project.bn.bias)


def default_kernels(n_stages: int) -> list[int]:
    return [3] + [5] * (n_stages - 1)


@register("mobilenet")
class MobileNet(StagedRepNet):
    DEFAULT_WIDTHS = {3: [32, 64, 96], 4: [16, 32, 64, 96]}
    STEM_BIAS = False
    DEFAULT_DOWNSTREAM_ACT = False
    supports_skip = True  # ADN: the second half of each stage of >= 2 blocks may be skipped

    def __init__(self, depths=(1, 1, 1), widths=None, in_chans=3, num_classes=10, stem_stride=2,
                 downstream_act=False, kernels=None, expand=4, se=True, out_act="none", skippable=False):
        super().__init__(depths, widths, in_chans, num_classes, stem_stride, downstream_act, skippable,
                         kernels=kernels, expand=expand, se=se, out_act=out_act)

    def configure(self, kernels=None, expand=4, se=True, out_act="none"):
        kernels = [int(k) for k in (kernels or default_kernels(len(self.depths)))]
        if len(kernels) != len(self.depths) or any(k % 2 == 0 or k < 1 for k in kernels):
            raise ValueError(f"kernels={kernels}: one odd kernel size per stage")
        if out_act not in OUT_ACTS:
            raise ValueError(f"out_act={out_act!r}: allowed {', '.join(OUT_ACTS)}")
        self.kernels, self.expand, self.se, self.out_act = kernels, int(expand), bool(se), out_act

    def family_kwargs(self) -> dict:
        return {"kernels": list(self.kernels), "expand": self.expand, "se": self.se, "out_act": self.out_act}

    @classmethod
    def config_kwargs(cls, cfg: dict, n_stages: int) -> dict:
        kernels = cfg.get("kernels")
        if kernels is not None and (not isinstance(kernels, (list, tuple)) or len(kernels) != n_stages
                                    or any(int(k) % 2 == 0 or int(k) < 1 for k in kernels)):
            raise ConfigError("model.kernels", kernels, f"{n_stages} odd depthwise kernel sizes, one per stage")
        out_act = str(cfg.get("out_act", "none"))
        if out_act not in OUT_ACTS:
            raise ConfigError("model.out_act", out_act, f"allowed: {', '.join(OUT_ACTS)}")
        return {"kernels": kernels, "expand": int(cfg.get("expand", 4)), "se": bool(cfg.get("se", True)),
                "out_act": out_act}

    @classmethod
    def auto_stem_stride(cls, image_size: int) -> int:
        return 1 if image_size < 32 else 2  # the original: stride 2 (CIFAR 32x32 -> 16x16)

    def make_block(self, stage: int) -> nn.Module:
        return MobileBlock(self.widths[stage], self.kernels[stage], self.expand, self.se, self.out_act)
