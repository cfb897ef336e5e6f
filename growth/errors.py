"""Errors a user can fix. Each message is one line naming the key, the value and what is allowed."""


class ConfigError(ValueError):
    """Bad input found before training starts (config value, dataset root, checkpoint)."""

    def __init__(self, key: str, value, allowed: str):
        self.key, self.value, self.allowed = key, value, allowed
        super().__init__(f"{key}={value!r}: {allowed}")


class RunDirBusy(ConfigError):
    """Another live process holds the run directory: stop without writing anything into it."""


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the run stops with status 'failed'."""

    def __init__(self, epoch: int, step: int, loss: float):
        self.epoch, self.step, self.loss = epoch, step, loss
        super().__init__(f"loss became {loss} at epoch {epoch}, step {step}; "
                         "the last good checkpoint is kept (lower the learning rate or enable grad clipping)")


class Interrupted(RuntimeError):
    """A signal (SIGTERM, SIGINT, SIGUSR2) asked the run to stop; it ends with status 'interrupted'."""
