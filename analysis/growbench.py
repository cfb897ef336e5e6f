"""GrowBench (experiments/growbench.yaml, growbench_smoke.yaml): every growth method against the fixed
final model of its family, from the same start arch to the same size budget, at equal training cost.

Per family (model name), written as growbench_<family>.{md,tex,csv} and growbench_<family>.{png,pdf}:

- target: the fixed final model's final val accuracy, mean over its seeds;
- accuracy at equal training MACs: every run's val accuracy when it had spent the family's budget, the
  smallest total training MACs of any of its completed runs (every run had a model there; linear
  between epochs, analysis/cost.py acc_at);
- training MACs and wall time (cumulative epoch_time_s, which leaves out the growth steps run between
  epochs) to reach the target, linear between epochs; a
  run whose first epoch is already above it reaches it at that epoch's cost (no guess below it); a
  method none of whose seeds reaches it shows "never (gap x.x pts)", the target minus its best val
  accuracy (mean over seeds);
- the three speed-ups of the papers, all against the fixed model's whole run (mean over its seeds):
  (a) training-MAC saving 1 - MACs to reach / fixed MACs (LiGO, bert2BERT: "FLOPs saved to reach the
  scratch model's quality"), (b) sample saving 1 - samples to reach / fixed samples (G_stack's tokens
  saved), (c) wall-clock ratio fixed wall time / wall time to reach (MSG's speed-up);
- function-preserving: what the method claims (FUNCTION_PRESERVING, each with its source) and, beside
  it, the largest max_abs_output_change of its growth events (events.jsonl, measured on a fixed val
  batch), so a claim the run does not keep shows;
- status: every run of the sweep is counted, failed / interrupted / unfinished ones too (read from the
  run directories next to the completed ones, and jobs.yaml for jobs that left no record): a method
  that fails on a seed is a row with its status, not a missing row.
"""
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from analysis.collect import read_config
from analysis.cost import acc_at, curve
from analysis.style import band, colour, new_figure, prefix, save
from analysis.tables import mean_std, to_markdown, write_table

BENCH = "growbench"  # the config key `bench` the sweep files set (+bench: growbench in common)
FAMILIES = ("resnet_basic", "vgg", "mobilenet", "vit", "bert")
GROW_EVENTS = ("grow_depth", "grow_width", "grow_heads")
NEVER = "never"


@dataclass(frozen=True)
class Claim:
    label: str
    preserving: str  # yes | no | approx | n/a
    source: str      # where the claim comes from
    schedule: str    # whose growth schedule the sweep uses, and whether it was tuned on another task


