"""The tracker interface, the fan-out the trainer calls, and the checks of conf/logger/ keys.

A tracker that raises (no network, a bad key, a full disk) is warned about once and switched off: the
run goes on and its record is complete. Trackers log at the global optimizer step, so a resumed run's
rows continue where the checkpoint left off; each tracker's own run id is kept in the checkpoint."""
import importlib
import importlib.util
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

from growth.errors import ConfigError

log = logging.getLogger("growth")

# logger name -> (module under growth/engine/trackers, the package it needs)
NAMES = {"tensorboard": ("tensorboard_log", "tensorboard"), "wandb": ("wandb_log", "wandb"),
         "mlflow": ("mlflow_log", "mlflow")}
INSTALL = "pip install 'growth[trackers]'"


@dataclass
class RunInfo:
    """What every tracker knows of the run: where it writes, its names, its config."""
    run_dir: Path
    name: str
    group: str | None  # the sweep (the multirun directory) this job belongs to, if any
    params: dict = field(default_factory=dict)  # the config flattened: {"optim.lr": 0.1, ...}


class Tracker:
    """One tracker. Subclasses open their run in `start` (a new one, or the one `state` names)."""
    name = "tracker"

    def __init__(self, cfg: dict, run: RunInfo):
        self.cfg, self.run = cfg, run
        self.every = cfg.get("every_n_steps")

    def start(self, state: dict | None, step: int) -> None:
        raise NotImplementedError

    def scalars(self, values: dict, step: int) -> None:
        raise NotImplementedError

    def event(self, row: dict, step: int) -> None:
        raise NotImplementedError

    def finish(self, summary: dict, files: list) -> None:
        """The run ended (completed or failed): final numbers, artifacts, close the tracker's run."""
        raise NotImplementedError

    def close(self) -> None:
        """The run stops without ending (interrupted, crashed): flush and leave it to be resumed."""
        raise NotImplementedError

    def state_dict(self) -> dict:
        return {}

    def due(self, step: int) -> bool:
        """Step scalars are due at this optimizer step (every `every_n_steps`; never when null)."""
        return bool(self.every) and step % self.every == 0


def check_loggers(cfg: dict) -> list[str]:
    """The chosen loggers' names, after checking their keys (one ConfigError line, before training)."""
    loggers = cfg.get("logger") or {}
    if not isinstance(loggers, dict):
        raise ConfigError("logger", loggers, f"allowed: logger=NAME or logger=[NAME,...] with NAME in "
                          f"{', '.join(NAMES)}")
    for name, sub in loggers.items():
        if name not in NAMES:
            raise ConfigError("logger", name, f"unknown logger; allowed: {', '.join(NAMES)}")
        every = (sub or {}).get("every_n_steps")
        if every is not None and (isinstance(every, bool) or not isinstance(every, int) or every <= 0):
            raise ConfigError(f"logger.{name}.every_n_steps", every,
                              "allowed: a positive number of optimizer steps, or null (per-epoch scalars only)")
        if importlib.util.find_spec(NAMES[name][1]) is None:
            raise ConfigError("logger", name, f"needs the {NAMES[name][1]} package: {INSTALL}")
        mode = (sub or {}).get("mode")
        if name == "wandb" and mode not in (None, "online", "offline", "disabled"):
            raise ConfigError("logger.wandb.mode", mode, "allowed: null (online if logged in, else offline), "
                              "online, offline, disabled")
    return list(loggers)


def flat_params(cfg: dict, prefix: str = "") -> dict:
    """{"optim.lr": 0.1, ...}: the config's leaves, without Hydra's, the trackers' own and local ones."""
    out = {}
    for key, value in cfg.items():
        full = f"{prefix}{key}"
        if full in ("hydra", "logger", "local"):
            continue
        if isinstance(value, dict):
            out.update(flat_params(value, f"{full}."))
        else:
            out[full] = value
    return out


def run_info(cfg: dict, run_dir) -> RunInfo:
    """Names from the sweep: under a multirun (its directory holds multirun.yaml) the group is that
    directory's name and the job is named by its own directory; else the config's run_name."""
    run_dir = Path(run_dir).resolve()
    in_sweep = (run_dir.parent / "multirun.yaml").is_file()
    group = run_dir.parent.name if in_sweep else None
    name = run_dir.name if in_sweep else str(cfg.get("run_name") or run_dir.name)
    return RunInfo(run_dir, name, group, flat_params(cfg))


