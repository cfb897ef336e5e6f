"""Any timm model as a fixed baseline (`model=timm model.name=resnet18`), built without weights; timm's
ResNets, EfficientNet-builder nets (MobileNetV2) and ViTs also as ADN super-nets (`method=adn`).

Small inputs (digits 8x8, CIFAR 32x32) drown in ImageNet stems, so `small_input_stem` swaps a ResNet-style
stem (`conv1` + `maxpool`) for a 3x3 stride-1 conv and no pooling; ViT-style models get `img_size`, and
a patch of a quarter of the image when theirs leaves fewer than 2 x 2 patches (vit_base_patch16_224 on 8x8
digits: patch 2, 16 tokens).

`skippable=True` (ADN, growth/models/skippable.py; layouts in growth/models/timm_skip.py): the network is
timm's, its stages become skip groups and a skipped block is simply not called. Switchable norms: every
norm of a flagged group's mandatory blocks, except a ResNet block's `downsample` (the stem's and the
downsample's BN are shared by all sub-nets, as the original). EfficientNet layout (MobileNetV2, METHODS.md
4.1): the stem BN and the 1-block stages before the first flagged stage switch with the first flag, the
last conv's BN and the 1-block stages after switch with the last flag (a 1-block stage in between: with
the flag before it). ViT: pseudo-stages of 3 blocks, the mandatory blocks' LayerNorms switch; the final
norm is shared. `keep` (a plain model): each group cut to its first keep[g] blocks, the form
`export_plain` gives, which is the same network timm builds with fewer blocks.
"""
import contextlib
import copy
import re

import timm
from timm.utils.model import reparameterize_model
from torch import nn

from growth.arch import arch_string
from growth.blocks.switchable import SwitchableNorm, make_switchable
from growth.errors import ConfigError
from growth.models import register, timm_skip
from growth.models.base import SpecModel
from growth.models.skippable import SkippableMixin


def _small_stem(net: nn.Module) -> None:
    conv = getattr(net, "conv1", None)
    if isinstance(conv, nn.Conv2d) and hasattr(net, "maxpool"):
        net.conv1 = nn.Conv2d(conv.in_channels, conv.out_channels, 3, stride=1, padding=1, bias=False)
        nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")
        net.maxpool = nn.Identity()


