"""MSG's masks (Masked Structural Growth, Yao et al., ICLR 2024) and the tensor widening the transformers'
hidden-size and FFN growth share (growth/models/transformer.py, vit.py, bert.py).

A `Ramp` is one growth event's mask value m, set by the method each step (0 at growth, up to 1). Every
structure the event added is multiplied by it, so at m = 0 the model computes exactly its old function
whatever the new weights hold:
- heads: a new head group's output (its slice of the output projection) x m (HeadGroup.ramp);
- FFN width: the new intermediate units' activations x m (`RampedAct` around the activation);
- depth: a new layer gives x + m * (layer(x) - x) (Block.ramp / GrowableBertLayer.ramp);
- hidden size: each LayerNorm becomes a `MaskedLayerNorm`, whose mean and variance weight the old dims
  by 1 and the new ones by m (divided by the weights' sum: at m = 0 the old statistics exactly) and
  whose output's new dims are x m; in pre-norm ViT the writers of the residual stream (embedding,
  attention and MLP branches) have their new dims x m too (`Masked.scale`). Readers of the stream get new
  input columns, which multiply zeros at m = 0.
When a ramp reaches 1 the model folds it away (`MaskMixin.fold_mask`, part of TransformerArch): the
masked modules go back to the plain ones holding the same parameters, so the optimizer keeps everything.

Without a ramp in progress nothing here is on the forward path: the models run today's code.
"""
import torch
from torch import nn

from growth.models.growable import Replaced


class Ramp:
    """One growth event's mask value, shared by every module the event added (a plain object: not a
    parameter, not a buffer; the arch spec carries its value, growth/models/transformer.py)."""

    def __init__(self, name: str, value: float = 0.0):
        self.name, self.value = name, float(value)

    def __repr__(self):
        return f"Ramp({self.name!r}, {self.value})"


