"""(d) AdaGrow's training cost until its val accuracy first reaches the fixed final-arch model's final val
accuracy, over the fixed model's whole training cost: cumulative training MACs and wall time.

Both are full `run_job` runs with the default config on digits (the fixed one at AdaGrow's final arch),
in one process; their metrics.jsonl rows give val_acc, train_macs_cum and epoch_time_s (train + eval
of the epoch; growth events happen after the epoch clock stops, see growth_event_cost for their cost).
The runs alternate A B (B A ...) when repeated; the time ratio is the median over repetitions.
"""
import tempfile

from benchmarks.common import compose, median, ratio
from growth.engine.io import read_jsonl
from growth.engine.job import run_job


def train(overrides: dict) -> tuple[dict, list[dict]]:
    cfg = compose(**{"trainer.device": "cpu", "trainer.progress": "false", **overrides})
    with tempfile.TemporaryDirectory() as tmp:
        summary = run_job(cfg, tmp)
        rows = read_jsonl(f"{tmp}/metrics.jsonl")
    if summary["status"] != "completed":
        raise RuntimeError(f"benchmark run {overrides} ended {summary['status']}: {summary['error']}")
    return summary, rows


def cost_to_reach(rows: list[dict], target: float):
    """(epoch, cumulative MACs, cumulative seconds) at the first epoch with val_acc >= target, else None."""
    seconds = 0.0
    for r in rows:
        seconds += r["epoch_time_s"]
        if r["val_acc"] >= target:
            return r["epoch"], r["train_macs_cum"], seconds
    return None


def compare(ada_rows, fixed_rows) -> dict:
    target = fixed_rows[-1]["val_acc"]
    fixed_macs, fixed_s = fixed_rows[-1]["train_macs_cum"], sum(r["epoch_time_s"] for r in fixed_rows)
    reached = cost_to_reach(ada_rows, target)
    out = {"fixed_final_val_acc": target, "adagrow_best_val_acc": max(r["val_acc"] for r in ada_rows),
           "fixed_train_macs": fixed_macs, "fixed_time_s": round(fixed_s, 3), "reached_at_epoch": None,
           "macs_ratio": None, "time_ratio": None}
    out["best_gap"] = round(target - out["adagrow_best_val_acc"], 6)
    # context, whether or not the target is reached: both whole runs, same epochs
    out["whole_run_macs_ratio"] = ratio(ada_rows[-1]["train_macs_cum"], fixed_macs)
    out["whole_run_time_ratio"] = ratio(sum(r["epoch_time_s"] for r in ada_rows), fixed_s)
    if reached:
        epoch, macs, seconds = reached
        out.update(reached_at_epoch=epoch, adagrow_macs_to_reach=macs, adagrow_time_to_reach_s=round(seconds, 3),
                   macs_ratio=ratio(macs, fixed_macs), time_ratio=ratio(seconds, fixed_s))
    return out


def run(quick: bool) -> dict:
    over = {"trainer.epochs": 4, "grow.interval": 1, "model.widths": "[8,12,16]"} if quick else {}
    reps = 1 if quick else 2
    ada, ada_rows = train({"method": "adagrow", **over})  # its final arch is the fixed model's
    fixed = {"method": "fixed", "model.arch": ada["arch"], **over}
    runs = []
    for rep in range(reps):  # A B, then B A: load drift falls on both
        if rep % 2:
            fixed_rows = train(fixed)[1]
            ada_rows = train({"method": "adagrow", **over})[1]
        else:
            ada_rows = ada_rows if rep == 0 else train({"method": "adagrow", **over})[1]
            fixed_rows = train(fixed)[1]
        runs.append({**compare(ada_rows, fixed_rows), "epochs": len(fixed_rows)})
    arch = ada["arch"]
    first = runs[0]
    times = [r["time_ratio"] for r in runs if r["time_ratio"]]
    time_ratio = median(times) if len(times) == len(runs) else None
    reached = f"reached at epoch {first['reached_at_epoch']}" if first["reached_at_epoch"] else \
        f"never reached: best gap {first['best_gap']:.4f}; whole runs: MACs ratio " \
        f"{first['whole_run_macs_ratio']:.3f}, time ratio {first['whole_run_time_ratio']:.3f}"
    return {
        "ratio": first["macs_ratio"],
        "time_ratio": time_ratio,
        "measured": (f"AdaGrow cumulative train MACs to first reach the fixed {arch} model's final val acc "
                     f"({first['fixed_final_val_acc']:.4f}; {reached}) / fixed model's total train MACs; "
                     f"wall-time ratio {time_ratio if time_ratio is None else round(time_ratio, 3)} (median of "
                     f"{reps}); default config on digits, {first['epochs']} epochs each"),
        "details": {"final_arch": arch, "runs": runs, "reps": reps, "overrides": over},
    }

