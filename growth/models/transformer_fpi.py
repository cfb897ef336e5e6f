"""bert2BERT's width growth (Chen et al., ACL 2022): function-preserving initialisation (FPI), Net2WiderNet
generalised to transformers, and advanced knowledge initialisation (AKI). Model-side operations on the
growable transformers (ViT, BERT); growth/methods/bert2bert.py decides when and how much.

A mapping sends each new unit to an old source unit: `source[j]` for new unit j (by default round robin,
j mod old); c(s) counts the units that now carry source s, the old unit itself included.
- FFN width (`split_ffn`): a new intermediate unit copies its source's input row and bias (fc1 /
  intermediate.dense); the output columns (fc2 / output.dense) of a source and of all its copies are its
  old column / c(s). The activation is elementwise, so this is exact for any mapping.
- heads (`split_heads`): a new head (one new head group per layer) copies its source head's q, k, v rows
  and biases; the output-projection columns of the source and of its copies are the old ones / c. This
  divides the source groups' existing projection weights IN PLACE (no_grad; the tensor and its optimizer
  state stay, the state now belongs to a column 1/c the size). Exact for any mapping.
- hidden size D -> D' (`split_hidden`): the residual stream becomes x[g] with g(j) = j mod D. Every
  writer of the stream (embeddings, patch projection, position embedding, attention output projection and
  its bias, fc2 / output.dense) gets its new rows copied from the source rows, every LayerNorm's new
  weight and bias entries copy the source's, and every reader (q/k/v, fc1 / intermediate.dense, the
  classifier head) gets column j = old column g(j) / c(g(j)). LayerNorm's mean and variance over x[g]
  equal those over x only when every old dim has the same count, i.e. D' a multiple of D: then the
  function is exactly kept. Otherwise we still grow (bert2BERT itself widens 512 -> 768): the counts
  differ by one between dims, the statistics shift a little, and `exact` is False; the method records
  the measured output change. Which tensors are writers or readers is read off the Replaced entries
  grow_hidden returns: a Linear grown along its input dim reads the stream, everything else writes it.
- AKI (`init="aki"`, FFN and heads only): the new units' weights, their input rows and their output
  columns (/ c as above), come from the NEXT layer's source unit (layer l borrows from l + 1, the top
  layer from itself), so the layer gains knowledge the next one has: not function-preserving (except in
  the top layer). The hidden size has no "next layer": it grows by FPI under either init.
"""
import torch
from torch import nn

INITS = ("fpi", "aki")


def default_source(old: int, n: int) -> torch.Tensor:
    """Round robin: new unit j (0-based among the new ones) copies old unit j mod old."""
    return torch.arange(n) % old


