"""Splitting steepest descent (Liu, Wu, Wang, NeurIPS 2019; energy-aware: Wang et al. 2019; Firefly 2020).

A neuron i with incoming weights w_i, pre-activation z_i = c_i * (w_i . x) + d_i (c_i, d_i: a BatchNorm
in eval mode folded to a per-channel affine; c = 1, d = bias without one) and output sigma(z_i), split
into two offspring with weights w_i + eps v and w_i - eps v that each keep half of the outgoing weights,
changes the network output by O(eps^2) (the odd terms cancel) and the loss by

    L(split) - L = eps^2 / 2 * v^T S_i v + O(eps^4),
    S_i = E_x[ dL/d(sigma_i) * sigma''(z_i) * c_i^2 * x x^T ]        (the splitting matrix)

so the best direction is the eigenvector v_i of S_i's smallest eigenvalue lambda_i, the loss falls by
about eps^2/2 * |lambda_i|, and only neurons with lambda_i < 0 are worth splitting. For a conv, x is one
input patch (cin*kh*kw, as F.unfold lays it out, the order of weight[i].flatten()) and the sum runs over
every output position; dL/d(sigma_i) is read per position.

How the originals compute it (read for behaviour, no code copied):
- klightz/splitting @6458fd1, mbv1/sp_conv.py `SpConvBlock.sp_forward` and mbv1/main_finetune.py
  `compute_A`/`calculate_eigen`: BN is put in eval mode and folded to bn_coff = gamma/sqrt(var+1e-5),
  which multiplies the patch on both sides (our c_i^2); a zero D x D dummy matrix per neuron adds
  sigma''(z) (c x)^T V (c x) after the activation, so its gradient after loss.backward() is S_i; the
  gradients are averaged over the batches, symmetrised and the smallest eigenpair taken. Only weights
  move (the convs have no bias), so the bias is copied unchanged to both offspring, as here.
- ReLU (sigma'' = 0 almost everywhere): the forward keeps ReLU, but sigma'' is replaced by the second
  derivative of softplus with beta = 3, beta * s * (1 - s) with s = sigmoid(beta * z) (`_dd_softplus`,
  sp_conv.py, in the 'relu' branch of sp_forward). klightz/Firefly @ebb069d, sp/module.py `_d2_actv`,
  does the same ("use 2nd order derivative of softplus for approximation", beta = 3) and multiplies it
  by (1 - alpha) for leaky ReLU; dilinwang820/fast-energy-aware-splitting @73a1c9e,
  mbv1_cifar100/sp_conv.py, too. We do the same (`relu_beta`, default 3; `relu_beta=None` gives the
  exact sigma'' = 0 and so S = 0: nothing to split). Every other activation gets its exact sigma''
  by double autograd.
- Choosing: splitting mbv1/index_eigen.py (grow rate 0.3) and Firefly sp/net.py `sp_threshold` take
  one threshold over all layers, the eigenvalue at position int(grow * total) in ascending order, and
  split every neuron below it (Firefly: at or below), whatever its sign. Here `choose` takes the k most negative and never one with lambda >= 0 (the paper's rule:
  a non-negative lambda means splitting cannot lower the loss to second order).
- Energy-aware (fast-energy-aware-splitting mbv1_cifar100/main_split.py): a linear program
  min sum_i beta_i lambda_i, s.t. sum_i beta_i f_i <= budget, 0 <= beta_i <= 1, keeping beta_i >= 0.99,
  with f_i = sqrt(MACs one more neuron of that layer adds) and budget = grow * sum of f over all
  neurons (per group of layers, plus a per-layer cap). With one budget this LP is a fractional
  knapsack: its solution takes neurons by increasing lambda_i / f_i (most negative loss drop per unit
  cost first; beta = 0 for lambda >= 0) until the budget is used, the last one fractional; dropping the
  fractional one (their beta >= 0.99 rule) is exactly `choose(..., cost=f, budget=B)`. `neuron_macs`
  gives the MACs; take its sqrt for the original's f.
- Splitting: the offspring copy the BN entries (gamma, beta, running stats) and the bias; the original
  adds 1e-2 * v to the kept row and subtracts it from the appended copy, and halves the outgoing column
  of the next layer, appending the halved copy. `split_pair` does that with eps as an argument.

Scale: the matrices are those of the loss as `loss_fn` returns it, weighted per batch by its sample
count, i.e. for a batch-mean loss the mean over every sample the batches hold (the original averages
per batch; equal when the batches have one size).
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from growth.models.growable import GrowthResult, Replaced, Site

ACTS = {"relu": nn.ReLU, "leaky_relu": nn.LeakyReLU, "softplus": nn.Softplus, "tanh": nn.Tanh,
        "sigmoid": nn.Sigmoid, "silu": nn.SiLU, "swish": nn.SiLU, "gelu": nn.GELU, "elu": nn.ELU}
_TEMP_ELEMENTS = 2 ** 25  # largest (neurons, D, positions) product one accumulation step builds


# ----------------------------------------------------------------------------- the activation


def _act_fn(act):
    if isinstance(act, str):
        if act not in ACTS:
            raise ValueError(f"act={act!r}: allowed {', '.join(ACTS)}, an nn.Module or a callable")
        return ACTS[act]()
    if callable(act):
        return act
    raise ValueError(f"act={act!r}: allowed {', '.join(ACTS)}, an nn.Module or a callable")


def second_derivative(act, z: torch.Tensor, relu_beta: float | None = 3.0) -> torch.Tensor:
    """sigma''(z) elementwise. ReLU / leaky ReLU use the originals' softplus(beta) surrogate."""
    fn = _act_fn(act)
    if isinstance(fn, (nn.ReLU, nn.LeakyReLU)) and relu_beta is not None:
        s = torch.sigmoid(relu_beta * z)
        slope = fn.negative_slope if isinstance(fn, nn.LeakyReLU) else 0.0
        return relu_beta * s * (1 - s) * (1 - slope)
    with torch.enable_grad():
        zz = z.detach().clone().requires_grad_(True)
        out = fn(zz.clone())  # the clone lets an in-place activation run on a non-leaf
        (d1,) = torch.autograd.grad(out.sum(), zz, create_graph=True)
        if not d1.requires_grad:  # sigma' constant (identity, ReLU without surrogate): sigma'' = 0
            return torch.zeros_like(z)
        (d2,) = torch.autograd.grad(d1.sum(), zz, allow_unused=True)
    return torch.zeros_like(z) if d2 is None else d2.detach()


