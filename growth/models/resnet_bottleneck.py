"""CIFAR-style ResNet of bottleneck blocks around a RepUnit (AdaGrow's `get_ada_growing_bottleneck_resnet`).

Same stem, downstream units, head and widths as resnet_basic (growth/models/convnet.py). A block at
width p: 1x1 conv (p -> p/4, no bias) + BN + ReLU -> 3x3 RepUnit at p/4 + ReLU -> 1x1 conv (p/4 -> p, no
bias) + BN, + x, ReLU. The 1x1 conv+BN pairs are ConvBNs, so `deploy()` folds them too (the original
leaves them unfused). Live parameters match the original (234,746 for 2-2-2, 3x32x32, 10 classes).

Zero-init depth growth zeroes the block's last BN (the one after the expanding 1x1), so the residual
path outputs 0 and the block computes relu(x) = x on its non-negative input (stem and downstream units
end in ReLU; `downstream_act: false` is the original and then an empty stage's first block is not exact).
"""
import torch.nn.functional as F
from torch import nn

from growth.blocks import ConvBN, RepUnit
from growth.models import register
from growth.models.convnet import StagedRepNet


class BottleneckBlock(nn.Module):
    def __init__(self, width, reduction=4, kernel=(3, 3)):
        super().__init__()
        inner = max(1, width // reduction)
        self.reduce = ConvBN(width, inner, (1, 1), conv_bias=False)
        self.ru = RepUnit(inner, inner, kernel)
        self.expand = ConvBN(inner, width, (1, 1), conv_bias=False)

    def forward(self, x):
        out = F.relu(self.ru(F.relu(self.reduce(x))))
        return F.relu(self.expand(out) + x)

    def zero_init_last(self) -> None:
        """gamma = beta = 0 on the BN that ends the residual path: the path outputs exactly 0."""
        nn.init.zeros_(self.expand.bn.weight)
        nn.init.zeros_(self.expand.bn.bias)


@register("resnet_bottleneck")
class ResNetBottleneck(StagedRepNet):
    supports_skip = True  # ADN: the second half of each stage of >= 2 blocks may be skipped

    def configure(self, reduction=4):
        self.reduction = int(reduction)

    def family_kwargs(self) -> dict:
        return {"reduction": self.reduction}

    @classmethod
    def config_kwargs(cls, cfg: dict, n_stages: int) -> dict:
        return {"reduction": int(cfg.get("reduction", 4))}

    def make_block(self, stage: int) -> nn.Module:
        return BottleneckBlock(self.widths[stage], self.reduction)
