"""The method interface the engine calls. Methods are small: shared logic lives in grow/, blocks/, engine/.

Every hook gets the run context (growth/engine/context.py), never the trainer. A method never touches
the optimizer: it grows the model (`ctx.grow(site, how)`, or in place) and emits events
(`ctx.emit(Event(...))`); the engine then moves optimizer state to replaced tensors, registers new ones,
re-wraps DDP and checkpoints. A phase switch asks for a new model (`ctx.swap_model`).
"""
import torch.nn.functional as F

from growth.engine.event import Event
from growth.errors import ConfigError
from growth.measure import count_params

VARIANTS = ("fixed", "faithful")  # every method's faithful/fixed switches take these values


def choice(value, key: str, allowed=VARIANTS):
    """`value` if it is one of `allowed`, else a one-line ConfigError naming the key."""
    if value not in allowed:
        raise ConfigError(key, value, f"allowed: {', '.join(map(str, allowed))}")
    return value


def record_first_phase(ctx, where: str) -> None:
    """A phased method's first phase_start event (epoch 0), written once: a run restarted before its
    first checkpoint already has it."""
    if not ctx.writes or any(e["kind"] == "phase_start" for e in ctx.events()):
        return
    n = count_params(ctx.model)
    ctx.emit(Event("phase_start", where, None, ctx.model.arch_string(), n, n, epoch=0, step=0))


class Method:
    name = "base"

    def __init__(self, cfg: dict):
        self.cfg = dict(cfg)

    @property
    def variants(self) -> dict:
        """faithful/fixed switches in force, recorded in summary.json."""
        return {}

    def setup(self, ctx) -> None:
        """Called once the model, data and optimizer exist (and after a resume). Raise ConfigError here
        for a setting that does not fit the model: one line, before training."""

    def total_epochs(self, epochs: int) -> int:
        """How many epochs the run trains, from trainer.epochs (a phased method may add its phases)."""
        return epochs

    def phase(self, epoch: int) -> str:
        return "train"

    def loss(self, model, x, y, ctx):
        """Returns (loss, logits) for one training batch; `model` is what to call (DDP when distributed)."""
        logits = model(x)
        return F.cross_entropy(logits, y, label_smoothing=ctx.label_smoothing), logits

    def on_epoch_end(self, ctx, epoch: int) -> None:
        """Structural changes after an epoch; each one is reported with ctx.emit(Event(...))."""

    def summary_extras(self, ctx) -> dict:
        """Keys added to summary.json for every run, finished or not."""
        return {}

    def finish(self, ctx) -> dict:
        """After a completed run's test and deploy: extra evaluations or exports; keys join summary.json.
        A `report` key (a list of short lines) is printed at the end of run.py's output."""
        return {}

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass
