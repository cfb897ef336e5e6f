"""Shared look of every plot: one colour per method, units with prefixes, PNG + PDF output.

Figures are made with matplotlib.figure.Figure, not pyplot: no global state, nothing to close, the
same code renders headless (Agg) in `python -m analysis` and inline in a notebook.
"""
import zlib
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

# Fixed across all plots, so that a method has the same colour in every figure and report.
METHOD_COLOURS = {
    "fixed": "#4d4d4d",
    "adagrow": "#1f77b4",
    "randgrow": "#ff7f0e",
    "reducenet": "#2ca02c",
    "sws": "#9467bd",
    "adn": "#d62728",
    # the growth baselines GrowBench draws in one plot (a hash of the name gave G_stack and bert2BERT one green)
    "net2net": "#8c564b",
    "splitgrow": "#e377c2",
    "tiny": "#bcbd22",
    "gradmax": "#17becf",
    "gstack": "#98df8a",
    "stackbert": "#aec7e8",
    "msg": "#c5b0d5",
    "bert2bert": "#ffbb78",
}
_SPARE = ["#8c564b", "#e377c2", "#bcbd22", "#17becf", "#7f7f7f", "#aec7e8", "#98df8a"]
# Groups of one method (e.g. AdaGrow per grow mode) share its colour and differ in line style and marker.
LINESTYLES = ["-", "--", ":", "-."]
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*"]

PREFIXES = [(1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K"), (1, "")]


def colour(method: str) -> str:
    """A method's colour; one not in METHOD_COLOURS gets a spare colour that depends only on its name."""
    if method in METHOD_COLOURS:
        return METHOD_COLOURS[method]
    return _SPARE[zlib.crc32(str(method).encode()) % len(_SPARE)]


def style(index: int) -> dict:
    """Line style and marker of the index-th group of a method."""
    return {"linestyle": LINESTYLES[index % len(LINESTYLES)], "marker": MARKERS[index % len(MARKERS)]}


def prefix(values) -> tuple[float, str]:
    """(divisor, prefix) that puts the largest value between 1 and 1000: 7510 -> (1e3, "K")."""
    values = np.asarray(values, dtype=float)
    top = np.nanmax(np.abs(values)) if values.size and not np.all(np.isnan(values)) else 0
    for div, name in PREFIXES:
        if top >= div:
            return div, name
    return 1, ""


def unit_label(what: str, unit: str, name: str) -> str:
    """unit_label("deployed params", "K", "") -> "deployed params (K)"; ("training MACs", "G", "MACs")."""
    inside = f"{unit}{name}".strip()
    return f"{what} ({inside})" if inside else what


def new_figure(panels: int, ncols: int = 2, panel_size=(6.0, 4.0)) -> tuple[Figure, list]:
    ncols = max(1, min(ncols, panels))
    nrows = -(-panels // ncols)
    fig = Figure(figsize=(panel_size[0] * ncols, panel_size[1] * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel().tolist()
    for ax in axes[panels:]:
        ax.set_visible(False)
    return fig, axes[:panels]


def save(fig: Figure, out_dir, name: str) -> list[Path]:
    """Write name.png (150 dpi, for index.md and notebooks) and name.pdf (vector, for papers)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{name}.png", out_dir / f"{name}.pdf"]
    fig.savefig(paths[0], dpi=150)
    fig.savefig(paths[1])
    return paths


def band(ax, x, mean, std, colour_, label=None, step=None, **line) -> None:
    """Mean line with a shaded mean ± std band (std is 0 or NaN for one seed: no band)."""
    mean, std = np.asarray(mean, dtype=float), np.nan_to_num(np.asarray(std, dtype=float))
    ax.plot(x, mean, color=colour_, label=label, drawstyle=f"steps-{step}" if step else "default", **line)
    if np.any(std > 0):
        ax.fill_between(x, mean - std, mean + std, color=colour_, alpha=0.18, linewidth=0, step=step)
