"""The method interface the trainer calls. Methods are small: shared logic lives in grow/, blocks/, engine/.

A method never touches the optimizer itself: when it grows the model it returns event rows, and the
engine registers new parameters and carries everything else across; at a phase switch it asks the
trainer for a new model or schedule (`trainer.replace_model`, `trainer.restart_schedule`).
"""
import torch.nn.functional as F

from growth.errors import ConfigError
from growth.measure import count_params

VARIANTS = ("fixed", "faithful")  # every method's faithful/fixed switches take these values


def choice(value, key: str, allowed=VARIANTS):
    """`value` if it is one of `allowed`, else a one-line ConfigError naming the key."""
    if value not in allowed:
        raise ConfigError(key, value, f"allowed: {', '.join(map(str, allowed))}")
    return value


def record_first_phase(trainer, where: str) -> None:
    """A phased method's first phase_start event (epoch 0), written once: a run restarted before its
    first checkpoint already has it."""
    record = trainer.record
    if not record.write or any(e["kind"] == "phase_start" for e in record.events()):
        return
    n = count_params(trainer.model)
    record.add_event({"epoch": 0, "step": 0, "kind": "phase_start", "where": where, "arch_before": None,
                      "arch_after": trainer.model.arch_string(), "params_before": n, "params_after": n,
                      "max_abs_output_change": None})


class Method:
    name = "base"

    def __init__(self, cfg: dict):
        self.cfg = dict(cfg)

    @property
    def variants(self) -> dict:
        """faithful/fixed switches in force, recorded in summary.json."""
        return {}

    def setup(self, trainer) -> None:
        """Called once the model, data and optimizer exist (and after a resume)."""

    def total_epochs(self, epochs: int) -> int:
        """How many epochs the run trains, from trainer.epochs (a phased method may add its phases)."""
        return epochs

    def phase(self, epoch: int) -> str:
        return "train"

    def loss(self, model, x, y, trainer):
        """Returns (loss, logits) for one training batch."""
        logits = model(x)
        return F.cross_entropy(logits, y, label_smoothing=trainer.label_smoothing), logits

    def on_epoch_end(self, trainer, epoch: int) -> list[dict]:
        """Structural changes after an epoch, as event rows (see growth/engine/record.py)."""
        return []

    def summary_extras(self, trainer) -> dict:
        """Keys added to summary.json for every run, finished or not."""
        return {}

    def finish(self, trainer, record) -> dict:
        """After a completed run's test and deploy: extra evaluations or exports; keys join summary.json.
        A `report` key (a list of short lines) is printed at the end of run.py's output.
        To train another model in a later phase, call `trainer.replace_model(model)` from on_epoch_end."""
        return {}

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass
