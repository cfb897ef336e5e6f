"""Learngene SWS (IJCAI 2024): learn a stage-wise shared aux ViT by distillation, then start descendant ViTs
of any depth from its stage blocks (the learngene).

`method.phase`:
- `aux` (model=sws_aux): soft distillation from a teacher, L = alpha*tau^2*KL(p_t || p_s) + (1-alpha)*CE
  (the original: alpha 1, pure KD). The teacher is a timm model name with a weights file
  (`teacher_weights`, the original's --teacher-path), one of our checkpoints (last.pt or deploy.pt), or a
  timm model trained by an earlier phase of this run (`teacher_epochs` > 0: phase `teacher`, then the aux
  model with a fresh optimizer and schedule). A completed run writes checkpoints/learngene.pt.
- `descendant` (model=sws_descendant): a timm ViT initialised from `learngene` with `layers_source`, then
  plain supervised training (no distillation, as the original).
- `scratch` (model=sws_descendant): the same ViT from its random init: the baseline twin.

| switch       | faithful (the original)                         | fixed (default)                         |
|--------------|-------------------------------------------------|-----------------------------------------|
| norm         | aux: LayerNorm on tokens, then mean (eps 1e-5)  | aux: mean, then LayerNorm (eps 1e-6) as |
|              | (model.variant)                                 | the descendant: replay = same function  |
| heads        | descendant heads = aux heads / 2 (12 -> 6)      | descendant heads = aux heads            |
| kd_reduction | KL summed, / (batch x classes) (DeiT)           | KL summed, / batch                      |

A dry run (trainer.dry_run) needs no file it is not given: a timm teacher without `teacher_weights` and
a descendant without `learngene` start from random init there (sizes and costs do not depend on the
weights), but a path that is given must exist, in a dry run as in a real one. `dry_run_sizes` reports
the aux, learngene, family and planned-cost numbers (growth/methods/sws_cost.py).
"""
import copy
import logging
from pathlib import Path

import timm
import torch

from growth.errors import ConfigError
from growth.measure import count_params, forward_macs
from growth.methods.base import Method, Phase, choice
from growth.methods.distill import kd_loss
from growth.methods.sws_cost import aux_dry_run, aux_summary, descendant_dry_run, descendant_summary
from growth.methods.sws_teacher import is_path, load_our_file, timm_teacher
from growth.methods.teacher import FrozenTeacher
from growth.models import build_model, learngene
from growth.models.saved import from_file
from growth.methods.registry import register_method

log = logging.getLogger("growth")
PHASES = ("aux", "descendant", "scratch")
FAMILY = {"aux": "sws_aux", "descendant": "sws_descendant", "scratch": "sws_descendant"}