# Every method GrowBench may hold, in row order (a row appears once its runs do). "approx": the function is kept up to a small, configured perturbation.
METHODS = {
    "adagrow": Claim("AdaGrow", "yes", "new blocks / branches start at zero output (initializer=zero, last "
                     "BN of a new block 0: growth/methods/adagrow.py); not on vgg, whose depth growth adds a "
                     "relu(conv) that cannot be the identity (conf/model/vgg.yaml)",
                     "the thesis's: grow every grow.interval epochs (tuned on CIFAR-10 convnets)"),
    "randgrow": Claim("RandGrow", "yes", "AdaGrow's growth machinery, round-robin sites "
                      "(growth/methods/randgrow.py); vgg as AdaGrow", "AdaGrow's"),
    "net2net": Claim("Net2Net", "yes", "Net2WiderNet / Net2DeeperNet with noise 0 (Chen et al. 2016; "
                     "growth/methods/net2net.py)", "ours: one event every grow.interval epochs (the paper "
                     "grows once, on ImageNet Inception)"),
    "splitgrow": Claim("SplitGrow", "approx", "offspring weights w +- eps v, eps 0.01 (Liu et al. 2019; "
                       "growth/methods/splitgrow.py; eps 0 would be exact)",
                       "ours: a split step every grow.interval epochs (the paper's was tuned on CIFAR-10 / "
                       "MobileNet)"),
    "tiny": Claim("TINY", "no", "new neurons and the weight update lower the loss at once "
                  "(growth/methods/gromo.py)", "GroMo's, gromo_mlp only"),
    "gradmax": Claim("GradMax", "yes", "new neurons have zero fan-in (Evci et al. 2022; growth/methods/gromo.py)",
                     "GroMo's, gromo_mlp only"),
    "gstack": Claim("G_stack", "no", "layer copies change the output (Du et al. 2024; "
                    "growth/methods/stacking.py)", "the paper's defaults: g = 4, grow once early "
                    "(tuned on LLM pre-training: 10B of 300B tokens; here method.grow_at epochs)"),
    "stackbert": Claim("StackBERT", "no", "layer copies change the output (Gong et al. 2019; "
                       "growth/methods/stacking.py)", "the paper's: double the depth on a schedule (tuned "
                       "on BERT pre-training; here every grow.interval epochs)"),
    "msg": Claim("MSG", "yes", "masked structural growth: new structure enters behind a mask that starts "
                 "at 0 (Yao et al., ICLR 2024; growth/methods/msg.py)", "ours: one masked layer every 2 epochs, "
                 "each mask ramping over method.ramp_steps (the paper grid-searched its schedules on BERT / GPT "
                 "pre-training)"),
    "bert2bert": Claim("bert2BERT", "no", "its FPI widening keeps the function (exact for heads, FFN and a "
                       "hidden size that is a multiple of the old, as here), the stacking that follows does not "
                       "(Chen et al., ACL 2022; growth/methods/bert2bert.py); its own start (a narrower model)",
                       "ours: widen once at method.grow_at, then stack x method.depth_factor (the paper's "
                       "two-stage pre-training is not reproduced)"),
    "fixed": Claim("fixed (final model)", "n/a", "trains the final arch from the start: the reference",
                   "none (no growth)"),
}
NOTE = ("One table per family. Target: the fixed final model's final val accuracy (mean over its seeds). "
        "Every growing run starts at the family's start arch and may grow to model.max_arch and "
        "grow.max_params = the fixed model's deployed params; all runs train the same epochs (same "
        "samples, same LR schedule): the fixed model's training MACs are the budget, and a growing run, never "
        "bigger, spends less (column 'training MACs (% of fixed)'; growth steps' own passes count where the "
        "method reports them). 'val acc at equal MACs': val accuracy when "
        "the run had spent the family's smallest total (linear between epochs; '-' when its first epoch alone "
        "cost more). 'to reach': training "
        "MACs / wall time (sum of epoch_time_s: each epoch's training and validation; a growth "
        "step between epochs is not in it, metrics.jsonl's row is written before the hook) when val accuracy first reached the target, linear between "
        "epochs; 'never (gap x pts)': no seed reached it, the target minus the best val accuracy (mean "
        "over seeds); 'k of n': only k seeds reached it (their mean). Speed-ups against the fixed model's "
        "whole run: (a) MACs saved to reach the target (LiGO, bert2BERT), (b) samples saved (G_stack's "
        "tokens: our token data pad every sequence to max_len, so the token ratio is the sample ratio), (c) wall-clock ratio (MSG). function-preserving: the method's claim, then the largest "
        "|output change| its growth events measured on a fixed val batch. Status counts every run of "
        "the sweep: failed, interrupted and unrecorded runs are listed, never dropped.")


def is_growbench(runs: pd.DataFrame) -> bool:
    """Do these runs come from a GrowBench sweep (config key bench: growbench)?"""
    if "bench" in runs.columns:
        return bool((runs["bench"] == BENCH).any())
    return any(read_config(Path(r)).get("bench") == BENCH for r in runs["run"])


# ---- the runs the completed ones leave out ------------------------------------------------------
def _job_method_model(job: dict) -> tuple:
    over = dict(o.split("=", 1) for o in job.get("overrides", []) if "=" in o)
    return over.get("method"), over.get("model"), over.get("seed")


def other_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """One row (run, method, model, seed, status, error) per run of the same sweeps that did not
    complete: job directories with another status or no summary.json, and jobs of the sweep's
    jobs.yaml that left no directory."""
    done = {Path(r).resolve() for r in runs["run"]}
    rows = []
    for root in sorted({Path(r).resolve().parent for r in runs["run"]}):
        seen = set()
        for d in sorted(p for p in root.iterdir() if p.is_dir()):
            seen.add(d.name)
            if d in done or not any((d / f).exists() for f in ("summary.json", "config_resolved.yaml",
                                                               "metrics.jsonl", "train.log")):
                continue
            summary = {}
            if (d / "summary.json").exists():
                try:
                    summary = json.loads((d / "summary.json").read_text())
                except json.JSONDecodeError:
                    summary = {"status": "broken record"}
            config = read_config(d)
            rows.append({"run": str(d), "method": summary.get("method") or config.get("method.name"),
                         "model": summary.get("model") or config.get("model.name"),
                         "seed": summary.get("seed", config.get("seed")),
                         "status": summary.get("status", "unfinished"), "error": summary.get("error")})
        jobs_file = root / "jobs.yaml"
        if jobs_file.exists():
            for job in yaml.safe_load(jobs_file.read_text()) or []:
                if job.get("name") not in seen:
                    method, model, seed = _job_method_model(job)
                    rows.append({"run": str(root / job["name"]), "method": method, "model": model, "seed": seed,
                                 "status": "no record", "error": "the job left no run directory"})
    return pd.DataFrame(rows, columns=["run", "method", "model", "seed", "status", "error"])


