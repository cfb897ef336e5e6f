"""Architecture strings and specs.

An arch string gives blocks per stage, e.g. "2-2-2" (conv nets). The full, JSON-serialisable spec of a
model (family, constructor arguments, grown structure) is what `Model.arch_spec()` returns and what
checkpoints store, so a grown model can be rebuilt exactly.
"""
import json
import re

_CONV_ARCH = re.compile(r"^\d+(-\d+)*$")


def parse_arch(text, key: str = "model.arch") -> list[int]:
    """'2-2-2' -> [2, 2, 2]. Also accepts a list/tuple of ints (from YAML)."""
    from growth.errors import ConfigError

    if isinstance(text, (list, tuple)):
        text = "-".join(str(v) for v in text)
    text = str(text).strip()
    if not _CONV_ARCH.match(text):
        raise ConfigError(key, text, "expected blocks per stage joined by '-', e.g. '2-2-2' (0 allowed)")
    return [int(v) for v in text.split("-")]


def arch_string(depths) -> str:
    return "-".join(str(int(d)) for d in depths)


def parse_widths(value, n_stages: int, key: str = "model.widths") -> list[int]:
    """Widths per stage: a list or '64-96-128'; must give one positive width per stage."""
    from growth.errors import ConfigError

    if isinstance(value, str):
        value = value.replace(",", "-").split("-")
    try:
        widths = [int(v) for v in value]
    except (TypeError, ValueError):
        raise ConfigError(key, value, "expected a list of positive ints, one per stage") from None
    if len(widths) != n_stages or min(widths) <= 0:
        raise ConfigError(key, value, f"expected {n_stages} positive widths, one per stage of the arch")
    return widths


def spec_to_json(spec: dict) -> str:
    return json.dumps(spec, sort_keys=True, separators=(",", ":"))
