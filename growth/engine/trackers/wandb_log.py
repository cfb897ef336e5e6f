"""logger=wandb: a Weights & Biases run, offline unless the user is logged in.

Mode: logger.wandb.mode if set, else WANDB_MODE, else online with an API key (WANDB_API_KEY or
~/.netrc), else offline (files under <run dir>/wandb; `wandb sync` uploads them later). We make the run
id ourselves and keep it in the checkpoint, so a resume continues the same W&B run (resume="allow")."""
import os
import uuid
from pathlib import Path

import wandb

from growth.engine.trackers.base import Tracker, event_line, event_scalars

EXIT = {"completed": 0}


def logged_in() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    return netrc.is_file() and "api.wandb.ai" in netrc.read_text(errors="replace")


def mode(cfg: dict) -> str:
    return cfg.get("mode") or os.environ.get("WANDB_MODE") or ("online" if logged_in() else "offline")


class WandbTracker(Tracker):
    name = "wandb"

    def start(self, state, step) -> None:
        self.run_id = (state or {}).get("run_id") or uuid.uuid4().hex[:8]  # W&B ids: [a-z0-9]
        # console="off": our own log lines stay as they are; no system stats sampling in the job.
        settings = wandb.Settings(console="off", x_disable_stats=True, silent=True)
        self.wb = wandb.init(project=self.cfg.get("project") or "growth", entity=self.cfg.get("entity"),
                             group=self.cfg.get("group") or self.run.group, name=self.run.name, id=self.run_id,
                             resume="allow", dir=str(self.run.run_dir), mode=mode(self.cfg),
                             config=self.run.params, tags=list(self.cfg.get("tags") or []), settings=settings,
                             reinit="create_new")

    def scalars(self, values, step) -> None:
        self.wb.log(values, step=step)

    def event(self, row, step) -> None:
        self.wb.log({**event_scalars(row), "growth/text": event_line(row)}, step=step)

    def finish(self, summary, files) -> None:
        for key in ("status", "final_val_acc", "best_val_acc", "test_acc", "deploy_params", "train_macs_total"):
            if summary.get(key) is not None:
                self.wb.summary[key] = summary[key]
        self.wb.finish(exit_code=EXIT.get(summary.get("status"), 1))

    def close(self) -> None:
        self.wb.mark_preempting()  # W&B shows it preempted; the resume continues this run id
        self.wb.finish()

    def state_dict(self) -> dict:
        return {"run_id": self.run_id}


TRACKER = WandbTracker