def epoch_scalars(row: dict) -> dict:
    """A metrics.jsonl row as tracker scalars: every number, under epoch/ (epoch/val_acc, ...)."""
    return {f"epoch/{k}": float(v) for k, v in row.items() if k != "step"  # the step is the x axis
            and isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}


def event_scalars(row: dict) -> dict:
    """An event as scalars at its step: a marker (1) and, for a structural one, the params after it."""
    values = {"growth/event": 1.0}
    if row.get("params_after") is not None:
        values["growth/params_after"] = float(row["params_after"])
    return values


def event_line(row: dict) -> str:
    """One growth (or phase, config) event as a line of text."""
    return (f"epoch {row['epoch']} step {row['step']}: {row['kind']} at {row['where']}: "
            f"{row['arch_before']} -> {row['arch_after']}, params {row['params_before']} -> {row['params_after']}")


class Trackers:
    """Every chosen tracker behind one object; each call goes to each tracker, and a tracker that raises
    is warned about once and dropped. An empty Trackers (the default) does nothing."""

    def __init__(self, trackers=()):
        self.active = list(trackers)
        self.states = {}  # the state of each tracker, also of one that was dropped (kept for the resume)

    def _call(self, tracker, what: str, *args) -> None:
        if tracker not in self.active:
            return
        try:
            getattr(tracker, what)(*args)
        except Exception as e:  # noqa: BLE001 - any tracker failure: the run record is complete
            self.active.remove(tracker)
            log.warning("logger.%s: %s failed (%s: %s); this logger is off for the rest of the run, the "
                        "run record is complete", tracker.name, what, type(e).__name__, str(e)[:300])

    def _each(self, what: str, *args) -> None:
        for tracker in list(self.active):
            self._call(tracker, what, *args)

    def start(self, states: dict | None, step: int, record) -> None:
        """Open each tracker's run: the one its saved state names, else a new one. A new run joining a job
        that already trained (a logger added on resume) is first given the record's rows so far."""
        self.states = dict(states or {})
        for tracker in list(self.active):
            state = self.states.get(tracker.name)
            self._call(tracker, "start", state, step)
            if state is None and step > 0:
                self._replay(tracker, record)

    def _replay(self, tracker, record) -> None:
        for row in record.metrics():
            if "step" in row:  # rows from before the step was recorded cannot be placed
                self._call(tracker, "scalars", epoch_scalars(row), row["step"])
        for row in record.events():
            self._call(tracker, "event", row, row["step"])

    def wants_step(self, step: int) -> bool:
        return any(t.due(step) for t in self.active)

    def step_scalars(self, values: dict, step: int) -> None:
        for tracker in list(self.active):
            if tracker.due(step):
                self._call(tracker, "scalars", values, step)

    def epoch(self, row: dict, step: int) -> None:
        self._each("scalars", epoch_scalars(row), step)

    def event(self, row: dict) -> None:
        self._each("event", row, row["step"])

    def end(self, summary: dict, files: list) -> None:
        """After the summary is written: finish (completed, failed), or close for a resume (interrupted)."""
        if summary.get("status") == "interrupted":
            self.close()
        else:
            self._each("finish", summary, [Path(f) for f in files if Path(f).is_file()])
            self.active = []

    def close(self) -> None:
        self._each("close")
        self.active = []

    def state_dict(self) -> dict:
        for tracker in self.active:
            self.states[tracker.name] = tracker.state_dict()
        return dict(self.states)


def build_trackers(cfg: dict, run_dir, is_main: bool) -> Trackers:
    """The chosen loggers (checked by check_loggers in the job's validate), rank 0 only: under DDP the
    other ranks log nothing."""
    names = list(cfg.get("logger") or {})
    if not names or not is_main:
        return Trackers()
    run = run_info(cfg, run_dir)
    trackers = []
    for name in names:
        module = importlib.import_module(f"growth.engine.trackers.{NAMES[name][0]}")
        try:
            trackers.append(module.TRACKER(cfg["logger"].get(name) or {}, run))
        except Exception as e:  # noqa: BLE001 - as a failing tracker: warned, the run goes on
            log.warning("logger.%s: could not be set up (%s: %s); the run goes on without it", name,
                        type(e).__name__, str(e)[:300])
    return Trackers(trackers)
