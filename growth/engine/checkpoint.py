"""Checkpoints: Arch spec + model state + optimizer + schedule + RNG + counters, written atomically.

Loading checks the file before anything trains: a corrupt file or one that does not fit the configured
model stops with one line naming `trainer.resume` (or the run directory) and what is wrong.
"""
from growth.engine.io import atomic_torch_save, read_torch
from growth.engine.optim import group_param_names
from growth.errors import ConfigError

FORMAT = 1


def save_checkpoint(path, *, model, optimizer, schedule, method, epoch, step, counters, rng,
                    model_replaced: bool = False) -> None:
    atomic_torch_save(path, {
        "format": FORMAT, "arch_spec": model.arch_spec(), "model": model.state_dict(),
        "model_replaced": model_replaced,
        "optimizer": optimizer.state_dict(), "optimizer_param_names": group_param_names(optimizer, model),
        "schedule": schedule.state_dict(),
        "method": method.state_dict(), "epoch": epoch, "step": step, "counters": counters, "rng": rng})


def load_checkpoint(path, key: str = "trainer.resume") -> dict:
    ckpt = read_torch(path, key, "checkpoint file does not exist", "checkpoint is corrupt or unreadable")
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT or "arch_spec" not in ckpt:
        raise ConfigError(key, str(path), f"not a checkpoint of this suite (format {FORMAT} expected)")
    return ckpt


def check_compatible(ckpt: dict, model, key: str, path) -> None:
    """The configured model must be the checkpoint's family with the same fixed settings (classes,
    channels, widths); its arch may differ, because growth changes it."""
    if ckpt.get("model_replaced"):
        return  # a method swapped models mid-run (phase switch): the checkpoint's spec is the truth
    want, have = model.arch_spec(), ckpt["arch_spec"]
    grown = getattr(model, "grown_keys", ())
    fixed = lambda s: {k: v for k, v in s["kwargs"].items() if k not in grown}
    if want["family"] != have["family"] or fixed(want) != fixed(have):
        raise ConfigError(key, str(path), f"checkpoint does not match the model: checkpoint has "
                          f"{have['family']} {fixed(have)}, config asks for {want['family']} {fixed(want)}")
