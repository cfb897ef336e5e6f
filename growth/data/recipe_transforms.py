"""Image transforms of a training recipe (conf/recipe/), built by timm's `create_transform`.

`recipe_transforms(recipe, size, mean, std)` returns (train_tf, eval_tf, eval_size) for
`recipe.transforms: timm`, or None (recipe none: the data keeps its own transforms, unchanged).
"""
from timm.data import create_transform
from torchvision import transforms as T

from growth.errors import ConfigError

KINDS = (None, "none", "timm")
# torchvision's TrivialAugmentWide (the torchvision R50 v2 recipe's --auto-augment ta_wide): timm has no
# such policy, so it is the one op taken from torchvision, placed where timm puts its auto-augment.
TA_WIDE = "ta_wide"


def _size(recipe: dict, key: str, default: int) -> int:
    value = recipe.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"recipe.{key}", value, "allowed: null (data.image_size) or a positive integer (pixels)")
    return value


def _train(recipe: dict, size: int, mean, std):
    aa = recipe.get("auto_augment")
    ta_wide = aa == TA_WIDE
    jitter = recipe.get("color_jitter")
    try:
        tf = create_transform(size, is_training=True, scale=tuple(recipe.get("scale") or (0.08, 1.0)),
                              hflip=float(recipe.get("hflip", 0.5)), color_jitter=jitter,
                              auto_augment=None if ta_wide else aa,
                              interpolation=recipe.get("interpolation") or "bilinear", mean=mean, std=std,
                              re_prob=float(recipe.get("re_prob") or 0.0), re_mode=recipe.get("re_mode") or "const",
                              re_count=int(recipe.get("re_count") or 1))
    except (AssertionError, ValueError, KeyError) as e:  # timm's parsers reject a bad policy string this way
        raise ConfigError("recipe.auto_augment", aa, f"timm cannot build it ({type(e).__name__}: {e}); allowed: "
                          "null, a timm policy (rand-m9-mstd0.5-inc1, augmix-m5-w3, original, v0) or ta_wide")
    if ta_wide:
        ops = tf.transforms
        at = next(i for i, op in enumerate(ops) if isinstance(op, T.RandomHorizontalFlip)) + 1 \
            if any(isinstance(op, T.RandomHorizontalFlip) for op in ops) else 1
        interp = T.InterpolationMode(recipe.get("interpolation") or "bilinear")
        ops.insert(at, T.TrivialAugmentWide(interpolation=interp))
    return tf


def _eval(recipe: dict, size: int, mean, std):
    pct = recipe.get("eval_crop_pct")
    if pct is not None and (isinstance(pct, bool) or not 0 < float(pct) <= 1):
        raise ConfigError("recipe.eval_crop_pct", pct, "allowed: null (timm's 0.875) or a number in (0, 1]: "
                          "eval resize = eval_size / crop_pct, then a centre crop of eval_size")
    return create_transform(size, is_training=False, crop_pct=None if pct is None else float(pct),
                            interpolation=recipe.get("interpolation") or "bilinear", mean=mean, std=std)


def recipe_transforms(recipe: dict | None, size: int, mean, std):
    """(train_tf, eval_tf, eval_size) for a timm recipe, else None. `size`: data.image_size, the default of
    recipe.train_size and recipe.eval_size."""
    kind = (recipe or {}).get("transforms")
    if kind not in KINDS:
        raise ConfigError("recipe.transforms", kind, "allowed: none (the data's own transforms) or timm")
    if kind in (None, "none"):
        return None
    train_size, eval_size = _size(recipe, "train_size", size), _size(recipe, "eval_size", size)
    return _train(recipe, train_size, mean, std), _eval(recipe, eval_size, mean, std), eval_size
