"""What every growing method reads from the `grow` config group: how often it grows and when it stops.

    self.limits = GrowLimits(cfg.get("grow", {}))
    if self.limits.due(epoch, ctx.epochs): ...        # every grow.interval epochs, never after the last
    reason = self.limits.reached(ctx, events)         # grow.max_params / grow.max_events, or None
"""
from growth.errors import ConfigError


def positive_int(value, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(key, value, "must be a positive integer")
    return value


class GrowLimits:
    def __init__(self, grow_cfg: dict):
        self.interval = positive_int(grow_cfg.get("interval", 3), "grow.interval")
        self.max_params, self.max_events = grow_cfg.get("max_params"), grow_cfg.get("max_events")

    def due(self, epoch: int, epochs: int) -> bool:
        """A growth step after this epoch: every `interval` epochs, never after the run's last."""
        return epoch < epochs and epoch % self.interval == 0

    def reached(self, ctx, events: int, what: str = "growth events") -> str | None:
        """Why growth stops here (deployed params or event count), or None."""
        if self.max_params is not None and ctx.sizes()["deploy_params"] >= float(self.max_params):
            return f"deployed params reached grow.max_params={self.max_params}"
        if self.max_events is not None and events >= int(self.max_events):
            return f"made grow.max_events={self.max_events} {what}"
        return None
