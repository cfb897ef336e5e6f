"""CIFAR-style ResNet of basic blocks built from RepUnits (AdaGrow's growable ResNet).

Layout (growth/models/convnet.py) as in the original: stem conv+BN+ReLU; stages of blocks at stride 1;
between stages a stride-2 "downstream" RepUnit; global average pool; Linear. A stage may hold 0 blocks.
The original's downstream also owns a BatchNorm whose output is discarded; we do not allocate it (it is
dead weight), so our parameter count is the original's live count (169,770 for 0-0-0 at 64/96/128,
3x32x32, 10 classes). `model.downstream_act` (default true) puts a ReLU after each downstream unit, so
zero-init depth growth preserves the function even into an empty stage; false is the original.
"""
import torch.nn.functional as F
from torch import nn

from growth.blocks import RepUnit
from growth.models import register
from growth.models.convnet import Downstream, StagedRepNet, init_weights  # noqa: F401 (re-exported)

DEFAULT_WIDTHS = StagedRepNet.DEFAULT_WIDTHS


class BasicBlock(nn.Module):
    """relu(RU2(relu(RU1(x))) + x), both units at the stage width and stride 1."""

    def __init__(self, width, kernel=(3, 3)):
        super().__init__()
        self.ru1 = RepUnit(width, width, kernel)
        self.ru2 = RepUnit(width, width, kernel)

    def forward(self, x):
        return F.relu(self.ru2(F.relu(self.ru1(x))) + x)


@register("resnet_basic")
class ResNetBasic(StagedRepNet):
    block = BasicBlock
    supports_skip = True  # ADN: the second half of each stage of >= 2 blocks may be skipped
