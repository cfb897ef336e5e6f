"""A run killed mid-way and started again in the same directory ends exactly like an uninterrupted one."""
import json
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT

FIXED = ["method=fixed", "model.arch=1-1-1", "trainer.epochs=5", "seed=3", "trainer.progress=false"]
# AdaGrow grows after every epoch, so the kill lands on a grown model (arch, branches, optimizer).
GROWING = ["method=adagrow", "model.arch=0-0-0", "model.max_arch=2-2-2", "grow.interval=1",
           "grow_mode=width-depth", "grow.width_ratio=0.5", "trainer.epochs=5", "seed=3", "trainer.progress=false"]
IGNORED = {"epoch_time_s"}  # wall-clock, the only thing allowed to differ


def _rows(run_dir):
    rows = [json.loads(ln) for ln in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in IGNORED} for r in rows]


def _start(args, run_dir):
    return subprocess.Popen([sys.executable, str(ROOT / "run.py"), *args, f"hydra.run.dir={run_dir}"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _stop_after(args, run_dir, sig, epochs):
    proc = _start(args, run_dir)
    metrics, ckpt = run_dir / "metrics.jsonl", run_dir / "checkpoints/last.pt"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if ckpt.exists() and metrics.exists() and metrics.read_text().count("\n") >= epochs:
            proc.send_signal(sig)
            break
        time.sleep(0.02)
    out, _ = proc.communicate(timeout=300)
    return proc.returncode, out


def _run(args, run_dir):
    proc = subprocess.run([sys.executable, str(ROOT / "run.py"), *args, f"hydra.run.dir={run_dir}"], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return proc


_FULL = {}


def uninterrupted(args, tmp_path_factory):
    key = tuple(args)
    if key not in _FULL:
        _FULL[key] = tmp_path_factory.mktemp("full")
        _run(args, _FULL[key])
    return _FULL[key]


@pytest.mark.slow
@pytest.mark.parametrize("args,sig,status,after", [
    (FIXED, signal.SIGKILL, None, 1), (FIXED, signal.SIGTERM, "interrupted", 1),
    (GROWING, signal.SIGKILL, None, 2), (GROWING, signal.SIGTERM, "interrupted", 3)],
    ids=["fixed-kill", "fixed-term", "adagrow-kill", "adagrow-term"])
def test_resume_equals_uninterrupted(tmp_path_factory, tmp_path, args, sig, status, after):
    full = uninterrupted(args, tmp_path_factory)
    code, out = _stop_after(args, tmp_path, sig, after)
    assert code != 0, f"the run finished before it could be stopped:\n{out}"
    summary = tmp_path / "summary.json"
    if status is None:  # SIGKILL leaves no summary
        assert not summary.exists()
    else:  # SIGTERM (SLURM preemption) is recorded
        assert json.loads(summary.read_text())["status"] == status
    done = len(_rows(tmp_path))
    assert after <= done < 5
    proc = _run(args, tmp_path)
    assert f"resumed from {tmp_path}/checkpoints/last.pt at epoch" in proc.stdout + proc.stderr
    assert _rows(tmp_path) == _rows(full)
    events = lambda d: (d / "events.jsonl").read_text()
    assert events(tmp_path) == events(full)
    a, b = (json.loads((d / "summary.json").read_text()) for d in (tmp_path, full))
    assert a["status"] == "completed"
    for key in ("final_val_acc", "best_val_acc", "test_acc", "test_loss", "train_macs_total", "steps_done",
                "arch", "arch_spec", "params", "deploy_params"):
        assert a[key] == b[key], key
