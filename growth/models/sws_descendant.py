"""Learngene SWS descendant: a plain timm VisionTransformer (no class token, mean pooling, fc_norm), of any
depth. `model.net` is the timm model itself, usable anywhere timm ViTs are.

Width, MLP ratio and patch size default to the learngene's (`model.learngene`, which the config fills
from `method.learngene`), so a descendant and its scratch twin only name their depth. Heads default to
the learngene's (fixed) or half of them (faithful: the original re-partitions Aux-S's 12 heads of 32 dims
into 6 of 64; the qkv tensors are the same shape either way, but the function is not kept).
"""
from timm.models.vision_transformer import VisionTransformer

from growth.errors import ConfigError
from growth.models import learngene, register
from growth.models.base import SpecModel
from growth.models.sws import DEFAULTS, check_heads
from growth.models.transformer import check_image_data


def default_heads(aux_heads: int, variant: str) -> int:
    return max(1, aux_heads // 2) if variant == "faithful" else aux_heads


@register("sws_descendant")
class SWSDescendant(SpecModel):
    grown_keys = ()

    def __init__(self, depth=8, heads=4, embed_dim=48, mlp_ratio=4.0, patch_size=2, img_size=8, in_chans=1,
                 num_classes=10, drop_path=0.1):
        super().__init__()
        self.kw = {"depth": int(depth), "heads": int(heads), "embed_dim": int(embed_dim),
                   "mlp_ratio": float(mlp_ratio), "patch_size": int(patch_size), "img_size": int(img_size),
                   "in_chans": int(in_chans), "num_classes": int(num_classes), "drop_path": float(drop_path)}
        self.net = VisionTransformer(
            img_size=img_size, patch_size=patch_size, in_chans=in_chans, num_classes=num_classes,
            embed_dim=embed_dim, depth=depth, num_heads=heads, mlp_ratio=mlp_ratio, class_token=False,
            global_pool="avg", drop_path_rate=drop_path)

    @property
    def depth(self) -> int:
        return len(self.net.blocks)

    def forward(self, x):
        return self.net(x)

    def spec_kwargs(self) -> dict:
        return dict(self.kw)

    def arch_string(self) -> str:
        return f"d{self.kw['depth']}h{self.kw['heads']}"

    @classmethod
    def from_config(cls, cfg: dict, data: dict) -> "SWSDescendant":
        base = {**DEFAULTS, "heads": cfg.get("aux_heads") or DEFAULTS["heads"]}
        gene, missing = None, None
        if cfg.get("learngene"):
            try:
                gene = learngene.load(cfg["learngene"], "method.learngene")["config"]
            except ConfigError as e:  # a resumed run builds its model from the checkpoint: raised if fresh
                missing = e
        if gene is not None:
            base.update(gene)
            if gene["img_size"] != data["image_size"] or gene["in_chans"] != data["in_chans"]:
                raise ConfigError("data", data["name"], f"the learngene was trained on {gene['in_chans']}-channel "
                                  f"{gene['img_size']}px images (its position embedding fixes the size)")
            for key in ("embed_dim", "mlp_ratio", "patch_size"):
                if cfg.get(key) is not None and cfg[key] != gene[key]:
                    raise ConfigError(f"model.{key}", cfg[key], f"must equal the learngene's {gene[key]} (or null)")
        depth = cfg.get("depth")
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
            raise ConfigError("model.depth", depth, "a positive integer (the number of layers)")
        embed = int(cfg.get("embed_dim") or base["embed_dim"])
        patch = check_image_data(data, "sws_descendant", cfg.get("patch_size") or base["patch_size"])
        heads = cfg.get("heads") or default_heads(int(base["heads"]), cfg.get("variant") or "fixed")
        check_heads(heads, embed, "model.heads")
        model = cls(depth, heads, embed, float(cfg.get("mlp_ratio") or base["mlp_ratio"]), patch,
                    data["image_size"], data["in_chans"], data["num_classes"], float(cfg.get("drop_path", 0.1)))
        if missing is not None:
            # Without its file the learngene's settings are unknown here: a resume takes them from the
            # checkpoint's spec (not compared), a fresh run stops with `missing` (SWS.setup raises it).
            model.learngene_error, model.grown_keys = missing, ("heads", "embed_dim", "mlp_ratio", "patch_size")
        return model
