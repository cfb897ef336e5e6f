"""(e) CIFAR-10 held whole on the device (`trainer.data_on_device=true`) over the PIL DataLoader: images/s
of the training pipeline alone (augmented batches delivered on the device, no model), side by side.

Both sides are the loaders the job builds (growth.data.build_data) over the same CIFAR-10 files, with
random crop (pad 4) and flip; one timed call is one training epoch. The PIL side uses `--workers`
DataLoader workers and copies each batch to the device as the Trainer does. The files are generated in
CIFAR-10's own format (a temp dir) unless --root names a real cifar-10-batches-py parent.

    python -m benchmarks.data_on_device [--images N] [--workers W] [--batch B] [--reps R]
                                        [--device auto|cpu|cuda] [--root DIR] [--json]
"""
import argparse
import contextlib
import json
import os
import sys
import tempfile


from benchmarks.common import interleave, machine, median, ratio
from benchmarks.synthetic_files import generated_cifar_files, write_cifar10
from growth.data import build_data
from growth.engine.env import resolve_device


def epochs(loader, device):
    """One call: one more training epoch through `loader`, every batch on `device`."""
    count = [0]

    def one():
        loader.set_epoch(count[0])
        count[0] += 1
        for x, y in loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
    return one


def measure(root, workers: int, batch: int, reps: int, device, generated: bool) -> dict:
    cfg = {"name": "cifar10", "root": str(root), "val_fraction": 0, "augment": True}
    args = {"batch_size": batch, "eval_batch_size": batch, "seed": 0, "device": device, "num_workers": workers,
            "pin_memory": device.type == "cuda"}
    with generated_cifar_files() if generated else contextlib.nullcontext():
        pil = build_data(cfg, {**args, "data_on_device": "auto"}).train
        held = build_data(cfg, {**args, "data_on_device": True}).train
    images = min(len(held) * batch, held.num_samples)  # drop_last: the same full batches on both sides
    times = interleave({"device": epochs(held, device), "pil": epochs(pil, device)}, reps)
    rate = {k: images / median(v) for k, v in times.items()}
    return {"ratio": ratio(rate["device"], rate["pil"]),
            "images_per_s": {k: round(v, 1) for k, v in rate.items()},
            "seconds_per_epoch": {k: [round(t, 4) for t in v] for k, v in times.items()},
            "images_per_epoch": images, "batch_size": batch, "workers": workers, "reps": reps,
            "device": str(device)}


def bench(n_images: int, workers: int, batch: int, reps: int, device="auto", root=None) -> dict:
    device = resolve_device(device)
    if root is not None:
        return measure(root, workers, batch, reps, device, generated=False)
    with tempfile.TemporaryDirectory() as tmp:
        write_cifar10(tmp, n_images)
        return measure(tmp, workers, batch, reps, device, generated=True)


def describe(r: dict) -> str:
    return (f"images/s of the train pipeline, CIFAR-10 held on the device ({r['device']}) / PIL DataLoader with "
            f"{r['workers']} workers: crop(pad 4)+flip, batch {r['batch_size']}, {r['images_per_epoch']} images "
            f"per epoch; median of {r['reps']} interleaved epochs")


def run(quick: bool) -> dict:
    n, workers, reps = (1024, 0, 3) if quick else (10_000, min(4, os.cpu_count() or 1), 5)
    r = bench(n, workers, 128, reps)
    return {"ratio": r.pop("ratio"), "measured": describe(r), "details": r}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.data_on_device", description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=10_000, help="training images to generate (default 10000)")
    p.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1), help="PIL DataLoader workers")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--reps", type=int, default=5, help="timed epochs per side (interleaved)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--root", default=None, help="a real CIFAR-10 root (holding cifar-10-batches-py) instead")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    a = p.parse_args(argv)
    r = bench(a.images, a.workers, a.batch, a.reps, a.device, a.root)
    if a.json:
        print(json.dumps({**r, "measured": describe(r), "machine": machine()}, indent=2))
    else:
        ips = r["images_per_s"]
        print(f"device-held {ips['device']:.0f} images/s, PIL DataLoader ({r['workers']} workers) {ips['pil']:.0f} "
              f"images/s: ratio {r['ratio']:.3g} on {r['device']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
