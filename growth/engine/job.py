"""One training job from a plain config dict: validate, build, (resume,) train, test, deploy, record.

Everything that can be wrong with the input is checked before the first step, and raises ConfigError.
"""
import json
import logging
import os
import signal
import time
from pathlib import Path

import torch

from growth import objective
from growth.data import build_data
from growth.engine import config_diff, dist, io
from growth.engine.checkpoint import check_compatible, load_checkpoint
from growth.engine.config_check import check_types
from growth.engine.env import (git_commit, resolve_device, resolve_precision, seed_everything, versions)
from growth.engine.env import apply_threads, reproducibility
from growth.engine.lock import RunDirLock
from growth.engine.optim import scale_lr
from growth.engine.record import RunRecord
from growth.engine.trackers import build_trackers, check_loggers
from growth.engine.trainer import Trainer
from growth.errors import ConfigError, Interrupted, RunDirBusy, TrainingDiverged
from growth.export import check_format as check_export_format
from growth.export import export_or_warn
from growth.measure import count_params
from growth.methods import build_method
from growth.models import build_model, model_from_spec, saved
from growth.quantize import check_mode as check_quantize

log = logging.getLogger("growth")
TRACKED_FILES = ("summary", "metrics", "events", "config", "deploy", "onnx")  # the loggers' artifacts, if present


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
    check_quantize(t)
    check_loggers(cfg)
    objective.check(cfg)  # optimized_metric: what a hyperparameter search is told (growth/objective.py)
    check_types(cfg)  # every other key against the type of its default in conf/


def _file_log(record: RunRecord) -> logging.Handler:
    handler = logging.FileHandler(record.path("log"))
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S"))
    log.addHandler(handler)
    if log.level == logging.NOTSET:
        log.setLevel(logging.INFO)
    return handler


def _find_checkpoint(cfg: dict, record: RunRecord):
    """The run directory's own last.pt wins once it exists: `trainer.resume` only seeds a fresh directory
    (the DeiT/submitit contract), so a requeued fine-tuning job resumes its own progress, not its seed.
    Returns (checkpoint, path, key naming it in errors)."""
    if record.path("last").exists():
        return load_checkpoint(record.path("last"), "checkpoints/last.pt"), record.path("last"), "checkpoints/last.pt"
    resume = cfg["trainer"].get("resume")
    if resume:
        return load_checkpoint(Path(resume), "trainer.resume"), Path(resume), "trainer.resume"
    return None, None, None


def _policy(cfg: dict) -> str:
    value = cfg["trainer"].get("on_config_change", "error")
    if value not in config_diff.POLICIES:
        raise ConfigError("trainer.on_config_change", value, f"allowed: {', '.join(config_diff.POLICIES)}")
    return value


def _config_changes(cfg: dict, run_dir) -> dict:
    """What differs from the config this run directory was started with ({} for a fresh one). A change
    stops here unless trainer.on_config_change=continue; then it becomes a config_change event."""
    old = config_diff.read_config(Path(run_dir) / "config_resolved.yaml")
    changes = config_diff.changed_keys(old, cfg) if old is not None else {}
    if changes and _policy(cfg) == "error":
        raise ConfigError("config", config_diff.describe(changes),
                          f"differs from the config {run_dir} was started with; allowed: the same config (keys "
                          "that only change how the job runs may differ), a new hydra.run.dir, or "
                          "trainer.on_config_change=continue to go on under the new config (recorded as an event)")
    return changes


def completed_summary(cfg: dict, run_dir) -> dict | None:
    """The summary of a run that already completed under this config: nothing is to be done."""
    path = RunRecord(run_dir, write=False).path("summary")
    try:
        summary = json.loads(path.read_text()) if path.is_file() else None
    except (OSError, json.JSONDecodeError):
        return None  # cut by a kill: the checkpoint decides
    if not summary or summary.get("status") != "completed":
        return None
    if _config_changes(cfg, run_dir):
        return None  # changed on purpose (on_config_change=continue): resume and finish again
    return summary


def _config_event(trainer: Trainer, changes: dict) -> dict:
    n, arch = count_params(trainer.model), trainer.model.arch_string()
    return {"epoch": trainer.epoch, "step": trainer.step, "kind": "config_change", "where": ", ".join(changes),
            "arch_before": arch, "arch_after": arch, "params_before": n, "params_after": n,
            "max_abs_output_change": None, "changes": {k: list(v) for k, v in changes.items()}}


