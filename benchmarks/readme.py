"""Make the README's numbers: run every single-run command the README quotes numbers for, at one torch
thread on the CPU, and write what each run measured to one file (benchmarks/readme_numbers.json).

    python -m benchmarks.readme [--only NAME ...] [--out DIR] [--results FILE] [--list]

Each command runs as `python run.py <the README's overrides> trainer.device=cpu trainer.threads=1` in a
fresh directory of its own under --out. Single-seed CPU numbers change with the thread count and the
torch build, so the file records both (and the commit) beside the numbers; tests/test_readme_numbers.py
holds the README to the file, and re-runs the cheap commands to check that they reproduce exactly.
`--only NAME` re-measures some entries and keeps the others (each entry records its own commit).
Means over seeds come from sweeps, which this script does not run: SWEEPS names them and their tables.
"""
import argparse
import json
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch

from growth.engine.env import device_name, git_commit

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "readme_numbers.json"
THREADS = 1
# Added to every command: CPU numbers at one thread (a GPU would give other numbers), no progress bar.
FIXED_ARGS = ["trainer.device=cpu", f"trainer.threads={THREADS}", "trainer.progress=false"]
LEARNGENE = "{sws_aux}/checkpoints/learngene.pt"  # the aux run's learngene, for the descendant table


def _trajectory(s: dict) -> list[str]:
    """The growth trajectory lines exactly as the run printed them (the README quotes some)."""
    return [line for line in s["printed"] if line.startswith("  epoch ")]


def adagrow_numbers(s: dict) -> dict:
    return {"trajectory": _trajectory(s), "arch": s["arch"], "deploy_params": s["deploy_params"],
            "macs": s["macs"], "train_macs_total": s["train_macs_total"],
            "final_val_acc": s["final_val_acc"], "test_acc": s["test_acc"]}


def plain_numbers(s: dict) -> dict:
    return {"arch": s["arch"], "params": s["params"], "deploy_params": s["deploy_params"], "macs": s["macs"],
            "train_macs_total": s["train_macs_total"], "final_val_acc": s["final_val_acc"],
            "test_acc": s["test_acc"], "train_time_s": s["train_time_s"]}


def vit_numbers(s: dict) -> dict:
    return {**plain_numbers(s), "trajectory": _trajectory(s)}


def reducenet_numbers(s: dict) -> dict:
    keys = ("teacher_val_acc", "teacher_test_acc", "teacher_params", "teacher_deploy_params", "teacher_macs",
            "student_val_acc", "student_test_acc", "student_params", "student_deploy_params", "student_macs",
            "deploy_max_abs_diff", "fused_speedup", "speedup_batch", "train_macs_total")
    return {k: s.get(k) for k in keys}


def sws_aux_numbers(s: dict) -> dict:
    keys = ("teacher_val_acc", "teacher_test_acc", "final_val_acc", "test_acc", "arch", "params",
            "learngene_params", "learngene_cost_macs", "aux_train_macs", "kd_teacher_macs", "teacher_train_macs",
            "train_macs_total")
    return {k: s.get(k) for k in keys}


def sws_table_numbers(runs: dict) -> dict:
    """One row per depth: params, val acc per seed of descendant and scratch twin, the ratios (seed 0)."""
    rows = {}
    for depth in (3, 6, 9):
        d = [runs[f"descendant_d{depth}_s{seed}"] for seed in (0, 1, 2)]
        sc = [runs[f"scratch_d{depth}_s{seed}"] for seed in (0, 1, 2)]
        rows[str(depth)] = {
            "params": d[0]["params"], "descendant_val_acc": [r["final_val_acc"] for r in d],
            "scratch_val_acc": [r["final_val_acc"] for r in sc],
            "descendant_test_acc": [r["test_acc"] for r in d], "scratch_test_acc": [r["test_acc"] for r in sc],
            "storage_ratio": d[0].get("storage_ratio"), "cost_ratio": d[0].get("cost_ratio"),
            "cost_ratio_amortised": d[0].get("cost_ratio_amortised"),
            "family_params": d[0].get("family_params"),
            "family_storage_ratio": d[0].get("family_storage_ratio")}
    return rows


def _sws_table_commands() -> dict:
    cmds = {}
    for phase in ("descendant", "scratch"):
        for depth in (3, 6, 9):
            for seed in (0, 1, 2):
                cmds[f"{phase}_d{depth}_s{seed}"] = [
                    "model=sws_descendant", f"model.depth={depth}", "trainer.epochs=1", f"method.phase={phase}",
                    f"method.learngene={LEARNGENE}", "method.family_depths=[3,6,9]", f"seed={seed}"]
    return cmds


# name -> the README's overrides (one command, or several for a table), what to read from each summary,
# and whether tests re-run it (cheap) or it stays as measured at its commit (expensive: minutes).
ENTRIES = {
    "default": {"args": [], "numbers": adagrow_numbers, "cheap": True},
    "fixed_111": {"args": ["method=fixed", "model.arch=1-1-1"], "numbers": adagrow_numbers, "cheap": False},
    # the default AdaGrow job's final arch since its width events grow at least one unit (issue 17)
    "fixed_210": {"args": ["method=fixed", "model.arch=2-1-0"], "numbers": adagrow_numbers, "cheap": False},
    # the default job under the original's width rule (int(0.3 x units), 0 for 0-0-0): the old README numbers
    "default_old_width_rule": {"args": ["method.min_units=faithful"], "numbers": adagrow_numbers, "cheap": False},
    "vit": {"args": ["model=vit"], "numbers": vit_numbers, "cheap": False},
    "vit_sgd": {"args": ["model=vit", "optim=sgd"], "numbers": plain_numbers, "cheap": False},
    "reducenet": {"args": ["model=reducenet"], "numbers": reducenet_numbers, "cheap": True},
    "reducenet_scratch": {"args": ["model=reducenet", "method=fixed", "model.scaler=0"],
                          "numbers": plain_numbers, "cheap": False},
    "sws_aux": {"args": ["model=sws_aux", "method.teacher=test_resnet", "method.teacher_epochs=5",
                         "model.stage_repeats=[2,2,2]", "trainer.epochs=20"],
                "numbers": sws_aux_numbers, "cheap": False},
    "sws_table": {"table": _sws_table_commands(), "numbers": sws_table_numbers, "needs": "sws_aux",
                  "cheap": False},
}
# Numbers the README gives as a mean over seeds: the sweep that makes them and the table to read.
SWEEPS = {
    "reducenet": {"command": "python sweep.py reducenet && python -m analysis outputs/sweeps/reducenet",
                  "table": "outputs/sweeps/reducenet/results.md (test_acc mean ± std over seeds 0-2)"},
    "growth_methods": {"command": "python sweep.py growth_methods trainer.threads=1 && python -m analysis "
                                  "outputs/sweeps/growth_methods",
                       "table": "outputs/sweeps/growth_methods/analysis/growth_methods.md (seeds 0-2)"},
    "sws": {"command": "python sweep.py sws_aux && python sweep.py sws && python -m analysis outputs/sweeps/sws",
            "table": "outputs/sweeps/sws/results.md and the sws_depths table (test_acc mean ± std, seeds 0-2)"},
}
TIMING_KEYS = ("train_time_s", "fused_speedup")  # wall-clock: they move with machine load, never compared


def command(args: list[str], run_dir: Path) -> list[str]:
    return [sys.executable, "run.py", *args, *FIXED_ARGS, f"hydra.run.dir={run_dir}"]


def run_one(args: list[str], run_dir: Path) -> dict:
    """One fresh run (a directory holding last.pt would resume instead) and its summary."""
    shutil.rmtree(run_dir, ignore_errors=True)
    done = subprocess.run(command(args, run_dir), cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args) or '(default)'} exited {done.returncode}:\n{done.stderr[-3000:]}")
    summary = json.loads((run_dir / "summary.json").read_text())
    summary["printed"] = done.stdout.splitlines()  # what a user sees: the trajectory, the report lines
    if summary["torch_threads"] != THREADS:
        raise RuntimeError(f"{run_dir}: ran at {summary['torch_threads']} threads, not {THREADS}")
    return summary


def measure(name: str, out: Path) -> dict:
    """Run entry NAME under OUT and return its record: the command(s) and the numbers the README quotes."""
    entry = ENTRIES[name]
    t0 = time.perf_counter()
    if "table" in entry:
        dirs = {entry["needs"]: str(out / entry["needs"])}
        if not (out / entry["needs"] / "summary.json").exists():
            raise RuntimeError(f"{name} needs the {entry['needs']} run in {out}: run --only {entry['needs']} {name}")
        runs = {label: run_one([a.format(**dirs) for a in args], out / name / label)
                for label, args in entry["table"].items()}
        numbers = entry["numbers"](runs)
        shown = {label: "python run.py " + " ".join(a.replace(LEARNGENE.format(**dirs), "<learngene.pt>")
                                                    for a in [x.format(**dirs) for x in args] + FIXED_ARGS)
                 for label, args in entry["table"].items()}
        cmd = {"commands": shown}
    else:
        numbers = entry["numbers"](run_one(entry["args"], out / name))
        cmd = {"command": " ".join(["python run.py", *entry["args"], *FIXED_ARGS])}
    return {**cmd, "numbers": numbers, "cheap": entry["cheap"], "commit": git_commit(ROOT),
            "seconds": round(time.perf_counter() - t0, 1)}


def header() -> dict:
    return {"threads": THREADS, "torch": torch.__version__, "python": platform.python_version(),
            "device_name": device_name(), "commit": git_commit(ROOT), "sweeps": SWEEPS,
            "note": "single-seed CPU numbers at 1 torch thread; they change with the thread count and the torch "
                    "build. Timings (train_time_s, fused_speedup) move with machine load and are never compared."}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.readme", description=__doc__.splitlines()[0])
    p.add_argument("--only", nargs="+", choices=list(ENTRIES), metavar="NAME",
                   help=f"entries to (re-)measure (default: all of {', '.join(ENTRIES)})")
    p.add_argument("--out", default="outputs/readme_numbers", help="folder for the run directories")
    p.add_argument("--results", default=str(RESULTS), help="the results file (other entries in it are kept)")
    p.add_argument("--list", action="store_true", help="print the entries and their commands, run nothing")
    args = p.parse_args(argv)
    if args.list:
        for name, entry in ENTRIES.items():
            print(f"{name}: python run.py {' '.join(entry.get('args', ['(table)']))}")
        return 0
    results, out = Path(args.results), Path(args.out).resolve()
    record = json.loads(results.read_text()) if results.exists() else {"entries": {}}
    for name in args.only or list(ENTRIES):
        print(f"{name} ...", flush=True)
        record["entries"][name] = measure(name, out)
        # written after each entry: a crash later keeps what was measured
        record.update({k: v for k, v in header().items()})
        results.write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n")
        print(f"{name}: {record['entries'][name]['seconds']} s", flush=True)
    print(f"results: {results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
