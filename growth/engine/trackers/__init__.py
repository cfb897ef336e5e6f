"""Experiment trackers (conf/logger/: tensorboard, wandb, mlflow): what a person watches while a job runs.

The run record stays the source of truth; a tracker only mirrors it. Each tracker's package is imported
only when its logger is chosen, so a default run imports none of them."""
from growth.engine.trackers.base import NAMES, Trackers, build_trackers, check_loggers

__all__ = ["NAMES", "Trackers", "build_trackers", "check_loggers"]
