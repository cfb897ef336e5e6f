"""SWS's two claims as summary keys: stored parameters (learngene vs descendants) and training cost
(learngene + descendant tuning vs training from scratch).

Costs are training MACs (forward + backward per sample, the engine's counter). The aux run's cost is its
aux phase plus the teacher's forward passes it distilled from; a teacher trained in the same run is
reported apart (`teacher_train_macs`), as the paper takes its teacher as given. A scratch twin's cost is
exact without running it: a fixed architecture costs the same MACs per sample every epoch.
"""
import torch

from growth.measure import count_params
from growth.models import create_model, learngene
from growth.models.sws_descendant import default_heads


def _teacher_share(rows: list[dict]) -> tuple[int, int]:
    """(training MACs, samples) of the teacher phase, from the run's metrics rows."""
    teacher = [r for r in rows if r["phase"] == "teacher"]
    return (teacher[-1]["train_macs_cum"], teacher[-1]["samples_seen"]) if teacher else (0, 0)


def descendant_params(kwargs: dict, depth: int) -> int:
    with torch.random.fork_rng(devices=[]):  # a throwaway model must not move the RNG
        return count_params(create_model("sws_descendant", **{**kwargs, "depth": depth}))


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
        g = gene["config"]
        kw = {k: g[k] for k in ("embed_dim", "mlp_ratio", "patch_size", "img_size", "in_chans", "num_classes")}
        extras.update(family({**kw, "heads": default_heads(g["heads"], method.variant)}, method.family_depths, n))
    return gene, extras


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
               train_macs_with_learngene=pre + own, cost_ratio=(pre + own) / scratch,
               aux_val_acc=method.gene["aux"]["val_acc"])
    if method.family_depths:
        kw = {k: v for k, v in ctx.model.spec_kwargs().items() if k != "depth"}
        out.update(family(kw, method.family_depths, n))
        out["cost_ratio_amortised"] = (pre / len(method.family_depths) + own) / scratch
    return out
