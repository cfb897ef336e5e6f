"""growth/sweep_status.py: every job state from hand-made run directories, SLURM ids from the run record
and submitit's task folders, squeue/sacct output read back, and `sweep.py NAME --status` printing it."""
import json
import os
import signal
import socket
import time

import pytest
import yaml

from growth.engine.lock import RunDirLock
from growth.sweep_status import count_states, holder_alive, query_slurm, slurm_ids, sweep_status

JOBS = [{"name": n, "overrides": []} for n in ("done", "failed", "stopped", "killed", "live", "missing")]


def run_dir(sweep, name, status=None, epochs=None, val_accs=()):
    d = sweep / name
    d.mkdir(parents=True)
    (d / "metrics.jsonl").write_text("".join(json.dumps({"epoch": i + 1, "val_acc": a}) + "\n"
                                             for i, a in enumerate(val_accs)))
    if epochs:
        (d / "config_resolved.yaml").write_text(yaml.safe_dump({"trainer": {"epochs": epochs}}))
    if status:
        final = val_accs[-1] if val_accs and status == "completed" else None
        (d / "summary.json").write_text(json.dumps({"status": status, "final_val_acc": final}))
    return d


def killed_holder(d):
    """A process that took the run directory's lock and was killed (SIGKILL: no summary, no release)."""
    pid = os.fork()
    if pid == 0:
        try:
            RunDirLock(d).acquire()
            os.kill(os.getpid(), signal.SIGKILL)
        finally:
            os._exit(1)  # never back into pytest from the child
    os.waitpid(pid, 0)


def no_scheduler(ids):
    raise AssertionError(f"no SLURM id in these records, yet the scheduler was asked for {ids}")


def test_every_state_from_the_run_records(tmp_path):
    run_dir(tmp_path, "done", "completed", epochs=3, val_accs=[0.5, 0.6, 0.7])
    run_dir(tmp_path, "failed", "failed", epochs=3, val_accs=[0.5])
    run_dir(tmp_path, "stopped", "interrupted", epochs=3, val_accs=[0.5, 0.55])
    killed_holder(run_dir(tmp_path, "killed", epochs=4, val_accs=[0.4]))
    live = RunDirLock(run_dir(tmp_path, "live", epochs=5, val_accs=[0.3, 0.35]))
    live.acquire()
    try:
        rows = {r["name"]: r for r in sweep_status(tmp_path, JOBS, query=no_scheduler)}
    finally:
        live.release()
    assert {n: r["state"] for n, r in rows.items()} == {
        "done": "done", "failed": "failed", "stopped": "interrupted", "killed": "interrupted",
        "live": "running", "missing": "pending"}
    assert (rows["done"]["epoch"], rows["done"]["epochs"], rows["done"]["val_acc"]) == (3, 3, 0.7)
    assert (rows["live"]["epoch"], rows["live"]["epochs"], rows["live"]["val_acc"]) == (2, 5, 0.35)
    assert rows["missing"]["epoch"] is None and all(r["slurm_id"] is None for r in rows.values())
    assert count_states(rows.values()) == {"done": 1, "running": 1, "pending": 1, "failed": 1, "interrupted": 2}
    # the killed holder's record stays in run.lock; a released lock is empty: a finished run has no holder
    assert json.loads((tmp_path / "killed" / "run.lock").read_text())["pid"] > 0
    assert (tmp_path / "live" / "run.lock").read_text() == ""
    assert holder_alive({}) is False and holder_alive({"pid": os.getpid(), "host": "elsewhere"}) is None


def slurm_holder(d, job_id, host="node7"):
    """run.lock as a SLURM job on another node leaves it (flock cannot tell us whether it still runs)."""
    (d / "run.lock").write_text(json.dumps({"pid": 123, "host": host, "slurm_job_id": job_id}))


def test_slurm_states_decide_what_the_records_cannot(tmp_path):
    jobs = [{"name": n, "overrides": []} for n in ("running", "cancelled", "requeued", "gone", "queued")]
    slurm_holder(run_dir(tmp_path, "running", val_accs=[0.5]), "7_0")
    slurm_holder(run_dir(tmp_path, "cancelled", val_accs=[0.5]), "7_1")
    slurm_holder(run_dir(tmp_path, "requeued", "interrupted", val_accs=[0.5]), "7_2")
    slurm_holder(run_dir(tmp_path, "gone", val_accs=[0.5]), "7_3")
    (tmp_path / "jobs.yaml").write_text(yaml.safe_dump(jobs))
    for task in range(5):  # submitit's task folders of the array launched with this jobs.yaml
        (tmp_path / ".submitit" / f"7_{task}").mkdir(parents=True)
    asked = []

    def query(ids):
        asked.append(ids)
        return {"7_0": "RUNNING", "7_1": "CANCELLED", "7_2": "PENDING", "7_4": "PENDING"}

    rows = {r["name"]: r for r in sweep_status(tmp_path, jobs, query=query)}
    assert asked == [["7_0", "7_1", "7_2", "7_3", "7_4"]]
    assert {n: (r["state"], r["slurm_id"], r["slurm_state"]) for n, r in rows.items()} == {
        "running": ("running", "7_0", "RUNNING"), "cancelled": ("interrupted", "7_1", "CANCELLED"),
        "requeued": ("pending", "7_2", "PENDING"),  # preempted and requeued: it runs again by itself
        "gone": ("interrupted", "7_3", None),       # neither squeue nor sacct knows it: it ended
        "queued": ("pending", "7_4", "PENDING")}    # no run directory yet: its id from submitit
    # no scheduler to ask (squeue absent): a holder on another node may still run
    rows = {r["name"]: r for r in sweep_status(tmp_path, jobs, query=lambda ids: None)}
    assert rows["gone"]["state"] == "running" and rows["queued"]["state"] == "pending"


def test_slurm_ids_from_slurm_json_and_only_from_an_array_newer_than_jobs_yaml(tmp_path, monkeypatch):
    jobs = [{"name": "a", "overrides": []}, {"name": "b", "overrides": []}]
    (tmp_path / ".submitit" / "3_0").mkdir(parents=True)  # an older launch's array
    time.sleep(0.05)
    (tmp_path / "jobs.yaml").write_text(yaml.safe_dump(jobs))
    assert slurm_ids(tmp_path, jobs) == {}
    time.sleep(0.05)
    for task in (0, 1):
        (tmp_path / ".submitit" / f"9_{task}").mkdir()
    assert slurm_ids(tmp_path, jobs) == {"a": "9_0", "b": "9_1"}
    # a job that ran writes its own record as it takes the lock; it stays after the lock is released
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "9")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "1")
    monkeypatch.setenv("SLURM_JOB_ID", "11")
    with RunDirLock(tmp_path / "b"):
        pass
    record = json.loads((tmp_path / "b" / "slurm.json").read_text())
    assert (record["slurm_job_id"], record["slurm_job_id_raw"], record["host"]) == ("9_1", "11", socket.gethostname())
    (tmp_path / "b" / "slurm.json").write_text(json.dumps({"slurm_job_id": "12_0"}))  # a later launch
    assert slurm_ids(tmp_path, jobs) == {"a": "9_0", "b": "12_0"}


def fake_bin(tmp_path, name, text):
    (tmp_path / "bin").mkdir(exist_ok=True)
    path = tmp_path / "bin" / name
    path.write_text(f"#!/bin/sh\n/bin/cat <<'EOF'\n{text}\nEOF\n")
    path.chmod(0o755)


def test_query_slurm_reads_squeue_then_sacct(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))  # nothing else: no squeue yet
    assert query_slurm(["5_0"]) is None
    fake_bin(tmp_path, "squeue", "5_0|RUNNING\n5_1|PENDING\n99|RUNNING")
    # a real sacct (-n -X: no header, no steps) and the test cluster's shim (header, a NodeList column)
    fake_bin(tmp_path, "sacct", "JobID|State|NodeList\n5_2|CANCELLED by 1000|n1\n5_3|TIMEOUT\n5_1|COMPLETED")
    assert query_slurm(["5_0", "5_1", "5_2", "5_3", "5_4"]) == {
        "5_0": "RUNNING", "5_1": "PENDING", "5_2": "CANCELLED", "5_3": "TIMEOUT"}


def test_status_flag_prints_the_table_and_launches_nothing(tmp_path, capsys):
    import sweep

    (tmp_path / "two.yaml").write_text("description: two\ncommon: {method: fixed}\nseeds: [0, 1]\n")
    out = tmp_path / "out"
    run_dir(out, "seed=0", "completed", epochs=2, val_accs=[0.25, 0.5])
    killed_holder(run_dir(out, "seed=1", epochs=2, val_accs=[0.125]))
    assert sweep.main(["two", "--experiments", str(tmp_path), "--out", str(out), "--status"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split() == ["job", "state", "epoch", "val_acc"]  # no SLURM here: no SLURM columns
    assert lines[3].split() == ["seed=0", "done", "2/2", "0.5000"]
    assert lines[4].split() == ["seed=1", "interrupted", "1/2", "0.1250"]
    assert lines[5] == "1 done, 0 running, 0 pending, 0 failed, 1 interrupted"
    assert sorted(p.name for p in out.iterdir()) == ["seed=0", "seed=1"]  # no jobs.yaml, no results
