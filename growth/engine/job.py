"""One training job from a plain config dict: validate, build, (resume,) train, test, deploy, record.

Everything that can be wrong with the input is checked before the first step, and raises ConfigError.
"""
import logging
import os
import signal
import time
from pathlib import Path

import torch

from growth.data import build_data
from growth.engine import dist
from growth.engine.checkpoint import check_compatible, load_checkpoint
from growth.engine.config_check import check_types
from growth.engine.env import (git_commit, resolve_device, resolve_precision, seed_everything, versions)
from growth.engine.io import atomic_torch_save
from growth.engine.record import RunRecord
from growth.engine.trainer import Trainer
from growth.errors import ConfigError, Interrupted, TrainingDiverged
from growth.export import check_format as check_export_format
from growth.export import export_program
from growth.measure import count_params
from growth.methods import build_method
from growth.models import build_model, model_from_spec

log = logging.getLogger("growth")


def _positive_int(cfg: dict, key: str, full: str) -> int:
    value = cfg.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(full, value, "must be a positive integer")
    return value


def validate(cfg: dict) -> None:
    t = cfg["trainer"]
    _positive_int(t, "epochs", "trainer.epochs")
    _positive_int(t, "batch_size", "trainer.batch_size")
    _positive_int(t, "eval_batch_size", "trainer.eval_batch_size")
    if not isinstance(cfg.get("seed"), int):
        raise ConfigError("seed", cfg.get("seed"), "must be an integer")
    if t.get("compile") not in (True, False, None):
        raise ConfigError("trainer.compile", t["compile"], "allowed: true, false")
    check_export_format(t.get("export"))
    check_types(cfg)  # every other key against the type of its default in conf/


def _file_log(record: RunRecord) -> logging.Handler:
    handler = logging.FileHandler(record.path("log"))
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S"))
    log.addHandler(handler)
    if log.level == logging.NOTSET:
        log.setLevel(logging.INFO)
    return handler


def _find_checkpoint(cfg: dict, record: RunRecord):
    """trainer.resume=PATH wins; otherwise a run directory that holds last.pt resumes itself."""
    resume = cfg["trainer"].get("resume")
    if resume:
        return load_checkpoint(Path(resume), "trainer.resume"), Path(resume)
    if record.path("last").exists():
        return load_checkpoint(record.path("last"), "checkpoints/last.pt"), record.path("last")
    return None, None


def prepare(cfg: dict, run_dir) -> tuple[Trainer, RunRecord]:
    """Validate and build everything; nothing trains yet."""
    validate(cfg)
    t = cfg["trainer"]
    device = resolve_device(t.get("device", "auto"))
    info = dist.setup(device)
    device = dist.local_device(device, info)
    record = RunRecord(run_dir, write=info.is_main)
    if not info.is_main:
        log.setLevel(logging.WARNING)  # one copy of the epoch lines, from rank 0
    amp = resolve_precision(t.get("precision", "fp32"), device)
    # Ranks draw differently (dropout, augmentation); their weights still start equal: DDP broadcasts.
    seed_everything(cfg["seed"] + info.rank)
    on_device = t.get("data_on_device", True)
    data = build_data(cfg["data"], {
        "batch_size": t["batch_size"], "eval_batch_size": t["eval_batch_size"], "seed": cfg["seed"],
        "device": device if on_device else torch.device("cpu"), "num_workers": int(t.get("num_workers", 0)),
        "pin_memory": device.type == "cuda"})
    if info.enabled:
        data.train.shard(info.rank, info.world)
    model = build_model(cfg["model"], data.info)
    method = build_method(cfg)
    ckpt, ckpt_path = _find_checkpoint(cfg, record)
    if ckpt is not None:
        key = "trainer.resume" if t.get("resume") else "checkpoints/last.pt"
        check_compatible(ckpt, model, key, ckpt_path)
        model = model_from_spec(ckpt["arch_spec"])
    trainer = Trainer(model, data, method, record, optim_cfg=cfg["optim"], trainer_cfg=t, device=device,
                      amp_dtype=amp, dist_info=info)
    if ckpt is not None:
        try:
            trainer.load(ckpt)
        except (RuntimeError, KeyError, ValueError) as e:
            raise ConfigError(key, str(ckpt_path), f"checkpoint does not match the model ({str(e)[:200]})")
        record.truncate_after(trainer.epoch)
        trainer.rewrap()  # the loaded weights are what DDP must broadcast
        log.info("resumed from %s at epoch %d (step %d)", ckpt_path, trainer.epoch, trainer.step)
    else:
        record.truncate_after(0)  # stale rows from a run that died before its first checkpoint
    method.setup(trainer)  # a method checks its own settings against the model here, before training
    return trainer, record


