"""(c) One growth event's wall time as a fraction of a CIFAR-10 training epoch (extrapolated), for each
growth method, side by side in one process.

Every method grows a network at CIFAR-10 size (3x32x32 synthetic tensors, 10 classes): the conv methods
(adagrow, randgrow, net2net, splitgrow) a resnet_basic from 1-1-1 (default widths; --quick: 8-12-16),
TINY and GradMax (GroMo) a gromo_mlp, the only family they grow. At each arch, training epochs and the
growth event that follows are timed in turn; the methods take turns event by event (A B C, C B A, ...) so
that drift in machine load falls on all of them. An event is what the engine does at an epoch end that
grows: `trainer.call_hook(method.on_epoch_end, epoch)`, i.e. the method's hook (saliency, statistics
over training batches, new modules and their init, probe outputs before and after, sizes and MACs of the
new arch) and then the engine's part (event rows, optimizer surgery, registering new parameters). A
CIFAR-10 epoch is extrapolated as 50,000 // batch_size steps at the step time measured at the arch the
event starts from.

The headline `ratio` is AdaGrow's largest fraction (as before other methods were added); `ratios` holds
every method's largest fraction. splitgrow, tiny and gradmax are measured when they are registered in
growth.methods.METHODS.
"""
import tempfile

from benchmarks.common import compose, median, ratio, timed
from growth.engine.job import prepare
from growth.methods import METHODS

CIFAR_TRAIN = 50_000
HEADLINE = "adagrow"
CONV_METHODS = ("adagrow", "randgrow", "net2net", "splitgrow")
MLP_METHODS = ("tiny", "gradmax")  # GroMo grows our gromo_mlp family only


def engine_event(trainer, epoch: int) -> None:
    """The growing part of Trainer.run_epoch after training and evaluation (growth/engine/trainer.py):
    the epoch is finished (val acc 0: no plateau trigger fires), then the hook runs through the engine,
    which writes the events to the run record."""
    trainer.epoch, trainer.last_val_acc = epoch, 0.0
    trainer.val_history.append(0.0)
    trainer.call_hook(trainer.method.on_epoch_end, epoch)
    trainer.sizes()  # the next epoch reads them (cached by the event's own measurement)


def methods() -> list[str]:
    return [m for m in (*CONV_METHODS, *MLP_METHODS) if m in METHODS]


def config(method: str, quick: bool) -> dict:
    over = {"method": method, "data": "synthetic", "data.channels": 3, "data.image_size": 32,
            "data.num_classes": 10, "data.num_samples": 300, "grow.interval": 1, "trainer.epochs": 1000,
            "trainer.device": "cpu", "trainer.progress": "false"}
    if method in MLP_METHODS:
        over.update({"model": "gromo_mlp", "model.arch": "4-4" if quick else "16-16"})
    else:
        over.update({"model": "resnet_basic", "model.arch": "1-1-1", "model.max_arch": "2-2-2"})
        if quick:
            over["model.widths"] = "[8,12,16]"
    return compose(**over)


def event_row(trainer, cfg, epoch: int, epochs_per_arch: int) -> dict | None:
    """Time epochs at the current arch, then the growth event after them; None when nothing grew."""
    steps = len(trainer.data.train)
    step_s = median(timed(lambda: trainer.train_epoch(epoch)) for _ in range(epochs_per_arch)) / steps
    arch, before = trainer.model.arch_string(), len(trainer.record.events())
    event_s = timed(lambda: engine_event(trainer, epoch))
    events = trainer.record.events()[before:]  # read outside the clock
    if not events:
        return None  # the method stopped growing (max arch, budget)
    cifar_epoch_s = (CIFAR_TRAIN // cfg["trainer"]["batch_size"]) * step_s
    return {"kind": events[0]["kind"], "arch_before": arch, "arch_after": events[-1]["arch_after"],
            "event_s": round(event_s, 4), "step_s": round(step_s, 4),
            "cifar_epoch_s_extrapolated": round(cifar_epoch_s, 2), "fraction": ratio(event_s, cifar_epoch_s)}


def measure(names, quick: bool, tmp) -> dict:
    """{method: {"cfg", "trainer", "rows"}}, the methods' events interleaved."""
    n_events, epochs_per_arch = (2, 1) if quick else (6, 2)
    runs = {}
    for name in names:
        cfg = config(name, quick)
        trainer, _ = prepare(cfg, f"{tmp}/{name}")
        runs[name] = {"cfg": cfg, "trainer": trainer, "rows": [], "done": False}
    for i in range(n_events):
        for name in (names if i % 2 == 0 else names[::-1]):
            run = runs[name]
            if run["done"]:
                continue
            row = event_row(run["trainer"], run["cfg"], i + 1, epochs_per_arch)
            run["done"] = row is None
            if row is not None:
                run["rows"].append(row)
    return runs


def worst(rows) -> float | None:
    """The largest fraction, or None when an event had no finite fraction (or there was none)."""
    if not rows or not all(r["fraction"] for r in rows):
        return None
    return max(r["fraction"] for r in rows)


def per_method(name: str, run: dict) -> dict:
    rows, trainer = run["rows"], run["trainer"]
    return {"model": run["cfg"]["model"]["name"], "events": rows, "worst_fraction": worst(rows),
            "median_fraction": median(r["fraction"] for r in rows) if rows else None,
            "steps_per_measured_epoch": len(trainer.data.train),
            "widths": getattr(trainer.model, "widths", None), "arch_end": trainer.model.arch_string()}


def run(quick: bool) -> dict:
    names = methods()
    with tempfile.TemporaryDirectory() as tmp:
        runs = measure(names, quick, tmp)
        each = {name: per_method(name, r) for name, r in runs.items()}
    head = each[HEADLINE]
    rows, batch = head["events"], runs[HEADLINE]["cfg"]["trainer"]["batch_size"]
    others = ", ".join(f"{n} {each[n]['worst_fraction']:.3g}" if each[n]["worst_fraction"] else f"{n} null"
                       for n in names if n != HEADLINE)
    return {
        "ratio": head["worst_fraction"],
        "ratios": {n: each[n]["worst_fraction"] for n in names},
        "measured": (f"largest growth-event time / CIFAR-10 epoch time over {len(rows)} AdaGrow events "
                     f"(depth and width) on resnet_basic {rows[0]['arch_before']}..{rows[-1]['arch_after']} at "
                     f"3x32x32; EXTRAPOLATED: epoch = {CIFAR_TRAIN // batch} steps (50,000 / batch {batch}) "
                     f"x the step time measured on {head['steps_per_measured_epoch']}-step epochs of synthetic "
                     f"32x32 tensors; the other methods' largest fractions, measured alongside: {others}"),
        "extrapolated": True,
        "details": {"events": rows, "steps_per_measured_epoch": head["steps_per_measured_epoch"],
                    "epochs_per_arch": 1 if quick else 2, "batch_size": batch, "widths": head["widths"],
                    "median_fraction": head["median_fraction"], "per_method": each},
    }
