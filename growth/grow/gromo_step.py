"""One width-growth step with GroMo (TINY or GradMax) on a `gromo_mlp` model (growth/models/gromo_mlp.py).

    result, details = grow_step(model, batches, {"how": "tiny", "layer": "best", "neurons": 2})

`batches` is an iterable of training batches (x, y); every sample of it goes through one forward and
one backward (GroMo's `compute_statistics`), and `details["samples"]` counts them for the engine's
training cost. Options (all optional):

| key     | values                          | default                                    |
|---------|---------------------------------|--------------------------------------------|
| how     | "tiny" or "gradmax"             | "tiny"                                     |
| layer   | hidden-layer index, "best", or  | "best": the largest first-order improvement|
|         | a list of indices (best of them)| (a list: of those layers only)             |
| neurons | at most this many new neurons   | None: every significant singular direction |
| scale   | a float > 0, or "line_search"   | tiny: "line_search"; gradmax: 1.0          |
| delta   | TINY also moves the existing    | tiny: True; gradmax: False (must be)       |
|         | weights into the grown layer    |                                            |
| loss    | a loss with reduction="sum"     | CrossEntropyLoss(reduction="sum")          |

How the two methods map onto GroMo's `compute_optimal_updates` (the presets its docstring gives):

| option                 | TINY  | GradMax | meaning                                                   |
|------------------------|-------|---------|-----------------------------------------------------------|
| use_covariance         | True  | False   | whiten by S = E[b b^T] of the layer input (else S = I)    |
| use_projection         | True  | False   | fit the gradient left after the best update of the        |
|                        |       |         | existing weights (tensor_n), else the raw gradient        |
| ignore_singular_values | False | True    | weights scaled by sqrt(singular value), else unit vectors  |
| alpha_zero             | False | True    | new neurons' fan-in is 0: the function is kept exactly    |
| compute_delta          | delta | False   | apply the best update of the existing weights too         |

`scale` is GroMo's scaling factor g: the existing weights move by g^2 times the optimal delta, the new
fan-in and fan-out are multiplied by g each, so TINY's loss drops by about g^2 times its
`first_order_improvement` for small g. "line_search" is GroMo's `line_search` over g (101 loss
evaluations on the same batches, 100 more each time the upper end 1, 10, 100 ... still improves;
details["line_search_samples"] counts the forward-only samples). GradMax keeps the loss flat in g (the
fan-in is 0), so g there is the norm of each new neuron's fan-out (unit singular vectors), and a line
search is refused. A line search that finds no decrease (g = 0) grows nothing: zero fan-in and fan-out
would be dead neurons.

What the step returns: a `GrowthResult` at the site ("width", hidden index j) whose `replaced` lists
layer j's weight and bias (new rows) and layer j+1's weight (new columns) and bias (same shape; GroMo
rebuilds the nn.Linear, so it is a new tensor with the old values), with the index of each old entry;
TINY with delta also changes layer j+1's old weights. The details dict: how, layer (j), neurons_asked,
neurons_added (fewer when GroMo keeps only significant singular values), scale, first_order_improvement
(of the chosen layer; for GradMax this is sigma'(0) * sum of singular values, GradMax's gradient
criterion, not a loss decrease), predicted_decrease (scale^2 * first_order_improvement, TINY with
delta only: without delta GroMo scores the new neurons against the gradient left after the best update
of the old weights, which is not applied, so the value is no loss prediction; measured: the true drop
was 7x larger),
eigenvalues (the singular values kept), improvement_per_layer (every layer considered), loss_before
(mean loss of the statistics pass, eval mode), loss_after_line_search, samples, hidden (widths after),
params_before, params_after, warnings (GroMo's, e.g. a pseudo-inverse fallback; also re-issued).

Afterwards nothing of GroMo's statistics stays: no stored inputs or pre-activations, statistics reset,
no extension layers (so the state_dict is the plain one), scaling factors 0, all layers growable again,
every parameter's .grad is None, and the model is back in its train/eval mode. GroMo does not use
hooks; a test checks that no module has any.

Which of our families GroMo can serve: only `gromo_mlp` directly. GroMo grows its own modules
(`LinearGrowingModule`, `Conv2dGrowingModule`) chained through `previous_module`, inside its own
containers (GrowingMLP, residual MLP, MLP-Mixer, a ResNet of `ResNetBasicBlock`s, a VGG, DAGs); it
cannot grow an arbitrary nn.Module. Our conv families (resnet_basic, resnet_bottleneck, vgg, mobilenet)
are built from RepUnits (parallel kernel branches + BN) and grow by depth and by branch, so TINY/GradMax
there would need either a new family built on GroMo's conv containers (its VGG and ResNet; the growth
step would be this one with `Conv2dGrowingModule` layers, which have the same API) or our own
implementation of the statistics on RepUnits; ViT/BERT heads are not covered by GroMo at all.
"""
import warnings