def _hold(lock, info) -> None:
    """Rank 0 takes the run directory's lock; distributed, every rank stops if it could not."""
    problem = None
    if info.is_main and lock is not None:
        try:
            lock.acquire()
        except ConfigError as e:
            problem = e
    if info.enabled:
        held = [None] * info.world
        torch.distributed.all_gather_object(held, problem is None)  # a barrier too: rank 0 has tried
        if not held[0] and problem is None:  # RunDirBusy: no rank writes into a directory another run holds
            raise RunDirBusy("hydra.run.dir", str(lock.path.parent if lock else ""), "held by another process")
    if problem:
        raise problem


def _repeats(recipe) -> int:
    value = (recipe or {}).get("repeated_aug")
    if value is None:
        return 1
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError("recipe.repeated_aug", value, "allowed: null (off) or a number of repeats >= 1 (DeiT: 3)")
    return value


def environment(cfg: dict) -> torch.device:
    """Validate, then the process settings every job shares (threads, pickles); returns the device."""
    validate(cfg)
    apply_threads(cfg)  # threads and determinism first: they shape every number computed after
    _policy(cfg)
    t = cfg["trainer"]
    io.set_trust_pickles(t.get("trust_pickles"))  # read_torch refuses pickled objects unless trusted
    return resolve_device(t.get("device", "auto"))


def build_trainer(cfg: dict, data, record: RunRecord, device, info, ckpt=None, where=None) -> Trainer:
    """Model, method and trainer for `data` (a real bundle, or a dry run's random one). With a checkpoint
    (`where`: its key and path, for errors) the model is rebuilt from its saved spec; nothing is loaded."""
    amp = resolve_precision(cfg["trainer"].get("precision", "fp32"), device)
    model = build_model(cfg["model"], data.info)
    method = build_method(cfg)
    if ckpt is not None:
        check_compatible(ckpt, model, *where)
        model = model_from_spec(ckpt["arch_spec"])
    optim_cfg = scale_lr(cfg["optim"], cfg["trainer"]["batch_size"] * info.world)  # optim.lr_scale_batch (DeiT)
    return Trainer(model, data, method, record, optim_cfg=optim_cfg, trainer_cfg=cfg["trainer"], device=device,
                   amp_dtype=amp, dist_info=info, recipe=cfg.get("recipe"), seed=cfg["seed"])


def start(trainer: Trainer) -> None:
    """The method checks its own settings against the model, before training; a phased method's first
    phase begins (its model and schedule in a fresh run, its event)."""
    trainer.call_hook(trainer.method.setup)
    trainer.start_phases()


def prepare(cfg: dict, run_dir, lock=None) -> tuple[Trainer, RunRecord]:
    """Validate and build everything; nothing trains yet. `lock`: the run directory's RunDirLock."""
    device = environment(cfg)
    t = cfg["trainer"]
    info = dist.setup(device)
    device = dist.local_device(device, info)
    _hold(lock, info)
    record = RunRecord(run_dir, write=info.is_main)
    if not info.is_main:
        log.setLevel(logging.WARNING)  # one copy of the epoch lines, from rank 0
    # Ranks draw differently (dropout, augmentation); their weights still start equal: DDP broadcasts.
    seed_everything(cfg["seed"] + info.rank)
    on_device = t.get("data_on_device", "auto")  # auto: tensor sets; true: CIFAR-style file sets too
    data = build_data(cfg["data"], {
        "batch_size": t["batch_size"], "eval_batch_size": t["eval_batch_size"], "seed": cfg["seed"],
        "device": device if on_device else torch.device("cpu"), "num_workers": int(t.get("num_workers", 0)),
        "pin_memory": device.type == "cuda", "data_on_device": on_device, "recipe": cfg.get("recipe")})
    if info.enabled:
        data.train.shard(info.rank, info.world)
    repeats = _repeats(cfg.get("recipe"))
    if repeats > 1:  # DeiT's repeated augmentation: each sample `repeats` times an epoch, on different ranks
        data.train.repeat(repeats)
    ckpt, ckpt_path, key = _find_checkpoint(cfg, record)
    own = key == "checkpoints/last.pt"
    changes = _config_changes(cfg, run_dir) if own else {}  # a seed from elsewhere may differ: fine-tuning
    trainer = build_trainer(cfg, data, record, device, info, ckpt, (key, ckpt_path))
    if ckpt is not None:
        try:
            trainer.load(ckpt)
        except (RuntimeError, KeyError, ValueError) as e:
            raise ConfigError(key, str(ckpt_path), f"checkpoint does not match the model ({str(e)[:200]})")
        record.truncate_after(trainer.epoch)
        trainer.rewrap()  # the loaded weights are what DDP must broadcast
        point = trainer.resume_point
        inside = f", inside epoch {point['epoch']} at batch {point['batch']}" if point else ""
        log.info("resumed from %s at epoch %d (step %d%s)", ckpt_path, trainer.epoch, trainer.step, inside)
    else:
        record.truncate_after(0)  # stale rows from a run that died before its first checkpoint
    # Trackers (rank 0): a resume of this directory continues their runs; a seed from elsewhere does not.
    trainer.trackers = build_trackers(cfg, run_dir, info.is_main)
    trainer.trackers.start(ckpt.get("trackers") if own else None, trainer.step, record)  # None: older checkpoints
    if changes:
        trainer.add_event(_config_event(trainer, changes))
        log.warning("config changed (trainer.on_config_change=continue): %s", config_diff.describe(changes))
    if record.write:
        config_diff.write_config(record.path("config"), cfg)
    start(trainer)
    return trainer, record


