"""Model registry: `create_model(family, **kw)`, `model_from_spec(spec)`, `build_model(cfg, data)`."""
from growth.errors import ConfigError

MODELS: dict = {}


def register(family: str):
    def deco(cls):
        cls.family = family
        MODELS[family] = cls
        return cls
    return deco


def _load_all():
    # Imported here so that registering is a side effect of one place only.
    from growth.models import bert, mobilenet, resnet_basic, resnet_bottleneck, timm_model, vgg, vit  # noqa: F401
    from growth.models import reducenet  # noqa: F401
    from growth.models import sws, sws_descendant  # noqa: F401
    from growth.models import gromo_mlp  # noqa: F401


def create_model(family: str, **kwargs):
    _load_all()
    if family not in MODELS:
        raise ConfigError("model.family", family, f"allowed: {', '.join(sorted(MODELS))}")
    return MODELS[family](**kwargs)


def model_from_spec(spec: dict):
    _load_all()
    if spec.get("family") not in MODELS:
        raise ConfigError("model.family", spec.get("family"), f"allowed: {', '.join(sorted(MODELS))}")
    return MODELS[spec["family"]].from_spec(spec)


def build_model(cfg: dict, data_info: dict):
    """Build from the model config group (a plain dict) and what the data says (channels, classes, size)."""
    _load_all()
    family = cfg.get("family", cfg.get("name"))
    if family not in MODELS:
        raise ConfigError("model.family", family, f"allowed: {', '.join(sorted(MODELS))}")
    return MODELS[family].from_config(cfg, data_info)


def growable_families() -> list[str]:
    _load_all()
    return sorted(name for name, cls in MODELS.items() if hasattr(cls, "grow_depth"))