import torch
from torch import nn

from growth.errors import ConfigError
from growth.models.growable import GrowthResult, Replaced

METHODS = {
    "tiny": {"use_covariance": True, "use_projection": True, "ignore_singular_values": False,
             "alpha_zero": False, "omega_zero": False},
    "gradmax": {"use_covariance": False, "use_projection": False, "ignore_singular_values": True,
                "alpha_zero": True, "omega_zero": False},
}


def check_options(model, options: dict | None) -> dict:
    """Options with defaults filled in; a ConfigError names a bad one."""
    opts = dict(options or {})
    unknown = set(opts) - {"how", "layer", "neurons", "scale", "delta", "loss"}
    if unknown:
        raise ConfigError("gromo", sorted(unknown), "allowed keys: how, layer, neurons, scale, delta, loss")
    how = opts.setdefault("how", "tiny")
    if how not in METHODS:
        raise ConfigError("gromo.how", how, f"allowed: {', '.join(METHODS)}")
    layer = opts.setdefault("layer", "best")
    n_hidden = len(model.hidden)
    index = lambda j: isinstance(j, int) and not isinstance(j, bool) and 0 <= j < n_hidden
    listed = isinstance(layer, (list, tuple)) and layer and all(map(index, layer)) and len(set(layer)) == len(layer)
    if layer != "best" and not index(layer) and not listed:
        raise ConfigError("gromo.layer", layer, f"'best', a hidden-layer index 0..{n_hidden - 1} or a list of them")
    k = opts.setdefault("neurons", None)
    if k is not None and not (isinstance(k, int) and k >= 1):
        raise ConfigError("gromo.neurons", k, "null (all significant) or an int >= 1")
    scale = opts.setdefault("scale", "line_search" if how == "tiny" else 1.0)
    if scale == "line_search" and how == "gradmax":
        raise ConfigError("gromo.scale", scale, "GradMax keeps the loss flat in the scale: give a float > 0")
    if scale != "line_search" and not (isinstance(scale, (int, float)) and scale > 0):
        raise ConfigError("gromo.scale", scale, "a float > 0 or 'line_search'")
    delta = opts.setdefault("delta", how == "tiny")
    if delta and how == "gradmax":
        raise ConfigError("gromo.delta", delta, "GradMax does not move existing weights (false)")
    loss = opts.setdefault("loss", nn.CrossEntropyLoss(reduction="sum"))
    if getattr(loss, "reduction", "sum") != "sum":
        raise ConfigError("gromo.loss", loss, "reduction='sum' (GroMo averages the statistics itself)")
    if how == "gradmax" and _zero_slope_at_zero(model):
        raise ConfigError("model.activation", model.activation, "GradMax's new neurons start at 0, where "
                          "this activation has derivative 0 in torch: they would never learn (use selu)")
    return opts


def _zero_slope_at_zero(model) -> bool:
    act = model.net.layers[0].post_layer_function
    x = torch.zeros(1, requires_grad=True)
    act(x).sum().backward()
    return x.grad.item() == 0.0


class _Counted:
    """The batches, counting samples as GroMo reads them; kept when a line search reads them again."""

    def __init__(self, batches, keep: bool):
        self.batches, self.keep, self.kept, self.samples = batches, keep, [], 0

    def __iter__(self):
        for x, y in self.batches:
            self.samples += x.shape[0]
            if self.keep:
                self.kept.append((x, y))
            yield x, y


def _hidden_index(net, layer) -> int:
    return [id(m) for m in net.layers].index(id(layer)) - 1  # layer j+1 grows hidden layer j


