"""sweep.py on a real single-node SLURM cluster: a job array, preemption with requeue and resume,
and a sweep in which one job fails."""
import json
import re
import os
import subprocess
import sys
import time

import pandas as pd
import pytest

from tests.conftest import ROOT

# One thread everywhere, so the SLURM job and the local reference run compute bit-identical numbers.
THREADS = {"OMP_NUM_THREADS": "1"}
SLURM = ["--launcher", "slurm", "hydra.launcher.partition=debug", "hydra.launcher.cpus_per_task=1",
         "hydra.launcher.mem_gb=1", "hydra.launcher.timeout_min=60", "hydra.launcher.array_parallelism=4",
         'hydra.launcher.setup=["export PYTHONUNBUFFERED=1","export OMP_NUM_THREADS=1"]']


def sweep(cluster, args, timeout=600):
    return subprocess.run([sys.executable, str(ROOT / "sweep.py"), *args], cwd=ROOT, env={**cluster.env, **THREADS},
                          capture_output=True, text=True, timeout=timeout)


def test_sweep_runs_as_one_job_array(slurm_cluster, tmp_path):
    out = tmp_path / "smoke"
    proc = sweep(slurm_cluster, ["smoke", "--out", str(out), *SLURM])
    assert proc.returncode == 0, proc.stdout + proc.stderr + slurm_cluster.logs()
    df = pd.read_csv(out / "results.csv")
    assert len(df) == 4 and (df["status"] == "completed").all()
    tasks = sorted(p.name for p in (out / ".submitit").iterdir() if re.fullmatch(r"\d+_\d+", p.name))
    array_ids = {t.split("_")[0] for t in tasks}
    assert len(array_ids) == 1 and len(tasks) == 4, tasks  # one array, four tasks
    array_id = array_ids.pop()
    # submitit returns once results are written; SLURM may still be COMPLETING the tasks
    records = [slurm_cluster.wait_state(f"{array_id}_{i}", "COMPLETED", timeout=60) for i in range(4)]
    assert sorted(r["ArrayTaskId"] for r in records) == ["0", "1", "2", "3"]
    assert all(r["ArrayJobId"] == array_id for r in records)
    print("scontrol:", *(f"JobId={r['JobId']} ArrayJobId={r['ArrayJobId']} ArrayTaskId={r['ArrayTaskId']} "
                         f"JobState={r['JobState']}" for r in records), sep="\n  ")
    for job in df["job"]:
        summary = json.loads((out / job / "summary.json").read_text())
        assert summary["status"] == "completed" and summary["versions"]["slurm_job_id"]
        # the job's own record of its array task, kept after the run released the directory
        task = json.loads((out / job / "slurm.json").read_text())["slurm_job_id"]
        assert task.split("_")[0] == array_id and task in tasks


SLOW_JOB = """
description: one AdaGrow job long enough to be preempted
common: {method: adagrow, model.arch: 0-0-0, model.max_arch: 2-2-2, grow.interval: 1, trainer.epochs: 8,
         trainer.progress: false}
seeds: [5]
"""


