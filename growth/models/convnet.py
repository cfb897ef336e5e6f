"""What AdaGrow's growable conv nets share (ResNet basic/bottleneck, VGG, MobileNet).

Layout as in the original: stem conv3x3 + BN + ReLU; stages of blocks, all at stride 1; between stages a
stride-2 "downstream" RepUnit; global average pool; Linear. A stage may hold 0 blocks. A family says
what its block is (`make_block`) and may add constructor arguments of its own (`family_kwargs`,
`config_kwargs`); growth (growth/grow/, growth/methods/adagrow.py) drives the API below.

The original's downstream also owns a BatchNorm whose output is discarded; we do not allocate it (it is
dead weight), so our parameter counts are the original's live counts.
"""
from torch import nn

from growth.arch import arch_string, parse_arch, parse_widths
from growth.blocks import ConvBN, RepUnit
from growth.errors import ConfigError
from growth.models.base import SpecModel
from growth.models.growable import GrowthResult, Site
from growth.models.skippable import SkippableMixin


class Downstream(nn.Module):
    """Stride-2 RepUnit from one stage's width to the next.

    The original applies no activation here. With `act=True` (ResNet's default) every block input is
    non-negative, so a new block whose residual branch outputs 0 computes relu(x + 0) = x and depth
    growth preserves the function even into an empty stage. `act=False` is the original.
    """

    def __init__(self, cin, cout, kernel=(3, 3), act=True):
        super().__init__()
        self.unit = RepUnit(cin, cout, kernel, stride=2)
        self.act = nn.ReLU() if act else nn.Identity()

    def forward(self, x):
        return self.act(self.unit(x))


