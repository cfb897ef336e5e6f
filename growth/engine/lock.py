"""One process per run directory: an exclusive lock on `<run dir>/run.lock`, which names its holder.

Two processes training in one directory (a sweep re-launched with --resume while the old array still
runs) would interleave metrics rows and both claim the summary. `fcntl.flock` is released by the kernel
when its holder dies, so on one host a dead holder never blocks anyone. Across hosts (NFS, where flock may
not reach the other node) the file's content decides: a holder on another host whose SLURM job is still
running keeps the directory; one whose job has ended, or a requeued incarnation of our own job, is taken
over.
"""
import fcntl
import json
import os
import socket
import subprocess
import time
from pathlib import Path

from growth.engine.io import atomic_write_json
from growth.errors import RunDirBusy

LOCK_FILE = "run.lock"
# The SLURM job that last held the directory. run.lock is emptied on release, so without this a finished
# run would no longer say which job ran it (sweep.py --status shows it).
SLURM_RECORD = "slurm.json"
LIVE_SLURM_STATES = {"RUNNING", "PENDING", "COMPLETING", "CONFIGURING", "SUSPENDED", "REQUEUED", "RESIZING",
                     "SIGNALING", "STAGE_OUT"}


def _me() -> dict:
    return {"host": socket.gethostname(), "pid": os.getpid(), "slurm_job_id": _slurm_job(),
            "since": time.strftime("%Y-%m-%d %H:%M:%S")}


def _slurm_job() -> str | None:
    """The SLURM job id, array tasks as ARRAY_TASK (what squeue and a requeued task both report)."""
    array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    return f"{array}_{task}" if array and task else os.environ.get("SLURM_JOB_ID")


def _describe(holder: dict) -> str:
    job = f", SLURM job {holder['slurm_job_id']}" if holder.get("slurm_job_id") else ""
    return f"pid {holder.get('pid')} on {holder.get('host')}{job}, since {holder.get('since')}"


def _slurm_job_alive(job_id: str) -> bool | None:
    """True/False from squeue; None when squeue cannot tell (not installed, no controller)."""
    try:
        out = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%T"], capture_output=True, text=True,
                             timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return False if "Invalid job id" in out.stderr else None
    return any(state.strip() in LIVE_SLURM_STATES for state in out.stdout.splitlines())


def _holder_alive_elsewhere(holder: dict) -> bool:
    """Whether a holder that flock did not stop (another host) still runs. Our own job id is a requeued
    incarnation of us; without a job id we cannot tell and trust flock."""
    if not holder or holder.get("host") == socket.gethostname():
        return False  # same host: flock is exact, the holder is gone
    job = holder.get("slurm_job_id")
    if not job or job == _slurm_job():
        return False
    return bool(_slurm_job_alive(job))


def read_record(path: Path) -> dict:
    """A small JSON record (run.lock, slurm.json); {} when absent, empty or cut by a kill."""
    try:
        return json.loads(path.read_text() or "{}")
    except (OSError, json.JSONDecodeError):
        return {}


class RunDirLock:
    """`with RunDirLock(run_dir):` holds the directory for this process; a second one gets RunDirBusy (a ConfigError)."""

    def __init__(self, run_dir):
        self.path = Path(run_dir) / LOCK_FILE
        self.fd = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            self._refuse(read_record(self.path))
        holder = read_record(self.path)
        if _holder_alive_elsewhere(holder):
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
            self._refuse(holder)
        me = _me()
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(me) + "\n").encode(), 0)
        os.fsync(fd)
        self.fd = fd
        if me["slurm_job_id"]:
            atomic_write_json(self.path.parent / SLURM_RECORD,
                              {**me, "slurm_job_id_raw": os.environ.get("SLURM_JOB_ID")})

    def _refuse(self, holder: dict) -> None:
        raise RunDirBusy("hydra.run.dir", str(self.path.parent),
                          f"the run directory is in use by {_describe(holder)}; allowed: wait for it to end, "
                          f"or a run directory no other process holds (a stale lock is taken over by itself)")

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            os.ftruncate(self.fd, 0)  # nobody holds it now; the file stays (unlinking races a new holder)
            fcntl.flock(self.fd, fcntl.LOCK_UN)
        finally:
            os.close(self.fd)
            self.fd = None

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc):
        self.release()
