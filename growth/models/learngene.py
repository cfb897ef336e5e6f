"""The learngene: what an SWS aux model passes on, as one file, and how a descendant is built from it.

The file holds the S stage blocks, the patch and position embedding (the learngene proper), the final
norm and the head (small; the head is used only for the same data), the aux config, and what the aux
training cost, so that a descendant run can report the cost and storage ratios.

`layers_source` gives each descendant layer the stage it starts from, in order: an explicit list, or
`auto`, which splits the depth over the stages in proportion to the aux's stage repeats (one layer per
stage first), so that `auto` at the aux's depth replays the aux schedule exactly, or `even`, which splits
it as evenly as possible with the spare layers to the earlier stages: the rule that gives the original
README's only list (12 layers from 5 stages: 0,0,0,1,1,1,2,2,3,3,4,4). The original publishes no list for
other depths (METHODS.md 3.2); `even` is our guess at its rule, and equals that list where it is known.
"""

import torch

from growth.engine.io import read_torch
from growth.errors import ConfigError

FORMAT = "sws-learngene-1"
GENE_KEYS = ("stages", "patch_embed", "pos_embed")  # the learngene proper (issue 9); norm and head ride along


def view(aux) -> dict:
    """The learngene of an SWSAux as its own tensors, not copied (to count it; any device, meta too)."""
    return {"format": FORMAT, "config": aux.spec_kwargs(), "stages": [b.state_dict() for b in aux.stages],
            "patch_embed": aux.patch_embed.state_dict(), "pos_embed": aux.pos_embed.detach(),
            "norm": aux.norm.state_dict(), "head": aux.head.state_dict()}


def extract(aux) -> dict:
    """A learngene from a trained SWSAux (tensors cloned to the CPU)."""
    cpu = lambda t: t.detach().cpu().clone()
    gene = view(aux)
    return {**gene, "stages": [{k: cpu(v) for k, v in sd.items()} for sd in gene["stages"]],
            **{k: {n: cpu(v) for n, v in gene[k].items()} for k in ("patch_embed", "norm", "head")},
            "pos_embed": cpu(gene["pos_embed"])}


def _numel(part) -> int:
    if isinstance(part, torch.Tensor):
        return part.numel()
    if isinstance(part, dict):
        return sum(_numel(v) for v in part.values())
    return sum(_numel(v) for v in part)


def gene_params(gene: dict) -> int:
    """Parameters of the learngene proper: stage blocks + patch embedding + position embedding."""
    return sum(_numel(gene[k]) for k in GENE_KEYS)


def block_params(gene: dict) -> int:
    """Parameters of the S stage blocks alone (what the original's papers count as the learngene)."""
    return _numel(gene["stages"])


def file_params(gene: dict) -> int:
    """Every parameter the file stores (the learngene plus final norm and head)."""
    return gene_params(gene) + _numel(gene["norm"]) + _numel(gene["head"])


def load(path, key: str = "method.learngene") -> dict:
    if not path:
        raise ConfigError(key, path, "a descendant needs a learngene file (an aux run's "
                          "checkpoints/learngene.pt), or use method.phase=scratch")
    gene = read_torch(path, key, "learngene file does not exist (run the aux phase first)",
                      "learngene file is corrupt or unreadable")
    if not isinstance(gene, dict) or gene.get("format") != FORMAT:
        raise ConfigError(key, str(path), f"not a learngene file (format {FORMAT} expected)")
    return gene


def auto_source(depth: int, repeats: list[int]) -> list[int]:
    """Stage of each of `depth` layers, in stage order. depth >= S: every stage gets one layer, the rest
    go in proportion to (n_s - 1) by largest remainder (ties to earlier stages), so depth = sum(n_s)
    gives the aux schedule. depth < S: `depth` stages evenly spaced from the first to the last."""
    stages = len(repeats)
    if depth < stages:
        return _spread(depth, stages)
    spare, weights = depth - stages, [n - 1 for n in repeats]
    total = sum(weights)
    share = [spare * w / total if total else spare / stages for w in weights]
    counts = [1 + int(s) for s in share]
    order = sorted(range(stages), key=lambda i: (-(share[i] - int(share[i])), i))
    for i in order[:depth - sum(counts)]:
        counts[i] += 1
    return [s for s, n in enumerate(counts) for _ in range(n)]


def _spread(depth: int, stages: int) -> list[int]:
    """depth < stages: `depth` stages evenly spaced from the first to the last."""
    if depth == 1:
        return [stages - 1]
    return [round(i * (stages - 1) / (depth - 1)) for i in range(depth)]


def even_source(depth: int, stages: int) -> list[int]:
    """Stage of each of `depth` layers, in stage order, as evenly as possible: every stage gets
    depth // S layers and the first depth % S stages one more (12 over 5: 3,3,2,2,2)."""
    if depth < stages:
        return _spread(depth, stages)
    base, extra = divmod(depth, stages)
    return [s for s in range(stages) for _ in range(base + (s < extra))]


RULES = ("auto", "even")


def parse_source(value, depth: int, stages: int, repeats: list[int], key: str = "method.layers_source") -> list[int]:
    """`auto`, `even`, a list of ints or a comma string ("0,0,1,...") -> one stage index per descendant layer."""
    if value in (None, "auto"):
        return auto_source(depth, repeats)
    if value == "even":
        return even_source(depth, stages)
    items = value.split(",") if isinstance(value, str) else value
    try:
        source = [int(str(v).strip()) for v in items]
    except (TypeError, ValueError):
        raise ConfigError(key, value, f"auto, even, or one stage index in [0, {stages - 1}] per layer") from None
    if len(source) != depth:
        raise ConfigError(key, value, f"needs one stage index per layer: length {len(source)} != model.depth {depth}")
    bad = [s for s in source if not 0 <= s < stages]
    if bad:
        raise ConfigError(key, value, f"stage index {bad[0]} out of range: the learngene has {stages} stages "
                          f"(0..{stages - 1})")
    return source


@torch.no_grad()
def init_descendant(model, gene: dict, source: list[int], load_head: bool) -> None:
    """Copy the learngene into a descendant (growth/models/sws_descendant.py) in place: patch and
    position embedding, each layer from its source stage, the aux's final norm into fc_norm, and the
    head when asked. Parameters keep their identity (the optimizer already holds them)."""
    net = model.net
    net.patch_embed.load_state_dict(gene["patch_embed"])
    net.pos_embed.copy_(gene["pos_embed"])
    for block, stage in zip(net.blocks, source):
        block.load_state_dict(gene["stages"][stage])
    net.fc_norm.load_state_dict(gene["norm"])
    if load_head:
        net.head.load_state_dict(gene["head"])
