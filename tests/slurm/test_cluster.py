"""Smoke tests of the SLURM test harness: plain sbatch, submitit jobs and arrays, preemption/requeue."""
import json
import os
import time
from pathlib import Path

import pytest
import submitit

REPO = Path(__file__).resolve().parents[2]


def add(a, b):
    return a + b


def square(x):
    return x * x


class StepCounter(submitit.helpers.Checkpointable):
    """Counts `steps` steps of `pause` s, saving progress to a JSON state file after each step.

    The state file records every start and the step it resumed from, so a test can tell a resume
    from a restart at 0. The default `checkpoint` resubmits this same object; the progress itself
    lives in the file, as a training loop's would in its checkpoint."""

    def __init__(self, state_file, steps=12, pause=0.5):
        self.state_file = str(state_file)
        self.steps = steps
        self.pause = pause

    def _load(self):
        path = Path(self.state_file)
        return json.loads(path.read_text()) if path.exists() else {"step": 0, "starts": []}

    def _save(self, state):
        tmp = Path(self.state_file + ".tmp")
        tmp.write_text(json.dumps(state))
        os.replace(tmp, self.state_file)

    def __call__(self):
        state = self._load()
        state["starts"].append({"from_step": state["step"],
                                "restart_count": os.environ.get("SLURM_RESTART_COUNT", "0")})
        self._save(state)
        while state["step"] < self.steps:
            time.sleep(self.pause)
            state["step"] += 1
            self._save(state)
        return state


def _why(info, job, state_file, cluster):
    """The job's record, its own output and the daemons' logs, for a failure message."""
    parts = [f"{k}={info.get(k)}" for k in ("JobState", "ExitCode", "Restarts", "Reason")]
    for path in (job.paths.stdout, job.paths.stderr, state_file):
        text = Path(path).read_text() if Path(path).exists() else "(missing)"
        parts.append(f"===== {path} =====\n{text[-3000:]}")
    return "\n".join(parts + [cluster.logs()])


@pytest.fixture
def executor(slurm_cluster, tmp_path, monkeypatch):
    # Jobs unpickle the functions above by reference: make this repo importable whatever the cwd.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO),
                                                                   os.environ.get("PYTHONPATH")])))
    ex = submitit.AutoExecutor(folder=tmp_path / "submitit")
    ex.update_parameters(slurm_partition="debug", timeout_min=60, slurm_mem_gb=1, cpus_per_task=1)
    return ex


def test_sbatch_wrap_completes(slurm_cluster, tmp_path):
    out = tmp_path / "wrap.out"
    proc = slurm_cluster.run("sbatch", "--parsable", "-o", str(out), "--wrap",
                             'echo "hello job=$SLURM_JOB_ID nodes=$SLURM_JOB_NODELIST"')
    job_id = proc.stdout.strip().split(";")[0]
    job = slurm_cluster.wait_state(job_id, ("COMPLETED", "FAILED", "CANCELLED"), timeout=60)
    assert job["JobState"] == "COMPLETED", job
    assert job["ExitCode"] == "0:0"
    assert out.read_text().strip() == f"hello job={job_id} nodes=localhost"
    assert f"JobId={job_id} " in slurm_cluster.jobs_log()
    # The sacct shim answers from scontrol, as submitit will ask it.
    sacct = slurm_cluster.run("sacct", "-o", "JobID,State,NodeList", "--parsable2", "-j", job_id)
    assert sacct.stdout.splitlines() == ["JobID|State|NodeList", f"{job_id}|COMPLETED|localhost"]


def test_submitit_submit_and_array(slurm_cluster, executor):
    assert executor.cluster == "slurm"
    job = executor.submit(add, 2, 3)
    assert job.result() == 5
    assert slurm_cluster.wait_state(job.job_id, ("COMPLETED", "FAILED", "CANCELLED"), timeout=60)["JobState"] == "COMPLETED"
    assert job.get_info(mode="force")["State"] == "COMPLETED"

    executor.update_parameters(slurm_array_parallelism=2)
    jobs = executor.map_array(square, [1, 2, 3])
    base = jobs[0].job_id.split("_")[0]
    assert [j.job_id for j in jobs] == [f"{base}_{i}" for i in range(3)]
    assert [j.result() for j in jobs] == [1, 4, 9]
    # A result is on disk before its task's processes are gone: under load scontrol still says RUNNING
    # for a moment, so each task's end state is waited for, not read at once.
    for j in jobs:
        slurm_cluster.wait_state(j.job_id, ("COMPLETED", "FAILED", "CANCELLED"), timeout=60)
    tasks = slurm_cluster.scontrol_jobs(base)
    assert sorted(t["ArrayTaskId"] for t in tasks) == ["0", "1", "2"]
    assert {t["ArrayJobId"] for t in tasks} == {base}
    assert {t["JobState"] for t in tasks} == {"COMPLETED"}
    slurm_cluster.wait_idle(30)


def test_checkpointable_preempted_and_resumed(slurm_cluster, executor, tmp_path):
    state_file = tmp_path / "counter.json"
    counter = StepCounter(state_file, steps=12, pause=0.5)
    job = executor.submit(counter)

    deadline = time.monotonic() + 60
    while not (state_file.exists() and json.loads(state_file.read_text())["step"] >= 3):
        assert time.monotonic() < deadline, f"no progress: {slurm_cluster.scontrol_job(job.job_id)}"
        time.sleep(0.2)
    slurm_cluster.run("scancel", "--signal=USR2", job.job_id)

    # submitit checkpoints and runs `scontrol requeue`: back to PENDING (BeginTime) for ~2 min.
    deadline = time.monotonic() + 60
    while True:
        info = slurm_cluster.scontrol_job(job.job_id)
        if info.get("Restarts") == "1" and info.get("JobState") == "PENDING":
            break
        assert info.get("JobState") not in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"), info
        assert time.monotonic() < deadline, f"not requeued: {info}"
        time.sleep(0.3)
    slurm_cluster.start_now(job.job_id)

    info = slurm_cluster.wait_state(job.job_id, ("COMPLETED", "FAILED", "CANCELLED"), timeout=90)
    assert info["JobState"] == "COMPLETED", _why(info, job, state_file, slurm_cluster)
    assert info["Restarts"] == "1"
    result = job.result()
    assert result["step"] == 12
    starts = json.loads(state_file.read_text())["starts"]
    assert len(starts) == 2, starts
    assert starts[0] == {"from_step": 0, "restart_count": "0"}
    assert starts[1]["restart_count"] == "1"
    assert 3 <= starts[1]["from_step"] < 12, starts  # resumed, did not start again from 0
    log = Path(job.paths.stdout).read_text() + Path(job.paths.stderr).read_text()
    assert "SIGUSR2" in log
