"""The run context: everything a method may see of a run, and nothing else.

Methods get a `RunContext` in every hook instead of the trainer. What it offers is on purpose:

| member                         | what                                                                 |
|--------------------------------|----------------------------------------------------------------------|
| model, epoch, step, epochs     | the model being trained now; the last finished epoch; steps so far   |
| steps_per_epoch, distributed   | batches per epoch; whether several ranks train                       |
| fresh                          | no step trained yet and no phase switch: a new run, not a resume     |
| val_history, last_val_acc      | val acc of every finished epoch, and of the last one                 |
| label_smoothing, device, probe | the trainer's settings; the fixed probe batch (on the device)        |
| label_loss(logits, y)          | the label loss: CE with label_smoothing for class indices, timm's    |
|                                | SoftTargetCrossEntropy for mixup/cutmix soft targets (recipe.mixup)  |
| data_info                      | the data's shape facts (name, classes, image size...)                |
| train_cost                     | training MACs and samples so far (every rank)                        |
| sizes()                        | params, deploy_params, MACs, train MACs per sample of the model now  |
| evaluate(split, model=None)    | loss and acc on "train", "val" or "test"                             |
| probe_output(model=None)       | eval output on the probe batch (events' max_abs_output_change)       |
| train_batches(order)           | one pass over this rank's training batches in a reproducible order;  |
|                                | the samples count as training cost (summed over ranks, at the model's|
|                                | train MACs per sample) when the hook returns                         |
| train_module(), sync_buffers() | the module to train the model through (DDP when distributed), and   |
|                                | rank 0's BN statistics on every rank after training through it       |
| add_train_macs(n, macs)        | extra training compute: n samples on this rank at `macs` each        |
| all_sum(*tensors)              | each tensor summed in place over the ranks (statistics growth needs) |
| grow(site, how)                | grow the model at a site (growth/models/growable.py)                 |
| copied(pairs)                  | (new, source) tensors: the copies take their source's optimizer state|
| emit(event)                    | record a structural event (growth/engine/event.py)                   |
| swap_model(model, restart)     | train another model from now on (a phase switch)                     |
| metrics()                      | the run's metrics rows so far                                        |
| checkpoint_path(name), save()  | a file in checkpoints/, and an atomic write of one (main rank only)  |
| export(name, model)            | trainer.export's checked file of another deployed model (main rank): |
|                                | checkpoints/<name>.pt2 or .onnx; its summary keys, {} when no export |

The engine registers new and replaced tensors with the optimizer, re-wraps DDP and checkpoints after a
hook that changed the model; a method never touches the optimizer.
"""
from growth.engine import dist
from growth.engine.event import Event
from growth.engine.io import atomic_torch_save
from growth.export import SUFFIX, check_format, export_or_warn
from growth.losses import label_ce


