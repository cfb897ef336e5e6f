"""GroMo growth (TINY, GradMax) on the gromo_mlp family: growth/grow/gromo_step.py, growth/models/gromo_mlp.py."""
import json

import pytest
import torch
from sklearn.datasets import load_digits
from torch import nn

from growth.errors import ConfigError
from growth.grow.gromo_step import grow_step
from growth.models import build_model, model_from_spec
from growth.models.growable import GrowthResult, Site
from tests.conftest import max_diff, out

DATA = {"in_chans": 1, "image_size": 8, "num_classes": 10}
_digits = load_digits()
X = torch.tensor(_digits.data, dtype=torch.float32).reshape(-1, 1, 8, 8) / 16
Y = torch.tensor(_digits.target)
BATCHES = [(X[:128], Y[:128]), (X[128:256], Y[128:256])]  # what each step reads (256 samples)


def mlp(arch="4-4", seed=0, **cfg):
    torch.manual_seed(seed)
    return build_model({"family": "gromo_mlp", "arch": arch, **cfg}, DATA)


def n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def batch_loss(model) -> float:
    """Mean cross-entropy over the samples a step reads (eval mode)."""
    model.eval()
    x, y = torch.cat([b[0] for b in BATCHES]), torch.cat([b[1] for b in BATCHES])
    return nn.functional.cross_entropy(model(x), y).item()


def lin(model, i) -> nn.Linear:
    return model.net.layers[i].layer


# ---- GradMax: zero fan-in, function kept exactly -------------------------------------------------
@pytest.mark.parametrize("layer,fan_in,fan_out", [(0, 64, 4), (1, 4, 10)])
def test_gradmax_keeps_the_function_and_adds_the_expected_params(layer, fan_in, fan_out):
    m = mlp()
    before, size = out(m, X), n_params(m)
    result, det = grow_step(m, BATCHES, {"how": "gradmax", "layer": layer, "neurons": 3})
    assert max_diff(out(m, X), before) < 1e-6  # all 1797 digits, not only the batches used
    assert det["neurons_added"] == 3 and det["layer"] == layer and det["samples"] == 256
    assert m.hidden[layer] == 7 and m.hidden[1 - layer] == 4
    assert n_params(m) - size == 3 * (fan_in + 1) + 3 * fan_out == det["params_after"] - det["params_before"]
    # the new rows (fan-in, bias included) are exactly 0; the new columns (fan-out) are unit vectors
    assert torch.equal(lin(m, layer).weight[4:], torch.zeros(3, fan_in))
    assert torch.equal(lin(m, layer).bias[4:], torch.zeros(3))
    norms = lin(m, layer + 1).weight[:, 4:].norm(dim=0)
    assert torch.allclose(norms, torch.ones(3), atol=1e-5)  # scale 1.0 = fan-out norm per neuron
    assert isinstance(result, GrowthResult) and result.site == Site("width", layer, f"hidden {layer}")


def test_gradmax_new_neurons_get_a_gradient():
    """Zero fan-in must still learn: with SELU, d/d(fan-in) = fan-out * selu'(0) * input != 0."""
    m = mlp()
    grow_step(m, BATCHES, {"how": "gradmax", "layer": 0, "neurons": 2})
    nn.functional.cross_entropy(m.train()(X[:128]), Y[:128]).backward()
    assert lin(m, 0).weight.grad[4:].abs().sum(dim=1).min() > 0


def test_gradmax_picks_the_best_layer_and_refuses_what_cannot_work():
    m = mlp()
    _, det = grow_step(m, BATCHES, {"how": "gradmax", "neurons": 2})
    scores = det["improvement_per_layer"]
    assert set(scores) == {0, 1} and det["layer"] == max(scores, key=scores.get)
    with pytest.raises(ConfigError, match="derivative 0"):  # ReLU'(0) = 0 in torch: dead new neurons
        grow_step(mlp(activation="relu"), BATCHES, {"how": "gradmax"})
    with pytest.raises(ConfigError, match="flat"):
        grow_step(m, BATCHES, {"how": "gradmax", "scale": "line_search"})
    with pytest.raises(ConfigError, match="allowed keys"):
        grow_step(m, BATCHES, {"how": "tiny", "neuron": 2})


