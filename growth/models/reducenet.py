"""ReduceNet: a CIFAR-style ResNet of ReduceBlocks (growth/blocks/reducenet.py).

stem conv3x3 + BN + ReLU; three stages of n blocks (depth = 6n + 2: 20, 32, 56, ...) at widths
16w/32w/64w and strides 1/2/2; average pool; Linear. `scaler` 1 is the teacher, 0 the student (no
branch1 at all, optional LoRA); the method swaps one for the other, so scaler, lora_expansion and
freeze are spec kwargs that change during a run. A student deploys as a plain ResNet with biases.

`freeze` (the blog design's stage 2, set by the method on the student) keeps the classifier weight
("linear") and/or every BN's affine parameters ("bn") where they are: a hook drops their gradient, so
the optimizer skips them (no weight decay, no momentum) while they still count as parameters of the
model. BN running statistics still update, as in the original.
"""
import copy

import torch.nn.functional as F
from torch import nn

from growth.arch import parse_arch, parse_widths
from growth.blocks import ConvBN
from growth.blocks.reducenet import ACTS, DESIGNS, LambdaReLU, ReduceBlock
from growth.errors import ConfigError
from growth.models import register
from growth.models.base import SpecModel, _swap_fused

FREEZE = ("linear", "bn")


def _drop_grad(p):
    p.grad = None


def depth_to_blocks(depth) -> int:
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 8 or (depth - 2) % 6:
        raise ConfigError("model.depth", depth, "must be 6n + 2 with n >= 1 (8, 14, 20, 32, 44, 56, ...)")
    return (depth - 2) // 6


@register("reducenet")
class ReduceNet(SpecModel):
    grown_keys = ("scaler", "lora_expansion", "freeze")

    def __init__(self, depths=(3, 3, 3), widths=(16, 32, 64), in_chans=3, num_classes=10, design="head",
                 scaler=1.0, expansion=1, act="relu", lora_expansion=0, freeze=()):
        super().__init__()
        self.depths, self.widths = [int(d) for d in depths], [int(w) for w in widths]
        self.in_chans, self.num_classes, self.design = in_chans, num_classes, design
        self.scaler, self.expansion, self.act = float(scaler), int(expansion), act
        self.lora_expansion, self.freeze = int(lora_expansion), sorted(freeze)
        block = dict(design=design, scaler=self.scaler, expansion=self.expansion, act=act,
                     lora_expansion=self.lora_expansion)
        self.stem = nn.Sequential(ConvBN(in_chans, self.widths[0], 3, conv_bias=False), nn.ReLU())
        stages, cin = [], self.widths[0]
        for i, (d, w) in enumerate(zip(self.depths, self.widths)):
            blocks = [ReduceBlock(cin if j == 0 else w, w, 2 if (i > 0 and j == 0) else 1, **block)
                      for j in range(d)]
            stages.append(nn.Sequential(*blocks))
            cin = w
        self.stages = nn.ModuleList(stages)
        self.fc = nn.Linear(self.widths[-1], num_classes)
        self._install_freeze()

    def _install_freeze(self) -> None:
        frozen = [self.fc.weight] if "linear" in self.freeze else []
        if "bn" in self.freeze:
            frozen += [p for m in self.modules() if isinstance(m, nn.BatchNorm2d) for p in m.parameters()]
        for p in frozen:
            p.register_post_accumulate_grad_hook(_drop_grad)

    def forward(self, x):
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))

    # ---- the switch -----------------------------------------------------------------------------
    @property
    def is_student(self) -> bool:
        return self.scaler == 0

    def set_lambda(self, lam: float) -> None:
        """Design A: every LambdaReLU (in branch1) to lam; 1 = ReLU, 0 = identity."""
        for m in self.modules():
            if isinstance(m, LambdaReLU):
                m.lam.fill_(lam)

    def blocks(self) -> list[ReduceBlock]:
        return [b for stage in self.stages for b in stage]

    # ---- spec -----------------------------------------------------------------------------------
    def spec_kwargs(self) -> dict:
        return {"depths": list(self.depths), "widths": list(self.widths), "in_chans": self.in_chans,
                "num_classes": self.num_classes, "design": self.design, "scaler": self.scaler,
                "expansion": self.expansion, "act": self.act, "lora_expansion": self.lora_expansion,
                "freeze": list(self.freeze)}

    def arch_string(self) -> str:
        role = {1.0: "T", 0.0: "S"}.get(self.scaler, f"s{self.scaler:g}")
        return "-".join(map(str, self.depths)) + ":" + role

    def deploy(self) -> nn.Module:
        """Student: every block folded to plain convs with bias (no branch1, no BN). Teacher: conv+BN
        pairs fused only (its non-linear branch cannot fold)."""
        fused = copy.deepcopy(self).eval()
        if self.is_student:
            for stage in fused.stages:
                for i, block in enumerate(stage):
                    stage[i] = block.fold()
        _swap_fused(fused)
        return fused

    @classmethod
    def from_config(cls, cfg: dict, data: dict) -> "ReduceNet":
        if cfg.get("arch"):
            depths = parse_arch(cfg["arch"])
            if min(depths) < 1:
                raise ConfigError("model.arch", cfg["arch"], "every stage needs at least one block")
        else:
            depths = [depth_to_blocks(cfg.get("depth", 20))] * 3
        width = cfg.get("width", 1)
        if isinstance(width, bool) or not isinstance(width, int) or width < 1:
            raise ConfigError("model.width", width, "must be a positive integer (the width scaler)")
        widths = cfg.get("widths")
        widths = parse_widths(widths, len(depths)) if widths else [16 * width * 2 ** i for i in range(len(depths))]
        return cls(depths, widths, data["in_chans"], data["num_classes"], **check_block_cfg(cfg))


def _choice(cfg, key, allowed):
    value = cfg.get(key, allowed[0])
    if value not in allowed:
        raise ConfigError(f"model.{key}", value, f"allowed: {', '.join(allowed)}")
    return value


def _count(cfg, key, default, low):
    value = cfg.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"model.{key}", value, f"must be an integer >= {low}")
    return value


def check_block_cfg(cfg: dict) -> dict:
    """The block settings of the model config, checked; ConfigError names the key."""
    design, act = _choice(cfg, "design", DESIGNS), _choice(cfg, "act", ACTS)
    scaler = cfg.get("scaler", 1.0)
    if isinstance(scaler, bool) or not isinstance(scaler, (int, float)) or not 0 <= scaler <= 1:
        raise ConfigError("model.scaler", scaler, "must be a number in [0, 1]")
    if design == "head" and scaler not in (0, 1):
        raise ConfigError("model.scaler", scaler, "design head is a hard switch: 0 or 1 (design blog scales)")
    if act == "lambda" and design != "head":
        raise ConfigError("model.act", act, "lambda needs model.design=head")
    return {"design": design, "scaler": float(scaler), "expansion": _count(cfg, "expansion", 1, 1),
            "act": act, "lora_expansion": _count(cfg, "lora_expansion", 0, 0)}
