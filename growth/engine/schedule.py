"""Per-iteration LR (and optional weight-decay) schedule: a pure function of the global step.

Because the value depends only on the step count, growth events, phase switches and resume never
reset it. Each param group carries `base_lr` and `base_weight_decay`; the schedule scales them.
"""
import math

from growth.errors import ConfigError

KINDS = ("cosine", "constant", "multistep")


def cosine(start: float, end: float, t: float) -> float:
    return end + 0.5 * (start - end) * (1 + math.cos(math.pi * min(max(t, 0.0), 1.0)))


def _milestones(cfg: dict) -> tuple[tuple[int, ...], float]:
    """optim.milestones (epochs, increasing) and optim.gamma of the multistep schedule: torchvision's
    MultiStepLR stepped once an epoch (its reference scripts' `--lr-scheduler multisteplr`)."""
    milestones, gamma = cfg.get("milestones"), cfg.get("gamma", 0.1)
    ok = isinstance(milestones, (list, tuple)) and milestones and all(
        isinstance(m, int) and not isinstance(m, bool) and m > 0 for m in milestones)
    if not ok or list(milestones) != sorted(set(milestones)):
        raise ConfigError("optim.milestones", milestones, "with optim.schedule=multistep: allowed a list of "
                          "increasing positive epochs, e.g. [60,100,140]")
    if isinstance(gamma, bool) or not isinstance(gamma, (int, float)) or not 0 < gamma <= 1:
        raise ConfigError("optim.gamma", gamma, "allowed: a factor in (0, 1], e.g. 0.1")
    return tuple(milestones), float(gamma)


class Schedule:
    def __init__(self, optimizer, total_steps: int, cfg: dict, steps_per_epoch: int):
        self.optimizer, self.total = optimizer, max(1, int(total_steps))
        self.kind = cfg.get("schedule", "cosine")
        if self.kind not in KINDS:
            raise ConfigError("optim.schedule", self.kind, f"allowed: {', '.join(KINDS)}")
        self.warmup = int(round(float(cfg.get("warmup_epochs", 0)) * steps_per_epoch))
        self.steps_per_epoch = max(1, int(steps_per_epoch))
        self.milestones, self.gamma = _milestones(cfg) if self.kind == "multistep" else ((), 1.0)
        self.min_ratio = float(cfg.get("min_lr", 0.0)) / float(cfg.get("lr", 1.0))
        wd, wd_end = cfg.get("weight_decay", 0.0), cfg.get("weight_decay_end")
        self.wd_ratio = 1.0 if wd_end is None or float(wd) == 0 else float(wd_end) / float(wd)
        self.step_num = 0
        self.apply()

    def lr_factor(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / self.warmup
        if self.kind == "constant":
            return 1.0
        if self.kind == "multistep":  # x gamma at each milestone epoch, counted from the warmup's end
            epoch = (step - self.warmup) // self.steps_per_epoch
            return self.gamma ** sum(epoch >= m for m in self.milestones)
        t = (step - self.warmup) / max(1, self.total - self.warmup)
        return cosine(1.0, self.min_ratio, t)

    def wd_factor(self, step: int) -> float:
        return cosine(1.0, self.wd_ratio, step / self.total)

    def apply(self) -> None:
        lr_f, wd_f = self.lr_factor(self.step_num), self.wd_factor(self.step_num)
        for g in self.optimizer.param_groups:
            g["lr"] = g["base_lr"] * lr_f
            g["weight_decay"] = g["base_weight_decay"] * wd_f

    def step(self) -> None:
        self.step_num += 1
        self.apply()

    @property
    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def state_dict(self) -> dict:
        # total is saved because a phase switch may start a fresh schedule over the remaining steps
        return {"step": self.step_num, "total": self.total}

    def load_state_dict(self, state: dict) -> None:
        self.step_num = int(state["step"])
        self.total = int(state.get("total", self.total))
        self.apply()