@register("timm")
class TimmModel(SkippableMixin, SpecModel):
    def __init__(self, name="resnet18", in_chans=3, num_classes=10, small_input_stem=False, extra=None,
                 skippable=False, skip_groups=None, keep=None):
        super().__init__()
        self.name, self.in_chans, self.num_classes = name, in_chans, num_classes
        self.small_input_stem, self.extra = bool(small_input_stem), dict(extra or {})
        if name not in timm.list_models():
            raise ConfigError("model.name", name, "not a timm model (see timm.list_models())")
        self.net = timm.create_model(name, pretrained=False, in_chans=in_chans, num_classes=num_classes,
                                     **self.extra)
        if self.small_input_stem:
            _small_stem(self.net)
        self.layout = timm_skip.layout_of(self.net)
        self.skip_groups = skip_groups
        self.keep = None if keep is None else [int(k) for k in keep]
        if (skippable or keep is not None) and self.layout is None:
            raise ConfigError("model.name", name, f"skippable sub-paths (adn) need a timm ResNet, EfficientNet "
                              f"(mobilenetv2_100) or VisionTransformer; {name} is a {type(self.net).__name__}")
        if self.layout == "vit" and skip_groups is not None and not 1 <= skip_groups <= len(self.net.blocks):
            raise ConfigError("model.skip_groups", skip_groups, f"null or an integer in [1, depth="
                              f"{len(self.net.blocks)}]")
        if self.keep is not None:
            if skippable:
                raise ValueError("a skippable timm model is built at full depth (keep=None)")
            timm_skip.truncate(self.net, self.layout, skip_groups, self.keep)
        if skippable:
            self.skippable = True
            timm_skip.make_skippable(self.net, self.layout)
            self.make_norms_switchable()  # after timm's init: both norm sets start equal
            self.set_skip(None)

    def spec_kwargs(self) -> dict:
        return {"name": self.name, "in_chans": self.in_chans, "num_classes": self.num_classes,
                "small_input_stem": self.small_input_stem, "extra": self.extra,
                # absent unless used: the specs of plain timm baselines do not change
                **({"skippable": True} if self.skippable else {}),
                **({"skip_groups": self.skip_groups} if self.skip_groups is not None else {}),
                **({"keep": list(self.keep)} if self.keep is not None else {})}

    def arch_string(self) -> str:
        if not self.skippable and self.keep is None:
            return self.name
        counts = self.keep if self.keep is not None else [len(b) for b in self._groups()]
        return f"{self.name}:{arch_string(counts)}"  # blocks per group: resnet50:3-4-6-3, its base resnet50:2-2-3-2

    @classmethod
    def from_config(cls, cfg: dict, data: dict) -> "TimmModel":
        small = cfg.get("small_input_stem", "auto")
        if small == "auto":
            small = data["image_size"] <= 64
        extra = dict(cfg.get("kwargs") or {})
        if cfg.get("img_size") == "auto" or (small and "vit" in cfg["name"] and "img_size" not in extra):
            extra["img_size"] = data["image_size"]
            patch = re.search(r"patch(\d+)", cfg["name"])
            if patch and int(patch.group(1)) > data["image_size"] // 2 and "patch_size" not in extra:
                # fewer than 2 x 2 patches (ViT-B/16 on 8x8 digits: none): 4 x 4 patches instead
                extra["patch_size"] = max(1, data["image_size"] // 4)
        groups = cfg.get("skip_groups")
        if groups is not None and (isinstance(groups, bool) or not isinstance(groups, int)):
            raise ConfigError("model.skip_groups", groups, "null or a positive integer (ViT pseudo-stages)")
        return cls(cfg["name"], data["in_chans"], data["num_classes"], small, extra,
                   skippable=bool(cfg.get("skippable", False)), skip_groups=groups)

    def forward(self, x):
        return self.net(x)

    def deploy(self) -> nn.Module:
        if self.skippable:  # the plain export of the active skip config
            return self.export_plain().deploy()
        # timm knows how to fold its own re-parameterisable models (RepVGG, MobileOne, FastViT ...).
        return reparameterize_model(copy.deepcopy(self).eval())

    # ---- skip groups (ADN) ----------------------------------------------------------------------
    def _groups(self) -> list[list[nn.Module]]:
        return timm_skip.groups(self.net, self.layout, self.skip_groups)

    def group_blocks(self) -> list[list[nn.Module]]:
        if self.layout == "vit" and not self.skippable:
            return [list(self.net.blocks)]  # a plain ViT is one run of blocks (its export's order)
        return self._groups()

    def plain_kwargs(self, keep: list[int]) -> dict:
        kwargs = {k: v for k, v in self.spec_kwargs().items() if k != "skippable"}
        return {**kwargs, "keep": list(keep)}

    @property
    def switch_exclude(self) -> tuple:
        return ("downsample",) if self.layout == "resnet" else ()

    def make_norms_switchable(self) -> None:
        super().make_norms_switchable()
        if self.layout == "efficientnet" and self.flagged_groups():
            self.net.bn1, self.net.bn2 = SwitchableNorm(self.net.bn1), SwitchableNorm(self.net.bn2)
            for blocks in self._groups():
                if len(blocks) < 2:
                    make_switchable(blocks[0])

    def tied_norms(self) -> list[tuple[int, SwitchableNorm]]:
        flagged = self.flagged_groups()
        if self.layout != "efficientnet" or not flagged:
            return []
        tied = [(0, self.net.bn1), (len(flagged) - 1, self.net.bn2)]
        for g, blocks in enumerate(self._groups()):
            if len(blocks) < 2:  # the flag of the flagged stage before it; the first flag if none is
                flag = max(sum(f < g for f in flagged) - 1, 0)
                tied += [(flag, m) for m in blocks[0].modules() if isinstance(m, SwitchableNorm)]
        return tied

    def set_skip(self, cfg=None) -> None:
        super().set_skip(cfg)
        if self.skippable:
            sizes = [len(b) for b in self._groups()]
            timm_skip.set_skipped(self.net, self.layout, sizes, self.kept_counts())

    # ---- feature distillation (ADN's --fpn) -------------------------------------------------------
    def feature_stages(self) -> list[nn.Module]:
        """The stages whose pooled outputs ADN's feature distillation compares: ResNet's layer1..3."""
        return timm_skip.stages(self.net, "resnet")[:3] if self.layout == "resnet" else []

    @contextlib.contextmanager
    def stage_features(self):
        """Inside the block every forward appends the global-average-pooled outputs of feature_stages()
        (batch x channels each) to the yielded list. Hooks live only inside the block: the forward
        still goes through the caller's module (DDP) and a copy or an export carries none."""
        feats = []
        hooks = [s.register_forward_hook(lambda m, i, out: feats.append(out.mean((2, 3))))
                 for s in self.feature_stages()]
        try:
            yield feats
        finally:
            for h in hooks:
                h.remove()
