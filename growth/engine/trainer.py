"""The training loop: train/val each epoch, method hooks, metrics and events, atomic checkpoints."""
import contextlib
import logging
import sys
import time

import torch
import torch.nn.functional as F
from tqdm import tqdm

from growth.arch import spec_to_json
from growth.engine import dist
from growth.engine.checkpoint import CheckpointClock, save_checkpoint
from growth.engine.context import RunContext
from growth.engine.ema import ModelEma, ema_config
from growth.engine.event import Event
from growth.engine.env import rng_state, set_rng_state
from growth.engine.mixup import Mixer, mixup_active
from growth.engine.optim import add_params, build_optimizer, copy_state, replace_params, restore_group_order
from growth.engine.schedule import Schedule
from growth.engine.trackers import Trackers
from growth.errors import ConfigError, Interrupted, TrainingDiverged
from growth.losses import hard_labels
from growth.measure import count_params, forward_macs, train_step_macs

log = logging.getLogger("growth")


class Trainer:
    def __init__(self, model, data, method, record, *, optim_cfg, trainer_cfg, device, amp_dtype,
                 dist_info=dist.DistInfo(), recipe=None, seed=0):
        self.model, self.data, self.method, self.record = model.to(device), data, method, record
        self.dist = dist_info
        self.optim_cfg, self.cfg, self.device, self.amp_dtype = optim_cfg, trainer_cfg, device, amp_dtype
        self.channels_last = bool(trainer_cfg.get("channels_last", False)) and device.type == "cuda"
        if trainer_cfg.get("channels_last") and not self.channels_last:
            log.warning("trainer.channels_last=true needs CUDA; using the default memory format on %s", device)
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.epochs = method.total_epochs(int(trainer_cfg["epochs"]))
        self.recipe = dict(recipe or {})  # conf/recipe: mixup/cutmix, EMA (transforms and sampler: the data's)
        smoothing = self.recipe.get("label_smoothing")  # null: trainer.label_smoothing
        self.label_smoothing = float(trainer_cfg.get("label_smoothing", 0.0) if smoothing is None else smoothing)
        self.grad_clip = float(trainer_cfg.get("grad_clip", 0) or 0)
        self.optimizer = build_optimizer(self.model, optim_cfg)
        self.steps_per_epoch = len(data.train)
        self.schedule = Schedule(self.optimizer, self.epochs * self.steps_per_epoch, optim_cfg,
                                 self.steps_per_epoch)
        self.scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
        self.epoch, self.step = 0, 0
        self.counters = {"samples_seen": 0, "train_macs_cum": 0, "train_time_s": 0.0, "best_val_acc": 0.0}
        self.stop_requested = None  # set by a signal handler; checked every step
        self.model_replaced = False  # a method swapped the model (phase switch): resume from the spec
        self.configured_spec = self.model.arch_spec()  # what the config built (checked on resume)
        # A checkpoint taken inside an epoch (the batch reached, the epoch's running sums) hands them to
        # the resumed run's first epoch through `resume_point`.
        self.resume_point = None
        self.clock = CheckpointClock(trainer_cfg.get("checkpoint_every"))
        self._macs_cache = {}
        self.probe = next(iter(data.val))[0][:int(trainer_cfg.get("probe_batch", 32))]
        self.train_model = None
        self.compile = bool(trainer_cfg.get("compile", False))
        self.ctx = RunContext(self)  # what the method's hooks see of this run
        self.trackers = Trackers()  # conf/logger: set by the job (rank 0), none by default
        self.mixer = self._mixer(seed)
        ema = ema_config(self.recipe, int(trainer_cfg["batch_size"]) * self.dist.world, self.epochs)
        self.ema = ModelEma(self.model, ema) if ema else None
        self.rewrap()

    def _mixer(self, seed: int):
        if not mixup_active(self.recipe):
            return None
        if not self.probe.is_floating_point():
            raise ConfigError("recipe.mixup", self.recipe.get("mixup"), f"mixup/cutmix mix images; data "
                              f"{self.data.info['name']} gives {self.probe.dtype} inputs: allowed 0 (off) here")
        if not getattr(self.method, "soft_targets", True):
            raise ConfigError("recipe.mixup", self.recipe.get("mixup"), f"method {self.method.name} needs class "
                              "labels in its loss, and mixup/cutmix turns them into soft targets: allowed 0 (off)")
        return Mixer(self.recipe, self.data.info["num_classes"], self.label_smoothing, seed, self.dist.rank)

    def rewrap(self) -> None:
        """The module the training step calls (DDP around self.model when distributed). Called again
        after every structural change; the old wrapper is dropped first so its gradient hooks go."""
        self.train_model = None
        self.train_model = dist.wrap(self.model, self.dist, self.device)
        if self.compile:  # a fresh compiled module per structure: growth changes the graph
            self.train_model = torch.compile(self.train_model)

    # ---- sizes --------------------------------------------------------------------------------
    def _arch_key(self) -> str:
        return spec_to_json(self.model.arch_spec())

    def sizes(self) -> dict:
        """params, deploy_params, macs (fused model, one sample) and train MACs per sample, per arch."""
        key = self._arch_key()
        if key not in self._macs_cache:
            with torch.random.fork_rng(devices=[]):  # measuring must not move the training RNG
                self._macs_cache[key] = self._measure()
        return self._macs_cache[key]

    def _measure(self) -> dict:
        deployed = self.model.deploy()
        return {"params": count_params(self.model), "deploy_params": count_params(deployed),
                "macs": forward_macs(deployed, self.probe.to(self.device)),
                "train_macs_per_sample": train_step_macs(self.model, self.probe.to(self.device))}

    # ---- phase switches -----------------------------------------------------------------------
    def replace_model(self, model, *, restart_schedule: bool = True) -> None:
        """Train another model from now on (a method's phase switch: teacher -> student, aux -> ...).

        The optimizer starts empty for the new parameters; with `restart_schedule` the LR schedule
        (warmup, cosine) starts again over the epochs that remain, as a separate run of that phase
        would. The checkpoint records the swap, so a resume rebuilds this model, not the configured one."""
        self.model = model.to(self.device)
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.optimizer = build_optimizer(self.model, self.optim_cfg)
        old = self.schedule
        self.restart_schedule((self.epochs - self.epoch) * self.steps_per_epoch)
        if not restart_schedule:
            self.schedule.load_state_dict(old.state_dict())
        self.model_replaced = True
        self.rewrap()

    def restart_schedule(self, steps: int) -> None:
        """A fresh LR schedule (warmup, cosine) over the next `steps` steps: a phase's own schedule."""
        self.schedule = Schedule(self.optimizer, steps, self.optim_cfg, self.steps_per_epoch)

    @property
    def last_val_acc(self):
        """The last finished epoch's val acc (kept in the counters, so a resumed run knows it too)."""
        if "last_val_acc" in self.counters:
            return self.counters["last_val_acc"]
        rows = self.record.metrics()  # a checkpoint from before the counter existed
        return rows[-1]["val_acc"] if rows else None

    @last_val_acc.setter
    def last_val_acc(self, value) -> None:
        self.counters["last_val_acc"] = value

    @property
    def val_history(self) -> list:
        """Val acc of every finished epoch (in the counters; older checkpoints: from the metrics rows)."""
        if "val_history" not in self.counters:
            self.counters["val_history"] = [r["val_acc"] for r in self.record.metrics()][:self.epoch]
        return self.counters["val_history"]

    # ---- state --------------------------------------------------------------------------------
    def save(self, in_epoch: dict | None = None) -> None:
        """The checkpoint: at an epoch's end, or inside one (`in_epoch`: where, and the epoch's sums)."""
        self.clock.saved(self.step)
        if not self.dist.is_main:
            return
        save_checkpoint(self.record.path("last"), model=self.model, optimizer=self.optimizer,
                        schedule=self.schedule, method=self.method, epoch=self.epoch, step=self.step,
                        counters=self.counters, rng=rng_state(), model_replaced=self.model_replaced,
                        configured_spec=self.configured_spec, in_epoch=in_epoch,
                        ema=None if self.ema is None else self.ema.state_dict(),
                        trackers=self.trackers.state_dict())

    def load(self, ckpt: dict) -> None:
        self.model.load_state_dict(ckpt["model"])
        if self.ema is not None:  # the EMA of the loaded model; a checkpoint without one starts it here
            self.ema.reset(self.model)
            if ckpt.get("ema") is not None:
                self.ema.load_state_dict(ckpt["ema"])
        restore_group_order(self.optimizer, self.model, ckpt["optimizer_param_names"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.schedule.load_state_dict(ckpt["schedule"])
        self.method.load_state_dict(ckpt["method"])
        self.epoch, self.step, self.counters = ckpt["epoch"], ckpt["step"], dict(ckpt["counters"])
        self.model_replaced = bool(ckpt.get("model_replaced", False))
        self.configured_spec = ckpt.get("configured_spec", self.configured_spec)
        self.resume_point = ckpt.get("in_epoch")
        set_rng_state(ckpt["rng"])

    # ---- loop ---------------------------------------------------------------------------------
    def _autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def to_device(self, x, y):
        x = x.to(self.device, non_blocking=True)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, y.to(self.device, non_blocking=True)

    def _progress(self, it, total, desc, initial=0):
        quiet = not self.cfg.get("progress", True) or not sys.stderr.isatty()
        return tqdm(it, total=total, desc=desc, leave=False, disable=quiet, dynamic_ncols=True, initial=initial)

    def _step_flags(self, batch: int) -> tuple[bool, bool]:
        """(stop, save) before a step: a signal asked to stop; a step checkpoint is due. Distributed, every
        rank must decide alike (else some wait in an all-reduce the others never join): summed over ranks."""
        stop, save = self.stop_requested is not None, self.clock.due(self.step, batch)
        if not self.dist.enabled:
            return stop, save
        flags = dist.all_sum(self.dist, torch.tensor([float(stop), float(save)], device=self.device))[0]
        stop, save = flags.tolist()
        return stop > 0, save > 0

    def _epoch_start(self, epoch: int) -> dict:
        """This epoch's running sums: fresh, or those of the step checkpoint a resume starts from."""
        point, self.resume_point = self.resume_point, None
        if point is None or point["epoch"] != epoch:
            zero = torch.zeros((), device=self.device)
            return {"epoch": epoch, "batch": 0, "loss_sum": zero, "correct": zero.clone(), "seen": 0,
                    "lr": self.schedule.lr, "time_s": 0.0}
        if not self.dist.is_main:  # the saved sums are over all ranks and rank 0 carries them
            zero = torch.zeros((), device=self.device)
            return {**point, "loss_sum": zero, "correct": zero.clone(), "seen": 0}
        return {**point, "loss_sum": point["loss_sum"].to(self.device), "correct": point["correct"].to(self.device)}

    def _in_epoch_state(self, state: dict, t0: float) -> dict:
        """What a step checkpoint holds of the epoch so far (sums over every rank)."""
        seen = torch.tensor(float(state["seen"]), device=self.device)
        loss_sum, correct, seen = dist.all_sum(self.dist, state["loss_sum"].clone(), state["correct"].clone(), seen)
        return {**state, "loss_sum": loss_sum.detach().cpu(), "correct": correct.detach().cpu(),
                "seen": int(seen.item()), "time_s": state["time_s"] + time.perf_counter() - t0}

    def train_epoch(self, epoch: int) -> dict:
        self.model.train()
        state, t0 = self._epoch_start(epoch), time.perf_counter()
        self.data.train.set_epoch(epoch, state["batch"])
        for x, y in self._progress(self.data.train, len(self.data.train), f"epoch {epoch}", state["batch"]):
            stop, save = self._step_flags(state["batch"])
            if stop or save:  # preemption: save this very step, so the resume loses nothing
                self.save(self._in_epoch_state(state, t0))
            if stop:
                raise Interrupted(f"{self.stop_requested or 'a signal on another rank'} at epoch {epoch}, step "
                                  f"{self.step} (batch {state['batch']} of {len(self.data.train)}); "
                                  f"checkpoint saved at this step")
            x, y = self.to_device(x, y)
            loss, logits, y = self.train_step(x, y, epoch)
            state["loss_sum"] += loss * len(y)
            state["correct"] += (logits.argmax(1) == hard_labels(y)).sum()
            state["seen"] += len(y)
            state["batch"] += 1
            if self.trackers.wants_step(self.step):  # one host sync every N steps, only with a logger on
                self.trackers.step_scalars({"step/train_loss": loss.item(), "step/lr": self.schedule.lr}, self.step)
        dist.sync_buffers(self.model, self.dist)
        seen_t = torch.tensor(float(state["seen"]), device=self.device)
        loss_sum, correct, seen_t = dist.all_sum(self.dist, state["loss_sum"], state["correct"].float(), seen_t)
        seen = int(seen_t.item())
        return {"train_loss": loss_sum.item() / max(seen, 1), "train_acc": correct.item() / max(seen, 1),
                "samples": seen, "lr": state["lr"], "time_s": state["time_s"] + time.perf_counter() - t0}

    def train_step(self, x, y, epoch: int) -> tuple:
        """One optimizer step on one batch already on the device (the model in train mode): the method's
        loss, backward, clipping, the optimizer, the LR schedule and the EMA. Returns (loss, logits, y),
        detached; with mixup on, y are the soft targets the step trained on."""
        if self.mixer is not None:  # y becomes soft targets (label-smoothed by timm)
            x, y = self.mixer(x, y, self.step)
        with self._autocast():
            loss, logits = self.method.loss(self.train_model, x, y, self.ctx)
        # One host sync per step buys a failure that names its step; cheap at our scales.
        # Distributed, every rank must stop together (else the others wait in all-reduce).
        bad = dist.all_sum(self.dist, (~torch.isfinite(loss.detach())).float())[0]
        if bad.item():
            raise TrainingDiverged(epoch, self.step + 1, loss.item())
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.schedule.step()
        self.step += 1
        if self.ema is not None:
            self.ema.update(self.model, self.step)
        return loss.detach(), logits.detach(), y

    @torch.no_grad()
    def evaluate(self, loader, model=None) -> dict:
        model = model or self.model
        model.eval()
        loss_sum, correct, n = 0.0, 0, 0
        for x, y in loader:
            x, y = self.to_device(x, y)
            with self._autocast():
                logits = model(x)
            loss_sum += F.cross_entropy(logits.float(), y, reduction="sum").item()
            correct += (logits.argmax(1) == y).sum().item()
            n += len(y)
        return {"loss": loss_sum / max(n, 1), "acc": correct / max(n, 1)}

    @torch.no_grad()
    def probe_output(self, model=None) -> torch.Tensor:
        """Eval-mode output on a fixed batch: `max_abs_output_change` of events compares two of these."""
        model = model or self.model
        was = model.training
        model.eval()
        out = model(self.probe.to(self.device)).float()
        model.train(was)
        return out

    def fit(self) -> None:
        while self.epoch < self.epochs:
            self.run_epoch(self.epoch + 1)

    def run_epoch(self, epoch: int) -> None:
        sizes = self.sizes()
        tr = self.train_epoch(epoch)
        t0 = time.perf_counter()
        va = self.evaluate(self.data.val)
        ve = None if self.ema is None else self.evaluate(self.data.val, self.ema.module)
        lr, dt = tr["lr"], tr["time_s"] + time.perf_counter() - t0  # lr at the epoch's start, as logged before
        c = self.counters
        c["samples_seen"] += tr["samples"]
        c["train_macs_cum"] += tr["samples"] * sizes["train_macs_per_sample"]
        c["train_time_s"] += dt
        c["best_val_acc"] = max(c["best_val_acc"], va["acc"])
        row = {"epoch": epoch, "phase": self.method.phase(epoch), "arch": self.model.arch_string(),
               "params": sizes["params"], "deploy_params": sizes["deploy_params"], "macs": sizes["macs"],
               "train_loss": tr["train_loss"], "train_acc": tr["train_acc"], "val_loss": va["loss"],
               "val_acc": va["acc"], "lr": lr, "epoch_time_s": dt, "samples_seen": c["samples_seen"],
               "train_macs_cum": c["train_macs_cum"], "step": self.step}
        if ve is not None:  # the EMA's val numbers beside the raw model's; resets: EMA restarts so far
            row.update(val_loss_ema=ve["loss"], val_acc_ema=ve["acc"], ema_resets=c.get("ema_resets", 0))
        self.record.add_metrics(row)
        self.trackers.epoch(row, self.step)
        ema = "" if ve is None else f" | ema val loss {ve['loss']:.4f} acc {ve['acc']:.4f}"
        log.info("epoch %d/%d %s arch %s params %s | train loss %.4f acc %.4f | val loss %.4f acc %.4f%s | "
                 "lr %.2e | %.1fs", epoch, self.epochs, row["phase"], row["arch"], f"{row['params']:,}",
                 row["train_loss"], row["train_acc"], row["val_loss"], row["val_acc"], ema, lr, dt)
        self.epoch, c["last_val_acc"] = epoch, va["acc"]
        self.val_history.append(va["acc"])
        self.call_hook(self.method.on_epoch_end, epoch)
        nxt = self._next_phase(epoch)
        if nxt is not None:
            self.call_hook(self._start_phase, nxt)
        self.save()

    # ---- declared phases (growth/methods/base.py Phase) ------------------------------------------
    def start_phases(self) -> None:
        """After setup: a fresh run enters its first phase (its model, its own schedule); every run makes
        sure the first phase_start event is on record."""
        if self.method.phases():
            self.call_hook(self._start_phase, 0)

    def _next_phase(self, epoch: int):
        end = 0
        for i, p in enumerate(self.method.phases()[:-1]):
            end += p.epochs
            if epoch == end:
                return i + 1
        return None

    def _start_phase(self, ctx, index: int) -> None:
        phases = self.method.phases()
        phase, old = phases[index], self.model
        before = (old.arch_string(), count_params(old))
        if index > 0 or ctx.fresh:
            new = self.method.enter_phase(ctx, phase, index)
            if new is not None:
                self.replace_model(new, restart_schedule=True)
            if index == 0 and len(phases) > 1:  # the first phase's cosine spans that phase only
                self.restart_schedule(phase.epochs * self.steps_per_epoch)
        where = (phase.where or phase.name).replace("{arch}", self.model.arch_string())
        n = count_params(self.model)
        if index > 0:
            ctx.emit(Event("phase_start", where, before[0], self.model.arch_string(), before[1], n))
        # The first phase's event (epoch 0) is written once (a run restarted before its first checkpoint has
        # it), by the main rank, straight to the record: it changes nothing, and an emitted event would make
        # that rank alone re-wrap DDP and wait in a collective the others never join.
        elif ctx.writes and not any(e["kind"] == "phase_start" for e in ctx.events()):
            self.add_event(Event("phase_start", where, None, self.model.arch_string(), n, n, epoch=0, step=0).row())

    def call_hook(self, hook, *args):
        """Run a method hook, then do what it asked for: count the training batches it used, write its
        events, move optimizer state to replaced tensors, register new ones, re-wrap DDP."""
        out = hook(self.ctx, *args)
        if isinstance(out, list):
            raise TypeError(f"{type(self.method).__name__}.{hook.__name__} returned events: hooks emit them "
                            "with ctx.emit(Event(...)) (docs/adding_a_method.md)")
        self.ctx.settle()
        events = self.ctx.take_events()
        changed = self.write_events(events)
        replaced = self.ctx.take_replaced()
        if replaced:
            replace_params(self.optimizer, replaced)
        # New parameters (growth) join their optimizer group; old ones keep their state.
        add_params(self.optimizer, self.model.named_parameters(), self.optim_cfg)
        copy_state(self.optimizer, self.ctx.take_copied())  # copies (stacked layers) take their source's state
        if self.channels_last:  # new modules arrive in the default layout
            self.model.to(memory_format=torch.channels_last)
        if changed or replaced:
            dist.check_same(self.dist, f"the arch after epoch {self.epoch}", self.model.arch_string())
            self.rewrap()  # DDP broadcasts rank 0's new parameters; compile traces the new graph
        self._follow_structure(events, bool(replaced))
        return out

    def _follow_structure(self, events, replaced: bool) -> None:
        """After a hook: an EMA over tensors the model no longer has (growth, a phase switch) would be
        silently wrong, so it starts again from the model as it is now, counted and logged."""
        why = None if self.ema is None else self.ema.restart_reason(self.model, events, replaced)
        if why is None:
            return
        self.ema.reset(self.model)
        self.counters["ema_resets"] = self.counters.get("ema_resets", 0) + 1
        log.info("ema: restarted from the current model after %s at epoch %d, step %d (arch %s); the EMA "
                 "averages from here on", why, self.epoch, self.step, self.model.arch_string())

    def add_event(self, row: dict) -> None:
        """An event row into the run record, and to the trackers that mirror it."""
        self.record.add_event(row)
        self.trackers.event(row)

    def write_events(self, events=None) -> bool:
        events = self.ctx.take_events() if events is None else events
        for event in events:
            row = event.row()
            self.add_event(row)
            log.info("event %s at epoch %d: %s %s -> %s, params %s -> %s", row["kind"], row["epoch"],
                     row["where"], row["arch_before"], row["arch_after"], _count(row["params_before"]),
                     _count(row["params_after"]))
        return bool(events)


def _count(n) -> str:
    return "-" if n is None else f"{n:,}"
