"""(a) Our Trainer's training step over a bare PyTorch loop: same model, data tensors, batches, SGD.

Both sides run whole epochs over the same TensorLoader (same epoch, so the same batches in the same
order); step time = epoch time / steps. The per-step extras of the Trainer (NaN check, running metrics,
LR schedule, GradScaler, progress bar) are also timed alone, in microseconds per call, so that any
overhead comes with its cause: in the loop they are far below the noise of a whole step.
"""
import copy
import io
import tempfile

import torch
import torch.nn.functional as F
from tqdm import tqdm

from benchmarks.common import compose, interleave, median, ratio, timed
from growth.engine.job import prepare


def bare_sgd(model, optim_cfg):
    """The bare side's optimizer: plain SGD with our settings, one group, as a user would write it."""
    return torch.optim.SGD(model.parameters(), lr=float(optim_cfg["lr"]), momentum=float(optim_cfg["momentum"]),
                           weight_decay=float(optim_cfg["weight_decay"]))


def bare_epoch(model, opt, loader, epoch) -> None:
    model.train()
    loader.set_epoch(epoch)
    for x, y in loader:
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


def per_call_us(fn, calls: int, rounds: int = 5) -> float:
    """Median over rounds of the mean time of one call, in microseconds."""
    return 1e6 * median(timed(lambda: [fn() for _ in range(calls)]) / calls for _ in range(rounds))


def _tqdm_items(enabled: bool, n: int = 1000):
    """Iterate n items through tqdm: enabled as on a terminal, or disabled as the Trainer has it off one."""
    return lambda: [None for _ in tqdm(range(n), file=io.StringIO(), disable=not enabled, leave=False)]


def extras_us(trainer, calls: int) -> dict:
    """Microseconds per training step of each thing the Trainer does that the bare loop does not."""
    x, y = next(iter(trainer.data.train))
    with torch.no_grad():
        logits = trainer.model(x)
    loss = F.cross_entropy(logits, y)
    sums = [torch.zeros(()), torch.zeros(())]
    scaler = trainer.scaler

    def metrics():
        sums[0] += loss.detach() * len(y)
        sums[1] += (logits.detach().argmax(1) == y).sum()
    out = {"nan_check_item": per_call_us(lambda: (~torch.isfinite(loss.detach())).float().item(), calls),
           "metrics": per_call_us(metrics, calls),
           "schedule_apply": per_call_us(trainer.schedule.apply, calls),
           "grad_scaler_disabled": per_call_us(lambda: (scaler.scale(loss), scaler.update()), calls)}
    n = 1000
    out["tqdm_disabled"] = per_call_us(_tqdm_items(False, n), 3) / n
    out["tqdm_on_terminal"] = per_call_us(_tqdm_items(True, n), 3) / n
    return {k: round(v, 2) for k, v in out.items()}


def run(quick: bool) -> dict:
    over = {"method": "fixed", "model": "resnet_basic", "data": "digits", "trainer.device": "cpu",
            "trainer.epochs": 100}
    if quick:
        over["model.widths"] = "[8,12,16]"
    cfg = compose(**over)
    reps = 3 if quick else 21
    with tempfile.TemporaryDirectory() as tmp:
        trainer, _ = prepare(cfg, tmp)
        model = copy.deepcopy(trainer.model)  # the same net; each side trains its own copy
        opt, loader, epoch = bare_sgd(model, cfg["optim"]), trainer.data.train, 1  # same batches each time
        times = interleave({"ours": lambda: trainer.train_epoch(epoch),
                            "bare": lambda: bare_epoch(model, opt, loader, epoch)}, reps)
        extras = extras_us(trainer, 200 if quick else 2000)
    steps = len(loader)
    step_ms = {k: 1e3 * median(v) / steps for k, v in times.items()}
    in_loop = sum(v for k, v in extras.items() if k != "tqdm_on_terminal")
    return {
        "ratio": ratio(step_ms["ours"], step_ms["bare"]),
        "measured": (f"Trainer step time / bare PyTorch loop step time: resnet_basic {trainer.model.arch_string()} "
                     f"widths {'-'.join(map(str, trainer.model.widths))}, digits, batch "
                     f"{cfg['trainer']['batch_size']}, SGD; median of {reps} interleaved epochs of {steps} steps"),
        "target": "<= 1.10 on CPU",
        "details": {"ms_per_step": {k: round(v, 3) for k, v in step_ms.items()}, "steps_per_epoch": steps,
                    "reps": reps, "extras_us_per_step": extras,
                    "extras_fraction_of_bare_step": round(in_loop / (1e3 * step_ms["bare"]), 5),
                    "note": "extras are timed alone (us per call); the Trainer hides tqdm off a TTY "
                            "(tqdm_disabled), tqdm_on_terminal is its per-step cost on a terminal"},
    }
