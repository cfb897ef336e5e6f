"""Methods by name: `build_method(cfg)`, and `register_method` for your own (docs/adding_a_method.md).

A method defined outside this package is found through its config: `method.module` names a module to
import before the lookup, and that module registers its class with `@register_method("name")`.
"""
import importlib

from growth.engine.event import Event
from growth.errors import ConfigError
from growth.methods import adagrow, adn, bert2bert, fixed, gromo, msg, net2net, randgrow, reducenet, splitgrow, stacking, sws  # noqa: F401 (they register)
from growth.methods.base import Method
from growth.methods.registry import METHODS, register_method


def _import(module) -> None:
    try:
        importlib.import_module(module)
    except ImportError as e:  # one line, before training: usually a typo or the module is not on the path
        raise ConfigError("method.module", module, f"cannot be imported ({e}); allowed: a module on "
                                                   "the Python path, e.g. one next to run.py") from None


def build_method(cfg: dict) -> Method:
    """From the whole config (a method may read grow, grow_mode, initializer and model keys)."""
    name, module = cfg["method"].get("name"), cfg["method"].get("module")
    if module:
        _import(module)
    if name not in METHODS:
        raise ConfigError("method.name", name, f"allowed: {', '.join(sorted(METHODS))}")
    return METHODS[name](cfg)


__all__ = ["Event", "Method", "METHODS", "build_method", "register_method"]
