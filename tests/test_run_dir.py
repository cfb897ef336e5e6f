"""A run directory survives the cluster's everyday accidents (issue 16, items 1-6): a requeue of a seeded
job, a second process in the same directory, a rerun of a finished run, a changed config, a lab mate
reading the record, and a preemption in the middle of an epoch."""
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time

import pytest

from growth.engine import lock as lock_mod
from growth.engine.io import atomic_write_json
from growth.engine.job import run_job
from growth.engine.lock import RunDirLock
from growth.errors import ConfigError
from growth.methods.base import Method
from tests.conftest import ROOT, tiny_cfg

# Grows every epoch, so resumes land on grown models; tiny widths keep it at a second an epoch.
GROWING = {"method": "adagrow", "model.arch": "0-0-0", "model.max_arch": "1-1-1", "grow.interval": 1,
           "model.widths": "[8,12,16]", "trainer.epochs": 4, "seed": 3}
IGNORED = {"epoch_time_s"}  # wall-clock: the only thing allowed to differ


def rows(run_dir, name="metrics"):
    text = (run_dir / f"{name}.jsonl").read_text()
    return [{k: v for k, v in json.loads(r).items() if k not in IGNORED} for r in text.splitlines()]


def same_result(a, b):
    assert rows(a) == rows(b)
    assert (a / "events.jsonl").read_text() == (b / "events.jsonl").read_text()
    sa, sb = (json.loads((d / "summary.json").read_text()) for d in (a, b))
    assert sa["status"] == sb["status"] == "completed"
    for key in ("final_val_acc", "best_val_acc", "test_acc", "test_loss", "train_macs_total", "samples_seen",
                "steps_done", "arch", "params", "deploy_params"):
        assert sa[key] == sb[key], key
    from growth.engine.checkpoint import load_checkpoint
    wa, wb = (load_checkpoint(d / "checkpoints/last.pt")["model"] for d in (a, b))
    assert wa.keys() == wb.keys() and all(wa[k].equal(wb[k]) for k in wa)  # final weights, bit for bit


class Crash(BaseException):
    """Stands for SIGKILL: nothing after it runs, the files on disk are what is left."""


def crash_after_step(monkeypatch, step: int):
    """Kill the run (as SIGKILL would) just before training step `step + 1`."""
    real = Method.loss

    def loss(self, model, x, y, trainer):
        if trainer.step == step:
            raise Crash(step)
        return real(self, model, x, y, trainer)
    monkeypatch.setattr(Method, "loss", loss)


def signal_at_step(monkeypatch, step: int, sig=signal.SIGTERM):
    """A real signal to this process while step `step + 1` runs: the handler the job installed takes it."""
    real = Method.loss

    def loss(self, model, x, y, trainer):
        if trainer.step == step:
            os.kill(os.getpid(), sig)
        return real(self, model, x, y, trainer)
    monkeypatch.setattr(Method, "loss", loss)


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("full")
    run_job(tiny_cfg(**GROWING), run_dir)
    return run_dir


# ---- item 6: preemption inside an epoch ---------------------------------------------------------------
def test_sigterm_mid_epoch_saves_that_step_and_resumes_exactly(full, tmp_path, monkeypatch):
    steps_per_epoch = json.loads((full / "summary.json").read_text())["steps_done"] // 4  # 19 on digits
    stop = steps_per_epoch + 7  # inside epoch 2, after growth at the end of epoch 1
    with monkeypatch.context() as m:
        signal_at_step(m, stop)
        summary = run_job(tiny_cfg(**GROWING), tmp_path)
    assert summary["status"] == "interrupted" and "checkpoint saved at this step" in summary["error"]
    from growth.engine.checkpoint import load_checkpoint
    ckpt = load_checkpoint(tmp_path / "checkpoints/last.pt")
    assert ckpt["epoch"] == 1 and ckpt["step"] == stop + 1  # the step in flight finished, then it stopped
    assert ckpt["in_epoch"]["epoch"] == 2 and ckpt["in_epoch"]["batch"] == 8
    assert len(rows(tmp_path)) == 1
    run_job(tiny_cfg(**GROWING), tmp_path)
    same_result(tmp_path, full)
    assert (tmp_path / "checkpoints/deploy.pt").exists()


def test_checkpoint_every_steps_bounds_what_a_hard_kill_loses(full, tmp_path, monkeypatch):
    cfg = tiny_cfg(**GROWING, **{"trainer.checkpoint_every": 5})
    with monkeypatch.context() as m, pytest.raises(Crash):
        crash_after_step(m, 33)
        run_job(cfg, tmp_path)
    from growth.engine.checkpoint import load_checkpoint
    ckpt = load_checkpoint(tmp_path / "checkpoints/last.pt")
    assert 33 - 5 <= ckpt["step"] <= 33 and ckpt["in_epoch"] is not None
    run_job(cfg, tmp_path)
    same_result(tmp_path, full)