def _line_search(net, batches, loss_fn, device) -> tuple[float, float, int]:
    evals = 0

    @torch.no_grad()
    def mean_loss(factor):
        nonlocal evals
        evals += 1
        net.set_scaling_factor(float(factor))
        total, n = 0.0, 0
        for x, y in batches:
            x, y = x.to(device), y.to(device)
            total += loss_fn(net.extended_forward(x), y).item()
            n += x.shape[0]
        return total / n

    from gromo.utils.utils import line_search  # here: gromo.utils pulls torchmetrics (seconds per process)
    factor, best = line_search(mean_loss)
    return float(factor), float(best), evals


def _clean(net) -> None:
    """Drop everything GroMo stored for the step, on every layer (its own reset misses some: the first
    layer keeps storing its input, and extension layers of unchosen layers would stay in state_dict)."""
    for layer in net.layers:
        layer.reset_computation()
        layer.delete_update(include_previous=True, delete_output=True)
        layer.optimal_delta_layer = layer.extended_input_layer = layer.extended_output_layer = None
        layer.store_input = layer.store_pre_activity = False
        layer._input = layer._pre_activity = None
    net.currently_updated_layer_index = None
    net.set_growing_layers(scheduling_method="all")


def _replaced(before: dict, after: dict) -> list[Replaced]:
    out = []
    for name, old in before.items():
        new = after[name]
        if new is not old:
            index = {d: torch.arange(old.shape[d]) for d in range(old.dim()) if old.shape[d] != new.shape[d]}
            out.append(Replaced(name, old, new, index))
    return out


def grow_step(model, batches, options: dict | None = None) -> tuple[GrowthResult, dict]:
    """One GroMo growth step on `model` (a GromoMLP) from `batches`; see the module docstring."""
    opts = check_options(model, options)
    net, how = model.net, opts["how"]
    device = net.layers[0].weight.device
    before = dict(model.named_parameters())
    params_before = sum(p.numel() for p in before.values())
    was_training = model.training
    data = _Counted(batches, keep=opts["scale"] == "line_search")
    details = {"how": how, "neurons_asked": opts["neurons"]}
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            choice = opts["layer"]
            if isinstance(choice, int):  # statistics of that layer only
                net.set_growing_layers(index=choice)
            elif choice != "best":  # those layers only (e.g. the ones not at their largest width yet)
                net._growing_layers = [net._growable_layers[j] for j in choice]
            from gromo.utils.training_utils import compute_statistics  # here: see _line_search
            loss, _ = compute_statistics(net, data, opts["loss"], device=device)
            net.compute_optimal_updates(maximum_added_neurons=opts["neurons"], compute_delta=opts["delta"],
                                        **METHODS[how])
            details["improvement_per_layer"] = {_hidden_index(net, m): float(m.first_order_improvement)
                                                for m in net._growing_layers}
            if not isinstance(choice, int):
                net.select_best_update()  # deletes the other layers' updates
            else:
                net.select_update(0)
            layer = net.currently_updated_layer
            fo, eig = float(layer.first_order_improvement), layer.eigenvalues_extension.detach().cpu()
            scale = opts["scale"]
            if scale == "line_search":
                scale, after_ls, evals = _line_search(net, data.kept, opts["loss"], device)
                details.update(loss_after_line_search=after_ls, line_search_samples=evals * data.samples)
            details.update(layer=_hidden_index(net, layer), scale=float(scale), first_order_improvement=fo,
                           eigenvalues=eig.tolist(), loss_before=float(loss), samples=data.samples)
            if opts["delta"]:  # only then is GroMo's value the loss slope in scale^2 (see above)
                details["predicted_decrease"] = float(scale) ** 2 * fo
            if scale > 0:
                net.set_scaling_factor(float(scale))
                net.apply_change()
            details["neurons_added"] = int(eig.numel()) if scale > 0 else 0
    finally:
        _clean(net)
        model.train(was_training)
        model.zero_grad(set_to_none=True)
    messages = sorted({f"{w.category.__name__}: {w.message}" for w in caught})
    for w in caught:
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    after = dict(model.named_parameters())
    details.update(hidden=model.hidden, params_before=params_before,
                   params_after=sum(p.numel() for p in after.values()), warnings=messages)
    site = model.width_sites()[details["layer"]]
    return GrowthResult(site=site, replaced=_replaced(before, after), details=details), details
