"""Adaptive Depth Networks (ADN): one network, every depth. Each stage's last blocks are skippable; every
step trains the super-net (no skips) on the labels and distils it into the base-net (all skips).

Per step (METHODS.md 4.2), with z_s the super-net's and z_b the base-net's logits on the same batch:

    loss = alpha * CE(z_s, y) + (1 - alpha) * T^2 * KL(softmax(z_s[idx].detach() / T) || softmax(z_b[idx] / T))

idx = the super-net's top-k classes per sample (both distributions renormalised over them), KL averaged
over the batch. The base-net gets no label loss; one backward and one optimizer step for both (the
original's two backward passes accumulate the same gradient). Configs between base and super are never
trained; `finish` evaluates all 2^S of them (accuracy, params, MACs, latency) and exports the chosen one.

`fpn` (the original's --fpn, ResNet layouts only): the distillation term also gets
sum_k T^2 * KL(softmax(g_k^super.detach() / T) || softmax(g_k^base / T)) over the channels of the
global-average-pooled outputs g_k of layer1..3 (batch mean), inside the (1 - alpha) factor.

| switch | faithful (the original)                       | fixed (default)          |
|--------|-----------------------------------------------|--------------------------|
| topk   | k = top_k (500): fewer classes than k is an error | k = min(top_k, classes) |
"""
import contextlib
import logging

import torch

from growth.engine.event import Event
from growth.errors import ConfigError
from growth.measure import count_params, forward_macs, latency_ms, train_step_macs
from growth.methods.base import Method, choice
from growth.methods.distill import soft_kl
from growth.models.saved import to_file
from growth.models.skippable import all_configs, config_name
from growth.methods.registry import register_method

log = logging.getLogger("growth")
FAMILIES = ("resnet_basic, resnet_bottleneck, mobilenet, vit, or timm with a ResNet, EfficientNet "
            "(mobilenetv2_100) or ViT name")


def topk_distill(teacher, student, k: int, temperature: float):
    """T^2 * KL(teacher || student) over the teacher's top-k classes, batch mean. `teacher` is a target:
    pass it detached."""
    idx = teacher.float().topk(k, dim=1).indices
    return soft_kl(student.float().gather(1, idx), teacher.float().gather(1, idx), temperature)


def parse_skip(value, n: int, key: str) -> tuple[bool, ...]:
    """'super', 'base', 'TFF' or [true, false, false] -> a tuple of n flags; anything else: ConfigError."""
    if value == "super":
        return (False,) * n
    if value == "base":
        return (True,) * n
    if isinstance(value, str) and len(value) == n and set(value.upper()) <= {"T", "F"}:
        return tuple(c == "T" for c in value.upper())
    if isinstance(value, (list, tuple)) and len(value) == n and all(isinstance(v, bool) for v in value):
        return tuple(value)
    raise ConfigError(key, value, f"'super', 'base', {n} letters T/F (e.g. {'T' + 'F' * (n - 1)}) or a list "
                                  f"of {n} booleans: one per skippable stage of this model")


def config_sizes(model, cfg, probe) -> tuple[dict, torch.nn.Module]:
    """One skip config's sizes (params of its plain export, i.e. the norm set in use only; MACs of the
    deployed export at the probe's shape) and the deployed export itself."""
    plain = model.export_plain(cfg)
    deployed = plain.deploy()
    return {"skip": config_name(cfg), "flags": list(cfg), "skipped_stages": sum(cfg), "arch": plain.arch_string(),
            "params": count_params(plain), "deploy_params": count_params(deployed),
            "macs": forward_macs(deployed, probe)}, deployed


def _unwrap(model):
    return getattr(model, "module", model)  # DDP keeps the model in .module


