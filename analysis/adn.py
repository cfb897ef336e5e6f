"""Adaptive Depth Networks: the per-skip-config table in the seed's layout (shared/seeds/adn_README.md)
and accuracy vs MACs per skip config, with individually trained `fixed` nets of the same family as points.

Every ADN run's summary holds `adn_table`: one row per skip config (skip, arch, params, MACs, latency,
val/test accuracy). The table has one row per model and skip config, mean ± std over seeds; where a
`fixed` run of the same data, model and arch exists, the accuracy cell adds the gain over it in points,
as the seed's "77.6 (+0.9 %p)".
"""
import pandas as pd

from analysis.groups import with_groups
from analysis.style import colour, new_figure, prefix, save, unit_label
from analysis.tables import mean_std, write_table

COLUMNS = ("skip", "arch", "params", "deploy_params", "macs", "latency_ms", "val_acc", "test_acc")


def config_rows(runs: pd.DataFrame) -> pd.DataFrame:
    """Long form: one row per ADN run and skip config, with the run's data, model, group and seed."""
    runs = with_groups(runs)
    rows = []
    for _, run in runs[runs["method"] == "adn"].iterrows():
        table = run.get("adn_table")
        if not isinstance(table, list):
            continue
        label = run["group"].removeprefix("adn").lstrip(", ") or run["model"]
        for order, cfg in enumerate(table):
            rows.append({"run": run["run"], "data": run["data"], "model": run["model"], "label": label,
                         "seed": run["seed"], "order": order, **{k: cfg.get(k) for k in COLUMNS}})
    return pd.DataFrame(rows)


def accuracy_key(rows: pd.DataFrame) -> str:
    return "test_acc" if rows["test_acc"].notna().all() else "val_acc"


def fixed_accuracy(runs: pd.DataFrame, key: str) -> pd.Series:
    """Mean accuracy of individually trained nets, indexed by (data, model, arch)."""
    fixed = runs[runs["method"] == "fixed"]
    if fixed.empty:
        return pd.Series(dtype=float)
    summary_key = key if key in fixed.columns else "final_val_acc"
    return pd.to_numeric(fixed[summary_key], errors="coerce").groupby(
        [fixed["data"], fixed["model"], fixed["arch"]]).mean()


def per_config_table(runs: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(display, numbers): the seed's layout, one row per (model, skip config), ordered as trained."""
    rows = config_rows(runs)
    key = accuracy_key(rows)
    fixed = fixed_accuracy(runs, key)
    mdiv, munit = prefix(rows["macs"])
    pdiv, punit = prefix(rows["params"])
    display, numbers = [], []
    for (data, label), g in rows.groupby(["data", "label"], sort=False):
        for skip, c in g.groupby("skip", sort=False):
            acc = pd.to_numeric(c[key], errors="coerce")
            arch, model = c["arch"].iloc[0], c["model"].iloc[0]
            ref = fixed.get((data, model, arch))
            gain = None if ref is None or pd.isna(ref) else (acc.mean() - ref) * 100
            cell = mean_std(acc, 0.01, 2) + ("" if gain is None else f" ({gain:+.2f} pp)")
            display.append({"data": data, "model": label, "skip-cfg": skip, "arch": arch,
                            unit_label("params", punit, ""): f"{c['params'].mean() / pdiv:.3g}",
                            unit_label("MACs", munit, "MACs"): f"{c['macs'].mean() / mdiv:.3g}",
                            "latency (ms)": mean_std(c["latency_ms"], 1, 3),
                            f"{key.replace('_', ' ')} (%)": cell, "n": len(c)})
            numbers.append({"data": data, "model": label, "skip": skip, "arch": arch,
                            "params": c["params"].mean(), "macs": c["macs"].mean(),
                            "latency_ms": c["latency_ms"].mean(), "acc_mean": acc.mean(),
                            "acc_std": acc.std(ddof=1), "fixed_acc": ref, "gain_pp": gain, "n": len(c)})
    return pd.DataFrame(display), pd.DataFrame(numbers)


def fixed_points(runs: pd.DataFrame, data, model, key: str) -> pd.DataFrame:
    fixed = runs[(runs["method"] == "fixed") & (runs["data"] == data) & (runs["model"] == model)]
    acc = key if key in fixed.columns else "final_val_acc"
    return fixed.assign(_acc=pd.to_numeric(fixed[acc], errors="coerce")).groupby("arch").agg(
        macs=("macs", "mean"), acc=("_acc", "mean"), std=("_acc", "std")).reset_index()


def accuracy_vs_macs(runs: pd.DataFrame, out_dir) -> list:
    """One panel per (data, model): ADN's skip configs as a line through their means (sorted by MACs),
    individually trained fixed nets as black squares, each point labelled."""
    _, numbers = per_config_table(runs)
    if numbers.empty:
        return []
    rows = config_rows(runs)
    key = accuracy_key(rows)
    panels = list(numbers.groupby(["data", "model"], sort=False))
    fig, axes = new_figure(len(panels))
    for ax, ((data, label), g) in zip(axes, panels):
        g = g.sort_values("macs")
        div, unit = prefix(g["macs"])
        ax.errorbar(g["macs"] / div, g["acc_mean"] * 100, yerr=g["acc_std"].fillna(0) * 100, marker="o",
                    color=colour("adn"), label="ADN skip configs", capsize=2)
        for _, r in g.iterrows():
            ax.annotate(r["skip"], (r["macs"] / div, r["acc_mean"] * 100), fontsize=7,
                        textcoords="offset points", xytext=(3, 3))
        model = rows.loc[rows["label"] == label, "model"].iloc[0]
        fx = fixed_points(runs, data, model, key)
        if not fx.empty:
            ax.errorbar(fx["macs"] / div, fx["acc"] * 100, yerr=fx["std"].fillna(0) * 100, marker="s",
                        linestyle="none", color=colour("fixed"), label="fixed (trained alone)", capsize=2)
            for _, r in fx.iterrows():
                ax.annotate(r["arch"], (r["macs"] / div, r["acc"] * 100), fontsize=7,
                            textcoords="offset points", xytext=(3, -9))
        ax.set_title(f"{label} on {data}")
        ax.set_xlabel(unit_label("MACs per sample", unit, "MACs"))
        ax.set_ylabel(f"{key.replace('_', ' ')} (%)")
        ax.legend(fontsize=8)
    return save(fig, out_dir, "adn_accuracy_vs_macs")


def adn_report(runs, epochs, events, out_dir) -> list:
    """The registry piece: the per-config table (md, tex, csv) and the plot (png, pdf)."""
    display, numbers = per_config_table(runs)
    if display.empty:
        return []
    note = ("Mean ± std over seeds (n) per skip config (T = that stage's skippable blocks are skipped); one "
            "ADN network per row group. In brackets: the gain over a `fixed` net of the same arch trained "
            "alone. Params and MACs of the exported plain sub-network (MACs per sample); latency of its "
            "fused form, best of 3 on the training device.")
    return write_table(display, numbers, out_dir, "adn", note) + accuracy_vs_macs(runs, out_dir)
