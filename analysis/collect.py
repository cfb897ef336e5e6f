"""Walk run or sweep directories and load their run records into pandas DataFrames."""
import json
import logging
from pathlib import Path

import pandas as pd

from growth.engine.io import read_jsonl
from growth.engine.record import SCHEMA_VERSION

log = logging.getLogger("analysis")


def find_runs(*dirs) -> list[Path]:
    """Every directory below `dirs` that holds a metrics.jsonl (a run directory)."""
    found = set()
    for d in dirs:
        for m in Path(d).rglob("metrics.jsonl"):
            found.add(m.parent)
    return sorted(found)


def collect(*dirs) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(runs, epochs, events): one row per finished run, per epoch, per structural event.

    Runs without summary.json (still running or killed) and runs of another schema version are
    skipped with a warning that counts them."""
    runs, epochs, events, skipped = [], [], [], {"unfinished": 0, "other schema": 0}
    for run_dir in find_runs(*dirs):
        path = run_dir / "summary.json"
        if not path.exists():
            skipped["unfinished"] += 1
            continue
        summary = json.loads(path.read_text())
        if summary.get("schema_version") != SCHEMA_VERSION:
            skipped["other schema"] += 1
            continue
        run_id = str(run_dir)
        runs.append({"run": run_id, **{k: v for k, v in summary.items() if not isinstance(v, dict)}})
        epochs += [{"run": run_id, **r} for r in read_jsonl(run_dir / "metrics.jsonl")]
        events += [{"run": run_id, **r} for r in read_jsonl(run_dir / "events.jsonl")]
    for why, n in skipped.items():
        if n:
            log.warning("skipped %d run(s): %s", n, why)
    return pd.DataFrame(runs), pd.DataFrame(epochs), pd.DataFrame(events)