def init_weights(model: nn.Module) -> None:
    """The original's init: Kaiming-normal (fan_out) convs, BN 1/0, Linear N(0, 0.001)."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=0.001)
            nn.init.zeros_(m.bias)


class StagedRepNet(SkippableMixin, SpecModel):
    """stem -> [stage 0] -> down 1 -> [stage 1] -> ... -> pool -> fc. Subclasses give `make_block`.

    `skippable=True` (ADN, growth/models/skippable.py): each stage is a skip group; off by default."""

    DEFAULT_WIDTHS = {3: [64, 96, 128], 4: [64, 96, 128, 256]}
    STEM_BIAS = True  # the original's stem conv has a bias (ResNet, VGG) or not (MobileNet)
    DEFAULT_DOWNSTREAM_ACT = True
    supports_skip = False  # families whose blocks are residual opt in (ADN)
    grown_keys = ("depths", "widths")  # Net2Net, SplitGrow widen stages: a checkpoint may be wider than the config

    def __init__(self, depths=(1, 1, 1), widths=None, in_chans=3, num_classes=10, stem_stride=1,
                 downstream_act=True, skippable=False, **family):
        super().__init__()
        depths = [int(d) for d in depths]
        widths = list(widths or self.default_widths(len(depths)))
        self.depths, self.widths = depths, widths
        self.in_chans, self.num_classes, self.stem_stride = in_chans, num_classes, stem_stride
        self.downstream_act = bool(downstream_act)
        self.configure(**family)
        self.stem = nn.Sequential(ConvBN(in_chans, widths[0], (3, 3), stride=stem_stride,
                                         conv_bias=self.STEM_BIAS), nn.ReLU())
        self.stages = nn.ModuleList(
            nn.Sequential(*[self.make_block(i) for _ in range(d)]) for i, d in enumerate(depths))
        self.downs = nn.ModuleList(Downstream(a, b, act=self.downstream_act)
                                   for a, b in zip(widths[:-1], widths[1:]))
        self.fc = nn.Linear(widths[-1], num_classes)
        init_weights(self)
        if skippable:
            self.skippable = True
            self.make_norms_switchable()  # after init: both norm sets start equal
            self.set_skip(None)

    # ---- what a family defines ------------------------------------------------------------------
    @classmethod
    def default_widths(cls, n_stages: int) -> list[int]:
        return cls.DEFAULT_WIDTHS.get(n_stages, [64 * 2 ** i for i in range(n_stages)])

    def configure(self, **family) -> None:
        """Store the family's own constructor arguments (plain attributes) before blocks are built."""
        if family:
            raise TypeError(f"{type(self).__name__} got unexpected arguments {sorted(family)}")

    def family_kwargs(self) -> dict:
        """The family's own constructor arguments now (part of spec_kwargs)."""
        return {}

    @classmethod
    def config_kwargs(cls, cfg: dict, n_stages: int) -> dict:
        """The family's own constructor arguments from the model config group."""
        return {}

    @classmethod
    def auto_stem_stride(cls, image_size: int) -> int:
        # small inputs (digits 8x8, CIFAR 32x32) keep full resolution in the stem
        return 1 if image_size <= 64 else 2

    def make_block(self, stage: int) -> nn.Module:
        return self.block(self.widths[stage])

    # ---- spec and config ------------------------------------------------------------------------
    def spec_kwargs(self) -> dict:
        return {"depths": list(self.depths), "widths": list(self.widths), "in_chans": self.in_chans,
                "num_classes": self.num_classes, "stem_stride": self.stem_stride,
                "downstream_act": self.downstream_act, **self.family_kwargs(),
                **({"skippable": True} if self.skippable else {})}  # absent when off: specs unchanged

    # ---- skip groups (ADN) ----------------------------------------------------------------------
    def group_blocks(self) -> list[list[nn.Module]]:
        return [list(stage) for stage in self.stages]

    def plain_kwargs(self, keep: list[int]) -> dict:
        kwargs = {k: v for k, v in self.spec_kwargs().items() if k != "skippable"}
        return {**kwargs, "depths": list(keep)}

    def arch_string(self) -> str:
        return arch_string(self.depths)

    @staticmethod
    def not_grown_from(configured: dict, grown: dict) -> str | None:
        """Why spec kwargs `grown` (a checkpoint's) cannot come from growing `configured`, or None: width
        growth only adds channels, so every stage is at least as wide as configured."""
        a, b = list(configured.get("widths") or []), list(grown.get("widths") or [])
        if len(a) != len(b) or any(x > y for x, y in zip(a, b)):
            return f"checkpoint widths {b} are not model.widths={a} or wider (growth only widens)"
        return None

    @classmethod
    def from_config(cls, cfg: dict, data: dict) -> "StagedRepNet":
        depths = parse_arch(cfg.get("arch", "1-1-1"))
        widths = cfg.get("widths")
        widths = parse_widths(widths, len(depths)) if widths else None
        if widths is None and len(depths) not in cls.DEFAULT_WIDTHS:
            raise ConfigError("model.arch", cfg.get("arch"), "3 or 4 stages, or give model.widths per stage")
        stride = cfg.get("stem_stride", "auto")
        if stride == "auto":
            stride = cls.auto_stem_stride(data["image_size"])
        skippable = bool(cfg.get("skippable", False))
        if skippable and not cls.supports_skip:
            raise ConfigError("model.skippable", True, f"{cls.family} has no skippable sub-paths; "
                              "use resnet_basic, resnet_bottleneck, mobilenet, vit or timm (ResNet, MobileNetV2, ViT)")
        return cls(depths, widths, data["in_chans"], data["num_classes"], int(stride),
                   bool(cfg.get("downstream_act", cls.DEFAULT_DOWNSTREAM_ACT)), skippable=skippable,
                   **cls.config_kwargs(cfg, len(depths)))

    # ---- growth API (growth/grow/ drives it) -----------------------------------------------------
    def grow_depth(self, stage: int) -> nn.Module:
        """Append a fresh block (default init) at the end of `stage`; returns it."""
        ref = self.fc.weight
        block = self.make_block(stage).to(ref.device, ref.dtype)
        init_weights(block)
        block.train(self.training)  # a new module must follow the model's mode (BN statistics)
        self.stages[stage].append(block)
        self.depths[stage] += 1
        return block

    def stage_input_bn(self, stage: int) -> nn.BatchNorm2d | None:
        """The BN the original reads for a stage's saliency: the stem's for stage 0; for later stages
        the downstream's own BN, which the original never trains (None here: it is not allocated)."""
        return self.stem[0].bn if stage == 0 else None

    def stage_input_unit(self, stage: int) -> nn.Module:
        """The module feeding a stage: the stem (stage 0) or the stride-2 downstream unit."""
        return self.stem[0] if stage == 0 else self.downs[stage - 1].unit

    # ---- growth sites (growth/models/growable.py) -------------------------------------------------
    def depth_sites(self) -> list[Site]:
        return [Site("depth", i, f"stage {i}") for i in range(len(self.depths))]

    def branch_sites(self) -> list[Site]:
        """One per RepUnit (a new kernel branch); `index` is the unit's module name."""
        return [Site("branch", name, name) for name, m in self.named_modules() if isinstance(m, RepUnit)]

    def width_sites(self) -> list[Site]:
        return [Site("width", i, f"stage {i} width") for i in range(len(self.widths))]

    def head_sites(self) -> list[Site]:
        return []

    def grow(self, site: Site, how: dict | None = None) -> GrowthResult:
        """Grow one site. `how` per kind:
        depth:  {"init": "zero"} (default: Net2DeeperNet, the new block starts as the identity), "meta";
        branch: {"kernel": (kh, kw)}, optional "init" (growth/grow/init.py) and "meta"; without "init"
                the branch keeps add_branch's default init;
        width:  {"width": new width} or {"channels": how many more}; optional "source" (old channel per
                new one), "generator", "noise" (growth/grow/widen.py)."""
        from growth.grow import init, widen  # they read the block classes, which import this module
        how = dict(how or {})
        if site.kind == "depth":
            result = widen.deepen_stage(self, site.index, how.get("init", "zero"), how.get("meta", 0.2))
        elif site.kind == "branch":
            unit = dict(self.named_modules()).get(site.index)
            if not isinstance(unit, RepUnit):
                raise ValueError(f"branch site {site.index!r} is not a RepUnit of this model")
            if "kernel" not in how:
                raise ValueError("branch growth needs how['kernel']")
            branch = unit.add_branch(how["kernel"])
            if "init" in how:
                init.initialize(branch, how["init"], how.get("meta", 0.2))
            result = GrowthResult(site, modules=[branch], new=list(branch.parameters()),
                                  details={"unit": site.index, "kernel": list(branch.kernel)})
        elif site.kind == "width":
            old = self.widths[site.index]
            width = how["width"] if "width" in how else old + how["channels"]
            result = widen.widen_stage(self, site.index, width, how.get("source"), how.get("generator"),
                                       how.get("noise", 0.0))
        else:
            raise ValueError(f"{type(self).__name__} has no {site.kind} sites")
        result.site = site
        return result

    def forward(self, x):
        x = self.stem(x)
        for i, stage in enumerate(self.stages):
            if i > 0:
                x = self.downs[i - 1](x)
            if self.skippable:
                for block in self.active_blocks(i):
                    x = block(x)
            else:
                x = stage(x)
        return self.fc(nn.functional.adaptive_avg_pool2d(x, 1).flatten(1))
