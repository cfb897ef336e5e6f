"""Methods by name: `build_method(cfg)`."""
from growth.errors import ConfigError
from growth.methods.base import Method
from growth.methods.fixed import Fixed

METHODS = {"fixed": Fixed}


def build_method(cfg: dict) -> Method:
    name = cfg.get("name")
    if name not in METHODS:
        raise ConfigError("method.name", name, f"allowed: {', '.join(sorted(METHODS))}")
    return METHODS[name](cfg)


__all__ = ["Method", "METHODS", "build_method"]
