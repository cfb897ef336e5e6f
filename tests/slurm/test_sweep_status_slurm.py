"""`sweep.py NAME --status` on the real test cluster: a job cancelled mid-run (killed: no summary) shows
as interrupted and its running sibling as running, each with its array task id and SLURM's state."""
import os
import signal
import subprocess
import sys

from tests.conftest import ROOT
from tests.slurm.test_sweep_slurm import SLURM, THREADS, _wait_for

# Long enough to be caught running (each epoch well under a second; cancelled long before the end).
TWO_LONG_JOBS = """
description: two long jobs, one of them cancelled
common: {method: fixed, model.arch: 1-1-1, model.widths: "[8,12,16]", trainer.epochs: 500,
         trainer.progress: false}
seeds: [0, 1]
"""


def test_status_shows_a_cancelled_job_interrupted_and_a_running_one_running(slurm_cluster, tmp_path):
    (tmp_path / "two.yaml").write_text(TWO_LONG_JOBS)
    out = tmp_path / "sweep"
    base = [sys.executable, str(ROOT / "sweep.py"), "two", "--experiments", str(tmp_path), "--out", str(out)]
    env = {**slurm_cluster.env, **THREADS}
    proc = subprocess.Popen([*base, *SLURM], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        def both_running():
            tasks = {j["id"]: j["state"] for j in slurm_cluster.squeue()}
            epochs = [(out / n / "metrics.jsonl").exists() and (out / n / "metrics.jsonl").read_text()
                      for n in ("seed=0", "seed=1")]
            return (len(tasks) == 2 and set(tasks.values()) == {"RUNNING"} and all(epochs)) and sorted(tasks)
        killed, running = _wait_for(both_running, 300, "the two jobs did not both start an epoch")
        assert killed.endswith("_0") and running.endswith("_1")  # task i runs job i of jobs.yaml: seed=0
        # submitit ignores the SIGTERM, so the job dies by SIGKILL KillWait=10 s later: no summary
        slurm_cluster.run("scancel", killed)
        slurm_cluster.wait_state(killed, "CANCELLED", timeout=60)
        status = subprocess.run([*base, "--status"], cwd=ROOT, env=env, capture_output=True, text=True,
                                timeout=120)
        print(status.stdout)
        assert status.returncode == 0, status.stdout + status.stderr
        rows = {line.split()[0]: line.split() for line in status.stdout.splitlines() if line.startswith("seed=")}
        assert not (out / "seed=0" / "summary.json").exists()
        assert rows["seed=0"][1] == "interrupted" and rows["seed=0"][-2:] == [killed, "CANCELLED"]
        assert rows["seed=1"][1] == "running" and rows["seed=1"][-2:] == [running, "RUNNING"]
        epoch, total = rows["seed=1"][2].split("/")
        assert int(epoch) >= 1 and total == "500"
        assert "0 done, 1 running, 0 pending, 0 failed, 1 interrupted" in status.stdout
    finally:
        for job in slurm_cluster.squeue():
            slurm_cluster.run("scancel", job["id"], check=False)
        os.killpg(proc.pid, signal.SIGKILL)  # sweep.py and its run.py -m, which waits on the array
        proc.communicate(timeout=60)
    slurm_cluster.wait_idle(timeout=60)
