"""Accuracy vs deployed params and vs MACs per sample, with the Pareto front of the configurations.

One point per configuration (mean over seeds, error bars ± std on both axes), the single runs as
faint dots behind it; the front (no other configuration is both cheaper and more accurate) is a
black staircase through the means, its points ringed.
"""
import numpy as np
import pandas as pd

from analysis.groups import with_groups
from analysis.style import colour, new_figure, prefix, save, style

AXES = [("deploy_params", "deployed params", ""), ("macs", "deployed MACs per sample", "MACs")]


def accuracy_column(runs: pd.DataFrame) -> tuple[str, str]:
    """Test accuracy when every run has one, else the final val accuracy (e.g. data without test split)."""
    if "test_acc" in runs.columns and runs["test_acc"].notna().all():
        return "test_acc", "test accuracy (%)"
    return "final_val_acc", "final val accuracy (%)"


def pareto_front(cost, acc) -> np.ndarray:
    """Indices of the points no other point dominates (cost <= and acc >=, one of them strictly),
    sorted by cost."""
    cost, acc = np.asarray(cost, dtype=float), np.asarray(acc, dtype=float)
    keep = []
    for i in range(len(cost)):
        dominated = (cost <= cost[i]) & (acc >= acc[i]) & ((cost < cost[i]) | (acc > acc[i]))
        if not dominated.any():
            keep.append(i)
    return np.array(sorted(keep, key=lambda i: (cost[i], -acc[i])), dtype=int)


def group_means(runs: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """One row per group: method, group_index, <col>_mean, <col>_std for each column, n."""
    g = runs.groupby("group", sort=False)
    out = g[["method", "group_index"]].first()
    for c in columns:
        vals = pd.to_numeric(runs[c], errors="coerce").groupby(runs["group"], sort=False)
        out[f"{c}_mean"], out[f"{c}_std"] = vals.mean(), vals.std(ddof=1).fillna(0)
    out["n"] = g.size()
    return out.reset_index()


def draw_panel(ax, runs, means, x: str, xlabel: str, xunit: str, acc: str, acc_label: str) -> None:
    div, unit = prefix(means[f"{x}_mean"])
    for _, m in means.iterrows():
        c, st = colour(m["method"]), style(int(m["group_index"]))
        own = runs[runs["group"] == m["group"]]
        ax.scatter(own[x] / div, own[acc] * 100, color=c, marker=st["marker"], s=14, alpha=0.3, linewidths=0)
        ax.errorbar(m[f"{x}_mean"] / div, m[f"{acc}_mean"] * 100, xerr=m[f"{x}_std"] / div,
                    yerr=m[f"{acc}_std"] * 100, color=c, marker=st["marker"], markersize=8, capsize=3,
                    linestyle="none", label=f"{m['group']} (n={m['n']})")
    front = means.iloc[pareto_front(means[f"{x}_mean"], means[f"{acc}_mean"])]
    fx, fy = front[f"{x}_mean"] / div, front[f"{acc}_mean"] * 100
    ax.plot(fx, fy, color="black", linewidth=1, drawstyle="steps-post", zorder=1, label="Pareto front")
    ax.scatter(fx, fy, s=180, facecolors="none", edgecolors="black", linewidths=1, zorder=3)
    spread = means[f"{x}_mean"].max() / max(means[f"{x}_mean"].min(), 1e-12)
    if spread > 20:  # sizes over decades (a tiny grown net next to a ResNet-50) read better on log x
        ax.set_xscale("log")
    inside = f"{unit}{xunit}".strip()
    ax.set_xlabel(f"{xlabel} ({inside})" if inside else xlabel)
    ax.set_ylabel(acc_label)
    ax.grid(alpha=0.3)


def pareto_figure(runs: pd.DataFrame):
    runs = with_groups(runs)
    acc, acc_label = accuracy_column(runs)
    axes_spec = [a for a in AXES if a[0] in runs.columns and runs[a[0]].notna().all()]
    means = group_means(runs, [acc, *(a[0] for a in axes_spec)])
    means = means.sort_values(["method", "group"]).reset_index(drop=True)
    fig, axes = new_figure(len(axes_spec), ncols=2, panel_size=(6.0, 4.4))
    for ax, (x, xlabel, xunit) in zip(axes, axes_spec):
        draw_panel(ax, runs, means, x, xlabel, xunit, acc, acc_label)
        ax.set_title(f"{acc_label.split(' (')[0]} vs {xlabel}", fontsize=11)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=min(3, len(labels)), fontsize=9)
    fig.suptitle("Accuracy vs size: mean ± std over seeds per configuration, single runs faint", fontsize=11)
    return fig


def pareto(runs, epochs, events, out_dir):
    if not any(a[0] in runs.columns and runs[a[0]].notna().all() for a in AXES):
        return []  # no run measured its size (nothing to put on the x axis)
    return save(pareto_figure(runs), out_dir, "pareto")
