"""Plain (VGG-style) growable net of RepUnits (AdaGrow's `get_ada_growing_vgg`).

Same stem, downstream units, head and widths as resnet_basic (64/96/128, or 64/96/128/256 for four
stages; growth/models/convnet.py); a block is relu(RU(x)), one 3x3 RepUnit at the stage width.
Live parameters match the original (668,970 for 1-2-2, 3x32x32, 10 classes).

Depth growth cannot preserve the function: there is no residual path, so a new block whose unit
outputs 0 computes relu(0) = 0 and cuts the signal instead of passing x through (the zero initializer
zeroes its BNs, which keeps it trainable but changes the output). Width growth (a new zero-output
branch inside an existing unit) does preserve it.
"""
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


@register("vgg")
class VGG(StagedRepNet):
    block = PlainBlock
