"""The run record: the one contract between run.py and analysis/ (DESIGN.md section 5).

A run directory holds metrics.jsonl (one row per epoch), events.jsonl (one row per structural event),
summary.json (written at the end, with status), config_resolved.yaml, checkpoints/ and train.log.
analysis/ reads these files only; it checks SCHEMA_VERSION.
"""
import json
from pathlib import Path

from growth.engine.io import append_jsonl, atomic_write_json, atomic_write_text, read_jsonl

SCHEMA_VERSION = 1

METRIC_KEYS = ("epoch", "phase", "arch", "params", "deploy_params", "macs", "train_loss", "train_acc",
               "val_loss", "val_acc", "lr", "epoch_time_s", "samples_seen", "train_macs_cum")
EVENT_KEYS = ("epoch", "step", "kind", "where", "arch_before", "arch_after", "params_before",
              "params_after", "max_abs_output_change")
EVENT_KINDS = ("grow_depth", "grow_width", "grow_heads", "phase_start", "switch", "fuse", "skip_eval",
               "config_change")
SUMMARY_KEYS = ("schema_version", "status", "method", "model", "data", "seed", "variants", "final_val_acc",
                "best_val_acc", "test_acc", "arch", "params", "deploy_params", "macs", "train_time_s",
                "train_macs_total", "device", "git_commit", "versions")
STATUSES = ("completed", "failed", "interrupted", "dry_run")  # dry_run: growth/engine/dry_run.py

FILES = {"metrics": "metrics.jsonl", "events": "events.jsonl", "summary": "summary.json",
         "config": "config_resolved.yaml", "log": "train.log", "last": "checkpoints/last.pt",
         "deploy": "checkpoints/deploy.pt", "export": "checkpoints/model.pt2", "onnx": "checkpoints/model.onnx",
         "int8": "checkpoints/model.int8.onnx"}


def _check(row: dict, keys, what: str) -> None:
    missing = [k for k in keys if k not in row]
    if missing:
        raise KeyError(f"{what} row lacks {missing}")


class RunRecord:
    def __init__(self, run_dir, write: bool = True, layout: bool = True):
        """write=False: a distributed rank other than 0 reads the record but never writes it.
        layout=False: no checkpoints/ and no empty metrics/events files (a dry run writes its summary only)."""
        self.dir, self.write = Path(run_dir), write
        if not write or not layout:
            return
        (self.dir / "checkpoints").mkdir(parents=True, exist_ok=True)
        for name in ("metrics", "events"):  # present even when empty: analysis reads both
            self.path(name).touch()

    def path(self, name: str) -> Path:
        return self.dir / FILES[name]

    def add_metrics(self, row: dict) -> None:
        _check(row, METRIC_KEYS, "metrics")
        if self.write:
            append_jsonl(self.path("metrics"), row)

    def add_event(self, row: dict) -> None:
        _check(row, EVENT_KEYS, "event")
        if row["kind"] not in EVENT_KINDS:
            raise ValueError(f"event kind {row['kind']!r} not in {EVENT_KINDS}")
        if self.write:
            append_jsonl(self.path("events"), row)

    def metrics(self) -> list[dict]:
        return read_jsonl(self.path("metrics"))

    def events(self) -> list[dict]:
        return read_jsonl(self.path("events"))

    def truncate_after(self, epoch: int) -> None:
        """On resume: drop rows of epochs the checkpoint does not hold (written after it, then killed), and a
        last line cut by a kill mid-write, which the next row would otherwise extend into a bad line."""
        if not self.write:
            return
        for name in ("metrics", "events"):
            path = self.path(name)
            rows = read_jsonl(path)
            keep = [r for r in rows if r.get("epoch", 0) <= epoch]
            text = path.read_text() if path.exists() else ""
            if len(keep) != len(rows) or (text and not text.endswith("\n")):
                atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in keep))

    def write_summary(self, summary: dict) -> None:
        summary = {"schema_version": SCHEMA_VERSION, **summary}
        if summary["status"] in ("completed",):
            _check(summary, SUMMARY_KEYS, "summary")
        if summary["status"] not in STATUSES:
            raise ValueError(f"status {summary['status']!r} not in {STATUSES}")
        if self.write:
            atomic_write_json(self.path("summary"), summary)
