"""Any timm model as a fixed baseline (`model=timm model.name=resnet18`), built without weights.

Small inputs (digits 8x8, CIFAR 32x32) drown in ImageNet stems, so `small_input_stem` swaps a ResNet-style
stem (`conv1` + `maxpool`) for a 3x3 stride-1 conv and no pooling; ViT-style models get `img_size`.
"""
import copy

import timm
from timm.utils.model import reparameterize_model
from torch import nn

from growth.errors import ConfigError
from growth.models import register
from growth.models.base import SpecModel


def _small_stem(net: nn.Module) -> None:
    conv = getattr(net, "conv1", None)
    if isinstance(conv, nn.Conv2d) and hasattr(net, "maxpool"):
        net.conv1 = nn.Conv2d(conv.in_channels, conv.out_channels, 3, stride=1, padding=1, bias=False)
        nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")
        net.maxpool = nn.Identity()


@register("timm")
class TimmModel(SpecModel):
    def __init__(self, name="resnet18", in_chans=3, num_classes=10, small_input_stem=False, extra=None):
        super().__init__()
        self.name, self.in_chans, self.num_classes = name, in_chans, num_classes
        self.small_input_stem, self.extra = bool(small_input_stem), dict(extra or {})
        if name not in timm.list_models():
            raise ConfigError("model.name", name, "not a timm model (see timm.list_models())")
        self.net = timm.create_model(name, pretrained=False, in_chans=in_chans, num_classes=num_classes,
                                     **self.extra)
        if self.small_input_stem:
            _small_stem(self.net)

    def spec_kwargs(self) -> dict:
        return {"name": self.name, "in_chans": self.in_chans, "num_classes": self.num_classes,
                "small_input_stem": self.small_input_stem, "extra": self.extra}

    def arch_string(self) -> str:
        return self.name

    @classmethod
    def from_config(cls, cfg: dict, data: dict) -> "TimmModel":
        small = cfg.get("small_input_stem", "auto")
        if small == "auto":
            small = data["image_size"] <= 64
        extra = dict(cfg.get("kwargs") or {})
        if cfg.get("img_size") == "auto" or (small and "vit" in cfg["name"] and "img_size" not in extra):
            extra["img_size"] = data["image_size"]
        return cls(cfg["name"], data["in_chans"], data["num_classes"], small, extra)

    def forward(self, x):
        return self.net(x)

    def deploy(self) -> nn.Module:
        # timm knows how to fold its own re-parameterisable models (RepVGG, MobileOne, FastViT ...).
        return reparameterize_model(copy.deepcopy(self).eval())
