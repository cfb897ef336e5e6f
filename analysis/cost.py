"""Training-cost curves: val accuracy vs cumulative training MACs, and the methods at equal cost.

A growing network is cheap early, so comparing it with a fixed one per epoch flatters neither: here
the x axis is what the training has spent (train_macs_cum: forward + backward of every sample). The
budget line is the smallest total any run spent; the table gives each configuration's val
accuracy at that budget (interpolated between epochs per run, then mean ± std over seeds).
"""
import numpy as np
import pandas as pd

from analysis.groups import join, with_groups
from analysis.style import band, colour, new_figure, prefix, save, style
from analysis.tables import mean_std, write_table


def curve(epochs: pd.DataFrame) -> pd.DataFrame:
    """Per epoch of one group: mean cumulative cost, mean and std val accuracy over its seeds."""
    g = epochs.groupby("epoch")
    return pd.DataFrame({"cost": g["train_macs_cum"].mean(), "acc": g["val_acc"].mean(),
                         "acc_std": g["val_acc"].std(ddof=1)}).reset_index()


def equal_budget(epochs: pd.DataFrame) -> float:
    """The smallest final training cost of any run: every run has spent at least that much."""
    return float(epochs.groupby("run")["train_macs_cum"].max().min())


def acc_at(run_epochs: pd.DataFrame, budget: float) -> float:
    """Val accuracy of one run when it had spent `budget` MACs (linear between epochs); NaN if its first
    epoch alone cost more (the run has no model at that budget)."""
    r = run_epochs.sort_values("epoch")
    cost, acc = r["train_macs_cum"].to_numpy(float), r["val_acc"].to_numpy(float)
    if budget < cost[0] - 1e-9 * cost[0]:
        return float("nan")
    return float(np.interp(budget, cost, acc))


def equal_cost_table(runs: pd.DataFrame, epochs: pd.DataFrame, budget: float) -> pd.DataFrame:
    div, unit = prefix([budget])
    tdiv, tunit = prefix(runs["train_macs_total"])
    rows = []
    for group, members in runs.groupby("group", sort=False):
        accs = [acc_at(epochs[epochs["run"] == run], budget) for run in members["run"]]
        rows.append({"configuration": group,
                     f"val acc at {budget / div:.3g} {unit}MACs (%)": mean_std(accs, 0.01, 2),
                     "final val acc (%)": mean_std(members["final_val_acc"], 0.01, 2),
                     f"training MACs at the end ({tunit}MACs)": mean_std(members["train_macs_total"], tdiv),
                     "n": len(members)})
    return pd.DataFrame(rows)


def cost_figure(runs: pd.DataFrame, epochs: pd.DataFrame):
    runs = with_groups(runs)
    epochs = join(epochs, runs)
    budget = equal_budget(epochs)
    div, unit = prefix(epochs["train_macs_cum"])
    fig, (ax,) = new_figure(1, panel_size=(8.0, 5.0))
    for group, members in runs.sort_values(["method", "group"]).groupby("group", sort=False):
        method, index = members["method"].iloc[0], int(members["group_index"].iloc[0])
        c = curve(epochs[epochs["group"] == group])
        band(ax, c["cost"] / div, c["acc"] * 100, c["acc_std"] * 100, colour(method),
             label=f"{group} (n={len(members)})", markersize=4, **style(index))
        at = np.array([acc_at(epochs[epochs["run"] == r], budget) for r in members["run"]])
        if np.isfinite(at).any():
            at = np.nanmean(at)
            ax.plot(budget / div, at * 100, marker="o", markersize=9, markerfacecolor="none",
                    markeredgecolor=colour(method), markeredgewidth=1.5)
    ax.axvline(budget / div, color="black", linestyle="--", linewidth=1,
               label=f"equal cost: {budget / div:.3g} {unit}MACs")
    spread = epochs["train_macs_cum"].max() / max(epochs["train_macs_cum"].min(), 1)
    if spread > 30:  # first epochs of a small net and last ones of a big net, decades apart
        ax.set_xscale("log")
    ax.set_xlabel(f"cumulative training MACs ({unit}MACs, forward + backward)")
    ax.set_ylabel("val accuracy (%)")
    ax.set_title("Val accuracy vs training cost; mean ± std over seeds, circles at the equal-cost line",
                 fontsize=11)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=9)
    return fig


def training_cost(runs, epochs, events, out_dir):
    if epochs.empty or "train_macs_cum" not in epochs.columns:
        return []
    paths = save(cost_figure(runs, epochs), out_dir, "training_cost")
    grouped = with_groups(runs)
    budget = equal_budget(epochs)
    note = ("Val accuracy when each configuration had spent the same training MACs (the smallest total "
            "of any run), interpolated between epochs; '-' when its first epoch cost more.")
    table = equal_cost_table(grouped, epochs, budget)
    return paths + write_table(table, None, out_dir, "equal_cost", note)
