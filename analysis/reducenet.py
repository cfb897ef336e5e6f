"""ReduceNet: the teacher, the student it became, and a fixed model of the student's shape.

reducenet_table: one row per ReduceNet configuration and role (teacher, student) and per fixed
                 ReduceNet baseline (method=fixed model=reducenet model.scaler=0, the student's plain
                 shape trained from scratch): test accuracy, deployed params and MACs, training MACs,
                 the fused student's measured speed-up; mean ± std over seeds (n).
reducenet_plot:  val accuracy per epoch (mean ± std over seeds) of each ReduceNet configuration and
                 of the fixed baselines, the switch marked.
"""
import pandas as pd

from analysis.groups import join, with_groups
from analysis.style import band, colour, new_figure, save, style
from analysis.tables import mean_std, write_table

# (role, summary columns: test acc, deployed params, MACs)
ROLES = [("teacher", "teacher_test_acc", "teacher_deploy_params", "teacher_macs"),
         ("student", "student_test_acc", "student_deploy_params", "student_macs")]


def _rows(runs: pd.DataFrame) -> list[dict]:
    rows = []
    reduce = runs[runs["method"] == "reducenet"]
    fixed = runs[(runs["method"] == "fixed") & (runs["model"] == "reducenet")]
    for group, g in reduce.groupby("group", sort=False):
        for role, acc, params, macs in ROLES:
            if acc not in g.columns:
                continue
            rows.append({"model": f"{group}: {role}", "test acc (%)": mean_std(g[acc], 0.01, 2),
                         "deployed params (K)": mean_std(g[params], 1e3), "MACs (M)": mean_std(g[macs], 1e6),
                         "training MACs, whole run (G)": mean_std(g["train_macs_total"], 1e9),
                         "fused speed-up (x)": mean_std(g["fused_speedup"], 1, 2) if role == "student" else "",
                         "n": len(g)})
    for group, g in fixed.groupby("group", sort=False):
        rows.append({"model": f"{group}: from scratch", "test acc (%)": mean_std(g["test_acc"], 0.01, 2),
                     "deployed params (K)": mean_std(g["deploy_params"], 1e3),
                     "MACs (M)": mean_std(g["macs"], 1e6),
                     "training MACs, whole run (G)": mean_std(g["train_macs_total"], 1e9),
                     "fused speed-up (x)": "", "n": len(g)})
    return rows


def reducenet_table(runs, epochs, events, out_dir) -> list:
    rows = _rows(with_groups(runs))
    if not rows:
        return []
    note = ("Mean ± std over seeds (n). The teacher is evaluated at the switch; the student is the "
            "ReduceNet run's final model, deployed folded; 'from scratch' is method=fixed on the "
            "student's shape with the same epoch budget. Speed-up: unfused over fused student, measured "
            "side by side in one process on the run's device.")
    return write_table(pd.DataFrame(rows), None, out_dir, "reducenet", note)


def reducenet_plot(runs, epochs, events, out_dir) -> list:
    runs = with_groups(runs)
    keep = runs[(runs["method"] == "reducenet") | ((runs["method"] == "fixed") & (runs["model"] == "reducenet"))]
    if keep.empty or epochs.empty:
        return []
    ep = join(epochs, keep)
    fig, (ax,) = new_figure(1, panel_size=(7.0, 4.4))
    for group, g in ep.groupby("group", sort=False):
        method = g["method"].iloc[0]
        stats = g.groupby("epoch")["val_acc"].agg(["mean", "std"]).reset_index()
        band(ax, stats["epoch"], stats["mean"] * 100, stats["std"] * 100, colour(method), label=group,
             **style(int(g["group_index"].iloc[0])))
    switches = events[events["kind"] == "switch"] if not events.empty else events
    for epoch in sorted(set(switches["epoch"])) if not switches.empty else []:
        ax.axvline(epoch + 0.5, color="grey", linestyle=":", linewidth=1)
        ax.annotate("switch", (epoch + 0.5, 0.02), xycoords=("data", "axes fraction"), fontsize=8, color="grey")
    ax.set_xlabel("epoch")
    ax.set_ylabel("val accuracy (%)")
    ax.set_title("ReduceNet: teacher then student vs the student's shape from scratch", fontsize=11)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save(fig, out_dir, "reducenet")


def reducenet_pieces(runs, epochs, events, out_dir) -> list:
    return reducenet_table(runs, epochs, events, out_dir) + reducenet_plot(runs, epochs, events, out_dir)