def test_checkpoint_every_rejects_what_it_cannot_read(tmp_path):
    for bad in ("often", 0, -3, "1.5"):
        with pytest.raises(ConfigError, match="trainer.checkpoint_every"):
            run_job(tiny_cfg(**{"trainer.checkpoint_every": bad}), tmp_path)


# ---- item 1: trainer.resume seeds a fresh directory only -----------------------------------------------
def test_requeued_seeded_job_resumes_its_own_progress(tmp_path, monkeypatch):
    seed = tmp_path / "A"
    run_job(tiny_cfg(**{**GROWING, "trainer.epochs": 2}), seed)
    cfg = tiny_cfg(**{**GROWING, "trainer.resume": str(seed / "checkpoints/last.pt")})
    ref = tmp_path / "ref"
    run_job(cfg, ref)  # seeded from A, uninterrupted
    requeued = tmp_path / "B"
    with monkeypatch.context() as m, pytest.raises(Crash):
        crash_after_step(m, 3 * 19 + 2)  # killed inside epoch 4, after epoch 3's checkpoint
        run_job(cfg, requeued)
    assert [r["epoch"] for r in rows(requeued)] == [3]  # epochs 1-2 are the seed's, in A
    run_job(cfg, requeued)  # the same command again, as a SLURM requeue runs it
    log = (requeued / "train.log").read_text()
    assert f"resumed from {requeued}/checkpoints/last.pt at epoch 3" in log
    assert log.count(f"resumed from {seed}/checkpoints/last.pt at epoch 2") == 1  # only the first start
    same_result(requeued, ref)


# ---- item 2: one process per run directory --------------------------------------------------------------
def _run_py(run_dir, *args, timeout=600):
    return subprocess.run([sys.executable, str(ROOT / "run.py"), "method=fixed", "model.arch=1-1-1",
                           "model.widths=[8,12,16]", "trainer.epochs=1", "trainer.progress=false", *args,
                           f"hydra.run.dir={run_dir}"], cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def test_second_process_in_a_held_run_dir_stops_before_training(tmp_path):
    with RunDirLock(tmp_path):  # this test process holds it, as a live first job would
        proc = _run_py(tmp_path)
        assert proc.returncode == 2, proc.stdout + proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: hydra.run.dir=")
        assert f"pid {os.getpid()} on {socket.gethostname()}" in lines[0]
        assert "Traceback" not in proc.stderr
        assert not (tmp_path / "summary.json").exists() and not (tmp_path / "metrics.jsonl").exists()
        assert not (tmp_path / "checkpoints/last.pt").exists()
    proc = _run_py(tmp_path)  # released: the directory is free again
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "summary.json").read_text())["status"] == "completed"


