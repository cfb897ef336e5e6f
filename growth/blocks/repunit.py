"""RepUnit: parallel conv+BN branches of odd kernel shapes, summed; fuses exactly into one conv.

The branch kernels are at most the unit's base kernel (e.g. 1x1, 1x3, 3x1, 3x3 for a 3x3 unit). Every
branch pads to keep the centre aligned, so a folded kernel zero-padded (centred) to the base shape gives
the same output, at any stride. There is no activation inside the unit: blocks apply it.
"""
import torch.nn.functional as F
from torch import nn

from growth.blocks.convbn import ConvBN, conv_from


def odd_kernels_up_to(base) -> list[tuple[int, int]]:
    """Every odd (kh, kw) no larger than the base kernel: the shapes a new branch may take."""
    return [(i, j) for i in range(1, base[0] + 1, 2) for j in range(1, base[1] + 1, 2)]


class RepUnit(nn.Module):
    def __init__(self, cin, cout, base_kernel=(3, 3), stride=1, groups=1, kernels=None):
        super().__init__()
        self.cin, self.cout, self.stride, self.groups = cin, cout, stride, groups
        self.base_kernel = tuple(base_kernel)
        self.branches = nn.ModuleList()
        for k in kernels or [self.base_kernel]:
            self.add_branch(k)

    @property
    def kernels(self) -> list[tuple[int, int]]:
        return [b.kernel for b in self.branches]

    def add_branch(self, kernel) -> ConvBN:
        kernel = tuple(int(v) for v in kernel)
        if kernel[0] % 2 == 0 or kernel[1] % 2 == 0 or kernel[0] > self.base_kernel[0] \
                or kernel[1] > self.base_kernel[1]:
            raise ValueError(f"branch kernel {kernel} must be odd and at most {self.base_kernel}")
        branch = ConvBN(self.cin, self.cout, kernel, self.stride, self.groups)
        ref = next(self.parameters(), None)
        if ref is not None:
            branch.to(ref.device, ref.dtype)
        branch.train(self.training)  # follow the unit's mode (BN statistics)
        self.branches.append(branch)
        return branch

    def forward(self, x):
        out = self.branches[0](x)
        for b in self.branches[1:]:
            out = out + b(x)
        return out

    def fuse(self) -> nn.Conv2d:
        """One conv (with bias) equal to the unit in eval mode."""
        kh, kw = self.base_kernel
        weight, bias = 0, 0
        for b in self.branches:
            w, bb = b.fused_weights()
            ph, pw = (kh - w.shape[2]) // 2, (kw - w.shape[3]) // 2
            weight = weight + F.pad(w, (pw, pw, ph, ph))
            bias = bias + bb
        return conv_from(weight, bias, stride=self.stride, groups=self.groups)
