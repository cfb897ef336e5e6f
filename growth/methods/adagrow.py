"""AdaGrow: grow depth (new blocks) and width (new RepUnit branches) on a schedule; fuse to deploy.

Follows the original code (METHODS.md 1.3); where the original looks buggy, `method.variant=faithful`
reproduces it and `fixed` (default) does what was meant. Each switch can also be set on its own:

| switch            | faithful (the original)                          | fixed (default)                        |
|-------------------|--------------------------------------------------|----------------------------------------|
| saliency          | stage probe = stem BN / a never-trained BN (1.0) | live BNs of the unit feeding the stage |
|                   | unit rank by signed mean gamma                   | unit rank by mean abs gamma            |
| transfer_buffers  | BN running stats reset on depth growth           | kept                                   |
| zero_init         | every new tensor 0 (new block is dead)           | last BN gamma = beta = 0 (learns)      |
| schedule          | the original's parity rules (growth/grow/modes)  | the mode name read literally           |
| threshold         | dead code: grows every interval                  | grows when val acc stops improving     |
| min_units         | int(width_ratio x units) units, maybe 0          | at least 1 unit per width event        |
"""
import logging
import random

import torch

from growth.arch import parse_arch
from growth.blocks import RepUnit
from growth.errors import ConfigError
from growth.grow.init import initialize, normalize
from growth.grow.modes import check_mode, growth_kind
from growth.grow.policy import choose_stage, rank_units, sample_kernel, units_to_grow
from growth.engine.event import Event
from growth.measure import count_params
from growth.methods.base import Method, choice
from growth.methods.grow_limits import GrowLimits
from growth.methods.registry import register_method
from growth.models.growable import is_growable, sites

log = logging.getLogger("growth")
SWITCHES = ("saliency", "transfer_buffers", "zero_init", "schedule", "threshold", "local_neighbour", "min_units")


