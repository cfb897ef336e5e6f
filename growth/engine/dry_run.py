"""`trainer.dry_run=true`: check a job before submitting it, without its data.

The job is built as a real one (job.build_trainer: model, method, trainer, the method's setup and first
phase) from the data config's shapes alone (growth/data/info.py) on random tensors, trains ONE step
through the trainer's own step code, and writes summary.json with status `dry_run`: sizes, MACs, the
method's per-config sizes (Method.dry_run_sizes) and the random step's loss. No checkpoint, no metrics
row, no event and no dataset file.

A dry run writes only into a fresh directory or one an earlier dry run wrote: a directory that holds a
real run (its checkpoint, metrics rows or a summary of another status) is refused, naming hydra.run.dir,
so a dry run never clobbers a result.
"""
import json
import logging
import math

from growth.data.info import data_info
from growth.data.random_bundle import random_bundle
from growth.engine import dist
from growth.engine.env import git_commit, reproducibility, seed_everything, versions
from growth.engine.job import _positive_int, build_trainer, environment, start
from growth.engine.lock import RunDirLock
from growth.engine.record import RunRecord
from growth.errors import ConfigError

log = logging.getLogger("growth")


def _batch(cfg: dict) -> int:
    return _positive_int({"dry_run_batch": 2, **cfg["trainer"]}, "dry_run_batch", "trainer.dry_run_batch")


def check_dir(run_dir) -> None:
    """Refuse a directory that holds a real run: its result is not a dry run's to overwrite."""
    record = RunRecord(run_dir, write=False)
    summary = record.path("summary")
    status = None
    if summary.is_file():
        try:
            status = json.loads(summary.read_text()).get("status")
        except (OSError, json.JSONDecodeError, AttributeError):
            status = "unreadable"
    metrics = record.path("metrics")
    held = [what for what, there in (
        (f"summary.json (status {status})", summary.is_file() and status != "dry_run"),
        ("checkpoints/last.pt", record.path("last").exists()),
        ("metrics rows", metrics.is_file() and metrics.stat().st_size > 0)) if there]
    if held:
        raise ConfigError("hydra.run.dir", str(run_dir), f"holds a real run ({', '.join(held)}); a dry run writes "
                          "only into a fresh directory or an earlier dry run's; allowed: another hydra.run.dir")


def build(cfg: dict, run_dir, device=None):
    """The job's trainer on random data of its data's shape, set up and in its first phase (no file is
    read or written). Also what benchmarks/step_time.py times. `device`: that of trainer.device."""
    device = device or environment(cfg)
    if dist.env_world() > 1:
        raise ConfigError("trainer.dry_run", True, "runs in one process; allowed: without torchrun")
    seed_everything(cfg["seed"])  # as a real run: the same initial weights
    info = data_info(cfg["data"])
    data = random_bundle(info, _batch(cfg), device, cfg["seed"])
    trainer = build_trainer(cfg, data, RunRecord(run_dir, write=False), device, dist.DistInfo())
    start(trainer)
    return trainer


def one_step(trainer) -> float:
    """One training step on the first random batch; returns its loss."""
    trainer.model.train()
    x, y = trainer.to_device(*next(iter(trainer.data.train)))
    loss, _, _ = trainer.train_step(x, y, trainer.epoch + 1)
    return loss.item()


def dry_run(cfg: dict, run_dir) -> dict:
    lock = RunDirLock(run_dir)
    lock.acquire()
    try:
        check_dir(run_dir)
        trainer = build(cfg, run_dir)
        sizes = trainer.sizes()  # measured before the step, as a real epoch does
        loss = one_step(trainer)
        if not math.isfinite(loss):
            raise ConfigError("trainer.dry_run", True, f"the random step's loss is {loss}; the job would diverge")
        method_sizes = trainer.call_hook(trainer.method.dry_run_sizes)
        probe = trainer.probe
        summary = {
            "status": "dry_run", "method": cfg["method"]["name"], "model": cfg["model"]["name"],
            "data": cfg["data"]["name"], "seed": cfg["seed"], "variants": trainer.method.variants,
            "arch": trainer.model.arch_string(), "arch_spec": trainer.model.arch_spec(),
            "params": sizes["params"], "deploy_params": sizes["deploy_params"], "macs": sizes["macs"],
            "train_macs_per_sample": sizes["train_macs_per_sample"], "input_size": list(probe.shape[1:]),
            "num_classes": trainer.data.num_classes, "method_sizes": method_sizes or {}, "step_loss": loss,
            "epochs": trainer.epochs, "batch_size": cfg["trainer"]["batch_size"],
            "device": str(trainer.device), "git_commit": git_commit(), "versions": versions(),
            **reproducibility(trainer.device)}
        RunRecord(run_dir, layout=False).write_summary(summary)
        log.info("dry run: %s %s on %s %s: arch %s, params %s (deployed %s), %.2f M MACs per sample, "
                 "random step loss %.4f", summary["method"], summary["model"], summary["data"],
                 "x".join(map(str, summary["input_size"])), summary["arch"], f"{summary['params']:,}",
                 f"{summary['deploy_params']:,}", summary["macs"] / 1e6, loss)
        return summary
    finally:
        lock.release()
