"""A real single-node SLURM cluster for the tests under tests/slurm.

The `slurm_cluster` fixture installs Debian's SLURM and munge if they are missing (root only), starts
a private cluster with `cluster.sh` in a temporary directory (own ports, own munge socket, own
state), points `SLURM_CONF` at it, puts the `sacct` shim (tests/slurm/bin) first on PATH, and stops
everything afterwards. These tests never skip: a machine that cannot run them fails them.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
BIN = HERE / "bin"
CLUSTER_SH = HERE / "cluster.sh"
NEEDED = ("slurmctld", "slurmd", "sbatch", "munged")
PACKAGES = ("slurmctld", "slurmd", "slurm-client", "munge")
SBIN = ("/usr/local/sbin", "/usr/sbin", "/sbin")


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which reads the xdist_group marks
def pytest_collection_modifyitems(config, items):
    """Every test under tests/slurm gets the `slurm` marker (`-m "not slurm"` deselects them), and all of
    them one xdist group: under `pytest -n N --dist loadgroup` they run in one worker, which starts the
    one test cluster they share. (pytest 9.2 breaks loadgroup, pytest-xdist issue #1386: the tests are
    then spread over the workers, and each worker starts its own cluster; see slurm_cluster.)"""
    for item in items:
        if HERE == Path(item.path).resolve().parent or HERE in Path(item.path).resolve().parents:
            item.add_marker(pytest.mark.slurm)
            item.add_marker(pytest.mark.xdist_group("slurm"))


def _path_with_sbin(path: str) -> str:
    parts = path.split(os.pathsep) if path else []
    return os.pathsep.join(parts + [d for d in SBIN if d not in parts])


def _missing(path: str) -> list[str]:
    return [exe for exe in NEEDED if shutil.which(exe, path=path) is None]


def _ensure_installed(path: str) -> None:
    missing = _missing(path)
    if not missing:
        return
    if os.geteuid() != 0:
        pytest.fail(f"SLURM test cluster: {', '.join(missing)} not on PATH, and installing "
                    f"{' '.join(PACKAGES)} with apt-get needs root", pytrace=False)
    if shutil.which("apt-get") is None:
        pytest.fail(f"SLURM test cluster: {', '.join(missing)} not on PATH and no apt-get to "
                    "install them", pytrace=False)
    cmd = ("apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y "
           f"--no-install-recommends {' '.join(PACKAGES)}")
    try:
        proc = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, timeout=900)
    except subprocess.TimeoutExpired:
        pytest.fail(f"SLURM test cluster: `{cmd}` timed out", pytrace=False)
    if proc.returncode != 0:
        pytest.fail(f"SLURM test cluster: `{cmd}` failed (rc={proc.returncode}):\n"
                    f"{(proc.stdout + proc.stderr)[-4000:]}", pytrace=False)
    missing = _missing(path)
    if missing:
        pytest.fail(f"SLURM test cluster: still missing after apt-get install: {missing}",
                    pytrace=False)


def _port(preferred: int, avoid: set[int] = frozenset()) -> int:
    """`preferred` if nothing listens there, else a free ephemeral port (e.g. a leftover cluster)."""
    for port in (preferred, 0):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("", port))
            except OSError:
                continue
            got = s.getsockname()[1]
            if got not in avoid:
                return got
    raise RuntimeError("no free TCP port for the SLURM test cluster")


def _parse_scontrol_line(line: str) -> dict[str, str]:
    """One `scontrol show job -o` line to a dict; words without '=' belong to the previous value."""
    out: dict[str, str] = {}
    key = None
    for tok in line.split():
        if "=" in tok:
            key, val = tok.split("=", 1)
            out[key] = val
        elif key is not None:
            out[key] += " " + tok
    return out


class SlurmCluster:
    """Handle on the running test cluster (what the `slurm_cluster` fixture yields)."""

    def __init__(self, root: Path, env: dict[str, str]):
        self.root = root
        self.env = env  # a full environment for subprocesses: SLURM_CONF and PATH set

    @property
    def conf(self) -> Path:
        return self.root / "etc" / "slurm.conf"

    def run(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        """Run a command (e.g. "sbatch", "--wrap", ...) against this cluster; text output."""
        proc = subprocess.run(list(args), env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed (rc={proc.returncode}):\n"
                               f"{proc.stdout}{proc.stderr}")
        return proc

    def squeue(self) -> list[dict[str, str]]:
        """Jobs in the queue (pending or running; array tasks one per row):
        [{"id": "12_0", "state": "RUNNING", "reason": "None", "name": "..."}, ...]."""
        out = self.run("squeue", "-h", "-r", "-o", "%i|%T|%r|%j").stdout
        rows = []
        for line in out.splitlines():
            if line.strip():
                jid, state, reason, name = line.split("|", 3)
                rows.append({"id": jid, "state": state, "reason": reason, "name": name})
        return rows

    def scontrol_jobs(self, job_id: str | int) -> list[dict[str, str]]:
        """`scontrol show job -o <id>` parsed: one dict per line (an array job gives one per task)."""
        proc = self.run("scontrol", "show", "job", "-o", str(job_id), check=False)
        if proc.returncode != 0:
            return []
        return [_parse_scontrol_line(line) for line in proc.stdout.splitlines() if line.strip()]

    def scontrol_job(self, job_id: str | int) -> dict[str, str]:
        """`scontrol show job -o <id>` parsed to {"JobId": ..., "JobState": ..., "Restarts": ...};
        for an array id the line of that task (or the first task); {} if unknown."""
        jobs = self.scontrol_jobs(job_id)
        jid = str(job_id)
        for job in jobs:
            if jid in (job.get("JobId"), f'{job.get("ArrayJobId")}_{job.get("ArrayTaskId")}'):
                return job
        return jobs[0] if jobs else {}

    def jobs_log(self) -> str:
        """The jobcomp file (one line per finished job: JobId=, JobState=, ExitCode=, ...)."""
        path = self.root / "log" / "jobcomp.txt"
        return path.read_text() if path.exists() else ""

    def start_now(self, job_id: str | int) -> None:
        """Let a requeued job (PENDING, reason BeginTime, ~2 min hold) start at once.

        slurmd keeps the old run's credential revoked with a time stamp in whole seconds, and refuses
        a launch whose credential is not newer ("Job credential revoked", the job FAILS): a restart in
        the same second as the requeue hits that, one under a loaded CI machine misses it. So the
        restart waits until two whole seconds have passed since the requeue."""
        time.sleep(2.0)
        self.run("scontrol", "update", f"JobId={job_id}", "StartTime=now")

    def wait_state(self, job_id: str | int, states=("COMPLETED",), timeout: float = 60) -> dict:
        """Poll `scontrol` until the job is in one of `states`; returns its parsed record."""
        states = (states,) if isinstance(states, str) else tuple(states)
        deadline = time.monotonic() + timeout
        job: dict = {}
        while time.monotonic() < deadline:
            job = self.scontrol_job(job_id)
            if job.get("JobState") in states:
                return job
            time.sleep(0.5)
        raise TimeoutError(f"job {job_id} not in {states} after {timeout}s: {job}")

    def wait_idle(self, timeout: float = 60) -> None:
        """Wait until no job is pending or running."""
        deadline = time.monotonic() + timeout
        while True:
            jobs = self.squeue()
            if not jobs:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"SLURM queue not empty after {timeout}s: {jobs}")
            time.sleep(0.5)

    def logs(self) -> str:
        """Daemon logs, for failure messages."""
        parts = []
        for name in ("slurmctld.log", "slurmd.log", "munged.log"):
            path = self.root / "log" / name
            if path.exists():
                parts.append(f"===== {name} =====\n" + "\n".join(path.read_text().splitlines()[-40:]))
        return "\n".join(parts)


@pytest.fixture(scope="package")
def slurm_cluster(tmp_path_factory):
    base_path = _path_with_sbin(os.environ.get("PATH", ""))
    _ensure_installed(base_path)

    root = tmp_path_factory.mktemp("slurm")
    # Each xdist worker (gw0, gw1, ...) that runs SLURM tests starts its own cluster, on its own ports:
    # two checking the same free port at once would both take it.
    offset = 10 * int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
    ctld_port = _port(16817 + offset)
    slurmd_port = _port(16818 + offset, avoid={ctld_port})
    saved = {k: os.environ.get(k) for k in ("SLURM_CONF", "PATH")}
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{base_path}",
           "SLURM_CONF": str(root / "etc" / "slurm.conf")}
    for var in [k for k in env if k.startswith(("SLURM_", "SBATCH_", "SALLOC_", "SRUN_"))]:
        if var != "SLURM_CONF":  # e.g. pytest itself running inside a SLURM job
            env.pop(var)
    start_env = {**env, "ROOT": str(root), "SLURM_TEST_CTLD_PORT": str(ctld_port),
                 "SLURM_TEST_SLURMD_PORT": str(slurmd_port)}

    def stop() -> subprocess.CompletedProcess:
        return subprocess.run(["bash", str(CLUSTER_SH), "stop"], env=start_env, capture_output=True,
                              text=True, timeout=120)

    try:
        proc = subprocess.run(["bash", str(CLUSTER_SH)], env=start_env, capture_output=True,
                              text=True, timeout=150)
    except subprocess.TimeoutExpired as exc:
        stop()
        pytest.fail(f"SLURM test cluster did not start: {exc}", pytrace=False)
    if proc.returncode != 0:
        stop()
        pytest.fail(f"SLURM test cluster did not start (rc={proc.returncode}):\n"
                    f"{proc.stdout}{proc.stderr}", pytrace=False)

    os.environ.update(SLURM_CONF=env["SLURM_CONF"], PATH=env["PATH"])
    removed = {k: os.environ.pop(k) for k in list(os.environ)
               if k not in env and k.startswith(("SLURM_", "SBATCH_", "SALLOC_", "SRUN_"))}
    try:
        yield SlurmCluster(root, env)
    finally:
        result = stop()
        for key, val in saved.items():
            if val is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = val
        os.environ.update(removed)
    if result.returncode != 0:
        pytest.fail(f"SLURM test cluster did not stop cleanly:\n{result.stdout}{result.stderr}",
                    pytrace=False)