@register_method("adagrow")
class AdaGrow(Method):
    name = "adagrow"
    saliency_where = "saliency"  # RandGrow overrides where-to-grow

    def __init__(self, cfg: dict):
        super().__init__(cfg)
        m, g = cfg["method"], cfg.get("grow", {})
        self.variant = choice(m.get("variant", "fixed"), "method.variant")
        self.switches = {k: choice(m.get(k) or self.variant, f"method.{k}") for k in SWITCHES}
        self.mode = check_mode(cfg["grow_mode"]["name"])
        self.init_cfg = dict(cfg["initializer"])
        self.init_name = normalize(self.init_cfg["name"])
        self.meta = float(self.init_cfg.get("meta", 0.2))
        self.limits = GrowLimits(g)
        self.interval = self.limits.interval
        self.threshold = float(g.get("threshold") or 0.0)
        self.ratio = float(g.get("width_ratio", 0.3))
        if not 0 < self.ratio <= 1:
            raise ConfigError("grow.width_ratio", self.ratio, "must be in (0, 1]")
        self.max_arch_text = cfg["model"].get("max_arch")
        seed = g.get("seed")
        self.rng = random.Random(cfg["seed"] if seed is None else seed)
        self.events, self.last_stage, self.last_growth_epoch = 0, None, 0
        self.stopped, self.trajectory = None, []

    def faithful(self, switch: str) -> bool:
        return self.switches[switch] == "faithful"

    @property
    def variants(self) -> dict:
        return {"variant": self.variant, **self.switches}

    # ---- setup: check the model can grow as asked, before any training ----------------------------
    def setup(self, ctx) -> None:
        model = ctx.model
        if not is_growable(model):
            from growth.models import growable_families
            raise ConfigError("model", getattr(model, "family", type(model).__name__),
                              f"{self.name} needs a growable model: {', '.join(growable_families())}")
        depths = model.depths
        if self.max_arch_text is None:
            raise ConfigError("model.max_arch", None, "set the largest arch growth may reach, e.g. '2-2-2'")
        self.max_heads = None
        if hasattr(model, "parse_max_arch"):  # transformers: d<depth>h<heads>
            limits = model.parse_max_arch(self.max_arch_text)
            self.max_heads = limits["heads"]
            if self.max_heads < model.heads:
                raise ConfigError("model.max_arch", self.max_arch_text,
                                  f"must be >= model.arch={model.arch_string()} in depth and heads")
            max_arch = limits["depths"]
        else:
            max_arch = parse_arch(self.max_arch_text, "model.max_arch")
        if len(max_arch) != len(depths):
            if not self.faithful("schedule") or len(max_arch) < len(depths):
                raise ConfigError("model.max_arch", self.max_arch_text,
                                  f"needs {len(depths)} stages like model.arch={model.arch_string()}")
            log.warning("model.max_arch=%s has more stages than the model; truncated as the original does",
                        self.max_arch_text)
            max_arch = max_arch[:len(depths)]
        if any(m < d for m, d in zip(max_arch, depths)):
            raise ConfigError("model.max_arch", self.max_arch_text,
                              f"must be >= model.arch={model.arch_string()} in every stage")
        self.max_arch = max_arch

    # ---- when -----------------------------------------------------------------------------------
    def _due(self, epoch: int, val_history: list) -> bool:
        if self.threshold > 0 and not self.faithful("threshold"):
            if epoch - self.last_growth_epoch < self.interval:
                return False
            recent = val_history[-self.interval:]
            before = val_history[:-self.interval] or [0.0]
            return max(recent) - max(before) < self.threshold
        return epoch % self.interval == 0

    def _depth_full(self, model) -> bool:
        return all(d >= m for d, m in zip(model.depths, self.max_arch))

    def _heads_full(self, model) -> bool:
        return self.max_heads is None or model.heads >= self.max_heads

    def _stop_reason(self, ctx):
        if self._depth_full(ctx.model) and self._heads_full(ctx.model):
            return f"reached max arch {self.max_arch_text}"
        return self.limits.reached(ctx, self.events)

    def on_epoch_end(self, ctx, epoch: int) -> None:
        if epoch >= ctx.epochs or self.stopped or not self._due(epoch, ctx.val_history):
            return
        self.stopped = self._stop_reason(ctx)
        if self.stopped:
            log.info("growth stopped: %s", self.stopped)
            return
        kind = self._kind_for(ctx.model, growth_kind(self.mode, self.events, self.faithful("schedule")))
        event = self.grow(ctx, kind)
        self.events += 1
        self.last_growth_epoch = epoch
        self.trajectory.append({"epoch": epoch, "kind": event.kind, "where": event.where,
                                "arch_after": event.arch_after, "params_after": event.params_after,
                                "deploy_params_after": event.details["deploy_params_after"]})
        ctx.emit(event)

    # ---- what and how ---------------------------------------------------------------------------
    def _kind_for(self, model, kind: str) -> str:
        """Transformers grow heads where conv nets grow width; a full dimension falls back to the other
        (as the original does at max heads)."""
        if not sites(model, "heads"):
            return kind
        if kind == "width":
            return "depth" if self._heads_full(model) else "heads"
        return "heads" if self._depth_full(model) else "depth"

    def grow(self, ctx, kind: str) -> Event:
        model = ctx.model
        before = {"arch": model.arch_string(), "params": count_params(model),
                  "deploy": ctx.sizes()["deploy_params"], "branches": _branches(model),
                  "out": ctx.probe_output()}
        detail = {"depth": self.grow_depth, "width": self.grow_width, "heads": self.grow_heads}[kind](ctx)
        new_params = detail.pop("new_params")
        if self.init_name == "adam" and new_params:
            self._adam_fit(ctx, new_params)
        change = (ctx.probe_output() - before["out"]).abs().max().item()
        return Event(f"grow_{kind}", detail.pop("where"), before["arch"], model.arch_string(), before["params"],
                     count_params(model), change, {
                         "deploy_params_before": before["deploy"], "deploy_params_after": ctx.sizes()["deploy_params"],
                         "branches_before": before["branches"], "branches_after": _branches(model),
                         "initializer": self.init_name, **detail})

    # Where: every choice is a site of the model's own lists (growth/models/growable.py), grown through
    # ctx.grow. KEEP_INIT leaves the family's default init on the new module (the conv nets' depth sites
    # would otherwise zero-init it); the method's initializer runs next, exactly as before sites existed.
    KEEP_INIT = {"init": "original"}

    def choose_stage(self, model):
        """(depth site, saliency per candidate stage): a conv net's stage by stage saliency."""
        stage, scores = choose_stage(model, self.max_arch, self.last_stage, self.faithful("saliency"))
        return _site(model.depth_sites(), stage), scores

    def insert_position(self, model):
        """(depth site, saliency per layer): where a transformer's new layer goes. Faithful appends (the
        original's prefix bug makes every insertion an append); fixed inserts after the layer of largest
        `model.layer_saliency()` (mean |gamma| of a LayerNorm per layer: ViT's norm1, BERT's
        attention-output norm)."""
        positions = model.depth_sites()  # site p: the new layer goes in at index p (after layer p - 1)
        if self.faithful("saliency"):
            return positions[-1], {}
        scores = dict(enumerate(model.layer_saliency()))
        return _site(positions, max(scores, key=scores.get) + 1 if scores else 0), scores

    def grow_layer(self, ctx) -> dict:
        model = ctx.model
        site, scores = self.insert_position(model)
        old_params = list(model.parameters())
        local = self._local_layer(model)
        block = ctx.grow(site, self.KEEP_INIT).modules[0]
        self._init_new(block, old_params, local)
        return {"where": site.where, "position": site.index, "saliency": scores,
                "new_params": list(block.parameters())}

    def grow_heads(self, ctx) -> dict:
        model = ctx.model
        old_params = list(model.parameters())
        groups = ctx.grow(model.head_sites()[0], {**self.KEEP_INIT, "n": 1}).modules
        for i, group in enumerate(groups):
            self._init_new(group, old_params, self._local_heads(model, i))
        return {"where": f"{len(groups)} layer(s)", "new_params": [p for g in groups for p in g.parameters()]}

    def grow_depth(self, ctx) -> dict:
        model = ctx.model
        if _layer_stack(model):
            return self.grow_layer(ctx)
        site, scores = self.choose_stage(model)
        old_params, local = list(model.parameters()), self._local_block(model, site.index)
        block = ctx.grow(site, self.KEEP_INIT).modules[0]
        self._init_new(block, old_params, local)
        if self.faithful("transfer_buffers"):
            _reset_bn_stats_like_original(model, exclude=block)
        self.last_stage = site.index
        return {"where": site.where, "stage": site.index, "saliency": scores,
                "new_params": list(block.parameters())}

    # local_fitting's neighbours. The site protocol does not name a new module's neighbours, so these read
    # the family's structure; they run only for local_fitting (no other initializer reads them).
    def _local_block(self, model, stage: int):
        """A conv net's new block: the original reads block len-2 of the grown stage (an off-by-one);
        fixed reads the last one. None (fallback N(0, meta)) when there is none."""
        if self.init_name != "local_fitting":
            return None
        old_blocks = list(model.stages[stage])
        idx = len(old_blocks) - (2 if self.faithful("local_neighbour") else 1)
        return list(old_blocks[idx].parameters()) if 0 <= idx < len(old_blocks) else None

    def _local_layer(self, model):
        """A transformer's new layer: the last layer before growth, wherever the new one goes."""
        if self.init_name != "local_fitting" or not model.depth:
            return None
        return list(model.blocks[-1].parameters())

    def _local_heads(self, model, layer: int):
        """Layer `layer`'s new head group: that layer's attention, the new group included (as before)."""
        if self.init_name != "local_fitting":
            return None
        return list(model.blocks[layer].attn.parameters())

    def _init_new(self, module, old_params, local_params) -> None:
        """Initialise a new block, branch or head group. The fitting initializers fit to every parameter
        the net had before this event (global) or to the neighbour's parameters (local)."""
        reference = {"global_fitting": old_params, "local_fitting": local_params}.get(self.init_name)
        initialize(module, self.init_name, self.meta, faithful_zero=self.faithful("zero_init"),
                   reference=reference)

    def units_per_event(self, n_units: int) -> int:
        """int(width_ratio x units); fixed: at least 1 (0 would make an event that grows nothing)."""
        return units_to_grow(self.ratio, n_units, not self.faithful("min_units"))

    def choose_units(self, model):
        """[(branch site, its RepUnit, saliency)]: the most salient units."""
        by_name = {site.index: site for site in model.branch_sites()}  # a branch site's index: the unit's name
        return [(by_name[name], unit, score) for name, unit, score in
                rank_units(model, self.ratio, self.faithful("saliency"), not self.faithful("min_units"))]

    def grow_width(self, ctx) -> dict:
        model = ctx.model
        chosen, new_params, where, kernels = self.choose_units(model), [], [], []
        old_params = list(model.parameters())  # fit to the net before this event, as the original does
        for site, unit, _score in chosen:
            local = list(unit.parameters())  # the unit's branches before this one
            kernel = sample_kernel(unit, self.rng)
            branch = ctx.grow(site, {**self.KEEP_INIT, "kernel": kernel}).modules[0]
            self._init_new(branch, old_params, local)
            new_params += list(branch.parameters())
            where.append(site.where)
            kernels.append(list(kernel))
        return {"where": where, "kernels": kernels, "saliency": {site.index: s for site, _, s in chosen},
                "new_params": new_params}

    def _adam_fit(self, ctx, params) -> None:
        """The original's `adam` initializer: train only the new parameters with Adam for a few epochs.
        Its batches come from ctx.train_batches, so their cost counts as training compute."""
        epochs = int(self.init_cfg.get("epochs", 2))
        opt = torch.optim.Adam(params, lr=float(self.init_cfg.get("lr", 1e-3)),
                               weight_decay=float(self.init_cfg.get("weight_decay", 5e-4)))
        model = ctx.train_module()  # distributed: DDP around the grown model, the ranks fit together
        model.train()
        for e in range(epochs):
            for x, y in ctx.train_batches(1_000_000 + 100 * self.events + e):  # its own batch order
                loss, _ = self.loss(model, x, y, ctx)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        for p in ctx.model.parameters():
            p.grad = None
        ctx.sync_buffers()  # BN statistics of rank 0, as after an epoch

    # ---- record and resume ----------------------------------------------------------------------
    def summary_extras(self, ctx) -> dict:
        return {"growth_events": self.events, "growth_stopped": self.stopped, "trajectory": self.trajectory,
                "grow_mode": self.mode, "initializer": self.init_name}

    def state_dict(self) -> dict:
        return {"events": self.events, "last_stage": self.last_stage, "rng": self.rng.getstate(),
                "last_growth_epoch": self.last_growth_epoch, "stopped": self.stopped, "trajectory": self.trajectory}

    def load_state_dict(self, state: dict) -> None:
        self.events, self.last_stage = state["events"], state["last_stage"]
        self.rng.setstate(state["rng"])
        self.last_growth_epoch = state["last_growth_epoch"]  # (older checkpoints' val_history: the engine's now)
        self.stopped, self.trajectory = state["stopped"], list(state["trajectory"])


def _site(options: list, index):
    """The site of `options` at `index` (a stage, an insert position)."""
    return next(site for site in options if site.index == index)


def _layer_stack(model) -> bool:
    """Depth sites are insert positions in one stack of layers (ViT, BERT: ranked by layer saliency),
    not stages (conv nets: ranked by stage saliency)."""
    return hasattr(model, "layer_saliency")


def _branches(model) -> int:
    return sum(len(m.branches) for m in model.modules() if isinstance(m, RepUnit))


def _reset_bn_stats_like_original(model, exclude) -> None:
    """The original rebuilds the network and copies parameters only: every BN's running statistics
    restart at mean 0 / var 1, except inside branches added by width growth (moved by reference)."""
    kept = {id(bn) for m in model.modules() if isinstance(m, RepUnit) for b in m.branches[1:]
            for bn in b.modules() if isinstance(bn, torch.nn.BatchNorm2d)}
    kept |= {id(bn) for bn in exclude.modules()}
    for bn in model.modules():
        if isinstance(bn, torch.nn.BatchNorm2d) and id(bn) not in kept:
            bn.reset_running_stats()
