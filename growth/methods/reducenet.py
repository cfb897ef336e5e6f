"""ReduceNet: train a teacher (scaler 1), switch its non-linear branch off, distil into the student.

Phase `teacher` trains the configured ReduceNet with cross-entropy. At its last epoch the method builds
the student (scaler 0: no branch1; optional LoRA; optional frozen classifier/BN), which inherits every
weight the teacher has for it, and trains it with knowledge distillation from a frozen copy of the
teacher: L = alpha*T^2*KL(teacher/T || student/T) + (1 - alpha)*CE. alpha 0 is plain CE. Each phase has
its own cosine LR schedule. The student deploys as a plain ResNet (growth/blocks/reducenet.py).

| switch       | faithful (the original)                      | fixed (default)                  |
|--------------|----------------------------------------------|----------------------------------|
| kd_reduction | KL averaged over batch x classes: the term's  | KL summed over classes, averaged |
|              | effective weight is alpha*T^2/C               | over the batch (alpha*T^2)       |

`same_budget: true` splits trainer.epochs between the phases (teacher_fraction); false gives each phase
trainer.epochs epochs, as the original (2 x 200).

With `model.act=lambda` branch1's ReLU fades to identity over the teacher phase (design A); at the switch
the now-linear branch1 becomes the student's LoRA branch, so the switch keeps the function and the
student still folds.
"""
import logging

import torch

from growth.blocks.reducenet import init_lora_from_branch1, lambda_at
from growth.engine.event import Event
from growth.errors import ConfigError
from growth.measure import compare_latency, count_params, forward_macs
from growth.methods.base import Method, Phase, choice
from growth.methods.distill import kd_loss
from growth.methods.teacher import FrozenTeacher
from growth.models import create_model
from growth.models.reducenet import FREEZE
from growth.methods.registry import register_method

log = logging.getLogger("growth")
SPEED_BATCH, SPEED_REPS = 64, 30


def phase_epochs(epochs: int, same_budget: bool, fraction: float) -> tuple[int, int]:
    """(teacher, student) epochs."""
    if not same_budget:
        return epochs, epochs
    if epochs < 2:
        raise ConfigError("trainer.epochs", epochs, "reducenet with same_budget splits it: at least 2")
    teacher = min(epochs - 1, max(1, round(epochs * fraction)))
    return teacher, epochs - teacher


