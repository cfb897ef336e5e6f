"""SWS's two claims as summary keys: stored parameters (learngene vs descendants) and training cost
(learngene + descendant tuning vs training from scratch).

Costs are training MACs (forward + backward per sample, the engine's counter). The aux run's cost is its
aux phase plus the teacher's forward passes it distilled from; a teacher trained in the same run is
reported apart (`teacher_train_macs`), as the paper takes its teacher as given. A scratch twin's cost is
exact without running it: a fixed architecture costs the same MACs per sample every epoch.

A dry run (`dry_run_sizes`) reports the same sizes and ratios before any training, per training image
(every phase reads the same training set, so its size cancels), from the epochs of the plan:
the aux's trainer.epochs, `method.descendant_epochs` and `method.scratch_epochs`.
"""
import torch

from growth.measure import count_params, forward_macs, train_step_macs
from growth.models import create_model, learngene
from growth.models.sws import DEFAULTS
from growth.models.sws_descendant import default_heads

# What a descendant takes from the learngene's config (its depth and heads are its own).
SHAPE_KEYS = ("embed_dim", "mlp_ratio", "patch_size", "img_size", "in_chans", "num_classes")


def _teacher_share(rows: list[dict]) -> tuple[int, int]:
    """(training MACs, samples) of the teacher phase, from the run's metrics rows."""
    teacher = [r for r in rows if r["phase"] == "teacher"]
    return (teacher[-1]["train_macs_cum"], teacher[-1]["samples_seen"]) if teacher else (0, 0)


def descendant_params(kwargs: dict, depth: int) -> int:
    # a throwaway model must not move the RNG; on the meta device it costs no memory or init time (ViT-B)
    with torch.random.fork_rng(devices=[]), torch.device("meta"):
        return count_params(create_model("sws_descendant", **{**kwargs, "depth": depth}))


def cost_ratio(learngene_cost, own, scratch) -> float:
    """Training cost with the learngene (making it + tuning) over training the same model from scratch."""
    return (learngene_cost + own) / scratch


def family(kwargs: dict, depths: list[int], gene_params: int) -> dict:
    """Storing one pretrained model per depth vs storing the learngene once."""
    total = sum(descendant_params(kwargs, d) for d in depths)
    return {"family_depths": list(depths), "family_params": total, "family_storage_ratio": total / gene_params}


def aux_summary(method, ctx) -> tuple[dict, dict]:
    """(the learngene file's content, summary keys) for a completed aux run."""
    c, info = ctx.train_cost, ctx.data_info
    teacher_macs, teacher_samples = _teacher_share(ctx.metrics())
    aux_macs, aux_samples = c["train_macs"] - teacher_macs, c["samples"] - teacher_samples
    distilled = method.teacher is not None and method.alpha > 0
    kd_macs = method.teacher_info.get("teacher_forward_macs", 0) * aux_samples if distilled else 0
    cost = {"aux_train_macs": aux_macs, "kd_teacher_macs": kd_macs, "learngene_cost_macs": aux_macs + kd_macs,
            "teacher_train_macs": teacher_macs, "aux_epochs": method.aux_epochs}
    gene = learngene.extract(ctx.model)
    gene.update(cost=cost, data={"name": info["name"], "num_classes": info["num_classes"]},
                aux={"val_acc": ctx.last_val_acc, "params": count_params(ctx.model),
                     "variant": method.variant})
    n = learngene.gene_params(gene)
    extras = {"learngene_path": str(ctx.checkpoint_path("learngene.pt").resolve()),
              "learngene_params": n, "learngene_file_params": learngene.file_params(gene), **cost}
    if method.teacher is not None:
        extras["teacher_test_acc"] = ctx.evaluate("test", method.teacher.module)["acc"]
    if method.family_depths:
        extras.update(family(family_kwargs(gene, method.variant), method.family_depths, n))
    return gene, extras


def family_kwargs(gene: dict, variant: str) -> dict:
    """The constructor arguments (but depth) of the descendants a learngene starts."""
    g = gene["config"]
    return {**{k: g[k] for k in SHAPE_KEYS}, "heads": default_heads(g["heads"], variant)}


def descendant_summary(method, ctx) -> dict:
    """Cost keys for descendant and scratch runs; storage and cost ratios for descendants."""
    own = ctx.train_cost["train_macs"]
    scratch_epochs = int(method.scratch_epochs or ctx.epochs)
    scratch = own / max(1, ctx.epoch) * scratch_epochs
    out = {"descendant_train_macs": own, "scratch_epochs": scratch_epochs, "scratch_train_macs": scratch}
    if method.gene is None:
        return out
    n, pre = learngene.gene_params(method.gene), method.gene["cost"]["learngene_cost_macs"]
    out.update(learngene_params=n, storage_ratio=count_params(ctx.model) / n, learngene_cost_macs=pre,
               train_macs_with_learngene=pre + own, cost_ratio=cost_ratio(pre, own, scratch),
               aux_val_acc=method.gene["aux"]["val_acc"])
    if method.family_depths:
        kw = {k: v for k, v in ctx.model.spec_kwargs().items() if k != "depth"}
        out.update(family(kw, method.family_depths, n))
        out["cost_ratio_amortised"] = (pre / len(method.family_depths) + own) / scratch
    return out


# ---- dry run: sizes and the plan's ratios before training ------------------------------------------
def _input_shape(kw: dict) -> tuple:
    return kw["in_chans"], kw["img_size"], kw["img_size"]