@register_method("adn")
class ADN(Method):
    name = "adn"
    base_step_macs = 0  # per sample; measured in setup

    def __init__(self, cfg: dict):
        super().__init__(cfg)
        m = cfg["method"]
        self.variant = choice(m.get("variant", "fixed"), "method.variant")
        self.topk_rule = choice(m.get("topk") or self.variant, "method.topk")
        self.alpha = float(m.get("alpha", 0.5))
        if not 0.0 <= self.alpha <= 1.0:
            raise ConfigError("method.alpha", self.alpha, "must be in [0, 1]")
        self.temperature = float(m.get("temperature", 1.0))
        if self.temperature <= 0:
            raise ConfigError("method.temperature", self.temperature, "must be > 0")
        self.top_k = m.get("top_k", 500)
        if isinstance(self.top_k, bool) or not isinstance(self.top_k, int) or self.top_k < 1:
            raise ConfigError("method.top_k", self.top_k, "must be a positive integer")
        self.eval_spec, self.export_spec = m.get("eval_configs", "all"), m.get("export", "base")
        self.epoch_eval = bool(m.get("epoch_eval", True))
        self.latency_batch = int(m.get("latency_batch", 64))
        self.fpn = m.get("fpn", False)
        if not isinstance(self.fpn, bool):
            raise ConfigError("method.fpn", self.fpn, "true or false")
        self.history, self._sub = [], {}

    @property
    def variants(self) -> dict:
        return {"variant": self.variant, "topk": self.topk_rule}

    # ---- setup: everything checked before the first step -----------------------------------------
    def setup(self, ctx) -> None:
        model = ctx.model
        self.prepare(model)
        model.set_skip(self.base)  # the base-net's training step costs MACs too (counted per sample)
        self.base_step_macs = train_step_macs(model, ctx.probe)
        model.set_skip(self.super)

    def prepare(self, model) -> None:
        """Check the model and the method's settings against it; fixes the configs and k."""
        if not getattr(model, "skippable", False):
            family = getattr(model, "family", type(model).__name__)
            raise ConfigError("model.skippable", getattr(model, "skippable", None),
                              f"adn needs a model built with skippable sub-paths ({FAMILIES}); got {family}")
        n = model.num_skip_flags
        if n == 0:
            raise ConfigError("model.arch", model.arch_string(), "adn needs a stage with >= 2 blocks to skip, "
                              "e.g. 2-2-2 (ViT: depth >= 2)")
        self.super, self.base = (False,) * n, (True,) * n
        if self.fpn and not (hasattr(model, "stage_features") and model.feature_stages()):
            raise ConfigError("method.fpn", True, "feature distillation needs a ResNet layout (the original's: "
                              f"model=timm model.name=resnet50); {model.arch_string()} has no layer1..3")
        self.k = self._k(model.num_classes)
        self.configs = self._eval_configs(n)
        self.exports = self._export_configs(n)

    def _k(self, classes: int) -> int:
        if self.topk_rule == "fixed":
            return min(self.top_k, classes)
        if self.top_k > classes:
            raise ConfigError("method.top_k", self.top_k, f"faithful: the original's topk({self.top_k}) fails "
                              f"with {classes} classes; use method.topk=fixed (k = min(top_k, classes))")
        return self.top_k

    def _eval_configs(self, n: int) -> list[tuple[bool, ...]]:
        if self.eval_spec == "all":
            return all_configs(n)
        if self.eval_spec == "extremes":
            return [self.super, self.base]
        if isinstance(self.eval_spec, (list, tuple)) and self.eval_spec:
            return list(dict.fromkeys(parse_skip(v, n, "method.eval_configs") for v in self.eval_spec))
        raise ConfigError("method.eval_configs", self.eval_spec, "all, extremes, or a list of skip configs")

    def _export_configs(self, n: int) -> list[tuple[bool, ...]]:
        if self.export_spec is None:
            return []
        if self.export_spec == "all":
            return all_configs(n)
        return [parse_skip(self.export_spec, n, "method.export")]

    # ---- one step: super-net and base-net ---------------------------------------------------------
    def loss(self, model, x, y, ctx):
        net = _unwrap(model)
        features = net.stage_features if self.fpn else contextlib.nullcontext
        net.set_skip(self.super)
        with features() as f_super:
            z_super = model(x)
        label_loss = ctx.label_loss(z_super, y)  # y: labels or mixup's soft targets
        net.set_skip(self.base)
        try:
            with features() as f_base:
                z_base = model(x)
        finally:
            net.set_skip(self.super)  # the rest of the engine (eval, sizes, deploy) sees the super-net
        distill = topk_distill(z_super.detach(), z_base, self.k, self.temperature)
        if self.fpn:  # the pooled layer1..3 outputs, over channels (the original's --fpn)
            distill = distill + sum(soft_kl(b, s.detach(), self.temperature) for s, b in zip(f_super, f_base))
        # every rank's batch had a base-net pass too: its MACs count as training compute
        ctx.add_train_macs(len(y), self.base_step_macs)
        return self.alpha * label_loss + (1 - self.alpha) * distill, z_super

    # ---- sub-networks -----------------------------------------------------------------------------
    def sub(self, model, cfg) -> dict:
        """Arch and live params of one config's plain export (cached: the arch never changes)."""
        if cfg not in self._sub:
            plain = model.export_plain(cfg)
            self._sub[cfg] = {"arch": plain.arch_string(), "params": count_params(plain)}
        return self._sub[cfg]

    def on_epoch_end(self, ctx, epoch: int) -> None:
        """As the original: evaluate the base-net too after each epoch (the super-net is the val row)."""
        if not self.epoch_eval:
            return
        model = ctx.model
        out_super = ctx.probe_output()
        model.set_skip(self.base)
        try:
            val = ctx.evaluate("val")
            change = (ctx.probe_output() - out_super).abs().max().item()
        finally:
            model.set_skip(self.super)
        self.history.append({"epoch": epoch, "val_acc_super": ctx.last_val_acc, "val_acc_base": val["acc"]})
        sup, base = self.sub(model, self.super), self.sub(model, self.base)
        ctx.emit(Event("skip_eval", config_name(self.base), sup["arch"], base["arch"], sup["params"], base["params"],
                       change, {"val_acc_super": ctx.last_val_acc, "val_acc_base": val["acc"],
                                "val_loss_base": val["loss"]}))

    # ---- after training: every config, and the export ---------------------------------------------
    def finish(self, ctx) -> dict:
        model = ctx.model
        try:
            rows = [self.evaluate_config(ctx, cfg) for cfg in self.configs]
            exports = [self.export(ctx, cfg) for cfg in self.exports]
        finally:
            model.set_skip(self.super)
        for r in rows:
            log.info("adn %s arch %s params %s MACs %s | val %.4f test %.4f | %.3f ms | export diff %.1e",
                     r["skip"], r["arch"], f"{r['params']:,}", f"{r['macs']:,}", r["val_acc"], r["test_acc"],
                     r["latency_ms"], r["export_max_abs_diff"])
        by_name = {r["skip"]: r for r in rows}
        return {"adn_table": rows, "adn_exports": exports,
                "adn_super_test_acc": by_name.get(config_name(self.super), {}).get("test_acc"),
                "adn_base_test_acc": by_name.get(config_name(self.base), {}).get("test_acc")}

    def evaluate_config(self, ctx, cfg) -> dict:
        model = ctx.model
        model.set_skip(cfg)
        val, test = ctx.evaluate("val"), ctx.evaluate("test")
        out = ctx.probe_output()
        with torch.random.fork_rng(devices=[]):  # measuring must not move the RNG
            sizes, deployed = config_sizes(model, cfg, ctx.probe)
            diff = (ctx.probe_output(deployed) - out).abs().max().item()
            shape = tuple(ctx.probe.shape[1:])
            return {**sizes, "val_acc": val["acc"], "test_acc": test["acc"],
                    "val_loss": val["loss"], "test_loss": test["loss"],
                    # best of 3: a shared CPU adds noise, never speed
                    "latency_ms": min(latency_ms(deployed, shape, batch=self.latency_batch) for _ in range(3)),
                    "latency_batch": self.latency_batch, "export_max_abs_diff": diff}

    def dry_run_sizes(self, ctx) -> dict:
        """Every skip config's sizes without training: what `finish` would put in adn_table."""
        model = ctx.model
        self.prepare(model)
        try:
            with torch.random.fork_rng(devices=[]):
                return {"adn_configs": [config_sizes(model, cfg, ctx.probe)[0] for cfg in self.configs]}
        finally:
            model.set_skip(self.super)

    def export(self, ctx, cfg) -> dict:
        """checkpoints/adn_<cfg>.pt: the plain sub-network as spec + state, no pickled module; a deploy
        file: growth.models.saved.from_file rebuilds its fused form (with "deployed" False, the plain one).
        With trainer.export also its fused form as adn_<cfg>.pt2 or .onnx (ctx.export)."""
        plain = ctx.model.export_plain(cfg)
        name = f"adn_{config_name(cfg)}"
        ctx.save(f"{name}.pt", {"skip": config_name(cfg), **to_file(plain, deployed=True)})  # main rank only
        return {"skip": config_name(cfg), "arch": plain.arch_string(),
                "path": str(ctx.checkpoint_path(f"{name}.pt")), **ctx.export(name, plain.deploy())}

    # ---- record and resume ------------------------------------------------------------------------
    def summary_extras(self, ctx) -> dict:
        return {"adn": {"alpha": self.alpha, "temperature": self.temperature, "top_k": self.top_k,
                        "k": getattr(self, "k", None), "skip_flags": len(getattr(self, "super", ())),
                        "history": self.history}}

    def state_dict(self) -> dict:
        return {"history": self.history}

    def load_state_dict(self, state: dict) -> None:
        self.history = list(state.get("history", []))