@register_method("reducenet")
class ReduceNetMethod(Method):
    name = "reducenet"

    def __init__(self, cfg: dict):
        super().__init__(cfg)
        m = cfg["method"]
        self.variant = choice(m.get("variant", "fixed"), "method.variant")
        self.kd_reduction = choice(m.get("kd_reduction") or self.variant, "method.kd_reduction")
        self.alpha, self.temperature = float(m.get("alpha", 0.7)), float(m.get("temperature", 5.0))
        if not 0 <= self.alpha <= 1:
            raise ConfigError("method.alpha", m.get("alpha"), "must be in [0, 1] (0 = plain cross-entropy)")
        if self.temperature <= 0:
            raise ConfigError("method.temperature", m.get("temperature"), "must be positive")
        self.freeze = list(m.get("freeze") or [])
        if any(f not in FREEZE for f in self.freeze):
            raise ConfigError("method.freeze", self.freeze, f"a list of: {', '.join(FREEZE)}")
        self.same_budget = choice(m.get("same_budget", True), "method.same_budget", (True, False))
        fraction = float(m.get("teacher_fraction", 0.5))
        if not 0 < fraction < 1:
            raise ConfigError("method.teacher_fraction", fraction, "must be in (0, 1)")
        self.teacher_epochs, self.student_epochs = phase_epochs(cfg["trainer"]["epochs"], self.same_budget,
                                                                fraction)
        if cfg["model"].get("family") == "reducenet" and cfg["model"].get("scaler", 1) == 0:
            raise ConfigError("model.scaler", 0, "reducenet trains a teacher first: > 0 (train a student "
                              "alone with method=fixed)")
        self.switched, self.teacher, self.teacher_info = False, None, {}

    @property
    def variants(self) -> dict:
        return {"variant": self.variant, "kd_reduction": self.kd_reduction, "same_budget": self.same_budget}

    def phases(self) -> list[Phase]:
        return [Phase("teacher", self.teacher_epochs), Phase("student", self.student_epochs)]

    def enter_phase(self, ctx, phase: Phase, index: int):
        return self._switch(ctx) if phase.name == "student" else None

    # ---- setup --------------------------------------------------------------------------------
    def setup(self, ctx) -> None:
        if getattr(ctx.model, "family", None) != "reducenet":
            raise ConfigError("model", getattr(ctx.model, "family", type(ctx.model).__name__),
                              "method=reducenet needs model=reducenet")
        if self.teacher is not None:
            self.teacher.to(ctx.device)

    # ---- training -----------------------------------------------------------------------------
    def loss(self, model, x, y, ctx):
        if not self.switched:
            if ctx.model.act == "lambda":  # per iteration; reaches identity on the phase's last step
                total = self.teacher_epochs * ctx.steps_per_epoch
                ctx.model.set_lambda(lambda_at((ctx.step + 1) / total))
            logits = model(x)
            return ctx.label_loss(logits, y), logits
        logits = model(x)
        teacher = None
        if self.alpha > 0:
            with torch.no_grad():
                teacher = self.teacher(x)
        return kd_loss(logits, teacher, y, self.alpha, self.temperature, self.kd_reduction == "faithful",
                       ctx.label_smoothing), logits

    # ---- the switch ---------------------------------------------------------------------------
    def _student(self, teacher):
        kw = {**teacher.spec_kwargs(), "scaler": 0.0, "freeze": self.freeze}
        if teacher.act == "lambda":
            kw["lora_expansion"] = teacher.expansion  # branch1, now linear, carries over as the LoRA
        student = create_model("reducenet", **kw).to(next(teacher.parameters()).device)
        missing, unexpected = student.load_state_dict(teacher.state_dict(), strict=False)
        assert all(".lora." in k for k in missing) and all(".branch1." in k for k in unexpected), \
            (missing, unexpected)
        for s, t in zip(student.blocks(), teacher.blocks()):
            if s.lora is None:
                continue
            if teacher.act == "lambda":
                init_lora_from_branch1(s.lora, t.branch1)
            else:  # a fresh LoRA starts silent (last BN scale 0): the switch removes branch1 only
                torch.nn.init.zeros_(s.lora.b.bn.weight)
        return student

    def _switch(self, ctx):
        """The student, built from the teacher, which is frozen for distillation."""
        teacher = ctx.model
        if teacher.act == "lambda":
            teacher.set_lambda(0.0)  # the end of its schedule (the last step already used 0)
        before = ctx.probe_output(teacher)
        sizes = ctx.sizes()  # the teacher's, measured (and cached) at its epochs' ends
        self.teacher_info = {"teacher_val_acc": ctx.last_val_acc, "teacher_params": sizes["params"],
                             "teacher_deploy_params": sizes["deploy_params"], "teacher_macs": sizes["macs"]}
        student = self._student(teacher)
        change = (ctx.probe_output(student) - before).abs().max().item()
        self.teacher = FrozenTeacher.copy_of(teacher)
        self.switched = True
        log.info("reducenet: teacher %s (val acc %.4f) -> student %s; max |change| on probe %.3g",
                 teacher.arch_string(), ctx.last_val_acc, student.arch_string(), change)
        row = (teacher.arch_string(), student.arch_string(), self.teacher_info["teacher_params"], count_params(student))
        ctx.emit(Event("switch", "branch1: scaler 1 -> 0", *row, change))
        return student

    # ---- results ------------------------------------------------------------------------------
    def summary_extras(self, ctx) -> dict:
        return {"reducenet_phase": "student" if self.switched else "teacher",
                "teacher_epochs": self.teacher_epochs, "student_epochs": self.student_epochs,
                "kd_alpha": self.alpha, "kd_temperature": self.temperature, **self.teacher_info}

    def dry_run_sizes(self, ctx) -> dict:
        """The teacher (being trained), the student it switches to and the folded student, as the
        original's README table rows (ResNet20-1-T / -S)."""
        if self.switched:
            return {}
        student = self._student(ctx.model)
        probe = ctx.probe[:1]
        folded = student.deploy()
        return {"teacher": {"params": ctx.sizes()["params"], "macs": ctx.sizes()["macs"]},
                "student": {"params": count_params(student), "macs": forward_macs(student, probe)},
                "folded_student": {"params": count_params(folded), "macs": forward_macs(folded, probe)}}

    def finish(self, ctx) -> dict:
        if not self.switched:
            return {}
        student, deployed, sizes = ctx.model, ctx.model.deploy(), ctx.sizes()
        change = (ctx.probe_output(deployed) - ctx.probe_output(student)).abs().max().item()
        ctx.emit(Event("fuse", "every block", student.arch_string(), student.arch_string() + " fused",
                       sizes["params"], sizes["deploy_params"], change))
        ms = compare_latency({"unfused": student, "fused": deployed}, tuple(ctx.probe.shape[1:]),
                             SPEED_BATCH, SPEED_REPS)
        unfused_ms, fused_ms = ms["unfused"], ms["fused"]
        out = {"teacher_test_acc": ctx.evaluate("test", self.teacher.module)["acc"],
               "student_val_acc": ctx.last_val_acc,
               "student_test_acc": ctx.evaluate("test", student)["acc"],
               "student_params": sizes["params"], "student_deploy_params": sizes["deploy_params"],
               "student_macs": sizes["macs"],
               "unfused_latency_ms": unfused_ms, "fused_latency_ms": fused_ms,
               "fused_speedup": unfused_ms / fused_ms, "speedup_batch": SPEED_BATCH}
        t = self.teacher_info
        out["report"] = [
            f"teacher: val acc {t['teacher_val_acc']:.4f}, test acc {out['teacher_test_acc']:.4f}, "
            f"{t['teacher_deploy_params']:,} params deployed, {t['teacher_macs'] / 1e6:.2f} M MACs",
            f"student: val acc {out['student_val_acc']:.4f}, test acc {out['student_test_acc']:.4f}, "
            f"{out['student_deploy_params']:,} params folded, {out['student_macs'] / 1e6:.2f} M MACs, "
            f"folded {out['fused_speedup']:.2f}x faster than unfolded (batch {SPEED_BATCH})"]
        return out

    # ---- state --------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"switched": self.switched, "teacher_info": dict(self.teacher_info),
                "teacher": self.teacher.state() if self.teacher is not None else None}

    def load_state_dict(self, state: dict) -> None:
        self.switched, self.teacher_info = state["switched"], dict(state["teacher_info"])
        if state.get("teacher") is not None:
            self.teacher = FrozenTeacher.from_state(state["teacher"])
        elif state.get("teacher_spec") is not None:  # checkpoints written before FrozenTeacher
            self.teacher = FrozenTeacher.from_state({"arch_spec": state["teacher_spec"],
                                                     "model": state["teacher_state"], "deployed": False})
