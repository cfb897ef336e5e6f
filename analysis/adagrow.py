"""AdaGrow tables in the seed's layouts (shared/seeds/adagrow_README.md).

adagrow_modes: rows method, columns grow mode, cells test accuracy mean ± std (n); fixed baselines
               have no grow mode and fill the "no growth" column.
adagrow_seed:  the seed's CIFAR-10 table: method | params | training cost | training time | test acc,
               costs relative to the cheapest fixed baseline (the seed's "1x").
"""
import pandas as pd

from analysis.groups import short, with_groups
from analysis.style import prefix
from analysis.tables import mean_std, write_table

NO_GROWTH = "no growth"


def grow_mode(runs: pd.DataFrame) -> pd.Series:
    """Each run's grow mode (from its config when it varies, else its summary); NO_GROWTH for fixed."""
    if "grow_mode.name" in runs.columns:
        mode = runs["grow_mode.name"]
    elif "grow_mode" in runs.columns:
        mode = runs["grow_mode"]
    else:
        mode = pd.Series("-", index=runs.index)
    return mode.where(runs["method"] != "fixed", NO_GROWTH).fillna("-").astype(str)


def row_label(group: str) -> str:
    """"adagrow, grow_mode=depth" -> "adagrow": the grow mode is the column."""
    parts = [p for p in group.split(", ") if not p.startswith(f"{short('grow_mode.name')}=")]
    return ", ".join(parts)


def modes_table(runs: pd.DataFrame) -> pd.DataFrame:
    runs = with_groups(runs).assign(_mode=grow_mode, _row=lambda r: r["group"].map(row_label))
    modes = [m for m in dict.fromkeys(runs.loc[runs["_mode"] != NO_GROWTH, "_mode"])]
    if (runs["_mode"] == NO_GROWTH).any():
        modes.append(NO_GROWTH)
    rows = []
    # Fixed baselines first, as in the seed; then the growing methods.
    order = runs.sort_values(["method"], key=lambda m: m != "fixed", kind="stable")
    for label, g in order.groupby("_row", sort=False):
        row = {"method": label}
        for mode in modes:
            cell = g[g["_mode"] == mode]["test_acc"]
            row[mode] = f"{mean_std(cell, 0.01, 2)} (n={len(cell)})" if len(cell) else ""
        rows.append(row)
    return pd.DataFrame(rows)


def seed_table(runs: pd.DataFrame) -> pd.DataFrame:
    runs = with_groups(runs)
    means = runs.groupby("group", sort=False)[["deploy_params", "train_macs_total", "train_time_s"]].mean()
    fixed = runs[runs["method"] == "fixed"]["group"].unique()
    base = means.loc[fixed] if len(fixed) else means
    base = base.loc[base["train_macs_total"].idxmin()]  # the cheapest baseline is the seed's "1x"
    div, unit = prefix(means["deploy_params"])
    order = runs.assign(_fixed=runs["method"] != "fixed").sort_values(["_fixed", "deploy_params"])
    rows = []
    for group, g in order.groupby("group", sort=False):
        rows.append({"method": group,
                     f"deployed params ({unit})": mean_std(g["deploy_params"], div),
                     "training cost (x, MACs)": mean_std(g["train_macs_total"], base["train_macs_total"], 2),
                     "training time (x)": mean_std(g["train_time_s"], base["train_time_s"], 2),
                     "test acc (%)": mean_std(g["test_acc"], 0.01, 2), "n": len(g)})
    return pd.DataFrame(rows)


def adagrow_tables(runs, epochs, events, out_dir) -> list:
    note_modes = ("Test accuracy (%), mean ± std over seeds (n). Rows: method (fixed baselines by arch); "
                  "columns: grow mode.")
    note_seed = ("Mean ± std over seeds (n). Training cost and time relative to the cheapest fixed "
                 "baseline (1x); params of the deployed (fused) model.")
    return (write_table(modes_table(runs), None, out_dir, "adagrow_modes", note_modes)
            + write_table(seed_table(runs), None, out_dir, "adagrow_seed", note_seed))
