"""Per-iteration LR (and optional weight-decay) schedule: a pure function of the global step.

Because the value depends only on the step count, growth events, phase switches and resume never
reset it. Each param group carries `base_lr` and `base_weight_decay`; the schedule scales them.
"""
import math

from growth.errors import ConfigError

KINDS = ("cosine", "constant")


def cosine(start: float, end: float, t: float) -> float:
    return end + 0.5 * (start - end) * (1 + math.cos(math.pi * min(max(t, 0.0), 1.0)))


class Schedule:
    def __init__(self, optimizer, total_steps: int, cfg: dict, steps_per_epoch: int):
        self.optimizer, self.total = optimizer, max(1, int(total_steps))
        self.kind = cfg.get("schedule", "cosine")
        if self.kind not in KINDS:
            raise ConfigError("optim.schedule", self.kind, f"allowed: {', '.join(KINDS)}")
        self.warmup = int(round(float(cfg.get("warmup_epochs", 0)) * steps_per_epoch))
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
