"""Walk run or sweep directories and load their run records into pandas DataFrames.

    runs, epochs, events = collect("outputs/sweeps/smoke")

runs:   one row per finished run: the summary.json fields, plus every config key (dotted, from
        config_resolved.yaml) whose value differs between the runs; runs.attrs["config_keys"] lists them.
epochs: one row per epoch (metrics.jsonl), events: one row per structural event (events.jsonl);
        both carry the run directory in column "run", which joins them to runs.
"""
import json
import logging
from pathlib import Path

import pandas as pd
import yaml

from growth.engine.io import read_jsonl
from growth.engine.record import FILES, SCHEMA_VERSION

log = logging.getLogger("analysis")

# Config keys that differ between runs without describing the experiment (names, paths).
IGNORED_KEYS = {"run_name", "trainer.resume"}


def find_runs(*dirs) -> list[Path]:
    """Every directory below `dirs` that holds a metrics.jsonl (a run directory)."""
    found = set()
    for d in dirs:
        for m in Path(d).rglob(FILES["metrics"]):
            found.add(m.parent)
    return sorted(found)


def flatten(tree, prefix: str = "") -> dict:
    """{"model": {"arch": "1-1-1", "widths": [8, 12]}} -> {"model.arch": "1-1-1", "model.widths": "[8, 12]"}.

    Lists become strings so that every value can be compared and grouped on."""
    flat = {}
    for key, value in (tree or {}).items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = json.dumps(value) if isinstance(value, list) else value
    return flat


def read_config(run_dir: Path) -> dict:
    path = Path(run_dir) / FILES["config"]
    return flatten(yaml.safe_load(path.read_text())) if path.exists() else {}


def varying_keys(configs: list[dict]) -> list[str]:
    """Config keys whose value is not the same in every run (a key a run lacks counts as None)."""
    keys = list(dict.fromkeys(k for c in configs for k in c))
    return [k for k in keys if k not in IGNORED_KEYS and len({repr(c.get(k)) for c in configs}) > 1]


def _read_summary(run_dir: Path) -> tuple[dict | None, str | None]:
    """(summary, None) for a run to read, else (summary or None, why it is skipped)."""
    path = run_dir / FILES["summary"]
    if not path.exists():
        return None, "unfinished"
    try:
        summary = json.loads(path.read_text())
    except json.JSONDecodeError:  # written atomically: a summary that is not JSON is damaged, not unfinished
        return None, "broken record"
    if summary.get("schema_version") != SCHEMA_VERSION:
        return summary, "other schema"
    if summary.get("status") != "completed":
        return summary, "not completed"
    return summary, None


WHY = {"unfinished": "no summary.json (still running, or killed)",
       "other schema": f"written with another run-record schema version (this analysis reads version "
                       f"{SCHEMA_VERSION}; re-run them, or analyse them with the code that wrote them)",
       "not completed": "status failed or interrupted (see their summary.json)",
       "broken record": "a record file is damaged (repair or delete the line named, or re-run)"}


def _warn_skipped(skipped: dict) -> None:
    for why, items in skipped.items():
        if items:
            shown = ", ".join(items[:5]) + (", ..." if len(items) > 5 else "")
            # The leading words are stable ("skipped N run(s): unfinished"): tests and users grep them.
            log.warning("skipped %d run(s): %s: %s: %s", len(items), why, WHY[why], shown)


def collect(*dirs, completed_only: bool = True) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(runs, epochs, events): one row per finished run, per epoch, per structural event.

    Runs without summary.json (still running or killed), runs of another schema version, runs with a
    damaged record file (named with its line) and (unless completed_only=False) failed or interrupted
    runs are skipped with a warning that counts them;
    the counts are in runs.attrs["skipped"]."""
    summaries, configs, epochs, events = [], [], [], []
    skipped = {"unfinished": [], "other schema": [], "not completed": [], "broken record": []}
    for run_dir in find_runs(*dirs):
        summary, why = _read_summary(run_dir)
        if why == "other schema":
            skipped[why].append(f"{run_dir} (version {summary.get('schema_version')})")
            continue
        if why == "broken record":
            skipped[why].append(f"{run_dir / FILES['summary']} is not JSON")
            continue
        if why == "unfinished" or (why == "not completed" and completed_only):
            skipped[why].append(str(run_dir))
            continue
        try:
            metrics, run_events = read_jsonl(run_dir / FILES["metrics"]), read_jsonl(run_dir / FILES["events"])
        except ValueError as e:  # a bad line inside metrics/events.jsonl: the message names file and line
            skipped["broken record"].append(str(e))
            continue
        run_id = str(run_dir)
        summaries.append({"run": run_id, **summary})  # "run" first: the column that joins the frames
        configs.append(read_config(run_dir))
        epochs += [{"run": run_id, **r} for r in metrics]
        events += [{"run": run_id, **r} for r in run_events]
    _warn_skipped(skipped)
    return _runs_frame(summaries, configs, skipped), pd.DataFrame(epochs), pd.DataFrame(events)


def _runs_frame(summaries: list[dict], configs: list[dict], skipped: dict) -> pd.DataFrame:
    keys = varying_keys(configs)
    rows = []
    for summary, config in zip(summaries, configs):
        # A summary field wins over a config key of the same name (e.g. seed): they hold the same value.
        rows.append({"run": summary["run"], **{k: config.get(k) for k in keys}, **summary})
    runs = pd.DataFrame(rows)
    runs.attrs["config_keys"] = keys
    runs.attrs["skipped"] = {why: len(items) for why, items in skipped.items()}
    return runs
