"""Every method's numbers on one seed, as a fingerprint two commits can be compared by.

    python -m benchmarks.fingerprint [--only NAME ...] [--out DIR] [--json FILE] [--compare REF.json]

Runs short jobs of every method (one thread, CPU) and keeps what must not move when code is refactored:
every metrics row and event row without their wall-clock fields, and the summary's numbers. Run it on
two commits and diff the JSON files: a refactor that keeps the numbers gives identical files.
"""
import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIXED = ["trainer.device=cpu", "trainer.threads=1", "trainer.progress=false"]
JOBS = {
    "adagrow": [],
    "adagrow_adam": ["initializer=adam", "initializer.epochs=1", "grow_mode=depth", "trainer.epochs=7"],
    "adagrow_faithful": ["method.variant=faithful", "trainer.epochs=10"],
    "randgrow": ["method=randgrow", "trainer.epochs=13"],
    "randgrow_random": ["method=randgrow", "method.where=random", "trainer.epochs=13"],
    "adagrow_vit": ["model=vit", "trainer.epochs=4", "grow.interval=1"],
    "randgrow_bert": ["model=bert", "data=synthetic_text", "method=randgrow", "trainer.epochs=4",
                      "grow.interval=1"],
    "fixed": ["method=fixed", "model.arch=1-1-1", "trainer.epochs=4"],
    "adn": ["method=adn", "trainer.epochs=3"],
    "reducenet": ["model=reducenet", "trainer.epochs=4"],
    "sws_aux": ["model=sws_aux", "method.teacher=test_resnet", "method.teacher_epochs=2",
                "model.stage_repeats=[2,2,2]", "trainer.epochs=3"],
}
DROP = {"epoch_time_s", "time_s", "train_time_s", "wall_s", "seconds", "latency_ms", "fused_speedup",
        "speedup", "throughput", "timestamp", "host", "pid", "run_dir", "cost_s"}


def _clean(row):
    if isinstance(row, dict):
        return {k: _clean(v) for k, v in row.items()
                if k not in DROP and not k.endswith(("_time_s", "_ms", "_s_per_step", "speedup", "_path"))}
    if isinstance(row, list):
        return [_clean(v) for v in row]
    return row


def _jsonl(path: Path) -> list:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def run_one(name: str, args: list, out: Path) -> dict:
    run_dir = out / name
    cmd = [sys.executable, "run.py", *args, *FIXED, f"hydra.run.dir={run_dir}"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode:
        return {"error": proc.returncode, "stderr": proc.stderr[-2000:]}
    summary = json.loads((run_dir / "summary.json").read_text())
    numbers = {k: v for k, v in summary.items() if isinstance(v, (int, float, str)) or k == "trajectory"}
    for k in ("commit", "git_commit", "started", "finished", "hostname", "git_dirty", "python", "torch", "device_name",
              "run_dir", "command", "status"):
        numbers.pop(k, None)
    return {"metrics": _clean(_jsonl(run_dir / "metrics.jsonl")), "events": _clean(_jsonl(run_dir / "events.jsonl")),
            "summary": _clean(numbers)}


def differences(a, b, path="") -> list[str]:
    """Where two fingerprints differ (empty: identical)."""
    if type(a) is not type(b):
        return [f"{path}: {str(a)[:80]} != {str(b)[:80]}"]
    if isinstance(a, dict):
        out = [f"{path}.{k}: only in one" for k in sorted(set(a) ^ set(b))]
        return out + [d for k in sorted(set(a) & set(b)) for d in differences(a[k], b[k], f"{path}.{k}")]
    if isinstance(a, list):
        out = [f"{path}: {len(a)} rows != {len(b)}"] if len(a) != len(b) else []
        return out + [d for i, (u, v) in enumerate(zip(a, b)) for d in differences(u, v, f"{path}[{i}]")]
    return [] if a == b else [f"{path}: {str(a)[:80]} != {str(b)[:80]}"]


def compare(reference: dict, result: dict) -> int:
    bad = 0
    for name, run in result.items():
        found = differences(reference[name], run) if name in reference else ["not in the reference"]
        bad += bool(found)
        rows = f"({len(run.get('metrics', []))} metrics rows, {len(run.get('events', []))} events)"
        print(f"  {name:18s} {'identical' if not found else '; '.join(found[:4])} {rows}")
    return bad


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", nargs="*", default=None)
    p.add_argument("--out", default="outputs/fingerprint")
    p.add_argument("--json", default=None, help="write the fingerprint here (default: <out>/fingerprint.json)")
    p.add_argument("--old-width-rule", action="store_true",
                   help="AdaGrow/RandGrow jobs with method.min_units=faithful (a width event may grow 0 units), "
                        "to compare with commits from before that rule")
    p.add_argument("--compare", default=None, help="a fingerprint JSON to compare with, job by job")
    a = p.parse_args(argv)
    out = (ROOT / a.out).resolve()
    result = {}
    for name, args in JOBS.items():
        if a.only and name not in a.only:
            continue
        if a.old_width_rule and name.startswith(("adagrow", "randgrow")):
            args = [*args, "method.min_units=faithful"]
        print(f"{name}: python run.py {' '.join(args)}", flush=True)
        result[name] = run_one(name, args, out)
        if "error" in result[name]:
            print(f"  failed ({result[name]['error']}): {result[name]['stderr'][-400:]}", flush=True)
    path = Path(a.json) if a.json else out / "fingerprint.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1, sort_keys=True, default=str) + "\n")
    print(f"wrote {path}")
    failed = any("error" in r for r in result.values())
    if a.compare:
        print(f"compared with {a.compare}:")
        failed |= bool(compare(json.loads(Path(a.compare).read_text()), result))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