# ---- TINY ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("delta", [True, False])
def test_tiny_small_scale_lowers_the_loss_as_first_order_predicts(delta):
    m = mlp()
    loss0, size = batch_loss(m), n_params(m)
    first = (lin(m, 0).weight, lin(m, 0).bias)
    w0 = {i: lin(m, i).weight.detach().clone() for i in range(3)}
    result, det = grow_step(m, BATCHES, {"how": "tiny", "layer": 1, "neurons": 2, "scale": 0.1, "delta": delta})
    assert det["neurons_added"] == 2 and m.hidden == [4, 6]
    assert n_params(m) - size == 2 * (4 + 1) + 2 * 10
    fo = det["first_order_improvement"]
    assert torch.isfinite(torch.tensor(fo)) and fo > 0
    drop = loss0 - batch_loss(m)
    assert drop > 0
    if delta:  # L(g) = L(0) - g^2 * first_order_improvement + o(g^2): at g = 0.1 within 25%
        assert abs(drop / det["predicted_decrease"] - 1) < 0.25
    else:  # GroMo's value then scores the new neurons against the gradient left after the (unapplied)
        assert "predicted_decrease" not in det  # best update of the old weights: no loss prediction
    # layer 0 untouched (same tensors); layer 1 keeps its old rows; layer 2's old columns move iff delta
    assert lin(m, 0).weight is first[0] and lin(m, 0).bias is first[1]
    assert torch.equal(lin(m, 1).weight[:4], w0[1])
    assert torch.equal(lin(m, 2).weight[:, :4], w0[2]) is (not delta)
    names = [r.name for r in result.replaced]
    assert names == ["net.layers.1.layer.weight", "net.layers.1.layer.bias",
                     "net.layers.2.layer.weight", "net.layers.2.layer.bias"]
    index = {r.name: r.index for r in result.replaced}
    assert index["net.layers.1.layer.weight"][0].tolist() == [0, 1, 2, 3]
    assert index["net.layers.2.layer.weight"][1].tolist() == [0, 1, 2, 3]
    assert index["net.layers.2.layer.bias"] == {}  # same shape, new tensor, same values


def test_tiny_line_search_reports_the_loss_it_reaches():
    m, (x, y) = mlp(), BATCHES[0]
    loss0 = nn.functional.cross_entropy(out(m, x), y).item()
    _, det = grow_step(m, [(x, y)], {"how": "tiny", "neurons": 2})  # default scale: GroMo's line search
    assert det["scale"] > 0 and det["line_search_samples"] >= 101 * 128 and det["samples"] == 128
    after = nn.functional.cross_entropy(out(m, x), y).item()
    assert abs(after - det["loss_after_line_search"]) < 1e-5  # apply_change did what extended_forward saw
    assert after < loss0 and abs(det["loss_before"] - loss0) < 1e-5


# ---- the grown model as a model of the suite ---------------------------------------------------------
def grown():
    m = mlp()
    grow_step(m, BATCHES, {"how": "gradmax", "layer": 0, "neurons": 3})
    grow_step(m, BATCHES, {"how": "tiny", "layer": 1, "neurons": 2, "scale": 0.5})
    return m


def test_spec_round_trip_and_deploy_reproduce_the_grown_model():
    m = grown()
    spec = json.loads(json.dumps(m.arch_spec()))
    assert spec["arch"] == "7-6" and spec["kwargs"]["hidden"] == [7, 6]
    twin = model_from_spec(spec)
    twin.load_state_dict(m.state_dict())  # strict: same keys and shapes
    assert torch.equal(out(twin, X), out(m, X))
    plain = m.deploy()
    assert not any("gromo" in type(mod).__module__ for mod in plain.modules())
    assert max_diff(plain(X), out(m, X)) < 1e-6


def test_optimizer_trains_the_grown_model_and_it_grows_again():
    m = grown().train()
    opt = torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
    before = {n: p.detach().clone() for n, p in m.named_parameters()}
    for _ in range(2):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(m(X[:128]), Y[:128])
        loss.backward()
        opt.step()
    assert torch.isfinite(loss)
    assert all(not torch.equal(p, before[n]) for n, p in m.named_parameters())  # every tensor trained
    _, det = grow_step(m, BATCHES, {"how": "gradmax", "layer": 1, "neurons": 1})
    assert m.hidden == [7, 7] and det["neurons_added"] == 1


def test_no_hooks_or_statistics_left_after_a_step():
    m = grown().train()
    assert m.training  # grow_step restores the mode it found (GroMo's statistics pass runs in eval)
    fresh = model_from_spec(m.arch_spec())
    assert list(m.state_dict()) == list(fresh.state_dict())  # no extension layers left behind
    for mod in m.modules():
        assert not (mod._forward_hooks or mod._forward_pre_hooks or mod._backward_hooks)
    assert all(p.grad is None for p in m.parameters())
    m(X[:64]).sum().backward()  # ordinary training forward/backward stores nothing for GroMo
    for layer in m.net.layers:
        assert not (layer.store_input or layer.store_pre_activity)
        assert layer._input is None and layer._pre_activity is None
        assert layer.optimal_delta_layer is None and layer.extended_input_layer is None
        assert layer.extended_output_layer is None and layer.tensor_s.samples == 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_grows_on_the_device_it_was_moved_to():
    m = mlp().cuda()
    batches = [(x.cuda(), y.cuda()) for x, y in BATCHES]
    before = out(m, X.cuda())
    grow_step(m, batches, {"how": "gradmax", "neurons": 2})
    assert max_diff(out(m, X.cuda()), before) < 1e-6
    grow_step(m, batches, {"how": "tiny", "neurons": 2})
    assert all(p.is_cuda for p in m.parameters())