class Masked:
    """A ramp applied to the last dimension from index `old` on: weights 1 for the old dims, m for the new."""

    def __init__(self, ramp: Ramp, old: int):
        self.ramp, self.old = ramp, int(old)

    def vector(self, n: int, like: torch.Tensor) -> torch.Tensor:
        w = torch.ones(n, device=like.device, dtype=like.dtype)
        w[self.old:] = self.ramp.value
        return w

    def scale(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.vector(x.shape[-1], x)


class MaskedLayerNorm(nn.LayerNorm):
    """LayerNorm over a grown hidden size during MSG's ramp (the original's LayerNormEx): statistics
    weighted by the mask vector, output's new dims x m. Holds the LayerNorm's own parameters."""

    def __init__(self, norm: nn.LayerNorm, masked: Masked):
        nn.Module.__init__(self)
        self.normalized_shape, self.eps, self.elementwise_affine = norm.normalized_shape, norm.eps, True
        self.weight, self.bias = norm.weight, norm.bias  # the same tensors: optimizer state stays
        self.masked = masked
        self.train(norm.training)

    def forward(self, x):
        h = x.float()  # statistics in float32, as F.layer_norm computes them under autocast
        w = self.masked.vector(h.shape[-1], h)
        total = w.sum()
        mean = (h * w).sum(-1, keepdim=True) / total
        var = ((h - mean).square() * w).sum(-1, keepdim=True) / total
        return (((h - mean) * torch.rsqrt(var + self.eps) * self.weight + self.bias) * w).to(x.dtype)

    def plain(self) -> nn.LayerNorm:
        """The fold-away: a plain LayerNorm holding the same parameters (at m = 1 the same function)."""
        out = nn.LayerNorm(self.normalized_shape, eps=self.eps, device="meta")
        out.weight, out.bias = self.weight, self.bias
        return out.train(self.training)


class RampedAct(nn.Module):
    """An FFN's activation with its new units (from index `old` on) x m. No parameters of its own."""

    def __init__(self, act, masked: Masked):
        super().__init__()
        self.act, self.masked = act, masked

    def forward(self, x):
        return self.masked.scale(self.act(x))


def set_norm_shape(norm: nn.LayerNorm, n: int) -> None:
    norm.normalized_shape = (n,)


@torch.no_grad()
def widen_param(module: nn.Module, attr: str, name: str, sizes: dict[int, int], init) -> Replaced:
    """Replace `module.<attr>` by a new, larger Parameter: dim d grows to sizes[d], the old entries keep
    their place (the leading slice) and values, the rest comes from `init(tensor)` (applied to a whole new
    tensor first, then the old slice is copied in). `name` is the parameter's name in the model."""
    old = getattr(module, attr)
    shape = [sizes.get(d, s) for d, s in enumerate(old.shape)]
    new = torch.empty(shape, device=old.device, dtype=old.dtype)
    init(new)
    new[tuple(slice(0, s) for s in old.shape)] = old
    new = nn.Parameter(new, requires_grad=old.requires_grad)
    setattr(module, attr, new)
    index = {d: torch.arange(old.shape[d]) for d in sizes if sizes[d] != old.shape[d]}
    return Replaced(name, old, new, index)


class Widener:
    """Collects the Replaced entries of one growth step; names come from the model's module names."""

    def __init__(self, model: nn.Module, weight_init):
        self.names = {id(m): n for n, m in model.named_modules()}
        self.weight_init, self.replaced = weight_init, []

    def _name(self, module, attr) -> str:
        prefix = self.names[id(module)]
        return f"{prefix}.{attr}" if prefix else attr

    def param(self, module, attr, sizes: dict[int, int], init=None) -> None:
        """Grow one tensor; init: None = the family's weight init, or zeros_/ones_ (biases, norms)."""
        init = init or self.weight_init
        self.replaced.append(widen_param(module, attr, self._name(module, attr), sizes, init))

    def linear(self, layer: nn.Linear, n_in: int | None = None, n_out: int | None = None) -> None:
        """A Linear's input columns to n_in and/or output rows (with its bias) to n_out."""
        sizes = {**({0: n_out} if n_out else {}), **({1: n_in} if n_in else {})}
        self.param(layer, "weight", sizes)
        if n_out and layer.bias is not None:
            self.param(layer, "bias", {0: n_out}, nn.init.zeros_)
        layer.in_features, layer.out_features = n_in or layer.in_features, n_out or layer.out_features

    def norm(self, norm: nn.LayerNorm, n: int) -> None:
        self.param(norm, "weight", {0: n}, nn.init.ones_)
        self.param(norm, "bias", {0: n}, nn.init.zeros_)
        set_norm_shape(norm, n)


class MaskMixin:
    """The model side of MSG's masks (TransformerArch): its ramps by name, set_mask, fold_mask, and their
    record in the arch spec. The family gives `blocks` (each with `attn.groups`), `ffn_act(block)` and
    `attach_hidden(masked)`."""

    ramps: dict  # name -> Ramp; set by apply_masks in the constructor

    def ffn_act(self, block) -> tuple[nn.Module, str]:
        """The module holding a layer's FFN activation, and its attribute name."""
        raise NotImplementedError

    def act_of(self, block):
        parent, name = self.ffn_act(block)
        return getattr(parent, name)

    def attach_ffn(self, block, masked: Masked) -> None:
        parent, name = self.ffn_act(block)
        setattr(parent, name, RampedAct(getattr(parent, name), masked))

    def new_ramp(self) -> Ramp:
        k = 0
        while f"m{k}" in self.ramps:
            k += 1
        return Ramp(f"m{k}")

    def set_mask(self, name: str, value: float) -> None:
        """Set ramp `name`'s mask value (0 = the old function, 1 = the grown one)."""
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"set_mask: value {value!r} outside [0, 1]")
        self.ramps[name].value = float(value)

    def fold_mask(self, name: str) -> None:
        """Remove ramp `name` (its value becomes 1): masked LayerNorms back to plain ones holding the same
        parameters, RampedAct back to the activation, head groups' and layers' ramps None."""
        ramp = self.ramps.pop(name)
        ramp.value = 1.0
        for parent in list(self.modules()):
            for child_name, child in list(parent.named_children()):
                if isinstance(child, MaskedLayerNorm) and child.masked.ramp is ramp:
                    setattr(parent, child_name, child.plain())
                elif isinstance(child, RampedAct) and child.masked.ramp is ramp:
                    setattr(parent, child_name, child.act)
            if getattr(parent, "ramp", None) is ramp:
                parent.ramp = None
            if getattr(parent, "stream", None) is not None and parent.stream.ramp is ramp:
                parent.stream = None

    def hidden_masked(self) -> Masked | None:
        return next((m.masked for m in self.modules() if isinstance(m, MaskedLayerNorm)), None)

    def masks_spec(self) -> dict | None:
        """What the ramps mask and their values, for the arch spec (None without ramps)."""
        if not self.ramps:
            return None
        hidden = self.hidden_masked()
        ffn = [self.act_of(b) for b in self.blocks]
        return {"values": {k: r.value for k, r in self.ramps.items()},
                "hidden": None if hidden is None else [hidden.ramp.name, hidden.old],
                "ffn": [[a.masked.ramp.name, a.masked.old] if isinstance(a, RampedAct) else None for a in ffn],
                "heads": [[g.ramp.name if g.ramp else None for g in b.attn.groups] for b in self.blocks],
                "depth": [b.ramp.name if b.ramp else None for b in self.blocks]}

    def apply_masks(self, spec: dict | None) -> None:
        """Rebuild the ramps a spec's `masks` names (the constructor's last step)."""
        self.ramps = {}
        if not spec:
            return
        self.ramps = {k: Ramp(k, v) for k, v in spec["values"].items()}
        if spec["hidden"]:
            self.attach_hidden(Masked(self.ramps[spec["hidden"][0]], spec["hidden"][1]))
        for block, ffn, heads, depth in zip(self.blocks, spec["ffn"], spec["heads"], spec["depth"]):
            if ffn:
                self.attach_ffn(block, Masked(self.ramps[ffn[0]], ffn[1]))
            for g, h in zip(block.attn.groups, heads):
                g.ramp = self.ramps[h] if h else None
            block.ramp = self.ramps[depth] if depth else None