def status_text(statuses: list[tuple[str, str | None]]) -> str:
    """'3 completed' / '2 completed, 1 failed (diverged)' / '1 failed (model=...: ...)': statuses are
    (status, error) per run; a failure other than divergence shows the start of its error."""
    counts = {}
    for status, error in statuses:
        if status == "failed" and error and "loss became" in str(error):
            status = "failed (diverged)"
        elif status == "failed" and error and not pd.isna(error):
            short = str(error).replace("|", "/").splitlines()[0]
            status = f"failed ({short[:60]}{'...' if len(short) > 60 else ''})"
        counts[status] = counts.get(status, 0) + 1
    order = sorted(counts, key=lambda s: (s != "completed", s))
    return ", ".join(f"{counts[s]} {s}" for s in order)


# ---- per run ------------------------------------------------------------------------------------
def first_reach(x, acc, target: float) -> float:
    """The x (cost, samples, seconds) at which acc first reached target, linear between epochs; the
    first epoch's x if it was already there; NaN if it never did."""
    x, acc = np.asarray(x, float), np.asarray(acc, float)
    hit = np.flatnonzero(acc >= target)
    if not hit.size:
        return float("nan")
    i = hit[0]
    if i == 0:
        return float(x[0])
    frac = (target - acc[i - 1]) / (acc[i] - acc[i - 1])
    return float(x[i - 1] + frac * (x[i] - x[i - 1]))


def run_numbers(run_epochs: pd.DataFrame, run_events: pd.DataFrame, target: float, budget: float) -> dict:
    r = run_epochs.sort_values("epoch")
    acc = r["val_acc"].to_numpy(float)
    macs = r["train_macs_cum"].to_numpy(float)
    samples = r["samples_seen"].to_numpy(float)
    wall = np.cumsum(r["epoch_time_s"].to_numpy(float))
    grow = run_events[run_events["kind"].isin(GROW_EVENTS)] if len(run_events) else run_events
    change = pd.to_numeric(grow["max_abs_output_change"], errors="coerce").max() if len(grow) else float("nan")
    return {"final_val_acc": acc[-1], "best_val_acc": acc.max(), "macs": macs[-1], "samples": samples[-1],
            "wall": wall[-1], "acc_at_budget": acc_at(r, budget), "macs_to_target": first_reach(macs, acc, target),
            "samples_to_target": first_reach(samples, acc, target), "wall_to_target": first_reach(wall, acc, target),
            "growth_events": len(grow), "max_output_change": change}


# ---- per family ---------------------------------------------------------------------------------
def method_order(methods) -> list[str]:
    seen = list(dict.fromkeys(m for m in methods if m is not None))
    return [m for m in METHODS if m in seen] + [m for m in seen if m not in METHODS]


