"""Plain (VGG-style) growable net of RepUnits (AdaGrow's `get_ada_growing_vgg`).

Same stem, downstream units, head and widths as resnet_basic (64/96/128, or 64/96/128/256 for four
stages; growth/models/convnet.py); a block is relu(RU(x)), one 3x3 RepUnit at the stage width.
Live parameters match the original (668,970 for 1-2-2, 3x32x32, 10 classes).

There is no residual path, so a new block whose unit outputs 0 would compute relu(0) = 0 and cut the
signal (measured: the default AdaGrow run on digits then stays at chance). The function-preserving init
of a plain block is the identity instead (`identity_init`): its input is non-negative (it follows a
ReLU), so relu(I x) = x in eval mode. Width growth (a zero-output branch in an existing unit) keeps
the function as in the other families.
"""
import torch
import torch.nn.functional as F
from torch import nn

from growth.blocks import RepUnit
from growth.models import register
from growth.models.convnet import StagedRepNet


class PlainBlock(nn.Module):
    """relu(RU(x)) at the stage width, stride 1."""

    def __init__(self, width, kernel=(3, 3)):
        super().__init__()
        self.ru = RepUnit(width, width, kernel)

    def forward(self, x):
        return F.relu(self.ru(x))

    @torch.no_grad()
    def identity_init(self):
        """Eval-mode identity: Dirac kernel, no bias, BN with unit scale and statistics chosen so that
        (x - 0) / sqrt(var + eps) = x exactly. Every parameter stays trainable (BN gamma is 1, not 0)."""
        for i, branch in enumerate(self.ru.branches):
            nn.init.dirac_(branch.conv.weight) if i == 0 else nn.init.zeros_(branch.conv.weight)
            nn.init.zeros_(branch.conv.bias)
            bn = branch.bn
            nn.init.constant_(bn.weight, 1.0 if i == 0 else 0.0)
            nn.init.zeros_(bn.bias)
            bn.running_mean.zero_()
            bn.running_var.fill_(1.0 - bn.eps)


@register("vgg")
class VGG(StagedRepNet):
    block = PlainBlock
