"""Learngene SWS: descendants started from a learngene vs the same ViTs from scratch, per depth.

sws_depths: one row per depth: accuracy of the learngene descendant and of its scratch twin (mean ± std
            over seeds), their difference, the descendant's params, and the two claims of the paper:
            storage (descendant params / learngene params) and training cost ((learngene + descendant
            tuning) / scratch, with the scratch runs' own MACs). A last row sums the family: storing every
            depth vs one learngene, and one learngene's cost shared by all its descendants.
sws_depth_plot: accuracy vs depth, learngene vs scratch, with ± std bands.
"""
import numpy as np
import pandas as pd

from analysis.pareto import accuracy_column
from analysis.style import band, colour, new_figure, save
from analysis.tables import mean_std, write_table

PHASES = ("descendant", "scratch")


def _runs(runs: pd.DataFrame) -> pd.DataFrame:
    if "sws_phase" not in runs.columns:
        return runs.iloc[0:0]
    return runs[(runs["method"] == "sws") & runs["sws_phase"].isin(PHASES)].copy()


def _means(r: pd.DataFrame, acc: str) -> pd.DataFrame:
    """Per (depth, phase): accuracy mean and std, params, train MACs, learngene params and cost."""
    cols = {"acc": (acc, "mean"), "acc_std": (acc, "std"), "n": (acc, "size"), "params": ("params", "mean"),
            "macs": ("train_macs_total", "mean")}
    for c in ("learngene_params", "learngene_cost_macs"):
        if c in r.columns:
            cols[c] = (c, "mean")
    return r.groupby(["sws_depth", "sws_phase"]).agg(**cols).reset_index()


def depth_table(runs: pd.DataFrame, acc: str) -> pd.DataFrame:
    runs = _runs(runs)
    m = _means(runs, acc)
    des, scr = (m[m["sws_phase"] == p].set_index("sws_depth") for p in PHASES)
    rows = []
    for d in sorted(set(des.index) | set(scr.index)):
        r = {"depth": int(d)}
        for p in PHASES:
            g = runs[(runs["sws_depth"] == d) & (runs["sws_phase"] == p)][acc]
            r[f"{p} acc (%)"] = f"{mean_std(g, 0.01, 2)} (n={len(g)})" if len(g) else "-"
        if d in des.index and d in scr.index:
            a, b = des.loc[d], scr.loc[d]
            r["Δ acc (pts)"] = f"{100 * (a['acc'] - b['acc']):+.2f}"
            r["params"] = f"{int(a['params']):,}"
            r["storage ×"] = f"{a['params'] / a['learngene_params']:.2f}" if "learngene_params" in a else "-"
            r["cost ×"] = (f"{(a['learngene_cost_macs'] + a['macs']) / b['macs']:.2f}"
                           if "learngene_cost_macs" in a else "-")
        rows.append(r)
    family = family_ratios(runs)
    if family:
        rows.append({"depth": "all", "params": f"{int(family['params']):,}",
                     "storage ×": f"{family['storage']:.2f}", "cost ×": f"{family['cost']:.2f}"})
    return pd.DataFrame(rows).fillna("")


def family_ratios(runs: pd.DataFrame) -> dict:
    """Row `all` of the depth table as numbers: params of every depth that has a descendant and a scratch
    twin, storage (those params / one learngene's) and cost ((learngene + those descendants' training
    MACs) / their scratch twins'). {} without both phases or the learngene's size (analysis/paper.py
    sets these beside the SWS paper's claims)."""
    r = _runs(runs)
    if r.empty or "learngene_params" not in r.columns:
        return {}
    m = _means(r, "params")  # the accuracy columns of _means are not used here
    des, scr = (m[m["sws_phase"] == p].set_index("sws_depth") for p in PHASES)
    if not len(des) or not len(scr):
        return {}
    both = des.index.intersection(scr.index)
    lg, pre = des["learngene_params"].mean(), des["learngene_cost_macs"].mean()
    params = des.loc[both, "params"].sum()
    return {"params": params, "storage": params / lg,
            "cost": (pre + des.loc[both, "macs"].sum()) / scr.loc[both, "macs"].sum()}


def sws_depths(runs, epochs, events, out_dir) -> list:
    if _runs(runs).empty:
        return []
    acc, label = accuracy_column(_runs(runs))
    note = (f"{label.split(' (')[0]}, mean ± std over seeds. storage ×: descendant params / learngene params "
            "(stage blocks + patch and position embedding); cost ×: training MACs of (learngene + "
            "descendant) / scratch twin. Row `all`: every depth stored vs one learngene; one learngene's "
            "cost shared by the family.")
    return write_table(depth_table(runs, acc), None, out_dir, "sws_depths", note)


def sws_depth_plot(runs, epochs, events, out_dir) -> list:
    r = _runs(runs)
    if r.empty:
        return []
    acc, label = accuracy_column(r)
    m = _means(r, acc)
    fig, (ax,) = new_figure(1)
    for i, p in enumerate(PHASES):
        g = m[m["sws_phase"] == p].sort_values("sws_depth")
        c = colour("sws") if p == "descendant" else colour("fixed")
        band(ax, g["sws_depth"], 100 * g["acc"], 100 * g["acc_std"], c,
             label="learngene" if p == "descendant" else "scratch", marker="os"[i])
    ax.set_xlabel("descendant depth (layers)")
    ax.set_ylabel(label)
    ax.set_xticks(np.sort(m["sws_depth"].unique()))
    ax.legend()
    ax.set_title("Learngene SWS: descendants vs scratch")
    return save(fig, out_dir, "sws_depth_plot")


def sws_pieces(runs, epochs, events, out_dir) -> list:
    return sws_depths(runs, epochs, events, out_dir) + sws_depth_plot(runs, epochs, events, out_dir)
