#!/usr/bin/env python
"""Run a named sweep from experiments/NAME.yaml locally or on SLURM, then aggregate it.

    python sweep.py adagrow_modes --dry-run          # list the jobs
    python sweep.py adagrow_modes                    # run them here, one after another
    python sweep.py adagrow_modes --launcher slurm   # one SLURM job array (conf/hydra/launcher/slurm.yaml)
    python sweep.py adagrow_modes --resume           # launch only the jobs without a completed record
    python sweep.py adagrow_modes --scale cifar      # the same grid at CIFAR scale
    python sweep.py adagrow_modes trainer.epochs=3   # extra overrides for every job
    python sweep.py adagrow_modes --status           # one table of every job's state; launches nothing

Every job runs in outputs/sweeps/NAME/<job name>/ (a stable name made of the keys that vary), so a
requeued or resumed job finds its own checkpoint. When the jobs end, results.csv and results.md are
written at the sweep root, and failed jobs are listed. A sweep run here prints one progress line as
each job starts and ends.

--status reads the run records and, on SLURM, squeue/sacct: every job's state (done, running, pending,
failed, interrupted; growth/sweep_status.py says how each is told), epoch reached, last val acc and its
SLURM job id and state. It exits 0 whatever the jobs' states (it reports; the table says what failed).
"""
import argparse
import subprocess
import sys
from pathlib import Path

import yaml
from tabulate import tabulate

from analysis.sweeps import summarize_sweep
from growth.sweep_status import count_states, sweep_status
from growth.sweeps import adopt_legacy_dirs, expand_jobs, job_status, load_experiment
from run import preflight

ROOT = Path(__file__).resolve().parent
LAUNCHERS = {"local": "local", "submitit_local": "submitit_local", "slurm": "slurm"}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("name", help="experiments/NAME.yaml")
    p.add_argument("overrides", nargs="*", help="Hydra overrides for every job")
    p.add_argument("--launcher", default="local", choices=sorted(LAUNCHERS))
    p.add_argument("--dry-run", action="store_true", help="print the jobs and their count, launch nothing")
    p.add_argument("--resume", action="store_true", help="launch only jobs without a completed run record")
    p.add_argument("--status", action="store_true", help="print every job's state, launch nothing")
    p.add_argument("--scale", default=None, help="a named override set of the experiment (e.g. cifar)")
    p.add_argument("--out", default=None, help="sweep directory (default outputs/sweeps/NAME)")
    p.add_argument("--experiments", default=str(ROOT / "experiments"), help="where NAME.yaml lives")
    return p.parse_intermixed_args(argv)  # overrides may come before or after the flags


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        exp = load_experiment(args.experiments, args.name)
        jobs = expand_jobs(exp, scale=args.scale)
    except ValueError as e:
        fail(str(e))
    sweep_dir = Path(args.out or ROOT / "outputs" / "sweeps" / args.name)
    if args.status:  # no preflight: the status of a sweep is read, its configs are not built
        return print_status(args.name, jobs, sweep_dir)
    for job in jobs:
        problem = preflight(job["overrides"] + args.overrides)
        if problem:
            fail(f"in job {job['name']}: {problem}")
    if not args.dry_run:
        for old, new in adopt_legacy_dirs(jobs, sweep_dir):
            print(f"renamed {old} -> {new} (today's job names leave out keys a job does not set)")
    status = {job["name"]: job_status(sweep_dir / job["name"]) for job in jobs}
    done = [j for j in jobs if status[j["name"]] == "completed"]
    started = [j for j in jobs if status[j["name"]] is not None]
    todo = [j for j in jobs if status[j["name"]] != "completed"] if args.resume else jobs

    print(f"sweep {args.name}: {len(jobs)} jobs in {sweep_dir} ({len(done)} completed)")
    for job in jobs:
        mark = "done" if job in done else ("todo" if job in todo else "")
        print(f"  [{mark:>4}] {job['name']}: {' '.join(job['overrides'])}")
    if args.dry_run:
        print(f"{len(todo)} job(s) would be launched with --launcher {args.launcher}")
        return 0
    if started and not args.resume:
        fail(f"{sweep_dir} already holds {len(started)} of these jobs; pass --resume to launch the "
             f"{len(jobs) - len(done)} unfinished one(s), or --out DIR for a new sweep")
    if todo:
        code = launch(todo, sweep_dir, args)
        print(f"launcher exited with code {code}")
    else:
        print("nothing to launch: every job has a completed run record")
    return report(jobs, sweep_dir, exp)


def print_status(name: str, jobs, sweep_dir: Path) -> int:
    rows = sweep_status(sweep_dir, jobs)
    slurm = any(r["slurm_id"] for r in rows)
    table = []
    for r in rows:
        epoch = "" if r["epoch"] is None else f"{r['epoch']}/{r['epochs']}" if r["epochs"] else str(r["epoch"])
        acc = "" if r["val_acc"] is None else f"{r['val_acc']:.4f}"
        table.append([r["name"], r["state"], epoch, acc] + ([r["slurm_id"] or "", r["slurm_state"] or ""]
                                                            if slurm else []))
    headers = ["job", "state", "epoch", "val_acc"] + (["slurm_job", "slurm_state"] if slurm else [])
    print(f"sweep {name}: {len(jobs)} jobs in {sweep_dir}")
    print(tabulate(table, headers=headers, tablefmt="simple", disable_numparse=True))
    counts = count_states(rows)
    print(", ".join(f"{n} {state}" for state, n in counts.items()))
    return 0


def launch(jobs, sweep_dir: Path, args) -> int:
    sweep_dir.mkdir(parents=True, exist_ok=True)
    jobs_file = sweep_dir / "jobs.yaml"
    launched = [{k: v for k, v in job.items() if k != "legacy_name"} for job in jobs]
    jobs_file.write_text(yaml.safe_dump(launched, sort_keys=False))
    cmd = [sys.executable, str(ROOT / "run.py"), "-m", "hydra/sweeper=joblist",
           f"hydra.sweeper.jobs_file={jobs_file}", f"hydra/launcher={LAUNCHERS[args.launcher]}",
           f"hydra.sweep.dir={sweep_dir}", *args.overrides]
    print("launching:", " ".join(cmd[1:]), flush=True)
    return subprocess.run(cmd, cwd=ROOT).returncode


def report(jobs, sweep_dir: Path, exp: dict) -> int:
    failed = summarize_sweep(jobs, sweep_dir, exp)
    for name, why in failed:
        print(f"FAILED {name}: {why}")
    print(f"results: {sweep_dir / 'results.csv'}, {sweep_dir / 'results.md'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
