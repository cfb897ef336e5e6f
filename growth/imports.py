"""Import-time costs we avoid.

timm imports wandb whenever it is installed (timm.utils.summary, for a W&B option of timm's own scripts that
we never use), which adds about 1.5 s to every run's start here. Inside `wandb_hidden()` an import of wandb
fails as if it were not installed, so timm skips it; afterwards wandb imports as usual, which is what our W&B
logger (growth/engine/trackers/wandb_log.py) does when `logger=wandb` asks for it.
"""
import sys
from contextlib import contextmanager


@contextmanager
def wandb_hidden():
    if "wandb" in sys.modules:  # already imported (or hidden by an outer call): nothing to save
        yield
        return
    sys.modules["wandb"] = None  # the import system's "not importable" marker
    try:
        yield
    finally:
        if sys.modules.get("wandb", 0) is None:
            del sys.modules["wandb"]
