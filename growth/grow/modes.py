"""Grow modes: which kind of growth (depth or width) the k-th growth event is (k counts from 0).

`fixed` reads the mode name literally and cycles through it: width-depth gives width, depth, width, ...
`faithful` reproduces the original AdaGrow code, whose parity rules disagree with the names:

| mode                    | original: depth when | original sequence from k=0 |
|-------------------------|----------------------|----------------------------|
| width-depth             | k even               | D W D W ...                |
| width-width-depth       | k % 3 == 0           | D W W D W W ...            |
| width-width-width-depth | k % 4 == 0           | D W W W D ...              |
| width-depth-depth       | k % 3 != 0           | W D D W D D ...            |
| width-depth-depth-depth | k % 4 != 0           | W D D D W ...              |

The original crashes on `depth` and `width` alone; both variants run them as their names say.
"""
from growth.errors import ConfigError

MODES = ("depth", "width", "width-depth", "width-width-depth", "width-depth-depth",
         "width-width-width-depth", "width-depth-depth-depth")

_FAITHFUL_DEPTH_AT = {
    "width-depth": lambda k: k % 2 == 0,
    "width-width-depth": lambda k: k % 3 == 0,
    "width-width-width-depth": lambda k: k % 4 == 0,
    "width-depth-depth": lambda k: k % 3 != 0,
    "width-depth-depth-depth": lambda k: k % 4 != 0,
}


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise ConfigError("grow_mode", mode, f"allowed: {', '.join(MODES)}")
    return mode


def growth_kind(mode: str, k: int, faithful: bool = False) -> str:
    """'depth' or 'width' for the k-th growth event."""
    check_mode(mode)
    if faithful and mode in _FAITHFUL_DEPTH_AT:
        return "depth" if _FAITHFUL_DEPTH_AT[mode](k) else "width"
    tokens = mode.split("-")
    return tokens[k % len(tokens)]


def sequence(mode: str, n: int, faithful: bool = False) -> list[str]:
    return [growth_kind(mode, k, faithful) for k in range(n)]
