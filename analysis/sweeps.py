"""The collect step of a sweep: one row per job -> results.csv and a mean ± std markdown table."""
import json
from pathlib import Path

import pandas as pd

from analysis.tables import mean_std, to_markdown

METRICS = ("final_val_acc", "best_val_acc", "test_acc", "params", "deploy_params", "macs", "train_macs_total",
           "train_time_s")


def job_rows(jobs, sweep_dir: Path) -> tuple[pd.DataFrame, list[tuple[str, str]]]:
    rows, failed = [], []
    for job in jobs:
        path = sweep_dir / job["name"] / "summary.json"
        summary = json.loads(path.read_text()) if path.exists() else {"status": "missing",
                                                                      "error": "no summary.json"}
        if summary.get("status") != "completed":
            failed.append((job["name"], f"{summary.get('status')}: {summary.get('error')}"))
        rows.append({"job": job["name"], **job["keys"], "status": summary.get("status"),
                     **{m: summary.get(m) for m in METRICS}, "arch": summary.get("arch")})
    return pd.DataFrame(rows), failed


def _cell(values: pd.Series) -> str:
    """'mean ± std' of the numbers as analysis.tables writes them ('(k of n)' when some runs lack it); a
    text metric (e.g. arch) as its distinct values; '-' if missing."""
    nums = pd.to_numeric(values, errors="coerce").dropna()
    if len(nums):
        # a metric some runs lack is not silently averaged over the others
        return mean_std(nums) + ("" if len(nums) == len(values) else f" ({len(nums)} of {len(values)})")
    text = values.dropna().astype(str).unique()
    return " / ".join(text) if len(text) else "-"


def mean_std_table(df: pd.DataFrame, rows: list[str], metrics: list[str]) -> pd.DataFrame:
    """Group completed runs by `rows`; each metric as 'mean ± std' over seeds (text: its values), plus n."""
    done = df[df["status"] == "completed"]
    if done.empty:
        return pd.DataFrame()
    groups = done.groupby(rows, dropna=False, sort=False) if rows else [((), done)]
    out = []
    for key, g in groups:
        key = key if isinstance(key, tuple) else (key,)
        row = dict(zip(rows, key))
        for m in metrics:
            row[m] = _cell(g[m])
        row["n"] = len(g)
        out.append(row)
    return pd.DataFrame(out)


def summarize_sweep(jobs, sweep_dir, exp: dict) -> list[tuple[str, str]]:
    sweep_dir = Path(sweep_dir)
    df, failed = job_rows(jobs, sweep_dir)
    df.to_csv(sweep_dir / "results.csv", index=False)
    table = exp.get("table") or {}
    rows = table.get("rows") or [k for k in (jobs[0]["keys"] if jobs else {}) if k != "seed"]
    metrics = table.get("metrics") or ["final_val_acc", "test_acc", "deploy_params", "train_macs_total"]
    common = exp.get("common") or {}
    for key in rows:  # a row key that no job varies (e.g. set in `common`): one value for every job
        if key not in df.columns:
            df[key] = common.get(key)
    md = mean_std_table(df, rows, metrics)
    text = f"# {exp.get('description', sweep_dir.name)}\n\n"
    text += to_markdown(md) if not md.empty else "(no completed runs)"
    if failed:
        text += "\n\nFailed or unfinished jobs:\n\n" + "\n".join(f"- {n}: {w}" for n, w in failed)
    (sweep_dir / "results.md").write_text(text + "\n")
    return failed
