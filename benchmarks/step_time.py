"""A job's training step time on this device, and ESTIMATES of its whole wall time from it.

    python -m benchmarks.step_time experiment=adagrow_cifar10 [overrides...] [--steps 10] [--batch 32]
        [--n-train 50000 | --n-train imagenet-1k] [--gpu-tflops 100] [--json]

The job is built as a dry run builds it (growth/engine/dry_run.py: random data of the data config's shape,
no dataset file) and N real training steps are timed after one warmup step, at batch B = trainer.batch_size,
or less with --batch (a cap, for a CPU). Two estimates follow, both only estimates:
- this device: epochs x ceil(n_train / trainer.batch_size) steps x the measured step time scaled LINEARLY
  from batch B to the job's batch (no evaluation, data loading or growth events counted);
- a GPU: the job's training MACs (epochs x n_train x train MACs per image) x 2 FLOPs / an ASSUMED sustained
  throughput (--gpu-tflops, default 100: a bf16 A100-class GPU at realistic utilisation); a lower bound,
  as small models (CIFAR ResNets at batch 128) are bound by memory and kernel launches, not FLOPs.
Both use the start arch: a growing method's later, larger archs make its run longer than this.
"""
import argparse
import json
import math
import sys
import tempfile
import time

import torch

from benchmarks.common import compose
from growth.engine.dry_run import build
from growth.engine.env import device_name

# Training-set sizes of known datasets (before the run's own validation holdout).
N_TRAIN = {"imagenet-1k": 1_281_167, "cifar10": 50_000, "cifar100": 50_000, "svhn": 73_257, "mnist": 60_000}
GPU_TFLOPS = 100.0


def n_train(data: dict, given=None) -> int:
    """Training samples per epoch: --n-train (a count or a name in N_TRAIN), else the data config's."""
    if given is not None:
        return N_TRAIN[given] if given in N_TRAIN else int(given)
    name = data["name"]
    if name in ("digits", "synthetic", "synthetic_text"):  # the builders' stratified split (tensor_sets._split)
        n = 1797 if name == "digits" else int(data.get("num_samples", 384 if name == "synthetic" else 768))
        return n - math.ceil((data.get("val_fraction", 0.15) + data.get("test_fraction", 0.15)) * n)
    if name in N_TRAIN:  # torchvision sets hold val_fraction of the training files out
        n = N_TRAIN[name]
        return n - (max(1, round(n * data.get("val_fraction", 0.1))) if data.get("val_fraction", 0.1) else 0)
    raise SystemExit(f"error: --n-train: needed for data={name} (a count, or one of {', '.join(N_TRAIN)})")


def estimate(step_s: float, measured_batch: int, *, batch: int, epochs: int, n: int, train_macs: int,
             gpu_tflops: float = GPU_TFLOPS) -> dict:
    """The pure arithmetic of the estimates (no timing): see the module docstring."""
    steps = epochs * math.ceil(n / batch)
    job_step_s = step_s * batch / measured_batch  # linear in the batch: an assumption
    total_macs = epochs * n * train_macs
    return {"steps": steps, "job_step_s": job_step_s, "device_hours": steps * job_step_s / 3600,
            "train_macs_total": total_macs, "gpu_tflops_assumed": gpu_tflops,
            "gpu_hours": total_macs * 2 / (gpu_tflops * 1e12) / 3600}


def _sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(cfg: dict, steps: int) -> dict:
    """Median seconds per training step over `steps` steps after one warmup, through the trainer's step."""
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = build(cfg, run_dir)
        sizes = trainer.sizes()
        trainer.model.train()
        x, y = trainer.to_device(*next(iter(trainer.data.train)))
        times = []
        for i in range(steps + 1):
            _sync(trainer.device)
            t0 = time.perf_counter()
            trainer.train_step(x, y, 1)
            _sync(trainer.device)
            if i:  # the first step warms up (allocations, cuDNN autotuning)
                times.append(time.perf_counter() - t0)
        times.sort()
        return {"step_s": times[len(times) // 2], "batch": len(y), "epochs": trainer.epochs,
                "arch": trainer.model.arch_string(), "train_macs_per_sample": sizes["train_macs_per_sample"],
                "params": sizes["params"], "device": str(trainer.device),
                "device_name": device_name(trainer.device), "threads": torch.get_num_threads()}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(prog="python -m benchmarks.step_time", description=__doc__.splitlines()[0])
    p.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. experiment=adagrow_cifar10")
    p.add_argument("--steps", type=int, default=10, help="timed steps after one warmup (default 10)")
    p.add_argument("--batch", type=int, default=None, help="cap on the timed batch (default trainer.batch_size)")
    p.add_argument("--n-train", default=None, help=f"training samples per epoch: a count or {', '.join(N_TRAIN)}")
    p.add_argument("--gpu-tflops", type=float, default=GPU_TFLOPS, help="ASSUMED sustained TFLOPS (default 100)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead")
    args = p.parse_args(argv)
    over = dict(o.split("=", 1) for o in args.overrides)
    cfg = compose(**over)
    batch = cfg["trainer"]["batch_size"]
    cfg = compose(**{**over, "trainer.dry_run_batch": min(batch, args.batch or batch), "trainer.progress": "false"})
    m = measure(cfg, args.steps)
    est = estimate(m["step_s"], m["batch"], batch=batch, epochs=m["epochs"], n=n_train(cfg["data"], args.n_train),
                   train_macs=m["train_macs_per_sample"], gpu_tflops=args.gpu_tflops)
    out = {"command": "python -m benchmarks.step_time " + " ".join(argv if argv is not None else sys.argv[1:]),
           **m, "ms_per_step": m["step_s"] * 1e3, "images_per_s": m["batch"] / m["step_s"], "job_batch": batch,
           "n_train": n_train(cfg["data"], args.n_train), **est}
    print(json.dumps(out, indent=1) if args.json else report(out))
    return out


def duration(hours: float) -> str:
    s = hours * 3600
    return f"{s:.1f} s" if s < 120 else f"{s / 60:.1f} min" if s < 7200 else f"{hours:.1f} h"


def report(o: dict) -> str:
    return "\n".join([
        f"step time: {o['ms_per_step']:.1f} ms/step at batch {o['batch']} on {o['device']} ({o['device_name']}, "
        f"{o['threads']} threads): {o['images_per_s']:.1f} images/s; arch {o['arch']}, {o['params']:,} params",
        f"train MACs per image: {o['train_macs_per_sample'] / 1e6:.2f} M (forward + backward, the start arch)",
        f"ESTIMATE, this device: {duration(o['device_hours'])} = {o['epochs']} epochs x {o['steps'] // o['epochs']:,} "
        f"steps (n_train {o['n_train']:,}, batch {o['job_batch']}) x {o['job_step_s'] * 1e3:.1f} ms (linear-scaled "
        f"from batch {o['batch']}); training steps only, at the start arch",
        f"ESTIMATE, a GPU at an ASSUMED {o['gpu_tflops_assumed']:g} sustained TFLOPS: {duration(o['gpu_hours'])} "
        f"= {o['train_macs_total']:.3g} train MACs x 2 / {o['gpu_tflops_assumed']:g}e12 (compute-bound: a lower "
        f"bound; small models run far below that throughput)"])


if __name__ == "__main__":
    main()
