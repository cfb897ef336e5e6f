"""Where ADN's skip groups sit inside timm's own networks, and how a network loses blocks.

Three layouts, recognised by the network's class (any timm model of that class works, whatever its
depth or width):

| layout       | timm class                         | groups (in forward order)                          |
|--------------|------------------------------------|----------------------------------------------------|
| resnet       | timm.models.resnet.ResNet          | layer1..layer4 (resnet18 ... resnet152, resnet50d) |
| efficientnet | timm.models.efficientnet.EfficientNet | each stage of `blocks` (mobilenetv2_100: 7 stages, 1-2-3-4-3-3-1) |
| vit          | timm.models.vision_transformer.VisionTransformer | `blocks` cut into pseudo-stages (of 3 when 3 divides the depth) |

Stages stay where timm put them and keep their children, so the state_dict keys are timm's own. In a
skippable model each stage container is a SkipSequential, whose forward leaves its skipped blocks out:
the network's own forward (timm's) runs everything else. A plain model with `keep` has each stage cut to
its first keep[g] blocks (ViT: of each pseudo-stage), which is the same network timm builds with
`layers=keep` (ResNet) or `depth=sum(keep)` (ViT) or fewer repeats in the arch def (EfficientNet).
"""
from torch import nn

from growth.models.vit import group_sizes

LAYOUTS = ("resnet", "efficientnet", "vit")


class SkipSequential(nn.Sequential):
    """A timm stage that does not call the blocks whose indices are in `skipped` (a plain attribute, set
    from the skip config: never state)."""

    def __init__(self, *blocks):
        super().__init__(*blocks)
        self.skipped = frozenset()

    def forward(self, x):
        for i, block in enumerate(self):
            if i not in self.skipped:
                x = block(x)
        return x


def layout_of(net: nn.Module) -> str | None:
    from timm.models.efficientnet import EfficientNet
    from timm.models.resnet import ResNet
    from timm.models.vision_transformer import VisionTransformer
    for cls, name in ((ResNet, "resnet"), (EfficientNet, "efficientnet"), (VisionTransformer, "vit")):
        if isinstance(net, cls):
            return name
    return None


def containers(net: nn.Module, layout: str) -> list[tuple[nn.Module, str]]:
    """(parent, attribute) of every stage container, in forward order."""
    if layout == "resnet":
        return [(net, f"layer{i}") for i in range(1, 5)]
    if layout == "efficientnet":
        return [(net.blocks, str(i)) for i in range(len(net.blocks))]
    return [(net, "blocks")]


def stages(net: nn.Module, layout: str) -> list[nn.Sequential]:
    return [getattr(parent, name) for parent, name in containers(net, layout)]


def groups(net: nn.Module, layout: str, skip_groups: int | None) -> list[list[nn.Module]]:
    """The skip groups' blocks: one per stage; ViT's flat blocks cut into pseudo-stages."""
    if layout != "vit":
        return [list(stage) for stage in stages(net, layout)]
    blocks, out = list(net.blocks), []
    for n in group_sizes(len(blocks), skip_groups):
        out.append(blocks[:n])
        blocks = blocks[n:]
    return out


def make_skippable(net: nn.Module, layout: str) -> None:
    for parent, name in containers(net, layout):
        setattr(parent, name, SkipSequential(*getattr(parent, name)))


def set_skipped(net: nn.Module, layout: str, sizes: list[int], keep: list[int]) -> None:
    """Mark the blocks beyond keep[g] of each group (of sizes[g] blocks) as skipped."""
    if layout == "vit":
        start, skipped = 0, set()
        for n, k in zip(sizes, keep):
            skipped |= set(range(start + k, start + n))
            start += n
        net.blocks.skipped = frozenset(skipped)
        return
    for stage, k in zip(stages(net, layout), keep):
        stage.skipped = frozenset(range(k, len(stage)))


def truncate(net: nn.Module, layout: str, skip_groups: int | None, keep: list[int]) -> None:
    """Cut the network to the first keep[g] blocks of each group, in place (plain nn.Sequential stages)."""
    grouped = groups(net, layout, skip_groups)
    if len(keep) != len(grouped) or any(not 1 <= k <= len(b) for k, b in zip(keep, grouped)):
        raise ValueError(f"keep={list(keep)}: one count in [1, blocks] per group of {[len(b) for b in grouped]}")
    if layout == "vit":
        net.blocks = nn.Sequential(*[b for blocks, k in zip(grouped, keep) for b in blocks[:k]])
        return
    for (parent, name), blocks, k in zip(containers(net, layout), grouped, keep):
        setattr(parent, name, nn.Sequential(*blocks[:k]))