def family_numbers(runs, epochs, events, others, family) -> tuple[pd.DataFrame, dict]:
    """(one row per method with numbers, the family's reference: target, budget, fixed totals)."""
    own = runs[runs["model"] == family]
    mine = epochs[epochs["run"].isin(own["run"])]
    budget = float(mine.groupby("run")["train_macs_cum"].max().min())
    fixed = own[own["method"] == "fixed"]
    fixed_epochs = mine[mine["run"].isin(fixed["run"])]
    last = fixed_epochs.sort_values("epoch").groupby("run").tail(1)
    ref = {"target": last["val_acc"].mean() if len(last) else float("nan"), "budget": budget,
           "macs": last["train_macs_cum"].mean() if len(last) else float("nan"),
           "samples": last["samples_seen"].mean() if len(last) else float("nan"),
           "wall": fixed_epochs.groupby("run")["epoch_time_s"].sum().mean() if len(last) else float("nan")}
    theirs = others[others["model"] == family]
    rows = []
    for method in method_order(list(own["method"]) + list(theirs["method"])):
        cell = own[own["method"] == method]
        per_run = [run_numbers(mine[mine["run"] == run], events[events["run"] == run] if len(events) else events,
                               ref["target"], budget) for run in cell["run"]]
        per_run = pd.DataFrame(per_run)
        statuses = [("completed", None)] * len(cell) + list(zip(theirs.loc[theirs["method"] == method, "status"],
                                                                 theirs.loc[theirs["method"] == method, "error"]))
        claim = METHODS.get(method)
        row = {"family": family, "method": method, "label": claim.label if claim else method,
               "function_preserving": claim.preserving if claim else "?", "status": status_text(statuses),
               "n_completed": len(cell), "n_runs": len(statuses), "target": ref["target"], "budget_macs": budget,
               "deploy_params": pd.to_numeric(cell["deploy_params"], errors="coerce").mean() if len(cell) else np.nan}
        if len(per_run):
            reach = per_run["macs_to_target"].notna()
            row.update({"n_reached": int(reach.sum()),
                        **{f"{k}_mean": per_run[k].mean() for k in per_run.columns},
                        **{f"{k}_std": per_run[k].std(ddof=1) for k in ("acc_at_budget", "final_val_acc")},
                        "gap": ref["target"] - per_run["best_val_acc"].mean(),
                        "_acc_at_budget": list(per_run["acc_at_budget"]), "_final": list(per_run["final_val_acc"])})
            if method == "fixed":  # the reference: its whole run, by the speed-ups' definition
                to = {"macs": ref["macs"], "samples": ref["samples"], "wall": ref["wall"]}
            else:  # mean over the seeds that reached the target
                to = {k: per_run.loc[reach, f"{k}_to_target"].mean() if reach.any() else np.nan
                      for k in ("macs", "samples", "wall")}
            row.update({"macs_to_reach": to["macs"], "samples_to_reach": to["samples"], "wall_to_reach": to["wall"],
                        "mac_saving": 1 - to["macs"] / ref["macs"], "sample_saving": 1 - to["samples"] / ref["samples"],
                        "wall_speedup": ref["wall"] / to["wall"]})
        rows.append(row)
    return pd.DataFrame(rows), ref


def _reach_cell(r, value: str, gap: bool = True) -> str:
    """value, or "never (gap x.x pts)" when no seed reached the target ("never" alone if not gap)."""
    if r.get("n_completed", 0) == 0:
        return "-"
    if pd.isna(r["target"]):
        return "no target (no fixed run)"
    if r["method"] != "fixed" and r.get("n_reached", 0) == 0:
        return f"{NEVER} (gap {r['gap'] * 100:.1f} pts)" if gap else NEVER
    part = "" if r["method"] == "fixed" or r["n_reached"] == r["n_completed"] else \
        f" ({int(r['n_reached'])} of {int(r['n_completed'])} seeds)"
    return value + part


def _preserving_cell(r) -> str:
    change = r.get("max_output_change_mean")
    if r["function_preserving"] == "n/a" or r.get("n_completed", 0) == 0 or pd.isna(r.get("growth_events_mean")):
        return r["function_preserving"]
    if not r["growth_events_mean"]:
        return f"{r['function_preserving']} (no growth event)"
    return f"{r['function_preserving']} (max output change {change:.1g})"


def display_frame(numbers: pd.DataFrame, ref: dict) -> pd.DataFrame:
    mdiv, munit = prefix([ref["budget"], ref["macs"]])
    pdiv, punit = prefix(numbers["deploy_params"])
    rows = []
    for _, r in numbers.iterrows():
        done = r["n_completed"] > 0
        pct = lambda x: "-" if pd.isna(x) else f"{x * 100:.0f}%"
        row = {"method": r["label"], "function-preserving (claim, measured)": _preserving_cell(r),
               "status": r["status"],
               f"val acc % at {ref['budget'] / mdiv:.3g} {munit}MACs": mean_std(r["_acc_at_budget"], 0.01, 2) if done else "-",
               "final val acc %": mean_std(r["_final"], 0.01, 2) if done else "-",
               "training MACs (% of fixed)": pct(r["macs_mean"] / ref["macs"]) if done else "-",
               f"deployed params ({punit})": mean_std([r["deploy_params"]], pdiv) if done else "-",
               f"MACs to reach ({munit}MACs)": _reach_cell(r, mean_std([r.get("macs_to_reach")], mdiv)),
               "wall time to reach (s)": _reach_cell(r, mean_std([r.get("wall_to_reach")], 1, 1)),
               "(a) MACs saved": _reach_cell(r, pct(r.get("mac_saving")), gap=False),
               "(b) samples saved": _reach_cell(r, pct(r.get("sample_saving")), gap=False),
               "(c) wall-clock speed-up": _reach_cell(r, f"{r.get('wall_speedup', np.nan):.2f}x", gap=False)}
        rows.append(row)
    return pd.DataFrame(rows)


