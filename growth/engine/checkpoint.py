"""Checkpoints: Arch spec + model state + optimizer + schedule + RNG + counters, written atomically.

Loading checks the file before anything trains: a corrupt file or one that does not fit the configured
model stops with one line naming `trainer.resume` (or the run directory) and what is wrong.
"""
import time

from growth.engine.io import atomic_torch_save, read_torch
from growth.engine.optim import group_param_names
from growth.errors import ConfigError

FORMAT = 1
EVERY_HELP = "allowed: null (at each epoch's end), a number of steps (e.g. 500) or of minutes (e.g. '10min')"


def save_checkpoint(path, *, model, optimizer, schedule, method, epoch, step, counters, rng,
                    model_replaced: bool = False, configured_spec=None, in_epoch=None, ema=None,
                    trackers=None) -> None:
    """`epoch`: epochs finished. `in_epoch`: None at an epoch's end; inside one, the batch reached and the
    epoch's running sums (a step checkpoint: preemption or trainer.checkpoint_every). `ema`: the model
    EMA's state dict (recipe.ema), or None. `trackers`: each logger's run id (conf/logger), so a resume
    continues the same tracker runs."""
    atomic_torch_save(path, {
        "format": FORMAT, "arch_spec": model.arch_spec(), "model": model.state_dict(),
        "model_replaced": model_replaced, "configured_spec": configured_spec,
        "optimizer": optimizer.state_dict(), "optimizer_param_names": group_param_names(optimizer, model),
        "schedule": schedule.state_dict(),
        "method": method.state_dict(), "epoch": epoch, "step": step, "counters": counters, "rng": rng,
        "in_epoch": in_epoch, **({} if ema is None else {"ema": ema}), **({"trackers": trackers} if trackers else {})})


def parse_every(value) -> tuple[str, float] | None:
    """trainer.checkpoint_every: None, ("steps", n) or ("minutes", m)."""
    if value is None:
        return None
    text = str(value).strip().lower().replace(" ", "")
    unit = "minutes" if text.endswith(("min", "m")) else "steps"
    number = text.removesuffix("min").removesuffix("m").removesuffix("steps").removesuffix("step")
    try:
        n = float(number) if unit == "minutes" else int(number)
    except ValueError:
        n = 0
    if isinstance(value, bool) or n <= 0:
        raise ConfigError("trainer.checkpoint_every", value, EVERY_HELP)
    return unit, n


class CheckpointClock:
    """When a step checkpoint is due, so that a hard kill (node failure, SIGKILL) loses at most
    `trainer.checkpoint_every` of work; each epoch's end checkpoints anyway."""

    def __init__(self, every):
        self.every = parse_every(every)
        self.last_step, self.last_time = 0, time.monotonic()

    def saved(self, step: int) -> None:
        self.last_step, self.last_time = step, time.monotonic()

    def due(self, step: int, batch: int) -> bool:
        if self.every is None or batch == 0:  # batch 0: the epoch's end just saved
            return False
        unit, n = self.every
        if unit == "steps":
            return step - self.last_step >= n
        return time.monotonic() - self.last_time >= 60 * n


def load_checkpoint(path, key: str = "trainer.resume") -> dict:
    ckpt = read_torch(path, key, "checkpoint file does not exist", "checkpoint is corrupt or unreadable")
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT or "arch_spec" not in ckpt:
        raise ConfigError(key, str(path), f"not a checkpoint of this suite (format {FORMAT} expected)")
    return ckpt


def check_compatible(ckpt: dict, model, key: str, path) -> None:
    """The configured model must be the checkpoint's family with the same fixed settings (classes,
    channels); its grown keys (arch, widths) may differ, because growth changes them, as far as the
    model's `not_grown_from` allows (widths only ever grow)."""
    # After a phase switch the checkpoint's model is another one (student, descendant): compare the
    # configured model with the one the run was configured with. Checkpoints from before that was saved
    # cannot be checked.
    want, have = model.arch_spec(), ckpt["arch_spec"]
    if ckpt.get("model_replaced"):
        have = ckpt.get("configured_spec")
        if have is None:
            return
    grown = getattr(model, "grown_keys", ())
    fixed = lambda s: {k: v for k, v in s["kwargs"].items() if k not in grown}
    if want["family"] != have["family"] or fixed(want) != fixed(have):
        raise ConfigError(key, str(path), f"checkpoint does not match the model: checkpoint has "
                          f"{have['family']} {fixed(have)}, config asks for {want['family']} {fixed(want)}")
    why = getattr(model, "not_grown_from", lambda configured, grown: None)(want["kwargs"], have["kwargs"])
    if why:  # a grown key that growth cannot have produced from this config (a narrower checkpoint)
        raise ConfigError(key, str(path), f"checkpoint does not match the model: {why}")
