"""(c) One AdaGrow growth event's wall time as a fraction of a CIFAR-10 training epoch (extrapolated).

A resnet_basic at CIFAR-10 size (3x32x32 synthetic tensors, 10 classes, default widths) starts at 1-1-1
and grows by AdaGrow's width-depth schedule. At each arch, training epochs and the growth event that
follows are timed in turn (side by side in one process). An event is what the engine does at an
epoch end that grows: `method.on_epoch_end` (saliency, new modules, their init, probe outputs before
and after, re-measuring sizes and MACs of the new arch) and then the engine's part (event row,
registering the new parameters with the optimizer). A CIFAR-10 epoch is extrapolated as
50,000 // batch_size steps at the step time measured at the arch the event starts from.
"""
import tempfile

from benchmarks.common import compose, median, ratio, timed
from growth.engine.job import prepare
from growth.engine.optim import add_params

CIFAR_TRAIN = 50_000


def engine_event(trainer, epoch: int) -> list:
    """The growing part of Trainer.run_epoch after training and evaluation (growth/engine/trainer.py)."""
    trainer.last_val_acc = 0.0
    events = trainer.method.on_epoch_end(trainer, epoch)
    for event in events:
        trainer.record.add_event(event)
    add_params(trainer.optimizer, trainer.model.named_parameters(), trainer.optim_cfg)
    if events and trainer.dist.enabled:
        trainer.rewrap()
    trainer.sizes()  # the next epoch reads them (cached by the event's own measurement)
    return events


def config(quick: bool) -> dict:
    over = {"method": "adagrow", "model": "resnet_basic", "model.arch": "1-1-1", "model.max_arch": "2-2-2",
            "data": "synthetic", "data.channels": 3, "data.image_size": 32, "data.num_classes": 10,
            "data.num_samples": 300, "grow.interval": 1, "trainer.epochs": 1000, "trainer.device": "cpu"}
    if quick:
        over["model.widths"] = "[8,12,16]"
    return compose(**over)


def run(quick: bool) -> dict:
    cfg = config(quick)
    n_events, epochs_per_arch = (2, 1) if quick else (6, 2)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        trainer, _ = prepare(cfg, tmp)
        steps = len(trainer.data.train)
        for i in range(n_events):
            epoch = i + 1
            step_s = median(timed(lambda: trainer.train_epoch(epoch)) for _ in range(epochs_per_arch)) / steps
            arch = trainer.model.arch_string()
            events = []
            event_s = timed(lambda: events.extend(engine_event(trainer, epoch)))
            if not events:
                break  # max arch reached
            cifar_epoch_s = (CIFAR_TRAIN // cfg["trainer"]["batch_size"]) * step_s
            rows.append({"kind": events[0]["kind"], "arch_before": arch, "arch_after": events[0]["arch_after"],
                         "event_s": round(event_s, 4), "step_s": round(step_s, 4),
                         "cifar_epoch_s_extrapolated": round(cifar_epoch_s, 2),
                         "fraction": ratio(event_s, cifar_epoch_s)})
    worst = max(rows, key=lambda r: r["fraction"] or 0.0)
    batch = cfg["trainer"]["batch_size"]
    return {
        "ratio": worst["fraction"] if all(r["fraction"] for r in rows) else None,
        "measured": (f"largest growth-event time / CIFAR-10 epoch time over {len(rows)} AdaGrow events "
                     f"(depth and width) on resnet_basic {rows[0]['arch_before']}..{rows[-1]['arch_after']} at "
                     f"3x32x32; EXTRAPOLATED: epoch = {CIFAR_TRAIN // batch} steps (50,000 / batch {batch}) "
                     f"x the step time measured on {steps}-step epochs of synthetic 32x32 tensors"),
        "extrapolated": True,
        "details": {"events": rows, "steps_per_measured_epoch": steps, "epochs_per_arch": epochs_per_arch,
                    "batch_size": batch, "widths": trainer.model.widths,
                    "median_fraction": median(r["fraction"] for r in rows)},
    }
