"""logger=tensorboard: torch.utils.tensorboard event files under <run dir>/tensorboard.

Scalars at the global step (epoch/... each epoch, step/... every `every_n_steps`), growth events as text
and as the scalar growth/event (1 at the event's step) drawn beside val acc in a custom-scalars chart,
the config as hparams with the final accuracies and sizes as their metrics."""
from pathlib import Path

from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams

from growth.engine.trackers.base import Tracker, event_line, event_scalars

HPARAM_METRICS = ("final_val_acc", "best_val_acc", "test_acc", "params", "deploy_params", "train_macs_total")
LAYOUT = {"growth": {"val acc and growth events": ["Multiline", ["epoch/val_acc", "growth/event"]],
                     "params and growth events": ["Multiline", ["epoch/params", "growth/params_after"]]}}


def _hparam_value(value):
    """TensorBoard's hparams take numbers, strings and booleans; anything else as its text."""
    return value if isinstance(value, (bool, int, float, str)) else str(value)


class TensorBoardTracker(Tracker):
    name = "tensorboard"

    def start(self, state, step) -> None:
        saved = (state or {}).get("log_dir")  # a resume writes where the run began
        self.log_dir = Path(saved or self.cfg.get("log_dir") or self.run.run_dir / "tensorboard")
        # A resume hides what the killed run wrote after the checkpoint's step (it is logged again).
        purge = step + 1 if state is not None else None
        self.writer = SummaryWriter(str(self.log_dir), purge_step=purge,
                                    flush_secs=int(self.cfg.get("flush_secs") or 30))
        if state is None:  # once per tracker run: the layout and the hparams
            self.writer.add_custom_scalars(LAYOUT)
            params = {k: _hparam_value(v) for k, v in self.run.params.items() if v is not None}
            for summary in hparams(params, {f"hparam/{k}": 0.0 for k in HPARAM_METRICS}):
                self.writer.file_writer.add_summary(summary)

    def scalars(self, values, step) -> None:
        for tag, value in values.items():
            self.writer.add_scalar(tag, value, step)

    def event(self, row, step) -> None:
        self.writer.add_text("growth/events", event_line(row), step)
        self.scalars(event_scalars(row), step)

    def finish(self, summary, files) -> None:
        step = int(summary.get("steps_done") or 0)
        for key in HPARAM_METRICS:
            if isinstance(summary.get(key), (int, float)):
                self.writer.add_scalar(f"hparam/{key}", float(summary[key]), step)
        self.writer.add_text("run/status", f"{summary.get('status')}: {summary.get('error') or 'ok'}", step)
        self.close()

    def close(self) -> None:
        self.writer.close()

    def state_dict(self) -> dict:
        return {"log_dir": str(self.log_dir)}


TRACKER = TensorBoardTracker
