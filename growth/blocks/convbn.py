"""A conv followed by BatchNorm, and its exact fold into one conv with bias."""
import torch
from torch import nn
from torch.nn.utils import skip_init
from torch.nn.utils.fusion import fuse_conv_bn_weights


class ConvBN(nn.Module):
    """Conv2d (padding keeps the size at stride 1, per axis) -> BatchNorm2d."""

    def __init__(self, cin, cout, kernel=(3, 3), stride=1, groups=1, conv_bias=True):
        super().__init__()
        kh, kw = (kernel, kernel) if isinstance(kernel, int) else tuple(kernel)
        self.kernel = (int(kh), int(kw))
        self.conv = nn.Conv2d(cin, cout, self.kernel, stride=stride, padding=(kh // 2, kw // 2),
                              groups=groups, bias=conv_bias)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x):
        return self.bn(self.conv(x))

    def fused_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(weight, bias) of the single conv equal to this conv+BN in eval mode."""
        w, b = fuse_conv_bn_weights(self.conv.weight, self.conv.bias, self.bn.running_mean,
                                    self.bn.running_var, self.bn.eps, self.bn.weight, self.bn.bias)
        return w.detach(), b.detach()


def conv_from(weight: torch.Tensor, bias: torch.Tensor, *, stride=1, groups=1) -> nn.Conv2d:
    """A Conv2d (with bias, size-keeping padding per axis) holding copies of these tensors."""
    cout, cin_per_group, kh, kw = weight.shape
    # skip_init: the weights are overwritten below, and a default init would draw from the global RNG
    out = skip_init(nn.Conv2d, cin_per_group * groups, cout, (kh, kw), stride=stride, padding=(kh // 2, kw // 2),
                    groups=groups, bias=True, device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        out.weight.copy_(weight)
        out.bias.copy_(bias)
    return out


def fuse_convbn(m: ConvBN) -> nn.Conv2d:
    """A plain Conv2d (with bias) computing what `m` computes in eval mode."""
    return conv_from(*m.fused_weights(), stride=m.conv.stride, groups=m.conv.groups)