def full_map(old: int, source: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(g over all old + new units, c per old unit): the old units map to themselves."""
    g = torch.cat([torch.arange(old), source.long().cpu()])
    return g, torch.bincount(g, minlength=old)


def _source(old: int, n: int, source) -> torch.Tensor:
    source = default_source(old, n) if source is None else torch.as_tensor(source).long().cpu()
    if source.shape != (n,) or (n and (source.min() < 0 or source.max() >= old)):
        raise ValueError(f"source: {n} indices in 0..{old - 1}, got {source.tolist()}")
    return source


def _donor(blocks, i: int, init: str) -> int:
    if init not in INITS:
        raise ValueError(f"init {init!r}: allowed {', '.join(INITS)}")
    return min(i + 1, len(blocks) - 1) if init == "aki" else i


@torch.no_grad()
def split_ffn(model, n: int, init: str = "fpi", source=None) -> list:
    """n more intermediate units in every layer (model.grow_ffn), set by FPI or AKI. `source`: the old
    unit each new one copies (default round robin). Returns the Replaced entries."""
    blocks = list(model.blocks)
    # a snapshot of every layer's old FFN before any grows: AKI's donor is the next layer's OLD units
    old = [tuple(t.detach().clone() for t in (fc1.weight, fc1.bias, fc2.weight))
           for fc1, fc2 in map(model.ffn_linears, blocks)]
    replaced = []
    for i, block in enumerate(blocks):
        width = old[i][0].shape[0]
        src = _source(width, n, source)
        g, c = full_map(width, src)
        w1, b1, w2 = old[i]
        d1, db1, d2 = old[_donor(blocks, i, init)]
        donor_src = src % d1.shape[0]  # AKI: the next layer may be narrower
        replaced += model.grow_ffn(block, n)
        fc1, fc2 = model.ffn_linears(block)
        dev = fc1.weight.device
        fc1.weight[width:] = d1[donor_src.to(dev)]
        fc1.bias[width:] = db1[donor_src.to(dev)]
        scale = (1.0 / c[g]).to(dev, fc2.weight.dtype)
        fc2.weight[:, :width] = w2
        fc2.weight[:, width:] = d2[:, donor_src.to(dev)]
        fc2.weight.mul_(scale)  # every carrier of source s: its column / c(s)
    return replaced


def _heads(attn) -> tuple[list, torch.Tensor]:
    """A layer's heads over all its groups: per q, k, v a (heads, head_dim, dim) weight and a
    (heads, head_dim) bias or None, and the (dim, heads, head_dim) output projection."""
    parts = [g.qkv_heads() for g in attn.groups]
    qkv = []
    for k in range(3):
        w = torch.cat([p[k][0] for p in parts])
        b = None if parts[0][k][1] is None else torch.cat([p[k][1] for p in parts])
        qkv.append((w.clone(), None if b is None else b.clone()))
    proj = torch.cat([g.proj.weight.view(g.proj.out_features, g.heads, -1) for g in attn.groups], dim=1)
    return qkv, proj.clone()


@torch.no_grad()
def split_heads(model, n: int, init: str = "fpi", source=None) -> list:
    """n more heads in every layer (model.grow_heads: one new head group each), set by FPI or AKI; the
    old groups' output projections are divided in place (module docstring). Returns the new groups."""
    blocks = list(model.blocks)
    old = [_heads(b.attn) for b in blocks]
    counts = [b.attn.heads for b in blocks]
    groups = model.grow_heads(n)
    for i, (block, group) in enumerate(zip(blocks, groups)):
        src = _source(counts[i], n, source)
        g, c = full_map(counts[i], src)
        qkv, proj = old[_donor(blocks, i, init)]
        donor_src = src % proj.shape[1]
        for (w, b), (dw, db) in zip(group.qkv_heads(), qkv):
            w.copy_(dw[donor_src.to(dw.device)])
            if b is not None:
                b.copy_(db[donor_src.to(db.device)])
        scale = 1.0 / c.to(proj.device, proj.dtype)
        new_proj = group.proj.weight.view(group.proj.out_features, n, -1)
        new_proj.copy_(proj[:, donor_src.to(proj.device)] * scale[src.to(proj.device)].view(1, -1, 1))
        start = 0
        for old_group in block.attn.groups[:-1]:  # the sources and their old copies: / c, in place
            view = old_group.proj.weight.view(old_group.proj.out_features, old_group.heads, -1)
            view.mul_(scale[start:start + old_group.heads].view(1, -1, 1))
            start += old_group.heads
    return groups


@torch.no_grad()
def split_hidden(model, n: int) -> tuple[list, bool]:
    """hidden size D -> D + n by FPI (model.grow_hidden, then every new entry set from its source dim
    g(j) = j mod D). Returns (the Replaced entries, exact: whether (D + n) is a multiple of D)."""
    d = model.hidden_size
    g, c = full_map(d, default_source(d, n))
    replaced = model.grow_hidden(n)
    modules = dict(model.named_modules())
    for r in replaced:
        (dim,) = r.index  # only the hidden dim grew
        owner = modules[r.name.rpartition(".")[0]]
        picked = r.old.detach().index_select(dim, g.to(r.old.device))
        if isinstance(owner, nn.Linear) and dim == 1:  # a reader of the stream: its input columns / c
            picked = picked / c[g].to(picked.device, picked.dtype)
        r.new.copy_(picked)
    return replaced, (d + n) % d == 0
