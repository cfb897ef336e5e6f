"""Does data loading bound this job? Images/s of the job's train loader alone (no model) over images/s of
its model's training step alone (no loading), measured side by side for one config.

    python -m benchmarks.loader_throughput [overrides...] [--batches N] [--reps R] [--json]
                                           [--make-imagefolder N [--make-size PX]]
    e.g.  python -m benchmarks.loader_throughput data=imagefolder data.root=DIR data.image_size=224 \\
              trainer.num_workers=4 trainer.batch_size=64
          python -m benchmarks.loader_throughput data.image_size=224 --make-imagefolder 2000

The job itself is built (growth.engine.job.prepare, in a temp run dir), so the loader is exactly the
one a run gets, whatever transforms and workers the config gives it. Loader side: one timed call takes
--batches batches from a fresh epoch, each copied to the device as the Trainer does. Step side: one
timed call is --batches steps of forward (cross-entropy on the model's logits), backward and optimizer
step at the same batch size, on random inputs of the loader's batch shape, on the configured device.
The two alternate (A B, B A, ...). loader / step < 1: the model would wait for batches, so data
loading bounds the job. On a CPU run both share the same cores in the job, which this does not show.
`--make-imagefolder N` first writes N JPEGs (--make-size px square, 10 classes) to a temp ImageFolder
tree and points data=imagefolder at it, for a run that needs no data set.
"""
import argparse
import contextlib
import json
import sys
import tempfile

import torch
import torch.nn.functional as F

from benchmarks.common import compose, interleave, machine, median, ratio
from benchmarks.synthetic_files import write_imagefolder
from growth.engine.job import prepare


def loader_calls(trainer, batches: int):
    """One call: `batches` batches of the train loader, from the start of a new epoch (so workers start
    each call cold, as at an epoch start, and the files read change with the epoch's order)."""
    loader, epoch, seen = trainer.data.train, [0], []

    def one():
        got = 0
        while got < batches:
            loader.set_epoch(epoch[0])
            epoch[0] += 1
            for x, y in loader:
                x, y = trainer.to_device(x, y)
                got += 1
                seen.append(len(y))
                if got == batches:
                    break
    return one, seen


def step_calls(trainer, x, y, batches: int):
    model, opt, scaler = trainer.train_model, trainer.optimizer, trainer.scaler
    amp = (torch.autocast(trainer.device.type, dtype=trainer.amp_dtype) if trainer.amp_dtype is not None
           else contextlib.nullcontext())
    smoothing = trainer.label_smoothing
    model.train()

    def one():
        for _ in range(batches):
            with amp:
                loss = F.cross_entropy(model(x).float(), y, label_smoothing=smoothing)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
    return one


def random_batch(trainer, x: torch.Tensor, y: torch.Tensor, seed: int = 0):
    """Random inputs of the batch's shape and dtype (token ids stay the batch's own) and random labels,
    laid out as the Trainer lays out its batches."""
    g = torch.Generator().manual_seed(seed)
    if x.is_floating_point():
        x = torch.randn(x.shape, generator=g).to(x.device, x.dtype)
    y = torch.randint(0, trainer.data.num_classes, y.shape, generator=g)
    return trainer.to_device(x, y)


def verdict(r) -> str:
    if r is None:
        return "no verdict (a rate was not positive)"
    if r < 1:
        return f"data loading bounds this job: the loader delivers {r:.2f}x the images the model can train on"
    return (f"data loading does not bound this job: the loader delivers {r:.2f}x what the model trains on "
            "(the model bounds it)")


def measure(cfg: dict, batches: int, reps: int) -> dict:
    with tempfile.TemporaryDirectory() as run_dir:
        trainer, _ = prepare(cfg, run_dir)
        trainer.data.train.set_epoch(0)
        x, y = trainer.to_device(*next(iter(trainer.data.train)))
        x, y = random_batch(trainer, x, y)
        load, seen = loader_calls(trainer, batches)
        times = interleave({"loader": load, "step": step_calls(trainer, x, y, batches)}, reps)
        per_call = sum(seen[-batches:])  # images in one loader call (the last; a short batch counts short)
        rate = {"loader": per_call / median(times["loader"]), "step": batches * len(y) / median(times["step"])}
        r = ratio(rate["loader"], rate["step"])
        info = trainer.data.info
        return {"ratio": r, "verdict": verdict(r),
                "loader_images_per_s": round(rate["loader"], 2), "step_images_per_s": round(rate["step"], 2),
                "seconds_per_call": {k: [round(t, 4) for t in v] for k, v in times.items()},
                "batch_size": len(y), "input_shape": list(x.shape[1:]), "batches": batches, "reps": reps,
                "workers": int(cfg["trainer"].get("num_workers", 0)), "device": str(trainer.device),
                "data": info["name"], "image_size": info["image_size"], "n_train": info["n_train"],
                "model": cfg["model"]["name"], "arch": trainer.model.arch_string(),
                "loader": type(trainer.data.train).__name__}


def parse(argv):
    p = argparse.ArgumentParser(prog="python -m benchmarks.loader_throughput",
                                description=__doc__.splitlines()[0])
    p.add_argument("overrides", nargs="*", help="config overrides as for run.py (key=value)")
    p.add_argument("--batches", type=int, default=20, help="batches (and steps) per timed call (default 20)")
    p.add_argument("--reps", type=int, default=3, help="timed calls per side, interleaved (default 3)")
    p.add_argument("--make-imagefolder", type=int, metavar="N", default=0,
                   help="write N synthetic JPEGs to a temp ImageFolder tree and use it (data=imagefolder)")
    p.add_argument("--make-size", type=int, default=256, metavar="PX", help="their side in px (default 256)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    a = p.parse_args(argv)
    bad = [o for o in a.overrides if "=" not in o]
    if bad:
        p.error(f"overrides are key=value; got {', '.join(bad)}")
    if a.batches < 1 or a.reps < 1:
        p.error("--batches and --reps must be at least 1")
    return a


def bench(overrides: dict, batches: int, reps: int, make: int = 0, make_size: int = 256) -> dict:
    if not make:
        return measure(compose(**overrides), batches, reps)
    if "data.root" in overrides:
        raise SystemExit("--make-imagefolder writes its own tree: leave data.root out")
    with tempfile.TemporaryDirectory() as tmp:
        write_imagefolder(tmp, make, make_size)
        over = {"data": "imagefolder", **overrides, "data.root": tmp}
        return {**measure(compose(**over), batches, reps), "generated_images": make, "generated_px": make_size}


def main(argv=None) -> int:
    a = parse(sys.argv[1:] if argv is None else argv)
    overrides = dict(o.split("=", 1) for o in a.overrides)
    r = bench(overrides, a.batches, a.reps, a.make_imagefolder, a.make_size)
    if a.json:
        print(json.dumps({**r, "overrides": a.overrides, "machine": machine()}, indent=2))
    else:
        model = r["model"] if r["arch"] == r["model"] else f"{r['model']} {r['arch']}"
        print(f"{r['data']} {'x'.join(map(str, r['input_shape']))}, {r['loader']} with {r['workers']} workers: "
              f"{r['loader_images_per_s']:.1f} images/s; {model} train step on {r['device']}: "
              f"{r['step_images_per_s']:.1f} images/s (batch {r['batch_size']}); loader / step "
              f"{r['ratio']:.3g}: {r['verdict']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
