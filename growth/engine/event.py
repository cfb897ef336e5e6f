"""One type for every structural event a method reports (growth, phase starts, switches, evaluations).

A method builds an `Event` and hands it to `ctx.emit`; only the engine writes events.jsonl. The row keeps
the schema of growth/engine/record.py (EVENT_KEYS first, then the event's own `details`), so analysis
reads old and new runs alike.
"""
from dataclasses import dataclass, field


@dataclass
class Event:
    kind: str
    where: object
    arch_before: str | None
    arch_after: str | None
    params_before: int | None
    params_after: int | None
    max_abs_output_change: float | None = None
    details: dict = field(default_factory=dict)  # kind-specific keys (saliency, kernels, val_acc_base, ...)
    epoch: int | None = None  # None: the context fills in the run's epoch and step when emitted
    step: int | None = None

    def row(self) -> dict:
        base = {"epoch": self.epoch, "step": self.step, "kind": self.kind, "where": self.where,
                "arch_before": self.arch_before, "arch_after": self.arch_after,
                "params_before": self.params_before, "params_after": self.params_after,
                "max_abs_output_change": self.max_abs_output_change}
        clash = set(base) & set(self.details)
        if clash:
            raise ValueError(f"event details repeat schema keys {sorted(clash)}")
        return {**base, **self.details}