def _catch_signals(trainer: Trainer, record: RunRecord) -> None:
    """SIGTERM/SIGUSR2 (SLURM preemption, timeouts) stop at the next step with status 'interrupted';
    the last epoch checkpoint stays, so the same command resumes.

    Under submitit the signals belong to submitit: on SIGUSR2 it requeues the job, which then resumes
    from last.pt in the same directory. We only mark the record 'interrupted' and hand over."""
    if os.environ.get("SUBMITIT_EXECUTOR"):
        previous = signal.getsignal(signal.SIGUSR2)

        def mark_and_requeue(signum, frame):
            record.write_summary({"status": "interrupted", "error": f"SIGUSR2 at epoch {trainer.epoch} "
                                  f"(step {trainer.step}); requeued, resumes from checkpoints/last.pt"})
            if callable(previous):
                previous(signum, frame)
        signal.signal(signal.SIGUSR2, mark_and_requeue)
        return

    def handler(signum, _frame):
        trainer.stop_requested = signal.Signals(signum).name
    for sig in (signal.SIGTERM, signal.SIGUSR2):
        try:
            signal.signal(sig, handler)
        except ValueError:  # not the main thread (e.g. inside some launchers): leave defaults
            pass


def finish(trainer: Trainer, record: RunRecord) -> dict:
    """Test the final model, write the fused deploy model and the extras of a completed run."""
    test = trainer.evaluate(trainer.data.test)
    deployed = trainer.model.deploy()
    change = (trainer.probe_output(deployed) - trainer.probe_output()).abs().max().item()
    if trainer.dist.enabled:  # proof, not hope: every rank ends with bit-identical weights
        dist.check_same(trainer.dist, "the final weights", dist.weight_digest(trainer.model))
    if record.write:
        atomic_torch_save(record.path("deploy"), {"arch_spec": trainer.model.arch_spec(), "model": deployed})
    log.info("deploy: fused model %s params (from %s), max |fused - unfused| on probe %.2e",
             f"{count_params(deployed):,}", f"{count_params(trainer.model):,}", change)
    extras = {"test_acc": test["acc"], "test_loss": test["loss"], "deploy_max_abs_diff": change}
    fmt = check_export_format(trainer.cfg.get("export"))
    if fmt and record.write:
        extras.update(_export(deployed, trainer.probe.to(trainer.device), record))
    extras.update(trainer.method.finish(trainer, record))  # e.g. per-skip-config tables, exports
    return extras


def _export(deployed, example, record: RunRecord) -> dict:
    """The trained model is safe in deploy.pt already: a model torch.export cannot trace is reported
    (warning and summary key), it does not fail the run."""
    try:
        return export_program(deployed, example, record.path("export"))
    except Exception as e:  # noqa: BLE001 - any tracing failure; the message says which
        log.warning("export: torch.export failed, no model.pt2: %s: %s", type(e).__name__, str(e)[:300])
        return {"export_error": f"{type(e).__name__}: {str(e)[:300]}"}


def run_job(cfg: dict, run_dir) -> dict:
    """Train one job into run_dir and return its summary. ConfigError propagates before training."""
    handler = _file_log(RunRecord(run_dir)) if dist.env_rank() == 0 else None
    try:
        trainer, record = prepare(cfg, run_dir)
        return _train(cfg, trainer, record)
    finally:
        dist.cleanup()
        if handler:
            log.removeHandler(handler)
            handler.close()


def _train(cfg: dict, trainer: Trainer, record: RunRecord) -> dict:
    _catch_signals(trainer, record)
    status, error, extras = "completed", None, {}
    t0 = time.perf_counter()
    try:
        trainer.fit()
        extras = finish(trainer, record)
    except TrainingDiverged as e:
        status, error = "failed", str(e)
        log.error("run failed: %s", e)
    except (Interrupted, KeyboardInterrupt) as e:
        status, error = "interrupted", str(e) or "KeyboardInterrupt"
        log.warning("run interrupted: %s (resume by running the same command)", error)
    summary = _summary(cfg, trainer, status, error, extras, time.perf_counter() - t0)
    record.write_summary(summary)
    return summary


def _summary(cfg, trainer: Trainer, status, error, extras, wall) -> dict:
    rows = trainer.record.metrics()
    sizes = trainer.sizes()
    return {
        "status": status, "error": error, "method": cfg["method"]["name"], "model": cfg["model"]["name"],
        "data": cfg["data"]["name"], "seed": cfg["seed"], "variants": trainer.method.variants,
        "final_val_acc": rows[-1]["val_acc"] if rows else None,
        "best_val_acc": trainer.counters["best_val_acc"] if rows else None,
        "test_acc": extras.get("test_acc"), "test_loss": extras.get("test_loss"),
        "arch": trainer.model.arch_string(), "arch_spec": trainer.model.arch_spec(),
        "params": sizes["params"], "deploy_params": sizes["deploy_params"], "macs": sizes["macs"],
        "deploy_max_abs_diff": extras.get("deploy_max_abs_diff"),
        "epochs_done": trainer.epoch, "steps_done": trainer.step,
        "train_time_s": trainer.counters["train_time_s"], "wall_time_s": wall,
        "train_macs_total": trainer.counters["train_macs_cum"], "samples_seen": trainer.counters["samples_seen"],
        "device": str(trainer.device), "world_size": trainer.dist.world,
        "git_commit": git_commit(), "versions": versions(),
        **trainer.method.summary_extras(trainer), **extras}  # extras: test results and method.finish's keys
