"""ReduceNet blocks: a non-linear bottleneck branch beside linear branches, and their fold.

Two designs of the original repository (METHODS.md 2.2), chosen by `design`:

- `head` (its last design, D): s = branch1(x) + branch2(x) [+ lora(x)];
  out = relu(conv3(relu(pre_bn(s))) + shortcut(x)). branch2 is a bare 3x3 conv. The switch is hard:
  scaler is 1 (teacher) or 0 (student).
- `blog` (design C, the seed blog's code): out = conv3(scaler*branch1(x) + relu(branch2(x) [+ lora(x)]))
  + shortcut(x), branch1 ending in a ReLU, branch2 a conv+BN; no final ReLU. Any scaler in [0, 1].

branch1 = conv3x3(in -> e*p) -> BN -> act -> conv1x1(e*p -> p) -> BN is only built when scaler != 0, so
a student holds and runs nothing of it. `lora` (student only) is a linear low-rank bottleneck
conv3x3(in -> r) -> BN -> conv1x1(r -> p) -> BN. With everything before the first ReLU linear, a
student block folds exactly into a plain block: relu?(conv_b(relu(conv_a(x))) + shortcut(x)).

`LambdaReLU` is design A's activation: lam*relu(z) + (1 - lam)*z, moved from 1 (ReLU) to 0 (identity)
per iteration by `lambda_at`.
"""
import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_weights

from growth.blocks.convbn import ConvBN, conv_from, fuse_convbn

DESIGNS = ("head", "blog")
ACTS = ("relu", "lambda")


def lambda_at(t: float) -> float:
    """Design A's schedule: 1 at t = 0 (ReLU), 0 at t >= 1 (identity), cosine in between."""
    return 0.5 * (1 + math.cos(math.pi * min(max(t, 0.0), 1.0)))


class LambdaReLU(nn.Module):
    """lam*relu(z) + (1 - lam)*z, written z + lam*relu(-z) so lam = 0 is the identity bit for bit."""

    def __init__(self, lam: float = 1.0):
        super().__init__()
        self.register_buffer("lam", torch.tensor(float(lam)))

    def forward(self, x):
        return x + self.lam.to(x.dtype) * F.relu(-x)


class Bottleneck(nn.Module):
    """conv3x3 -> BN -> act -> conv1x1 -> BN (-> ReLU when `out_relu`, the blog's branch1)."""

    def __init__(self, cin, mid, cout, stride, act: nn.Module, out_relu: bool = False):
        super().__init__()
        self.a = ConvBN(cin, mid, 3, stride, conv_bias=False)
        self.act = act
        self.b = ConvBN(mid, cout, 1, conv_bias=False)
        self.out_relu = out_relu

    def forward(self, x):
        out = self.b(self.act(self.a(x)))
        return F.relu(out) if self.out_relu else out

    def fused_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """One 3x3 (weight, bias) equal to the branch in eval mode; needs a linear act."""
        linear = isinstance(self.act, nn.Identity) or (isinstance(self.act, LambdaReLU) and self.act.lam == 0)
        if not linear or self.out_relu:
            raise ValueError("only a linear bottleneck folds into one conv")
        wa, ba = self.a.fused_weights()
        wb, bb = self.b.fused_weights()
        wb = wb[:, :, 0, 0]  # (cout, mid): the 1x1 conv mixes the 3x3 conv's output channels
        return torch.einsum("om,mikl->oikl", wb, wa), wb @ ba + bb


class ReduceBlock(nn.Module):
    def __init__(self, cin, planes, stride=1, *, design="head", scaler=1.0, expansion=1, act="relu",
                 lora_expansion=0):
        super().__init__()
        self.design, self.scaler, self.stride = design, float(scaler), stride
        self.cin, self.planes = cin, planes
        self.branch1 = None
        if self.scaler != 0:
            act_mod = LambdaReLU() if act == "lambda" else nn.ReLU()
            self.branch1 = Bottleneck(cin, expansion * planes, planes, stride, act_mod,
                                      out_relu=design == "blog")
        if design == "head":
            self.branch2 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
            self.pre_bn = nn.BatchNorm2d(planes)
        else:
            self.branch2 = ConvBN(cin, planes, 3, stride, conv_bias=False)
        self.lora = None
        if self.scaler == 0 and lora_expansion > 0:
            self.lora = Bottleneck(cin, lora_expansion * planes, planes, stride, nn.Identity())
        self.conv3 = ConvBN(planes, planes, 3, conv_bias=False)
        self.shortcut = None
        if stride != 1 or cin != planes:
            self.shortcut = ConvBN(cin, planes, 1, stride, conv_bias=False)

    def _linear(self, x):
        """The linear part feeding the first ReLU: branch2 (+ lora)."""
        s = self.branch2(x)
        return s + self.lora(x) if self.lora is not None else s

    def forward(self, x):
        sc = x if self.shortcut is None else self.shortcut(x)
        if self.design == "head":
            s = self._linear(x)
            if self.branch1 is not None:  # the hard switch: a student never runs branch1
                s = s + self.branch1(x)
            return F.relu(self.conv3(F.relu(self.pre_bn(s))) + sc)
        s = F.relu(self._linear(x))
        if self.branch1 is not None:
            s = s + self.scaler * self.branch1(x)
        return self.conv3(s) + sc

    @torch.no_grad()
    def fold(self) -> "PlainBlock":
        """The exact eval-mode equivalent of a student block (no branch1): two convs and a shortcut."""
        if self.branch1 is not None:
            raise ValueError("a block with its non-linear branch (scaler != 0) does not fold")
        if self.design == "head":
            w, b = self.branch2.weight, torch.zeros(self.planes, device=self.branch2.weight.device)
        else:
            w, b = self.branch2.fused_weights()
        if self.lora is not None:
            wl, bl = self.lora.fused_weights()
            w, b = w + wl, b + bl
        if self.design == "head":
            bn = self.pre_bn
            w, b = fuse_conv_bn_weights(w, b, bn.running_mean, bn.running_var, bn.eps, bn.weight, bn.bias)
        conv_a = conv_from(w, b, stride=self.stride)
        conv_b = fuse_convbn(self.conv3)
        shortcut = None if self.shortcut is None else fuse_convbn(self.shortcut)
        return PlainBlock(conv_a, conv_b, shortcut, out_relu=self.design == "head")


class PlainBlock(nn.Module):
    """A folded student block: relu?(conv_b(relu(conv_a(x))) + shortcut(x)), convs with bias."""

    def __init__(self, conv_a, conv_b, shortcut, out_relu):
        super().__init__()
        self.conv_a, self.conv_b, self.shortcut, self.out_relu = conv_a, conv_b, shortcut, out_relu

    def forward(self, x):
        out = self.conv_b(F.relu(self.conv_a(x))) + (x if self.shortcut is None else self.shortcut(x))
        return F.relu(out) if self.out_relu else out


def init_lora_from_branch1(lora: Bottleneck, branch1: Bottleneck) -> None:
    """Carry a branch1 whose LambdaReLU reached identity into the student's linear LoRA (same shapes)."""
    lora.load_state_dict({k: v for k, v in branch1.state_dict().items() if not k.startswith("act.")})