class _Signals:
    """SIGTERM/SIGUSR2 (SLURM preemption, timeouts) stop the run at the next step, which saves a step
    checkpoint first, so the same command resumes from that very step; status 'interrupted'.

    Under submitit SIGUSR2 belongs to submitit (it requeues the job, which then resumes from last.pt in
    the same directory) and SIGTERM is its to ignore. Its handler is not called from inside the signal,
    where the step in flight would be lost, but once the step checkpoint and the record are written
    (`hand_over`). The previous handlers come back when the job ends."""

    def __init__(self, trainer: Trainer):
        self.trainer, self.caught, self.previous = trainer, None, {}
        submitit = bool(os.environ.get("SUBMITIT_EXECUTOR"))
        for sig in (signal.SIGUSR2,) if submitit else (signal.SIGTERM, signal.SIGUSR2):
            try:
                self.previous[sig] = signal.signal(sig, self._handler)
            except ValueError:  # not the main thread (e.g. inside some launchers): leave defaults
                pass
        self.submitit = submitit

    def _handler(self, signum, frame):
        self.trainer.stop_requested = signal.Signals(signum).name
        self.caught = (signum, frame)

    def hand_over(self) -> None:
        """Under submitit, after the interruption is recorded: its checkpoint(), requeue and exit."""
        previous = self.previous.get(self.caught[0]) if self.caught else None
        if self.submitit and callable(previous):
            self.restore()
            previous(*self.caught)

    def restore(self) -> None:
        for sig, previous in self.previous.items():
            signal.signal(sig, previous if previous is not None else signal.SIG_DFL)
        self.previous = {}


def finish(trainer: Trainer, record: RunRecord) -> dict:
    """Test the final model, write the fused deploy model and the extras of a completed run."""
    test = trainer.evaluate(trainer.data.test)
    deployed = trainer.model.deploy()
    change = (trainer.probe_output(deployed) - trainer.probe_output()).abs().max().item()
    if trainer.dist.enabled:  # proof, not hope: every rank ends with bit-identical weights
        dist.check_same(trainer.dist, "the final weights", dist.weight_digest(trainer.model))
    if record.write:
        io.atomic_torch_save(record.path("deploy"), saved.to_file(trainer.model, deployed=True))  # no module pickle
    log.info("deploy: fused model %s params (from %s), max |fused - unfused| on probe %.2e",
             f"{count_params(deployed):,}", f"{count_params(trainer.model):,}", change)
    extras = {"test_acc": test["acc"], "test_loss": test["loss"], "deploy_max_abs_diff": change}
    if trainer.ema is not None:  # recipe.ema: the EMA's test numbers beside the raw model's
        ema = trainer.evaluate(trainer.data.test, trainer.ema.module)
        extras.update(test_acc_ema=ema["acc"], test_loss_ema=ema["loss"])
        log.info("ema: test acc %.4f (raw model %.4f)", ema["acc"], test["acc"])
    fmt = check_export_format(trainer.cfg.get("export"))
    if fmt and record.write:
        extras.update(_export(fmt, deployed, trainer.probe.to(trainer.device), record))
        if check_quantize(trainer.cfg):
            extras.update(_quantize(trainer, record, extras))
    extras.update(trainer.call_hook(trainer.method.finish))  # e.g. per-skip-config tables, exports
    return extras