# ----------------------------------------------------------------------------- the layer


def _bn_affine(bn, n: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(c, d) with bn(y) = c * y + d per channel in eval mode; (1, 0) without a BN."""
    if bn is None:
        return like.new_ones(n), like.new_zeros(n)
    if not isinstance(bn, nn.modules.batchnorm._BatchNorm) or not bn.track_running_stats:
        raise ValueError(f"bn={type(bn).__name__}: a BatchNorm with running stats (eval mode is an affine)")
    if bn.num_features != n:
        raise ValueError(f"bn has {bn.num_features} channels, the layer {n} neurons")
    gamma = bn.weight.detach() if bn.affine else like.new_ones(n)
    beta = bn.bias.detach() if bn.affine else like.new_zeros(n)
    c = gamma / torch.sqrt(bn.running_var + bn.eps)
    return c, beta - c * bn.running_mean


def _conv_padding(conv: nn.Conv2d):
    if conv.padding_mode != "zeros":
        raise NotImplementedError(f"conv padding_mode={conv.padding_mode!r}: only 'zeros'")
    if conv.padding == "valid":
        return 0
    if conv.padding == "same":
        total = [d * (k - 1) for d, k in zip(conv.dilation, conv.kernel_size)]
        if any(t % 2 for t in total):
            raise NotImplementedError("padding='same' with an even kernel pads unevenly")
        return tuple(t // 2 for t in total)
    return conv.padding


def _check_layer(layer):
    if isinstance(layer, nn.Conv2d):
        if layer.groups != 1:
            raise NotImplementedError(f"conv groups={layer.groups}: only groups=1")
        return
    if not isinstance(layer, nn.Linear):
        raise ValueError(f"layer {type(layer).__name__}: a Linear or a Conv2d")


def patch_dim(layer) -> int:
    """D, the length of one neuron's incoming weight vector (in_features, or cin*kh*kw)."""
    return layer.weight[0].numel()


def _patches(layer, x: torch.Tensor) -> torch.Tensor:
    """(positions, D): every input vector one neuron's weights meet."""
    if isinstance(layer, nn.Linear):
        return x.reshape(-1, x.shape[-1])
    cols = F.unfold(x, layer.kernel_size, dilation=layer.dilation, padding=_conv_padding(layer),
                    stride=layer.stride)  # (N, D, L), L in the output's row-major order
    return cols.transpose(1, 2).reshape(-1, cols.shape[1])


def _per_position(layer, t: torch.Tensor) -> torch.Tensor:
    """(positions, n_out) view of a tensor shaped like the layer's output."""
    if isinstance(layer, nn.Linear):
        return t.reshape(-1, t.shape[-1])
    return t.flatten(2).transpose(1, 2).reshape(-1, t.shape[1])


def _channel_view(layer, v: torch.Tensor, ndim: int) -> torch.Tensor:
    """A per-channel vector shaped to broadcast against the layer's output."""
    return v if isinstance(layer, nn.Linear) else v.view(1, -1, *([1] * (ndim - 2)))


# ----------------------------------------------------------------------------- the pass


@dataclass
class _Capture:
    x: torch.Tensor | None = None  # layer input
    y: torch.Tensor | None = None  # layer output
    sigma: torch.Tensor | None = None  # the activations (what `tap` reads or writes)
    calls: int = 0


def _hooks(layer, tap, tap_side: str, cap: _Capture):
    def on_layer(module, args, out):
        if cap.x is not None:
            raise RuntimeError("the layer ran twice in one forward: its neurons have no single input")
        # copies: an in-place activation (ReLU(inplace=True)) would overwrite the pre-activations
        cap.x = args[0].detach().clone()
        cap.y = out.detach().clone()
        if not out.requires_grad:  # frozen model: make the activations differentiable from here on
            out = out.detach().requires_grad_(True)
        return out

    def on_tap_input(module, args):
        _tap(args[0])

    def on_tap_output(module, args, out):
        _tap(out)

    def _tap(t):
        if cap.sigma is not None:
            raise RuntimeError("the tap ran twice in one forward: pass a module that sees the activations once")
        cap.sigma = t

    handles = [layer.register_forward_hook(on_layer)]
    if tap_side == "input":
        handles.append(tap.register_forward_pre_hook(on_tap_input))
    elif tap_side == "output":
        handles.append(tap.register_forward_hook(on_tap_output))
    else:
        raise ValueError(f"tap_side={tap_side!r}: allowed input, output")
    return handles


def _check_wiring(cap: _Capture, act, c, d, layer):
    if cap.x is None or cap.sigma is None:
        raise RuntimeError("the forward did not run the layer and the tap")
    if cap.sigma.shape != cap.y.shape:
        raise ValueError(f"the tap sees {tuple(cap.sigma.shape)}, the layer outputs {tuple(cap.y.shape)}: "
                         "tap a module that reads (input) or makes (output) the activations themselves")
    z = _channel_view(layer, c, cap.y.ndim) * cap.y + _channel_view(layer, d, cap.y.ndim)
    expect = _act_fn(act)(z.clone())
    sig = cap.sigma.detach()
    if not torch.allclose(sig, expect, rtol=1e-4, atol=1e-5 * (1 + expect.abs().max().item())):
        raise ValueError("the tapped activations are not act(bn(layer output)): check act, bn and tap")
    return z


def _reiterable(batches, passes: int):
    if passes > 1 and isinstance(batches, Iterator):  # asks without iterating (a DataLoader would start)
        raise ValueError("the neurons need several passes (memory bound): pass a list or a DataLoader, "
                         "not a one-shot iterator")


def _accumulate(S, X, coef):
    """S[j] += X^T diag(coef[:, j]) X, a few neurons at a time so the temporary stays bounded."""
    P, D = X.shape
    step = max(1, _TEMP_ELEMENTS // max(1, P * D))
    Xt = X.t()
    for a in range(0, S.shape[0], step):
        w = coef[:, a:a + step].t().unsqueeze(1)  # (k, 1, P)
        S[a:a + step] += torch.matmul(Xt.unsqueeze(0) * w, X)


@dataclass(frozen=True)
class Neurons:
    """One layer's neurons for the many-layer functions: the arguments of `splitting_matrices`."""
    layer: nn.Module
    tap: nn.Module
    act: object = "relu"
    bn: nn.Module | None = None
    tap_side: str = "input"
    neurons: object = None  # indices; None: every neuron of the layer


def splitting_matrices(model, layer, batches, loss_fn, *, tap, act="relu", bn=None, tap_side="input",
                       relu_beta: float | None = 3.0, neurons=None, dtype=None) -> torch.Tensor:
    """S (len(neurons), D, D): the splitting matrix of each neuron (all by default) of `layer`.

    `layer` is a Linear or a Conv2d (groups 1); `bn` the BatchNorm between it and the activation, if any;
    `act` names the activation (a key of ACTS, an nn.Module, or an elementwise callable); `tap` is a
    module that reads the activations as its first input (tap_side='input', e.g. the next Linear/Conv)
    or makes them (tap_side='output', e.g. the nn.ReLU). batches yields (x, y); loss_fn(model(x), y)
    should be the batch mean, as in training. The model runs in eval mode (BN a fixed affine, no
    dropout) and its mode is restored; no parameter's .grad is touched.
    """
    spec = Neurons(layer, tap, act, bn, tap_side, neurons)
    return splitting_matrices_many(model, [spec], batches, loss_fn, relu_beta=relu_beta, dtype=dtype)[0]


@dataclass
class _Layer:
    spec: Neurons
    idx: torch.Tensor
    c: torch.Tensor
    d: torch.Tensor
    S: torch.Tensor


def _prepare(spec: Neurons, dtype) -> _Layer:
    layer = spec.layer
    _check_layer(layer)
    n_out, D = layer.weight.shape[0], patch_dim(layer)
    neurons = spec.neurons
    idx = torch.arange(n_out) if neurons is None else torch.as_tensor(neurons, dtype=torch.long).flatten()
    w = layer.weight.detach()
    c, d = _bn_affine(spec.bn, n_out, w)
    return _Layer(spec, idx, c, d, torch.zeros(len(idx), D, D, device=w.device, dtype=dtype or w.dtype))


def splitting_matrices_many(model, specs: list[Neurons], batches, loss_fn, *, relu_beta: float | None = 3.0,
                            dtype=None, all_sum=None) -> list[torch.Tensor]:
    """`splitting_matrices` for several layers of one model in one pass over `batches`: each batch runs
    one forward and one backward for all of them. Returns one S per spec, in order.

    all_sum (distributed: every rank calls it at the same point): called once as all_sum(*tensors) on
    the per-layer sums of S and the sample count, before the mean is taken; it must sum each tensor in
    place over the ranks (growth.engine.context.RunContext.all_sum), so every rank gets the same S."""
    if not specs:
        return []
    layers = [_prepare(s, dtype) for s in specs]
    if len({id(s.layer) for s in specs}) != len(specs) or len({id(s.tap) for s in specs}) != len(specs):
        raise ValueError("each layer and each tap at most once: one spec per layer (neurons picks a subset)")
    modes = {m: m.training for m in model.modules()}
    model.eval()
    total = 0
    try:
        for x, y in batches:
            total += _one_batch(model, layers, x, y, loss_fn, relu_beta)
    finally:
        for m, was in modes.items():
            m.train(was)
    count = torch.tensor(float(total), device=layers[0].S.device, dtype=torch.float64)
    if all_sum is not None:
        all_sum(*(lay.S for lay in layers), count)
    if count.item() == 0:
        raise ValueError("batches yielded nothing")
    return [lay.S / count.item() for lay in layers]


def _one_batch(model, layers: list[_Layer], x, y, loss_fn, relu_beta) -> int:
    """Add one batch's terms, weighted by its size, to every layer's S; returns the batch size."""
    device = layers[0].S.device
    x, y = _to(x, device), _to(y, device)
    caps = [_Capture() for _ in layers]
    handles = []
    try:
        for lay, cap in zip(layers, caps):
            handles += _hooks(lay.spec.layer, lay.spec.tap, lay.spec.tap_side, cap)
        with torch.enable_grad():
            loss = loss_fn(model(x), y)
    finally:
        for h in handles:
            h.remove()
    zs = [_check_wiring(cap, lay.spec.act, lay.c, lay.d, lay.spec.layer) for lay, cap in zip(layers, caps)]
    grads = torch.autograd.grad(loss, [cap.sigma for cap in caps])
    n = x.shape[0]
    for lay, cap, z, g in zip(layers, caps, zs, grads):
        layer = lay.spec.layer
        weight = g * second_derivative(lay.spec.act, z, relu_beta) * _channel_view(layer, lay.c * lay.c, z.ndim)
        coef = _per_position(layer, weight.detach())[:, lay.idx.to(device)].to(lay.S.dtype)
        _accumulate(lay.S, _patches(layer, cap.x).to(lay.S.dtype), coef * n)  # weight per batch by its size
    return n


def _to(t, device):
    return t.to(device) if isinstance(t, torch.Tensor) else t


def min_eigen(S: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(lambda (n,), v (n, D)): the smallest eigenvalue of each symmetrised S_i and its unit eigenvector."""
    vals, vecs = torch.linalg.eigh((S + S.transpose(1, 2)) / 2)  # ascending
    return vals[:, 0], vecs[:, :, 0]


def splitting_eigen(model, layer, batches, loss_fn, *, tap, act="relu", bn=None, tap_side="input",
                    max_matrix_bytes: int = 2 ** 30, **kw):
    """(lambda (n_out,), v (n_out, D)) for every neuron of `layer` (arguments as `splitting_matrices`).

    At most max_matrix_bytes of splitting matrices exist at once: with more neurons than fit, the
    neurons are done in groups, one pass over `batches` each (so batches must be re-iterable)."""
    spec = Neurons(layer, tap, act, bn, tap_side)
    return splitting_eigen_many(model, [spec], batches, loss_fn, max_matrix_bytes=max_matrix_bytes, **kw)[0]


def splitting_eigen_many(model, specs: list[Neurons], batches, loss_fn, *, max_matrix_bytes: int = 2 ** 30,
                         **kw) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(lambda, v) per spec (as `splitting_eigen`, for its `neurons`, all by default) for several layers,
    in as few passes over `batches` as max_matrix_bytes allows: usually one. Neuron groups of every
    layer are packed into passes; batches must be re-iterable when more than one pass is needed.
    kw: relu_beta, dtype, all_sum (as `splitting_matrices_many`)."""
    passes = _plan_passes(specs, max_matrix_bytes, kw.get("dtype"))
    _reiterable(batches, len(passes))
    parts = [([], []) for _ in specs]
    for chunk in passes:  # chunk: [(spec index, neuron indices)]
        chunk_specs = [replace(specs[i], neurons=idx) for i, idx in chunk]
        for (i, _), S in zip(chunk, splitting_matrices_many(model, chunk_specs, batches, loss_fn, **kw)):
            lam, v = min_eigen(S)
            parts[i][0].append(lam)
            parts[i][1].append(v)
    return [(torch.cat(lams), torch.cat(vecs)) for lams, vecs in parts]


def _plan_passes(specs, max_matrix_bytes: int, dtype) -> list[list[tuple[int, torch.Tensor]]]:
    """Neuron groups of every layer, packed in order into passes of at most max_matrix_bytes each."""
    passes, used = [[]], 0
    for i, spec in enumerate(specs):
        _check_layer(spec.layer)
        n_out, D = spec.layer.weight.shape[0], patch_dim(spec.layer)
        idx = torch.arange(n_out) if spec.neurons is None else torch.as_tensor(spec.neurons).long().flatten()
        per = D * D * torch.empty(0, dtype=dtype or spec.layer.weight.dtype).element_size()  # one neuron's S
        fit = max(1, max_matrix_bytes // per)
        for a in range(0, len(idx), fit):
            group = idx[a:a + fit]
            if passes[-1] and used + len(group) * per > max_matrix_bytes:
                passes.append([])
                used = 0
            passes[-1].append((i, group))
            used += len(group) * per
    return [p for p in passes if p]


# ----------------------------------------------------------------------------- choosing


def choose(lams, *, k: int | None = None, ratio: float | None = None, cost=None, budget: float | None = None):
    """Which neurons to split. `lams`: one tensor of eigenvalues, or a list (one per layer, ranked
    together as the originals' global threshold); returns the chosen indices in the same shape (a
    LongTensor, or a list of them), most negative first. Never a neuron with lambda >= 0.

    - k, or ratio (k = int(ratio * number of neurons), as the originals): the k most negative.
    - cost (a number per layer, or a tensor per neuron) with budget: energy-aware; rank by
      lambda / cost and take neurons in that order while the summed cost stays <= budget (the
      rounded solution of the original's LP, see the module docstring); ratio without budget sets
      budget = ratio * total cost of all neurons (the original's MAX_RESOURCE); k also caps the count.
    """
    single = isinstance(lams, torch.Tensor)
    parts = [lams] if single else list(lams)
    sizes = [len(p) for p in parts]
    lam = torch.cat([p.detach().flatten().double().cpu() for p in parts])
    if ratio is not None and not 0 <= ratio <= 1:
        raise ValueError(f"ratio={ratio}: between 0 and 1")
    if cost is None:
        if budget is not None:
            raise ValueError("budget needs cost")
        if (k is None) == (ratio is None):
            raise ValueError("give exactly one of k and ratio")
        picked = _most_negative(lam, k if k is not None else int(ratio * len(lam)))
    else:
        picked = _by_budget(lam, _costs(cost, sizes), k, ratio, budget)
    return _regroup(picked, sizes, single)


def _most_negative(lam: torch.Tensor, k: int) -> torch.Tensor:
    order = torch.argsort(lam, stable=True)
    return order[:k][lam[order[:k]] < 0]


def _costs(cost, sizes) -> torch.Tensor:
    """One positive cost per neuron from: a number, one tensor per neuron (one layer), or a list per layer
    of numbers / per-neuron tensors."""
    per_layer = list(cost) if isinstance(cost, (list, tuple)) else [cost]
    if len(per_layer) != len(sizes):
        raise ValueError(f"cost: one entry per layer ({len(sizes)}), got {len(per_layer)}")
    out = []
    for cv, n in zip(per_layer, sizes):
        t = torch.as_tensor(cv, dtype=torch.float64).flatten()
        if t.numel() not in (1, n):
            raise ValueError(f"cost: a number or {n} values for a layer of {n} neurons, got {t.numel()}")
        out.append(t.expand(n))
    out = torch.cat(out)
    if (out <= 0).any():
        raise ValueError("cost: every cost must be positive")
    return out


def _by_budget(lam, f, k, ratio, budget):
    if budget is None:
        if ratio is None:
            raise ValueError("energy-aware choice needs budget (or ratio: budget = ratio * total cost)")
        budget = ratio * f.sum().item()
    neg = torch.nonzero(lam < 0).flatten()
    order = neg[torch.argsort(lam[neg] / f[neg], stable=True)]
    # costs are positive, so the running sum grows: the neurons that fit are a prefix of the order,
    # and the first that does not fit ends the choice (the LP's fractional one is dropped)
    n = int((torch.cumsum(f[order], 0) <= budget * (1 + 1e-12)).sum())
    return order[:n if k is None else min(n, k)]


def _regroup(picked, sizes, single):
    if single:
        return picked
    out, start = [], 0
    for n in sizes:
        mine = picked[(picked >= start) & (picked < start + n)]
        out.append(mine - start)
        start += n
    return out


def neuron_macs(in_layer, out_layer, in_positions: int = 1, out_positions: int = 1) -> int:
    """Multiply-adds one more neuron adds: its own weights at each of the in_layer's output positions,
    plus one more input channel of out_layer at each of its output positions. The energy-aware
    original ranks with sqrt of this (FLOPs of its MobileNet layers)."""
    own = patch_dim(in_layer) * in_positions
    per_input = out_layer.weight[:, :1].numel()  # out channels * kernel area for a conv, out_features
    return own + per_input * out_positions


# ----------------------------------------------------------------------------- splitting


def split_pair(in_layer, out_layer, neurons, vecs, eps: float, site: Site, *, bn=None,
               in_name: str = "in", out_name: str = "out", bn_name: str = "bn") -> GrowthResult:
    """Split `neurons` of in_layer (Linear or Conv2d, groups 1) into two offspring each, in place.

    Neuron i keeps its position with incoming weights w_i + eps * v, and an offspring with
    w_i - eps * v is appended (in the order of `neurons`); both copy the bias and the BN entries
    (gamma, beta, running stats), and each takes half of i's outgoing weights in out_layer (a Linear
    or Conv2d whose input channels are in_layer's neurons: the next Linear/Conv, or a Linear after
    global pooling). The function changes by O(eps^2); with eps = 0 it is kept exactly up to rounding.
    vecs: (len(neurons), D) or (len(neurons), *weight[0].shape), e.g. the chosen rows of
    splitting_eigen's v. Names in the result are `{in_name}.weight`, `{out_name}.weight`, ...
    Optimizer state: old entries keep their positions (index = arange); the appended rows/columns are
    new. The halved outgoing columns keep their old state."""
    _check_layer(in_layer)
    _check_layer(out_layer)
    n = in_layer.weight.shape[0]
    idx = torch.as_tensor(neurons, dtype=torch.long, device=in_layer.weight.device).flatten()
    _check_split(in_layer, out_layer, idx, n)
    k = len(idx)
    result = GrowthResult(site=site, details={"neurons": idx.tolist(), "eps": float(eps),
                                              "width_before": n, "width_after": n + k})
    if k == 0:
        return result
    w = in_layer.weight.detach()
    v = torch.as_tensor(vecs, dtype=w.dtype, device=w.device).reshape(k, *w.shape[1:])
    keep = torch.arange(n, device=w.device)
    w_in = torch.cat([w, w[idx] - eps * v])
    w_in[idx] += eps * v
    _replace(result, in_layer, "weight", w_in, {0: keep}, in_name)
    if in_layer.bias is not None:
        b = in_layer.bias.detach()
        _replace(result, in_layer, "bias", torch.cat([b, b[idx]]), {0: keep}, in_name)
    _count(in_layer, n + k, out=True)
    if bn is not None:
        _split_bn(result, bn, idx, n, keep, bn_name)
    wo = out_layer.weight.detach().clone()
    wo[:, idx] /= 2  # each offspring carries half: sum unchanged for equal inputs
    _replace(result, out_layer, "weight", torch.cat([wo, wo[:, idx]], 1), {1: keep}, out_name)
    _count(out_layer, n + k, out=False)
    return result


def _check_split(in_layer, out_layer, idx, n):
    if len(idx) and (idx.min() < 0 or idx.max() >= n):
        raise ValueError(f"neurons: indices in [0, {n})")
    if len(torch.unique(idx)) != len(idx):
        raise ValueError("neurons: each at most once")
    if out_layer.weight.shape[1] != n:
        raise ValueError(f"out_layer reads {out_layer.weight.shape[1]} inputs, in_layer has {n} neurons: "
                         "it must read the neurons as its input channels")


def _replace(result, module, attr, value, index, prefix):
    old = getattr(module, attr)
    new = nn.Parameter(value.contiguous(), requires_grad=old.requires_grad)
    setattr(module, attr, new)
    result.replaced.append(Replaced(name=f"{prefix}.{attr}", old=old, new=new, index=index))


def _split_bn(result, bn, idx, n, keep, prefix):
    if bn.num_features != n:
        raise ValueError(f"bn has {bn.num_features} channels, the layer {n} neurons")
    if bn.affine:
        for attr in ("weight", "bias"):
            t = getattr(bn, attr).detach()
            _replace(result, bn, attr, torch.cat([t, t[idx]]), {0: keep}, prefix)
    for attr in ("running_mean", "running_var"):  # buffers: no optimizer state, just copied
        t = getattr(bn, attr)
        if t is not None:
            setattr(bn, attr, torch.cat([t, t[idx]]))
    bn.num_features = n + len(idx)


def _count(layer, m: int, out: bool):
    if isinstance(layer, nn.Linear):
        setattr(layer, "out_features" if out else "in_features", m)
    else:
        setattr(layer, "out_channels" if out else "in_channels", m)