def test_two_launches_of_one_job_train_once(tmp_path):
    args = ["method=fixed", "model.arch=1-1-1", "model.widths=[8,12,16]", "trainer.progress=false",
            "trainer.epochs=100", f"hydra.run.dir={tmp_path}"]
    first = subprocess.Popen([sys.executable, str(ROOT / "run.py"), *args], cwd=ROOT, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    metrics = tmp_path / "metrics.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline and not (metrics.exists() and metrics.read_text()):
        time.sleep(0.05)
    second = subprocess.run([sys.executable, str(ROOT / "run.py"), *args], cwd=ROOT, capture_output=True,
                            text=True, timeout=300)
    first.send_signal(signal.SIGTERM)
    _, err = first.communicate(timeout=300)
    assert second.returncode == 2 and "is in use by pid" in second.stderr, second.stdout + second.stderr
    assert "Traceback" not in second.stderr and len(second.stderr.strip().splitlines()) == 1
    epochs = [r["epoch"] for r in rows(tmp_path)]
    assert epochs == list(range(1, len(epochs) + 1)) and len(epochs) < 100  # one writer, no doubled rows
    assert json.loads((tmp_path / "summary.json").read_text())["status"] == "interrupted"  # the first's


def test_stale_lock_is_taken_over(tmp_path, monkeypatch):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    (tmp_path / "run.lock").write_text(json.dumps({"host": socket.gethostname(), "pid": int(dead)}))
    with RunDirLock(tmp_path):  # same host, holder gone: flock is free, taken over
        assert json.loads((tmp_path / "run.lock").read_text())["pid"] == os.getpid()
    # Another host (NFS, where flock may not reach): the holder's SLURM job decides.
    other = {"host": "node-elsewhere", "pid": 1, "slurm_job_id": "4242"}
    (tmp_path / "run.lock").write_text(json.dumps(other))
    monkeypatch.setattr(lock_mod, "_slurm_job_alive", lambda job: job == "4242")
    with pytest.raises(ConfigError, match="SLURM job 4242"):
        RunDirLock(tmp_path).acquire()
    monkeypatch.setattr(lock_mod, "_slurm_job_alive", lambda job: False)  # that job ended
    with RunDirLock(tmp_path):
        pass
    (tmp_path / "run.lock").write_text(json.dumps(other))  # our own job, requeued onto another node
    monkeypatch.setattr(lock_mod, "_slurm_job_alive", lambda job: True)
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    with RunDirLock(tmp_path):
        pass


# ---- item 3: a finished run is not run again; one cut inside finish() finishes -------------------------
TINY_AUX = {"model.stage_repeats": "[1,2,1]", "model.embed_dim": 32, "method.aux_heads": 2,
            "method.teacher": "test_resnet", "method.teacher_epochs": 1, "optim": "adamw",
            "trainer.batch_size": 128}
EVERY_METHOD = {
    "fixed": {"method": "fixed"},
    "adagrow": GROWING,
    "randgrow": {**GROWING, "method": "randgrow"},
    "reducenet": {"model": "reducenet", "trainer.batch_size": 256},
    "adn": {"method": "adn", "model.arch": "2-2-1"},
    "sws": {"model": "sws_aux", **TINY_AUX},
    "tiny": {"model": "gromo_mlp", "grow.interval": 1},  # GroMo width growth (method=tiny)
}


TIMED = ("time", "latency", "speedup", "report")  # wall-clock measurements: allowed to differ


def untimed(tree):
    if isinstance(tree, dict):
        return {k: untimed(v) for k, v in tree.items() if not any(t in k for t in TIMED)}
    if isinstance(tree, list):
        return [untimed(v) for v in tree]
    return tree


def _files(run_dir):
    return {p.relative_to(run_dir): p.read_bytes() for p in sorted(run_dir.rglob("*"))
            if p.is_file() and p.name != "run.lock"}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(EVERY_METHOD))
def test_rerun_of_a_finished_run_changes_nothing_and_a_cut_finish_is_redone(name, tmp_path):
    from benchmarks.common import compose
    over = {"trainer.epochs": 2, "trainer.progress": "false", **EVERY_METHOD[name]}
    cfg = compose(**over) if name in ("sws", "tiny") else tiny_cfg(**over)  # they have no arch/widths keys
    first = run_job(cfg, tmp_path)
    assert first["status"] == "completed"
    before = _files(tmp_path)
    again = run_job(cfg, tmp_path)
    assert again["already_completed"] and again["final_val_acc"] == first["final_val_acc"]
    assert _files(tmp_path) == before  # nothing trained, nothing rewritten
    # Killed inside finish(): the final checkpoint is there, the summary is not.
    (tmp_path / "summary.json").unlink()
    redone = run_job(cfg, tmp_path)
    assert redone["status"] == "completed" and not redone.get("already_completed")
    assert untimed(redone) == untimed({**first})
    assert rows(tmp_path) == [{k: v for k, v in json.loads(r).items() if k not in IGNORED}
                              for r in before[type(next(iter(before)))("metrics.jsonl")].decode().splitlines()]