@register_method("sws")
class SWS(Method):
    name = "sws"

    def __init__(self, cfg: dict):
        super().__init__(cfg)
        m, model = cfg["method"], cfg["model"]
        self.stage = choice(m.get("phase", "aux"), "method.phase", PHASES)
        self.variant = choice(m.get("variant", "fixed"), "method.variant")
        self.kd_reduction = choice(m.get("kd_reduction") or self.variant, "method.kd_reduction")
        if model.get("family") != FAMILY[self.stage]:
            raise ConfigError("model", model.get("name"), f"method.phase={self.stage} needs model={FAMILY[self.stage]}")
        self.alpha, self.tau = float(m.get("alpha", 1.0)), float(m.get("tau", 1.0))
        if not 0 <= self.alpha <= 1:
            raise ConfigError("method.alpha", m.get("alpha"), "must be in [0, 1] (1 = pure distillation)")
        if self.tau <= 0:
            raise ConfigError("method.tau", m.get("tau"), "must be positive")
        self.aux_epochs = int(cfg["trainer"]["epochs"])
        self.dry_run = bool(cfg["trainer"].get("dry_run", False))
        self.teacher_epochs = 0
        self.teacher_name, self.teacher_weights = m.get("teacher"), m.get("teacher_weights")
        if self.stage == "aux":
            self._check_teacher(m)
        self.gene, self.gene_path, self.source, self.gene_error = None, m.get("learngene"), None, None
        if self.stage == "descendant":
            try:
                self._use_gene(learngene.load(self.gene_path))
            except ConfigError as e:  # a resumed run has the learngene in its checkpoint: raised in setup if not
                self.gene_error = e
        self.load_head = choice(m.get("load_head", "auto"), "method.load_head", ("auto", True, False))
        self.scratch_epochs = m.get("scratch_epochs")
        self.descendant_epochs = m.get("descendant_epochs")
        if self.descendant_epochs is not None and (isinstance(self.descendant_epochs, bool) or not isinstance(
                self.descendant_epochs, int) or self.descendant_epochs < 1):
            raise ConfigError("method.descendant_epochs", self.descendant_epochs, "a positive integer or null")
        self.family_depths = list(m.get("family_depths") or [])
        self.teacher, self.switched, self.teacher_info, self.heads = None, False, {}, None

    def _use_gene(self, gene: dict) -> None:
        """The learngene this descendant starts from, and each layer's source stage (checked now)."""
        repeats = gene["config"]["stage_repeats"]
        self.source = learngene.parse_source(self.cfg["method"].get("layers_source", "auto"),
                                             self.cfg["model"]["depth"], len(repeats), repeats)
        self.gene = gene

    def _check_teacher(self, m: dict) -> None:
        epochs, name = m.get("teacher_epochs", 0), self.teacher_name
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
            raise ConfigError("method.teacher_epochs", epochs, "a non-negative integer")
        self.teacher_epochs = epochs
        if name is None:
            if epochs:
                raise ConfigError("method.teacher", None, "teacher_epochs > 0 trains a timm teacher: name one")
            return
        if is_path(str(name)):
            if epochs:
                raise ConfigError("method.teacher_epochs", epochs, "0 for a checkpoint teacher (already trained)")
            return
        if name not in timm.list_models():
            raise ConfigError("method.teacher", name, "a timm model name, a checkpoint path (.pt), or null")
        if self.teacher_weights and not Path(str(self.teacher_weights)).is_file():
            # at construction, not in setup: a dry run or a preflight that builds only the method sees it too
            raise ConfigError("method.teacher_weights", str(self.teacher_weights),
                              f"file does not exist (the timm {name} teacher's state_dict file)")
        if not epochs and not self.teacher_weights and not self.dry_run:
            raise ConfigError("method.teacher_weights", None, f"the timm teacher {name} needs its weights file, "
                              "or method.teacher_epochs > 0 to train it in this run")

    @property
    def variants(self) -> dict:
        out = {"variant": self.variant, "kd_reduction": self.kd_reduction}
        if self.stage == "aux":
            faithful = (self.cfg["model"].get("variant") or self.variant) == "faithful"
            out["aux_norm"] = "norm_then_pool" if faithful else "pool_then_norm"
        if self.heads:
            out["heads"] = self.heads  # learngene -> descendant: a re-partition when they differ
        return out

    def phases(self) -> list[Phase]:
        if self.stage == "aux":
            aux = [Phase("aux", self.aux_epochs, "aux" if self.teacher_epochs else "aux: {arch}")]
            return [Phase("teacher", self.teacher_epochs, "teacher: {arch}")] * bool(self.teacher_epochs) + aux
        if self.stage == "descendant":
            where = f"descendant: {self.gene_path} layers {','.join(map(str, self.source or []))}"
            return [Phase("descendant", self.aux_epochs, where)]
        return [Phase("scratch", self.aux_epochs, "scratch: random init")]

    def enter_phase(self, ctx, phase: Phase, index: int):
        if phase.name == "teacher":  # trained first in this run
            return timm_teacher(self.teacher_name, ctx.data_info, self.teacher_weights)
        if phase.name == "aux" and index > 0:  # the teacher is trained: distil it into the aux model
            teacher = ctx.model
            self.teacher_info["teacher_val_acc"] = ctx.last_val_acc
            self._freeze_teacher(ctx, teacher)
            aux = build_model(self.cfg["model"], ctx.data_info)  # built now: a resume draws the same init
            self.switched = True
            log.info("sws: teacher %s (val acc %.4f) trained; distilling into %s", teacher.arch_string(),
                     ctx.last_val_acc, aux.arch_string())
            return aux
        return None

    # ---- setup --------------------------------------------------------------------------------
    def setup(self, ctx) -> None:
        fresh = ctx.fresh
        if getattr(ctx.model, "learngene_error", None):  # a fresh run's model needs its learngene file
            raise ctx.model.learngene_error
        if self.stage == "aux":
            if fresh and self.teacher_name and not self.teacher_epochs:
                self._freeze_teacher(ctx, *self._given_teacher(ctx))
        elif self.stage == "descendant":
            if self.gene is None and self.dry_run and not self.gene_path:
                log.info("sws: dry run without method.learngene: the descendant keeps its random init")
                return
            if self.gene is None:  # neither a readable learngene file nor a checkpoint holding it
                raise self.gene_error
            if self.gene_error is not None:
                log.warning("sws: %s; resuming with the learngene stored in the checkpoint", self.gene_error)
            self._check_fits(ctx.model)
            self.heads = f"{self.gene['config']['heads']}->{ctx.model.spec_kwargs()['heads']}"
            if fresh:
                learngene.init_descendant(ctx.model, self.gene, self.source, self._load_head(ctx))
        if self.teacher is not None:
            self.teacher.to(ctx.device)

    def _given_teacher(self, ctx):
        """(model, file): a checkpoint teacher is kept as read (a deploy.pt teacher is rebuilt from it)."""
        if is_path(str(self.teacher_name)):
            file = load_our_file(self.teacher_name, "method.teacher")
            return from_file(file), file
        return timm_teacher(self.teacher_name, ctx.data_info, self.teacher_weights), None

    def _freeze_teacher(self, ctx, teacher, file=None) -> None:
        self.teacher = FrozenTeacher(copy.deepcopy(teacher), file).to(ctx.device)
        out = self.teacher(ctx.probe[:2])
        if out.shape[-1] != ctx.data_info["num_classes"]:
            raise ConfigError("method.teacher", self.teacher_name, f"predicts {out.shape[-1]} classes, the data "
                              f"have {ctx.data_info['num_classes']}")
        self.teacher_info.update(teacher_params=count_params(teacher),
                                 teacher_forward_macs=forward_macs(self.teacher.module, ctx.probe))

    def _check_fits(self, model) -> None:
        gene, kw = self.gene["config"], model.spec_kwargs()
        for key in ("embed_dim", "mlp_ratio", "patch_size", "img_size", "in_chans"):
            if gene[key] != kw[key]:
                raise ConfigError(f"model.{key}", kw[key], f"must equal the learngene's {gene[key]}")

    def _load_head(self, ctx) -> bool:
        if self.load_head != "auto":
            return self.load_head
        data, info = self.gene.get("data", {}), ctx.data_info
        return data.get("name") == info["name"] and data.get("num_classes") == info["num_classes"]

    # ---- training -----------------------------------------------------------------------------
    def loss(self, model, x, y, ctx):
        logits = model(x)
        distil = self.stage == "aux" and self.teacher is not None and self.alpha > 0
        teacher = None
        if distil:
            with torch.no_grad():
                teacher = self.teacher(x)
        return kd_loss(logits, teacher, y, self.alpha if distil else 0.0, self.tau,
                       self.kd_reduction == "faithful", ctx.label_smoothing), logits

    # ---- results ------------------------------------------------------------------------------
    def summary_extras(self, ctx) -> dict:
        out = {"sws_phase": self.stage, "sws_depth": getattr(ctx.model, "depth", None)}
        if self.stage == "aux":
            out.update(teacher=self.teacher_name, teacher_epochs=self.teacher_epochs, kd_alpha=self.alpha,
                       kd_tau=self.tau, **self.teacher_info)
        if self.stage == "descendant":
            out.update(learngene=str(self.gene_path), layers_source=",".join(map(str, self.source)))
        return out

    def finish(self, ctx) -> dict:
        if self.stage == "aux":
            gene, extras = aux_summary(self, ctx)
            ctx.save("learngene.pt", gene)  # main rank only
            log.info("sws: learngene (%s params) written to %s", f"{extras['learngene_params']:,}",
                     extras["learngene_path"])
            extras["report"] = [f"learngene: {extras['learngene_params']:,} params, "
                                f"{extras['learngene_cost_macs'] / 1e9:.1f} GMACs to make, {extras['learngene_path']}"]
            return extras
        out = descendant_summary(self, ctx)
        if "storage_ratio" in out:
            out["report"] = [f"descendant: storage {out['storage_ratio']:.2f}x the learngene, training cost "
                             f"with the learngene {out['cost_ratio']:.2f}x a {out['scratch_epochs']}-epoch scratch twin"]
        return out

    def dry_run_sizes(self, ctx) -> dict:
        train = ctx.sizes()["train_macs_per_sample"]  # counted once by the engine (cached per arch)
        if self.stage == "aux":
            return aux_dry_run(self, ctx.model, self._counted_teacher(ctx), train,
                               self.teacher_info.get("teacher_forward_macs"))
        return descendant_dry_run(self, ctx.model, train)

    def _counted_teacher(self, ctx):
        """The teacher whose forward the aux pays for: the frozen one once setup made it, else a timm
        one of the same name on the meta device (shapes only; setup may not have run)."""
        if self.alpha == 0 or not self.teacher_name:
            return None
        if self.teacher is not None:
            return self.teacher.module
        if is_path(str(self.teacher_name)):
            return None  # one of our checkpoints: not counted before setup has read it
        with torch.device("meta"):
            return timm_teacher(self.teacher_name, ctx.data_info)

    # ---- state --------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        # the frozen teacher as spec + state, never a pickled module: checkpoints load with weights_only;
        # a descendant's learngene too (tensors and plain values): a resume needs no learngene file, and the
        # summary's storage and cost ratios are those of the learngene the run started from
        return {"switched": self.switched, "teacher_info": dict(self.teacher_info),
                "teacher": self.teacher.state() if self.teacher is not None else None,
                "gene": self.gene if self.stage == "descendant" else None}

    def load_state_dict(self, state: dict) -> None:
        self.switched, self.teacher_info = state["switched"], dict(state["teacher_info"])
        if state.get("gene") is not None:  # the checkpoint's copy wins over the file (which may be gone)
            self._use_gene(state["gene"])
        if state.get("teacher") is not None:  # an older checkpoint's module too (trainer.trust_pickles)
            self.teacher = FrozenTeacher.from_state(state["teacher"])