class RunContext:
    def __init__(self, trainer):
        self._trainer = trainer
        self._events: list[Event] = []
        self._pending_samples = 0  # train_batches' samples on this rank, counted when the hook returns
        self._replaced = []  # tensors growth replaced by larger ones: optimizer surgery when the hook returns
        self._copied = []  # (new, source) tensors: the source's optimizer state is cloned when the hook returns

    # ---- the run now ------------------------------------------------------------------------------
    @property
    def model(self):
        return self._trainer.model

    @property
    def epoch(self) -> int:
        return self._trainer.epoch

    @property
    def step(self) -> int:
        return self._trainer.step

    @property
    def epochs(self) -> int:
        return self._trainer.epochs

    @property
    def steps_per_epoch(self) -> int:
        return self._trainer.steps_per_epoch

    @property
    def fresh(self) -> bool:
        return self._trainer.step == 0 and not self._trainer.model_replaced

    @property
    def val_history(self) -> list[float]:
        return list(self._trainer.val_history)

    @property
    def last_val_acc(self):
        return self._trainer.last_val_acc

    @property
    def label_smoothing(self) -> float:
        return self._trainer.label_smoothing

    def label_loss(self, logits, y):
        """A method's label loss. `y`: class indices, or the soft targets a training batch carries when
        recipe.mixup/cutmix is on (timm's Mixup smoothed them already: no second smoothing)."""
        return label_ce(logits, y, self._trainer.label_smoothing)

    @property
    def device(self):
        return self._trainer.device

    @property
    def probe(self):
        return self._trainer.probe.to(self._trainer.device)

    @property
    def data_info(self) -> dict:
        return self._trainer.data.info

    @property
    def distributed(self) -> bool:
        return self._trainer.dist.enabled

    # ---- measuring --------------------------------------------------------------------------------
    def sizes(self) -> dict:
        return self._trainer.sizes()

    def evaluate(self, split: str, model=None) -> dict:
        if split not in ("train", "val", "test"):
            raise ValueError(f"split {split!r}: allowed train, val, test")
        return self._trainer.evaluate(getattr(self._trainer.data, split), model)

    def probe_output(self, model=None):
        return self._trainer.probe_output(model)

    @property
    def train_cost(self) -> dict:
        """Training compute so far: {"train_macs": MACs, "samples": samples}, over all ranks."""
        c = self._trainer.counters
        return {"train_macs": c["train_macs_cum"], "samples": c["samples_seen"]}

    def metrics(self) -> list[dict]:
        return self._trainer.record.metrics()

    # ---- data and compute for growth --------------------------------------------------------------
    def train_batches(self, order: int):
        """One pass over this rank's training batches, shuffled by `order` (use a number no training
        epoch uses, e.g. 1_000_000 + k, so the pass is reproducible and leaves training's order alone)."""
        loader = self._trainer.data.train
        loader.set_epoch(order)
        for x, y in loader:
            self._pending_samples += len(y)
            yield self._trainer.to_device(x, y)

    def train_module(self):
        """The module to train the current model through: re-wrapped now (DDP around a grown model)."""
        self._trainer.rewrap()
        return self._trainer.train_model

    def sync_buffers(self) -> None:
        """BN statistics of rank 0 on every rank (after training through train_module)."""
        dist.sync_buffers(self._trainer.model, self._trainer.dist)

    def all_sum(self, *tensors):
        """Each tensor summed in place over the ranks, so growth decisions made from this rank's
        train_batches agree on every rank (every rank must call it at the same point); one process: no-op."""
        return dist.all_sum(self._trainer.dist, *tensors)

    def add_train_macs(self, samples: int, macs_per_sample: int) -> None:
        """Extra training compute: `samples` on this rank, `macs_per_sample` each; summed over ranks (every
        rank must call it at the same point)."""
        t = self._trainer
        t.counters["train_macs_cum"] += dist.sum_count(t.dist, samples, t.device) * macs_per_sample

    def settle(self) -> None:
        """The engine, after a hook: train_batches' samples become training cost (summed over ranks)."""
        t, n = self._trainer, self._pending_samples
        self._pending_samples = 0
        if not t.dist.enabled and n == 0:
            return
        n = dist.sum_count(t.dist, n, t.device)
        if n:
            t.counters["train_macs_cum"] += n * t.sizes()["train_macs_per_sample"]
            t.counters["samples_seen"] += n

    # ---- growth -----------------------------------------------------------------------------------
    def grow(self, site, how: dict | None = None):
        """Grow the model at `site` (growth/models/growable.py); returns its GrowthResult. Replaced tensors
        get their optimizer state moved when the hook returns."""
        result = self._trainer.model.grow(site, how or {})
        self._replaced += result.replaced
        return result

    def replaced(self, replaced: list) -> None:
        """For growth done outside `grow` (a library's own modules): these Replaced entries get optimizer
        surgery when the hook returns."""
        self._replaced += list(replaced)

    def take_replaced(self) -> list:
        out, self._replaced = self._replaced, []
        return out

    def copied(self, pairs) -> None:
        """New tensors that copy existing ones (GrowthResult.copied, e.g. stacked layers): each gets a
        clone of its source's optimizer state when the hook returns, instead of empty state."""
        self._copied += list(pairs)

    def take_copied(self) -> list:
        out, self._copied = self._copied, []
        return out

    # ---- events and phases ------------------------------------------------------------------------
    def events(self) -> list[dict]:
        """The events recorded so far (rows of events.jsonl)."""
        return self._trainer.record.events()

    def emit(self, event: Event) -> None:
        if event.epoch is None:
            event.epoch = self._trainer.epoch
        if event.step is None:
            event.step = self._trainer.step
        self._events.append(event)

    def take_events(self) -> list[Event]:
        """The engine: the events emitted since the last call, to write."""
        events, self._events = self._events, []
        return events

    def swap_model(self, model, restart_schedule: bool = True) -> None:
        self._trainer.replace_model(model, restart_schedule=restart_schedule)

    # ---- files ------------------------------------------------------------------------------------
    @property
    def writes(self) -> bool:
        """This process writes the run record (one process, or rank 0)."""
        return self._trainer.record.write

    def checkpoint_path(self, name: str):
        return self._trainer.record.dir / "checkpoints" / name

    def save(self, name: str, obj) -> None:
        if self.writes:
            atomic_torch_save(self.checkpoint_path(name), obj)

    def export(self, name: str, model) -> dict:
        """With trainer.export: `model` (a deployed one, e.g. an ADN skip config) as checkpoints/<name>.pt2
        or .onnx, traced and checked on the probe batch as the run's own export; its summary keys."""
        fmt = check_format(self._trainer.cfg.get("export"))
        if not fmt or not self.writes:
            return {}
        return export_or_warn(fmt, model, self.probe, self.checkpoint_path(name + SUFFIX[fmt]))
