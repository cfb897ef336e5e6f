"""Growth trajectories: parameters and val accuracy per epoch, one panel per configuration.

Each panel shows the mean over seeds with a ± std band: parameters (training form) on the left axis as
a step line, val accuracy on the right axis, and a dotted vertical line per growth event labelled with
its kind (W width, D depth, H heads) and the arch after it.
"""
import pandas as pd

from analysis.groups import join, with_groups
from analysis.style import band, colour, new_figure, prefix, save, unit_label

GROWTH_KINDS = {"grow_depth": "D", "grow_width": "W", "grow_heads": "H"}
MAX_LABELS = 12  # more event labels than this overlap: label every k-th


def per_epoch(epochs: pd.DataFrame, column: str) -> pd.DataFrame:
    """Mean and std over the seeds of one group, per epoch (a seed missing an epoch is left out)."""
    stats = epochs.groupby("epoch")[column].agg(["mean", "std", "count"])
    return stats.reset_index()


def event_marks(events: pd.DataFrame) -> list[tuple[int, str]]:
    """[(epoch, "D 0-0-1")]: one mark per epoch with growth in any seed; archs that differ between
    seeds are joined with "/" (at most two shown)."""
    if events.empty:
        return []
    grow = events[events["kind"].isin(GROWTH_KINDS)]
    marks = []
    for epoch, ev in grow.groupby("epoch"):
        kinds = "".join(sorted({GROWTH_KINDS[k] for k in ev["kind"]}))
        archs = list(dict.fromkeys(ev["arch_after"].astype(str)))
        text = "/".join(archs[:2]) + ("/..." if len(archs) > 2 else "")
        marks.append((int(epoch), f"{kinds} {text}"))
    return marks


def draw_group(ax, group: str, method: str, epochs: pd.DataFrame, events: pd.DataFrame, n: int) -> None:
    c = colour(method)
    params = per_epoch(epochs, "params")
    div, unit = prefix(params["mean"])
    band(ax, params["epoch"], params["mean"] / div, params["std"] / div, c, step="mid",
         label=f"params ({unit})", linewidth=2)
    ax.set_xlabel("epoch")
    ax.set_ylabel(unit_label("params (training form)", unit, ""), color=c)
    ax.tick_params(axis="y", colors=c)
    ax.set_title(f"{group}  (n={n} seed{'s' if n != 1 else ''})", fontsize=11)
    ax.set_ylim(0, params["mean"].max() / div * 1.5)  # the top third: event labels, clear of val acc

    acc = per_epoch(epochs, "val_acc")
    twin = ax.twinx()
    band(twin, acc["epoch"], acc["mean"] * 100, acc["std"] * 100, "black", label="val acc (%)",
         linestyle="--", marker=".", linewidth=1.2)
    twin.set_ylabel("val accuracy (%)")
    # 100 % sits at 80 % of the height: the strip above it holds the event labels, clear of the curve.
    twin.set_ylim(0, 125)
    twin.set_yticks(range(0, 101, 20))

    first = epochs.sort_values("epoch").iloc[0]
    ax.annotate(str(first["arch"]), (first["epoch"], params["mean"].iloc[0] / div), xytext=(4, 6),
                textcoords="offset points", fontsize=8, color=c)
    marks = event_marks(events)
    every = max(1, -(-len(marks) // MAX_LABELS))
    top = ax.get_ylim()[1]
    for i, (epoch, text) in enumerate(marks):
        # An event ends epoch e; epoch e+1 trains the grown model: the line sits between them.
        x = epoch + 0.5
        ax.axvline(x, color="0.5", linestyle=":", linewidth=1)
        if i % every == 0:
            ax.text(x, top * 0.985, text, rotation=90, va="top", ha="right", fontsize=7, color="0.25")
    lines = ax.get_legend_handles_labels()
    lines2 = twin.get_legend_handles_labels()
    if marks:
        lines[0].append(ax.lines[-1])
        lines[1].append("growth event (W/D/H + arch after)")
    ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], loc="lower right", fontsize=8)
    ax.set_xlim(epochs["epoch"].min() - 0.5, epochs["epoch"].max() + 0.5)
    ax.xaxis.get_major_locator().set_params(integer=True)


def trajectory_figure(runs: pd.DataFrame, epochs: pd.DataFrame, events: pd.DataFrame, ncols: int = 2):
    runs = with_groups(runs)
    epochs = join(epochs, runs)
    events = join(events, runs) if not events.empty else pd.DataFrame(columns=["group", "kind"])
    groups = list(dict.fromkeys(runs.sort_values(["method", "group"])["group"]))
    fig, axes = new_figure(len(groups), ncols=ncols, panel_size=(6.4, 4.2))
    for ax, group in zip(axes, groups):
        members = runs[runs["group"] == group]
        draw_group(ax, group, members["method"].iloc[0], epochs[epochs["group"] == group],
                   events[events["group"] == group], len(members))
    fig.suptitle("Growth trajectories: params (left, step line) and val accuracy (right, dashed); "
                 "mean ± std over seeds", fontsize=11)
    return fig


def trajectories(runs, epochs, events, out_dir):
    if epochs.empty:
        return []
    return save(trajectory_figure(runs, epochs, events), out_dir, "trajectories")