def _export(fmt: str, deployed, example, record: RunRecord) -> dict:
    """checkpoints/model.pt2 or model.onnx. The trained model is safe in deploy.pt already: a model the
    exporter cannot trace is reported (warning and summary key), it does not fail the run."""
    return export_or_warn(fmt, deployed, example, record.path("export" if fmt == "pt2" else "onnx"))


def _quantize(trainer: Trainer, record: RunRecord, exported: dict) -> dict:
    """trainer.quantize=int8: checkpoints/model.int8.onnx from model.onnx and both test accuracies. Like
    an export, a graph that cannot be quantised is a warning and `quantize_error`, not a failed run."""
    if "export_error" in exported:
        return {"quantize_error": "no ONNX export to quantise (see export_error)"}
    from growth.quantize import quantize_and_test  # lazy: onnxruntime only when asked for
    try:
        return quantize_and_test(record.path("onnx"), record.path("int8"), trainer.data.train, trainer.data.test,
                                 trainer.cfg.get("quantize_calib_batches", 8))
    except Exception as e:  # noqa: BLE001 - any quantiser failure; the message says which
        log.warning("quantize: int8 failed: %s: %s", type(e).__name__, str(e)[:300])
        return {"quantize_error": f"{type(e).__name__}: {str(e)[:300]}"}


def run_job(cfg: dict, run_dir) -> dict:
    """Train one job into run_dir and return its summary. ConfigError propagates before training.

    One process holds the run directory (run.lock). A run that completed under the same config is not
    run again: its summary comes back with `already_completed` set, and nothing is written.
    With trainer.dry_run the job is built on random data and one step is trained, nothing more
    (growth/engine/dry_run.py)."""
    if cfg.get("trainer", {}).get("dry_run"):
        from growth.engine.dry_run import dry_run  # it builds through this module's builder
        return dry_run(cfg, run_dir)
    lock = RunDirLock(run_dir) if dist.env_rank() == 0 else None
    handler = None
    try:
        validate(cfg)
        if lock is not None and dist.env_world() == 1:
            lock.acquire()  # before reading the summary: a live run may be about to write it
            done = completed_summary(cfg, run_dir)
            if done is not None:
                return {**done, "already_completed": True}
        handler = _file_log(RunRecord(run_dir)) if dist.env_rank() == 0 else None
        trainer, record = prepare(cfg, run_dir, lock if dist.env_world() > 1 else None)
        return _train(cfg, trainer, record)
    finally:
        dist.cleanup()
        if lock is not None:
            lock.release()
        if handler:
            log.removeHandler(handler)
            handler.close()


def _train(cfg: dict, trainer: Trainer, record: RunRecord) -> dict:
    signals = _Signals(trainer)
    status, error, extras = "completed", None, {}
    t0 = time.perf_counter()
    try:
        try:
            trainer.fit()
            extras = finish(trainer, record)
        except TrainingDiverged as e:
            status, error = "failed", str(e)
            log.error("run failed: %s", e)
        except (Interrupted, KeyboardInterrupt) as e:
            status, error = "interrupted", str(e) or "KeyboardInterrupt"
            if signals.submitit and signals.caught:
                error += "; requeued by submitit, resumes from checkpoints/last.pt"
            log.warning("run interrupted: %s (resume by running the same command)", error)
        summary = _summary(cfg, trainer, status, error, extras, time.perf_counter() - t0)
        record.write_summary(summary)
        trainer.trackers.end(summary, [record.path(n) for n in TRACKED_FILES])
        if status == "interrupted":
            signals.hand_over()  # under submitit: requeue and exit; the record is complete by now
        return summary
    finally:
        trainer.trackers.close()  # after a crash too: flushed, resumable (a no-op once they ended)
        signals.restore()


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
        **reproducibility(trainer.device),  # threads, deterministic algorithms, CPU or GPU name
        **trainer.method.summary_extras(trainer.ctx), **extras}  # extras: test results and method.finish's keys
