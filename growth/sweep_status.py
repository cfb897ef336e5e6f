"""The state of every job of a sweep, from its run records and, on SLURM, the scheduler (`sweep.py NAME
--status`).

    done         summary.json says completed
    running      a live process holds the run directory (run.lock), or SLURM says the job runs
    pending      no run started yet (no run directory), or SLURM says the job waits (also a requeued one)
    failed       summary.json says failed (e.g. the loss became NaN)
    interrupted  summary.json says interrupted, or the run started and no live process holds it: its
                 holder died without a summary (killed), or SLURM says it ended (CANCELLED, TIMEOUT, ...)

A job's SLURM id (`ARRAY_TASK`) comes from the run's own record (slurm.json, written by RunDirLock when a
SLURM job takes the directory; run.lock while it is held) or, before the job started, from submitit's
task folders (.submitit/ARRAY_TASK) of the array launched with the current jobs.yaml: task i is job i.
The scheduler is asked through `query(ids) -> {id: state}`, None when there is none (no squeue here).
"""
import os
import re
import socket
import subprocess
from pathlib import Path

import yaml

from growth.engine.io import read_jsonl
from growth.engine.lock import LOCK_FILE, SLURM_RECORD, read_record
from growth.errors import ConfigError
from growth.sweeps import job_status

STATES = ("done", "running", "pending", "failed", "interrupted")
# Not COMPLETING or STAGE_OUT: the job's processes have ended then (a cancelled job passes through them)
SLURM_RUNNING = {"RUNNING", "CONFIGURING", "SIGNALING", "SUSPENDED", "RESIZING"}
SLURM_PENDING = {"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD"}


def holder_alive(holder: dict) -> bool | None:
    """Whether the process named in run.lock still runs: True/False on this host, None on another host
    (only its SLURM job can tell). An empty lock (released at the end of a run) has no holder: False.
    Checked by pid, not by taking the lock: a status query must never make a starting run find it busy."""
    if not holder.get("pid"):
        return False
    if holder.get("host") != socket.gethostname():
        return None
    try:
        os.kill(int(holder["pid"]), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def submitit_tasks(sweep_dir: Path, jobs_file: Path) -> list[str]:
    """['12_0', '12_1', ...]: the tasks of the newest job array under sweep_dir/.submitit, if it was
    submitted after jobs_file was written (an older array ran an older job list); [] otherwise."""
    folder = sweep_dir / ".submitit"
    if not folder.is_dir() or not jobs_file.is_file():
        return []
    arrays: dict[int, dict[int, Path]] = {}
    for path in folder.iterdir():
        m = re.fullmatch(r"(\d+)_(\d+)", path.name)
        if m and path.is_dir():
            arrays.setdefault(int(m[1]), {})[int(m[2])] = path
    if not arrays:
        return []
    tasks = arrays[max(arrays)]
    if min(p.stat().st_mtime for p in tasks.values()) < jobs_file.stat().st_mtime:
        return []
    return [tasks[i].name if i in tasks else "" for i in range(max(tasks) + 1)]


def slurm_ids(sweep_dir, jobs) -> dict[str, str]:
    """{job name: SLURM job id} for the jobs that have one; the run's own record wins over submitit's."""
    sweep_dir = Path(sweep_dir)
    jobs_file = sweep_dir / "jobs.yaml"
    ids = {}
    try:
        launched = [j["name"] for j in yaml.safe_load(jobs_file.read_text()) or []] if jobs_file.is_file() else []
    except (yaml.YAMLError, TypeError, KeyError):
        launched = []
    for name, task in zip(launched, submitit_tasks(sweep_dir, jobs_file)):
        if task:
            ids[name] = task
    for job in jobs:
        run_dir = sweep_dir / job["name"]
        own = (read_record(run_dir / LOCK_FILE).get("slurm_job_id")
               or read_record(run_dir / SLURM_RECORD).get("slurm_job_id"))
        if own:
            ids[job["name"]] = own
    return ids


def _run(cmd: list[str]) -> str | None:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout if out.returncode == 0 else None


def query_slurm(ids) -> dict[str, str] | None:
    """{id: state} from squeue (queued and running jobs, array tasks one per row), then sacct for the
    others (ended jobs; absent without accounting). None when squeue cannot be run (no SLURM here)."""
    ids = set(ids)
    queue = _run(["squeue", "-h", "-r", "-o", "%i|%T"])
    if queue is None:
        return None
    states = {}
    for line in queue.splitlines():
        jid, _, state = line.strip().partition("|")
        if jid in ids:
            states[jid] = state
    rest = sorted(ids - set(states))  # squeue's answer wins: sacct may lag behind a requeue
    ended = _run(["sacct", "-n", "-P", "-X", "-o", "JobID,State", "-j", ",".join(rest)]) if rest else None
    for line in (ended or "").splitlines():
        fields = line.strip().split("|")
        if len(fields) >= 2 and fields[0] in rest and fields[1]:
            states[fields[0]] = fields[1].split()[0]  # "CANCELLED by 1000" -> CANCELLED
    return states


def progress(run_dir: Path) -> dict:
    """epoch reached, total epochs and last val acc, from metrics.jsonl and config_resolved.yaml."""
    try:
        rows = read_jsonl(run_dir / "metrics.jsonl")
    except ConfigError:  # a broken line in the middle: show nothing rather than stop the table
        rows = []
    total = None
    config = run_dir / "config_resolved.yaml"
    if config.is_file():
        try:
            total = ((yaml.safe_load(config.read_text()) or {}).get("trainer") or {}).get("epochs")
        except yaml.YAMLError:
            pass
    last = rows[-1] if rows else {}
    return {"epoch": last.get("epoch"), "epochs": total, "val_acc": last.get("val_acc")}


def job_state(run_dir, slurm_state: str | None, scheduler: bool) -> str:
    """One of STATES. `slurm_state`: what the scheduler says of this job (None: nothing); `scheduler`:
    whether a scheduler was asked at all (without one, a holder on another host is taken as live)."""
    run_dir = Path(run_dir)
    status = job_status(run_dir)
    if status == "completed":
        return "done"
    alive = holder_alive(read_record(run_dir / LOCK_FILE))
    if alive or slurm_state in SLURM_RUNNING or (alive is None and not scheduler):
        return "running"
    if slurm_state in SLURM_PENDING:
        return "pending"
    if status == "failed":
        return "failed"
    started = status is not None or (run_dir / LOCK_FILE).exists()
    if status == "interrupted" or started or slurm_state:  # slurm_state here: it ended without finishing
        return "interrupted"
    return "pending"


def sweep_status(sweep_dir, jobs, query=query_slurm) -> list[dict]:
    """One row per job: name, state, epoch, epochs, val_acc, slurm_id, slurm_state."""
    sweep_dir = Path(sweep_dir)
    ids = slurm_ids(sweep_dir, jobs)
    states = query(sorted(set(ids.values()))) if ids else None
    rows = []
    for job in jobs:
        run_dir = sweep_dir / job["name"]
        sid = ids.get(job["name"])
        sstate = (states or {}).get(sid) if sid else None
        summary = read_record(run_dir / "summary.json")
        row = {"name": job["name"], "state": job_state(run_dir, sstate, states is not None),
               **progress(run_dir), "slurm_id": sid, "slurm_state": sstate}
        if summary.get("final_val_acc") is not None:
            row["val_acc"] = summary["final_val_acc"]
        rows.append(row)
    return rows


def count_states(rows) -> dict[str, int]:
    return {state: sum(r["state"] == state for r in rows) for state in STATES}