def descendant_sizes(kwargs: dict, depths: list[int]) -> dict:
    """{depth: (params, training MACs per image)} of descendants of these depths. Every block has the
    same shape, so both are affine in depth: two throwaway models (depth 1 and 2, on the meta device)
    give every depth exactly, where building an 86M-parameter ViT-B per depth would take seconds each."""
    with torch.random.fork_rng(devices=[]), torch.device("meta"):  # shapes only: no memory, no init time
        one, two = (create_model("sws_descendant", **{**kwargs, "depth": d}) for d in (1, 2))
        p1, p2 = count_params(one), count_params(two)
        m1, m2 = (train_step_macs(m, _input_shape(kwargs)) for m in (one, two))
    return {d: (p1 + (d - 1) * (p2 - p1), m1 + (d - 1) * (m2 - m1)) for d in depths}


def planned_ratios(learngene_cost: float, des_macs: dict, descendant_epochs: int, scratch_epochs: int) -> dict:
    """The paper's three claims for a family of descendants, per training image (des_macs: depth ->
    training MACs per image). Each ratio is SWS's cost over the alternative's (< 1: SWS is cheaper;
    the paper's "k x less" is 1 / ratio):
    - family_cost_ratio: making the learngene once + tuning every depth descendant_epochs, over training
      every depth from scratch for scratch_epochs ("total training cost");
    - pretrain_cost_ratio: making the learngene over pre-training every depth from scratch (the
      pretrain-then-fine-tune route pre-trains one model per size);
    - cost_ratio_<d>: one descendant alone, as descendant_summary's cost_ratio (the whole learngene
      charged to it)."""
    own = {d: descendant_epochs * m for d, m in des_macs.items()}
    scratch = {d: scratch_epochs * m for d, m in des_macs.items()}
    out = {"family_cost_ratio": cost_ratio(learngene_cost, sum(own.values()), sum(scratch.values())),
           "pretrain_cost_ratio": learngene_cost / sum(scratch.values())}
    out.update({f"cost_ratio_{d}": cost_ratio(learngene_cost, own[d], scratch[d]) for d in des_macs})
    return out


def aux_dry_run(method, model, teacher, train_macs: int | None = None, kd_macs: int | None = None) -> dict:
    """An aux model's sizes, its learngene's, the family's (method.family_depths) and, with the plan's
    epochs, the cost ratios. `teacher`: the frozen teacher's module (None: no distillation);
    `train_macs`, `kd_macs`: the aux's training and the teacher's forward MACs per image when already
    counted (the engine's sizes, the teacher's setup), else counted here."""
    gene = learngene.view(model)
    n, blocks = learngene.gene_params(gene), learngene.block_params(gene)
    aux = count_params(model)
    shape = _input_shape(gene["config"])
    kd = 0 if teacher is None else kd_macs or forward_macs(teacher, shape)  # the teacher's forward, every image
    aux_macs = train_macs or train_step_macs(model, shape)
    out = {"aux_params": aux, "learngene_params": n, "learngene_block_params": blocks, "rest_params": aux - blocks,
           "aux_train_macs_per_image": aux_macs, "teacher_forward_macs": kd, "aux_epochs": method.aux_epochs,
           "learngene_cost_macs_per_image": method.aux_epochs * (aux_macs + kd)}
    if not method.family_depths:
        return out
    kw = family_kwargs(gene, method.variant)
    sizes = descendant_sizes(kw, method.family_depths)
    total = sum(p for p, _ in sizes.values())
    out.update(descendant_params={str(d): p for d, (p, _) in sizes.items()},
               descendant_train_macs_per_image={str(d): m for d, (_, m) in sizes.items()},
               family_depths=list(method.family_depths), family_params=total, family_storage_ratio=total / n)
    if method.descendant_epochs and method.scratch_epochs:
        out.update(descendant_epochs=method.descendant_epochs, scratch_epochs=int(method.scratch_epochs),
                   **planned_ratios(out["learngene_cost_macs_per_image"], {d: m for d, (_, m) in sizes.items()},
                                    method.descendant_epochs, int(method.scratch_epochs)))
    return out


def _stages_named(layers_source) -> int:
    """How many stages a learngene has, as far as a descendant's config tells without the file: an
    explicit list names stages up to its largest index; else the aux default's count (5)."""
    try:
        items = layers_source.split(",") if isinstance(layers_source, str) else list(layers_source)
        return 1 + max(int(v) for v in items)
    except (TypeError, ValueError):  # auto, even, null
        return len(DEFAULTS["stage_repeats"])


def descendant_dry_run(method, model, train_macs: int | None = None) -> dict:
    """A descendant's (or scratch twin's) params and training MACs per image, and the learngene it
    starts from: the file's when it was given, else the one this shape implies (the patch and position
    embedding and one block per source stage: what a learngene of this width holds)."""
    kw = model.spec_kwargs()
    out = {"descendant_depth": model.depth, "descendant_params": count_params(model),
           "descendant_train_macs_per_image": train_macs or train_step_macs(model, _input_shape(kw))}
    if method.gene is not None:
        n, source = learngene.gene_params(method.gene), "learngene file"
    else:
        net, stages = model.net, _stages_named(method.cfg["method"].get("layers_source"))
        n = count_params(net.patch_embed) + net.pos_embed.numel() + stages * count_params(net.blocks[0])
        source = f"this shape with {stages} stage blocks (no learngene file)"
    out.update(learngene_params=n, learngene_params_from=source, storage_ratio=out["descendant_params"] / n)
    if method.family_depths:
        out.update(family({k: v for k, v in kw.items() if k != "depth"}, method.family_depths, n))
    return out