def _wait_for(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(0.2)
    raise TimeoutError(what)


def test_preempted_job_is_requeued_and_resumes_in_its_directory(slurm_cluster, tmp_path):
    (tmp_path / "slow.yaml").write_text(SLOW_JOB)
    out = tmp_path / "sweep"
    cmd = [sys.executable, str(ROOT / "sweep.py"), "slow", "--experiments", str(tmp_path), "--out", str(out), *SLURM]
    proc = subprocess.Popen(cmd, cwd=ROOT, env={**slurm_cluster.env, **THREADS}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    run_dir = out / "job"
    metrics = run_dir / "metrics.jsonl"
    _wait_for(lambda: metrics.exists() and metrics.read_text().count("\n") >= 2, 300, "no epoch finished")
    job_id = next(j["id"] for j in slurm_cluster.squeue() if j["state"] == "RUNNING")
    # Preempt in the middle of epoch 3's training: a third of an epoch after epoch 2's row appeared
    # (growth after epoch 2 is short; training is most of an epoch, validation the rest).
    epoch_s = json.loads(metrics.read_text().splitlines()[1])["epoch_time_s"]
    time.sleep(epoch_s / 3)
    slurm_cluster.run("scancel", "--signal=USR2", job_id)
    _wait_for(lambda: any(j["state"] == "PENDING" for j in slurm_cluster.squeue()), 120, "job was not requeued")
    interrupted = json.loads((run_dir / "summary.json").read_text())
    assert interrupted["status"] == "interrupted"
    slurm_cluster.start_now(job_id)
    stdout, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, stdout + slurm_cluster.logs()

    record = slurm_cluster.scontrol_job(job_id)
    print(f"scontrol: JobId={record['JobId']} JobState={record['JobState']} Restarts={record['Restarts']}")
    assert record["Restarts"] == "1" and record["JobState"] == "COMPLETED"
    log = "".join(p.read_text() for p in (out / ".submitit").rglob("*_log.*"))
    assert "Caught signal SIGUSR2" in log and "preempted" in log
    # the step checkpoint taken at the signal: resumed inside epoch 3, not from epoch 2's end
    resumed = re.search(rf"resumed from {re.escape(str(run_dir))}/checkpoints/last.pt at epoch (\d+) "
                        r"\(step (\d+), inside epoch (\d+) at batch (\d+)\)", log)
    assert resumed, log
    print("submitit log:", resumed.group(0))
    assert int(resumed.group(4)) > 0 and int(resumed.group(3)) == int(resumed.group(1)) + 1
    assert "checkpoint saved at this step" in interrupted["error"]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["epochs_done"] == 8

    # the same job uninterrupted, here, gives the same numbers
    ref = tmp_path / "ref"
    overrides = ["method=adagrow", "model.arch=0-0-0", "model.max_arch=2-2-2", "grow.interval=1",
                 "trainer.epochs=8", "trainer.progress=false", "seed=5", f"hydra.run.dir={ref}"]
    done = subprocess.run([sys.executable, str(ROOT / "run.py"), *overrides], cwd=ROOT,
                          env={**os.environ, **THREADS}, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    rows = lambda d: [{k: v for k, v in json.loads(r).items() if k != "epoch_time_s"}
                      for r in (d / "metrics.jsonl").read_text().splitlines()]
    assert rows(run_dir) == rows(ref)
    assert (run_dir / "events.jsonl").read_text() == (ref / "events.jsonl").read_text()
    ref_summary = json.loads((ref / "summary.json").read_text())
    for key in ("final_val_acc", "test_acc", "arch", "deploy_params", "train_macs_total"):
        assert summary[key] == ref_summary[key], key


BAD_JOB = """
description: three jobs, one of which diverges
common: {method: fixed, model.arch: 1-1-1, model.widths: "[8,12,16]", trainer.epochs: 2}
runs:
  - {optim.lr: [0.1, 0.05, 1.0e+12]}
seeds: [0]
"""


def test_one_failing_job_does_not_stop_the_array(slurm_cluster, tmp_path):
    (tmp_path / "bad.yaml").write_text(BAD_JOB)
    out = tmp_path / "bad"
    proc = sweep(slurm_cluster, ["bad", "--experiments", str(tmp_path), "--out", str(out), *SLURM])
    assert proc.returncode == 1, proc.stdout + proc.stderr
    df = pd.read_csv(out / "results.csv").set_index("job")
    assert df.loc["optim.lr=0.1", "status"] == "completed" and df.loc["optim.lr=0.05", "status"] == "completed"
    assert df.loc["optim.lr=1000000000000.0", "status"] == "failed"
    assert "FAILED optim.lr=1000000000000.0: failed: loss became nan" in proc.stdout