def schedules_note(methods) -> str:
    lines = [f"- {METHODS[m].label}: function-preserving {METHODS[m].preserving}: {METHODS[m].source}. "
             f"Schedule: {METHODS[m].schedule}." for m in methods if m in METHODS]
    return "\n".join(lines)


def family_figure(runs, epochs, numbers, ref, family):
    """Val accuracy vs cumulative training MACs, one line per method (mean over its seeds per epoch)."""
    own = runs[runs["model"] == family]
    mine = epochs[epochs["run"].isin(own["run"])]
    div, unit = prefix(mine["train_macs_cum"])
    fig, (ax,) = new_figure(1, panel_size=(8.0, 5.0))
    for i, method in enumerate(m for m in numbers["method"] if m in set(own["method"])):
        members = own[own["method"] == method]
        c = curve(mine[mine["run"].isin(members["run"])])
        label = f"{METHODS[method].label if method in METHODS else method} (n={len(members)})"
        band(ax, c["cost"] / div, c["acc"] * 100, c["acc_std"] * 100, colour(method), label=label,
             markersize=4, linestyle="--" if method == "fixed" else "-", marker="os^Dv<>PX*"[i % 10])
    if pd.notna(ref["target"]):
        ax.axhline(ref["target"] * 100, color="black", linestyle=":", linewidth=1,
                   label=f"target: fixed model's final val acc {ref['target'] * 100:.1f}%")
    ax.axvline(ref["budget"] / div, color="grey", linestyle="--", linewidth=1,
               label=f"equal MACs: {ref['budget'] / div:.3g} {unit}MACs")
    spread = mine["train_macs_cum"].max() / max(mine["train_macs_cum"].min(), 1)
    if spread > 30:
        ax.set_xscale("log")
    ax.set_xlabel(f"cumulative training MACs ({unit}MACs, forward + backward)")
    ax.set_ylabel("val accuracy (%)")
    ax.set_title(f"GrowBench {family}: val accuracy vs training cost (mean ± std over seeds)", fontsize=11)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    return fig


def families(runs) -> list[str]:
    seen = list(dict.fromkeys(runs["model"]))
    return [f for f in FAMILIES if f in seen] + [f for f in seen if f not in FAMILIES]


def growbench_tables(runs, epochs, events, out_dir) -> list:
    if epochs.empty or not is_growbench(runs):
        return []
    others = other_runs(runs)
    paths, all_numbers, summary = [], [], []
    for family in families(runs):
        numbers, ref = family_numbers(runs, epochs, events, others, family)
        note = (f"Target {ref['target'] * 100:.2f}% (fixed, mean over seeds); equal-MACs budget "
                f"{ref['budget']:.4g} MACs; fixed model's run: {ref['macs']:.4g} MACs, {ref['samples']:.0f} "
                f"samples, {ref['wall']:.1f} s.\n\n{NOTE}\n\n{schedules_note(numbers['method'])}")
        if pd.isna(ref["target"]):
            note = "No completed fixed run: no target, no speed-ups.\n\n" + note
        shown = numbers.drop(columns=[c for c in numbers.columns if c.startswith("_")])
        display = display_frame(numbers, ref)
        paths += write_table(display, shown, out_dir, f"growbench_{family}", note)
        summary.append(summary_frame(display, family))
        paths += save(family_figure(runs, epochs, numbers, ref, family), out_dir, f"growbench_{family}")
        all_numbers.append(shown)
    csv = Path(out_dir) / "growbench.csv"
    pd.concat(all_numbers, ignore_index=True).to_csv(csv, index=False)
    md = Path(out_dir) / "growbench_summary.md"
    md.write_text(to_markdown(pd.concat(summary, ignore_index=True)) + "\n")
    return paths + [csv, md]


SUMMARY = ["function-preserving (claim, measured)", "final val acc %", "training MACs (% of fixed)",
           "(a) MACs saved", "(b) samples saved", "(c) wall-clock speed-up"]


def summary_frame(display: pd.DataFrame, family: str) -> pd.DataFrame:
    """One family's rows of growbench_summary.md (every family in one table, the README's): the display
    table's columns without the per-family units (equal-MACs accuracy, MACs, params, wall time)."""
    at_budget = next(c for c in display.columns if c.startswith("val acc % at "))
    out = display[["method", *SUMMARY[:2]]].copy()
    out.insert(0, "family", family)
    out["val acc % at equal MACs"] = display[at_budget]
    for col in SUMMARY[2:]:
        out[col] = display[col]
    return out
