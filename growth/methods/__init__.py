"""Methods by name: `build_method(cfg)`."""
from growth.errors import ConfigError
from growth.methods.adagrow import AdaGrow
from growth.methods.adn import ADN
from growth.methods.base import Method
from growth.methods.fixed import Fixed
from growth.methods.randgrow import RandGrow
from growth.methods.reducenet import ReduceNetMethod
from growth.methods.sws import SWS

METHODS = {"fixed": Fixed, "adagrow": AdaGrow, "randgrow": RandGrow}
METHODS["reducenet"] = ReduceNetMethod
METHODS["adn"] = ADN
METHODS["sws"] = SWS


def build_method(cfg: dict) -> Method:
    """From the whole config (a method may read grow, grow_mode, initializer and model keys)."""
    name = cfg["method"].get("name")
    if name not in METHODS:
        raise ConfigError("method.name", name, f"allowed: {', '.join(sorted(METHODS))}")
    return METHODS[name](cfg)


__all__ = ["Method", "METHODS", "build_method"]
