"""The method interface the engine calls. Methods are small: shared logic lives in grow/, blocks/, engine/.

Every hook gets the run context (growth/engine/context.py), never the trainer. A method never touches
the optimizer: it grows the model (`ctx.grow(site, how)`, or in place) and emits events
(`ctx.emit(Event(...))`); the engine then moves optimizer state to replaced tensors, registers new ones,
re-wraps DDP and checkpoints. A phase switch asks for a new model (`ctx.swap_model`).
"""
from dataclasses import dataclass

from growth.engine.event import Event  # noqa: F401 (methods import it from here)
from growth.errors import ConfigError

VARIANTS = ("fixed", "faithful")  # every method's faithful/fixed switches take these values


def choice(value, key: str, allowed=VARIANTS):
    """`value` if it is one of `allowed`, else a one-line ConfigError naming the key."""
    if value not in allowed:
        raise ConfigError(key, value, f"allowed: {', '.join(map(str, allowed))}")
    return value


@dataclass(frozen=True)
class Phase:
    """A stretch of training with its own model: `enter_phase` gives the model, the engine switches to it,
    restarts the LR schedule over the phase's epochs (as a separate run of that phase would), writes the
    phase_start event ({arch} in `where` becomes the new model's arch) and checkpoints the switch."""
    name: str
    epochs: int
    where: str | None = None  # the phase_start event's text; None: the name


class Method:
    name = "base"
    # The loss takes the soft targets mixup/cutmix make (recipe.mixup) through ctx.label_loss. A method
    # whose loss needs class indices (indexing by y) sets False: such a run stops with a ConfigError.
    soft_targets = True

    def __init__(self, cfg: dict):
        self.cfg = dict(cfg)

    @property
    def variants(self) -> dict:
        """faithful/fixed switches in force, recorded in summary.json."""
        return {}

    def setup(self, ctx) -> None:
        """Called once the model, data and optimizer exist (and after a resume). Raise ConfigError here
        for a setting that does not fit the model: one line, before training."""

    def phases(self) -> list[Phase]:
        """A phased method's phases, in order ([]: one phase, `train`, of trainer.epochs epochs)."""
        return []

    def enter_phase(self, ctx, phase: Phase, index: int):
        """The model phase `index` trains (None: keep the current one). Called when the phase starts: for
        index 0 only in a fresh run. Events emitted here come before the engine's phase_start."""
        return None

    def total_epochs(self, epochs: int) -> int:
        """How many epochs the run trains, from trainer.epochs (the phases' sum when they are declared)."""
        phases = self.phases()
        return sum(p.epochs for p in phases) if phases else epochs

    def phase(self, epoch: int) -> str:
        end = 0
        for p in self.phases():
            end += p.epochs
            if epoch <= end:
                return p.name
        return "train"

    def loss(self, model, x, y, ctx):
        """Returns (loss, logits) for one training batch; `model` is what to call (DDP when distributed)."""
        logits = model(x)
        return ctx.label_loss(logits, y), logits

    def on_epoch_end(self, ctx, epoch: int) -> None:
        """Structural changes after an epoch; each one is reported with ctx.emit(Event(...))."""

    def summary_extras(self, ctx) -> dict:
        """Keys added to summary.json for every run, finished or not."""
        return {}

    def dry_run_sizes(self, ctx) -> dict:
        """Per-config sizes a dry run reports (summary.json `method_sizes`), e.g. ADN every skip config,
        SWS learngene and descendants: measured on the built model after setup, without training data."""
        return {}

    def finish(self, ctx) -> dict:
        """After a completed run's test and deploy: extra evaluations or exports; keys join summary.json.
        A `report` key (a list of short lines) is printed at the end of run.py's output."""
        return {}

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass
