"""A run killed mid-way and started again in the same directory ends exactly like an uninterrupted one."""
import json
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT

ARGS = ["model.arch=1-1-1", "trainer.epochs=5", "seed=3", "trainer.progress=false"]
IGNORED = {"epoch_time_s"}  # wall-clock, the only thing allowed to differ


def _rows(run_dir):
    rows = [json.loads(ln) for ln in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in IGNORED} for r in rows]


def _start(run_dir):
    return subprocess.Popen([sys.executable, str(ROOT / "run.py"), *ARGS, f"hydra.run.dir={run_dir}"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _stop_after_first_epoch(run_dir, sig):
    proc = _start(run_dir)
    metrics, ckpt = run_dir / "metrics.jsonl", run_dir / "checkpoints/last.pt"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if ckpt.exists() and metrics.exists() and metrics.read_text().count("\n") >= 1:
            proc.send_signal(sig)
            break
        time.sleep(0.02)
    out, _ = proc.communicate(timeout=300)
    return proc.returncode, out


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("full")
    proc = subprocess.run([sys.executable, str(ROOT / "run.py"), *ARGS, f"hydra.run.dir={run_dir}"], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return run_dir


@pytest.mark.slow
@pytest.mark.parametrize("sig,status", [(signal.SIGKILL, None), (signal.SIGTERM, "interrupted")])
def test_resume_equals_uninterrupted(uninterrupted, tmp_path, sig, status):
    code, out = _stop_after_first_epoch(tmp_path, sig)
    assert code != 0, f"the run finished before it could be stopped:\n{out}"
    summary = tmp_path / "summary.json"
    if status is None:  # SIGKILL leaves no summary
        assert not summary.exists()
    else:  # SIGTERM (SLURM preemption) is recorded
        assert json.loads(summary.read_text())["status"] == status
    done = len(_rows(tmp_path))
    assert 1 <= done < 5
    proc = subprocess.run([sys.executable, str(ROOT / "run.py"), *ARGS, f"hydra.run.dir={tmp_path}"], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert f"resumed from {tmp_path}/checkpoints/last.pt at epoch" in proc.stdout + proc.stderr
    assert _rows(tmp_path) == _rows(uninterrupted)
    a, b = (json.loads((d / "summary.json").read_text()) for d in (tmp_path, uninterrupted))
    assert a["status"] == "completed"
    for key in ("final_val_acc", "best_val_acc", "test_acc", "test_loss", "train_macs_total", "steps_done"):
        assert a[key] == b[key], key