def test_rerun_prints_already_completed(tmp_path):
    assert _run_py(tmp_path).returncode == 0
    proc = _run_py(tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("already completed: status completed: arch 1-1-1")
    assert "epoch 1/1" not in proc.stdout + proc.stderr


# ---- item 4: a changed config does not silently join an old run ----------------------------------------
def test_changed_config_stops_unless_continued_on_purpose(tmp_path):
    base = {**GROWING, "trainer.epochs": 2}
    run_job(tiny_cfg(**base), tmp_path)
    before = _files(tmp_path)
    changed = {**base, "grow_mode": "depth", "trainer.epochs": 3}
    with pytest.raises(ConfigError) as err:
        run_job(tiny_cfg(**changed), tmp_path)
    message = str(err.value)
    assert "\n" not in message
    assert "grow_mode.name: 'width-depth' -> 'depth'" in message and "trainer.epochs: 2 -> 3" in message
    assert _files(tmp_path) == before
    # keys that only change how the job runs may differ
    assert run_job(tiny_cfg(**base, **{"trainer.device": "cpu", "trainer.eval_batch_size": 100,
                                       "trainer.num_workers": 0}), tmp_path)["already_completed"]
    summary = run_job(tiny_cfg(**changed, **{"trainer.on_config_change": "continue"}), tmp_path)
    assert summary["status"] == "completed" and summary["epochs_done"] == 3
    event = rows(tmp_path, "events")[-1] if rows(tmp_path, "events")[-1]["kind"] == "config_change" else \
        next(e for e in rows(tmp_path, "events") if e["kind"] == "config_change")
    assert event["epoch"] == 2 and event["changes"] == {"grow_mode.name": ["width-depth", "depth"],
                                                        "trainer.epochs": [2, 3]}
    with pytest.raises(ConfigError, match="trainer.on_config_change"):
        run_job(tiny_cfg(**changed, **{"trainer.on_config_change": "maybe"}), tmp_path / "x")


# ---- 9d: the configured model is checked after a phase switch too --------------------------------------
def test_seed_from_a_switched_run_checks_the_configured_model(tmp_path):
    cfg = {"model": "reducenet", "trainer.batch_size": 256, "trainer.epochs": 2}
    run_job(tiny_cfg(**cfg), tmp_path / "a")  # teacher epoch 1, student epoch 2: the model was replaced
    seed = str(tmp_path / "a/checkpoints/last.pt")
    with pytest.raises(ConfigError, match="checkpoint does not match the model"):
        run_job(tiny_cfg(**cfg, **{"model.expansion": 2, "trainer.resume": seed}), tmp_path / "b")
    assert run_job(tiny_cfg(**cfg, **{"trainer.resume": seed}), tmp_path / "c")["status"] == "completed"


# ---- item 5: the record is readable by whoever the umask lets read it ---------------------------------
@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_atomic_files_get_the_umask_mode(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        atomic_write_json(tmp_path / "summary.json", {"a": 1})
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "summary.json").stat().st_mode) == mode


def test_run_record_files_are_readable_by_the_group(tmp_path):
    old = os.umask(0o022)
    try:
        assert _run_py(tmp_path).returncode == 0
    finally:
        os.umask(old)
    for name in ("summary.json", "metrics.jsonl", "config_resolved.yaml", "checkpoints/last.pt",
                 "checkpoints/deploy.pt"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o644, name


def test_loaders_resume_inside_an_epoch_with_the_same_batches_and_no_global_draws():
    import torch

    from growth.data.loaders import DatasetLoader, TensorLoader
    x, y = torch.arange(50.0).unsqueeze(1), torch.arange(50)
    for make in (lambda: TensorLoader(x, y, 8, shuffle=True, seed=4),
                 lambda: DatasetLoader(torch.utils.data.TensorDataset(x, y), 8, shuffle=True, seed=4)):
        full, part = make(), make()
        full.set_epoch(3)
        part.set_epoch(3, start_batch=4)
        torch.manual_seed(0)
        before = torch.get_rng_state()
        tail = [b[1].tolist() for b in part]
        assert torch.equal(torch.get_rng_state(), before)  # iterating draws nothing from the global RNG
        assert tail == [b[1].tolist() for b in full][4:] and len(tail) == len(full) - 4


def test_resume_after_a_row_cut_mid_write_repairs_the_record(full, tmp_path, monkeypatch):
    with monkeypatch.context() as m, pytest.raises(Crash):
        crash_after_step(m, 2 * 19 + 3)  # inside epoch 3: epochs 1-2 are on disk
        run_job(tiny_cfg(**GROWING), tmp_path)
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text(metrics.read_text() + '{"epoch": 3, "phase": "tr')  # a kill inside append_jsonl
    run_job(tiny_cfg(**GROWING), tmp_path)
    same_result(tmp_path, full)


# ---- keys added after a run started (issue 18's recipe, dry-run, paper keys) ---------------------------
def test_a_run_started_before_new_keys_existed_resumes_under_their_neutral_values(tmp_path):
    import yaml
    from growth.engine import config_diff
    base = {**GROWING, "trainer.epochs": 2}
    first = run_job(tiny_cfg(**base), tmp_path)
    path = tmp_path / "config_resolved.yaml"
    old = yaml.safe_load(path.read_text())
    for key in ("recipe", "paper"):
        old.pop(key)
    old["trainer"].pop("dry_run"), old["optim"].pop("lr_scale_batch")
    config_diff.write_config(path, old)  # as a run directory written before those keys existed
    again = run_job(tiny_cfg(**base), tmp_path)
    assert again["already_completed"] and again["final_val_acc"] == first["final_val_acc"]
    with pytest.raises(ConfigError, match=r"recipe.mixup: None -> 0.8"):
        run_job(tiny_cfg(**base, **{"recipe.mixup": 0.8}), tmp_path)


def test_the_neutral_recipe_is_conf_recipe_none():
    import yaml
    from growth.engine.config_diff import RECIPE_NONE, flatten
    assert flatten(yaml.safe_load((ROOT / "conf/recipe/none.yaml").read_text())) == RECIPE_NONE
