"""Splitting steepest descent: splitting matrices against hand formulas, the choice of neurons, and
splits that keep the function to first order and lower the loss by eps^2/2 * lambda."""
import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from growth.grow.splitting import (Neurons, choose, neuron_macs, split_pair, splitting_eigen, splitting_eigen_many,
                                   splitting_matrices, splitting_matrices_many)
from growth.models.growable import Site

SITE = Site("width", 0, "test")


@pytest.fixture(autouse=True)
def double():
    # eps = 1e-3 changes the output by ~1e-7: float64 keeps that far above rounding
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def mlp(seed=0, din=3, hidden=6, dout=2, act=nn.Softplus):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(din, hidden), act(), nn.Linear(hidden, dout))


def conv_bn_net(seed=0, act=nn.Tanh):
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1, stride=2), nn.BatchNorm2d(4), act(),
                        nn.Conv2d(4, 3, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    bn = net[1]  # eval-mode stats far from (0, 1), so the fold is not the identity
    bn.running_mean.normal_()
    bn.running_var.uniform_(0.5, 2.0)
    with torch.no_grad():
        bn.weight.normal_()
        bn.bias.normal_()
    return net.eval()


def linear_case(seed=0):
    net = mlp(seed)
    x, y = torch.randn(40, 3), torch.randn(40, 2)
    lam, v = splitting_eigen(net, net[0], [(x[:25], y[:25]), (x[25:], y[25:])], F.mse_loss, tap=net[2],
                             act="softplus")
    return net, (net[0], net[2], None), x, lam, v


def conv_case(seed=0):
    net = conv_bn_net(seed)
    x = torch.randn(6, 2, 7, 7)
    y = torch.randint(0, 3, (6,))
    lam, v = splitting_eigen(net, net[0], [(x, y)], F.cross_entropy, tap=net[3], act="tanh", bn=net[1])
    return net, (net[0], net[3], net[1]), x, lam, v


def split_copy(net, layers_of, neurons, vecs, eps):
    """Split a deep copy (layers_of maps the copy to its (in, out, bn))."""
    new = copy.deepcopy(net)
    in_l, out_l, bn = layers_of(new)
    result = split_pair(in_l, out_l, neurons, vecs, eps, SITE, bn=bn)
    return new, result


LAYERS = {"linear": lambda n: (n[0], n[2], None), "conv_bn": lambda n: (n[0], n[3], n[1])}


# ----------------------------------------------------------------------------- 1. first order


@pytest.mark.parametrize("case", ["linear", "conv_bn"])
def test_split_changes_output_by_eps_squared(case):
    net, _, x, lam, v = linear_case() if case == "linear" else conv_case()
    neurons = torch.tensor([0, 2, 3])
    with torch.no_grad():
        before = net(x)
        change = {}
        for eps in (1e-1, 1e-2, 1e-3):
            new, _ = split_copy(net, LAYERS[case], neurons, v[neurons], eps)
            change[eps] = (new(x) - before).abs().max().item()
        kept, result = split_copy(net, LAYERS[case], neurons, v[neurons], 0.0)
        assert torch.allclose(kept(x), before, rtol=0, atol=1e-12)
    assert result.details["width_after"] == result.details["width_before"] + 3
    assert 50 < change[1e-1] / change[1e-2] < 200
    assert 50 < change[1e-2] / change[1e-3] < 200


# ----------------------------------------------------------------------------- 2. hand-computed


def hand_net(act):
    """2-D input, 3 neurons with large positive pre-activations, one output far above its targets,
    so each S_i has the fixed sign of -a_i * sigma'' and one neuron's S is definite the wrong way."""
    net = nn.Sequential(nn.Linear(2, 3), act, nn.Linear(3, 1))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[0.3, -0.2], [0.1, 0.4], [-0.25, 0.15]]))
        net[0].bias.copy_(torch.tensor([1.5, 1.2, 2.0]))
        net[2].weight.copy_(torch.tensor([[1.0, -0.7, 0.4]]))
        net[2].bias.zero_()
    return net


def hand_S(net, x, y, d2):
    """S_i = sum_n dL/dsigma_i(n) * sigma''(z_ni) * x_n x_n^T for L = mean_n (f_n - y_n)^2, by loops."""
    W, b = net[0].weight.detach().numpy(), net[0].bias.detach().numpy()
    a = net[2].weight.detach().numpy()[0]
    X, Y = x.numpy(), y.numpy()[:, 0]
    f = net(x).detach().numpy()[:, 0]
    N = len(X)
    S = np.zeros((3, 2, 2))
    for i in range(3):
        for n in range(N):
            z = W[i] @ X[n] + b[i]
            dl_dsigma = 2.0 * (f[n] - Y[n]) / N * a[i]
            S[i] += dl_dsigma * d2(z) * np.outer(X[n], X[n])
    return S


def tanh_d2(z):
    t = np.tanh(z)
    return -2 * t * (1 - t * t)


def relu_surrogate_d2(z, beta=3.0):  # the originals' softplus(beta=3) second derivative
    s = 1 / (1 + np.exp(-beta * z))
    return beta * s * (1 - s)


@pytest.mark.parametrize("act,d2", [(nn.Tanh(), tanh_d2), (nn.ReLU(), relu_surrogate_d2)], ids=["tanh", "relu"])
def test_splitting_matrix_matches_hand_formula(act, d2):
    net = hand_net(act)
    torch.manual_seed(3)
    x = torch.rand(8, 2) * 2 - 1
    y = torch.full((8, 1), -3.0)
    # unequal batches: each weighs by its size, so S is the mean over all 8 samples
    batches = [(x[:5], y[:5]), (x[5:], y[5:])]
    S = splitting_matrices(net, net[0], batches, F.mse_loss, tap=net[2], act=act)
    expect = hand_S(net, x, y, d2)
    np.testing.assert_allclose(S.numpy(), expect, rtol=1e-10, atol=1e-12)

    lam, v = splitting_eigen(net, net[0], batches, F.mse_loss, tap=net[2], act=act)
    lam_np = np.linalg.eigvalsh(expect)[:, 0]
    np.testing.assert_allclose(lam.numpy(), lam_np, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(np.einsum("nij,nj->ni", expect, v.numpy()), lam_np[:, None] * v.numpy(),
                               atol=1e-10)
    negative = [i for i in np.argsort(lam_np) if lam_np[i] < 0]
    assert 0 < len(negative) < 3  # the case has a neuron with lambda >= 0, which must not be chosen
    assert choose(lam, k=3).tolist() == negative
    assert choose(lam, k=1).tolist() == negative[:1]
    assert choose(lam, ratio=0.34).tolist() == negative[:1]  # int(0.34 * 3) = 1


def test_choose_energy_aware_by_hand():
    lam = torch.tensor([-4.0, -1.0, -3.0, 2.0])
    cost = torch.tensor([4.0, 0.5, 1.0, 1.0])
    # lambda / cost = -1, -2, -3, (positive: never): order 2, 1, 0; neuron 0 does not fit 1.5
    assert choose(lam, cost=cost, budget=1.5).tolist() == [2, 1]
    assert choose(lam, cost=cost, budget=6.5).tolist() == [2, 1, 0]
    assert choose(lam, cost=cost, budget=6.5, k=2).tolist() == [2, 1]
    assert choose(lam, cost=cost, budget=0.9).tolist() == []  # the first (cost 1) does not fit
    assert choose(lam, cost=cost, ratio=0.25).tolist() == [2, 1]  # budget 0.25 * 6.5 = 1.625
    # two layers ranked together, one cost per layer: -1/1, -5/10 | -2/1, -6/4 -> (1,0),(1,1),(0,0),(0,1)
    per_layer = choose([torch.tensor([-1.0, -5.0]), torch.tensor([-2.0, -6.0])], cost=[10.0, 1.0], budget=2.5)
    assert [t.tolist() for t in per_layer] == [[], [1, 0]]
    glob = choose([torch.tensor([-1.0, 0.5]), torch.tensor([-2.0, -6.0])], k=2)
    assert [t.tolist() for t in glob] == [[], [1, 0]]


def test_neuron_macs():
    lin = neuron_macs(nn.Linear(5, 7), nn.Linear(7, 3))
    assert lin == 5 + 3
    conv = neuron_macs(nn.Conv2d(4, 8, 3), nn.Conv2d(8, 6, 1), in_positions=16, out_positions=9)
    assert conv == 4 * 9 * 16 + 6 * 9


# ----------------------------------------------------------------------------- 3. second-order gain


def test_min_eigenvector_lowers_loss_more_than_random_directions():
    net = mlp(seed=1, din=4, hidden=8, dout=3, act=nn.Tanh)
    torch.manual_seed(2)
    x, y = torch.randn(64, 4), torch.randn(64, 3)
    lam, v = splitting_eigen(net, net[0], [(x, y)], F.mse_loss, tap=net[2], act="tanh")
    i = int(torch.argmin(lam))
    assert lam[i] < 0
    eps = 1e-2

    def loss_after(direction):
        new, _ = split_copy(net, LAYERS["linear"], [i], direction[None], eps)
        with torch.no_grad():
            return F.mse_loss(new(x), y).item()

    with torch.no_grad():
        base = F.mse_loss(net(x), y).item()
    drop = loss_after(v[i]) - base
    assert drop < 0
    assert drop == pytest.approx(eps ** 2 / 2 * lam[i].item(), rel=2e-2)  # the second-order prediction
    g = torch.Generator().manual_seed(4)
    for _ in range(20):
        r = torch.randn(4, generator=g)
        assert drop < loss_after(r / r.norm()) - base


# ----------------------------------------------------------------------------- 4. conv path


class TokenMLP(nn.Module):
    """The 1x1-conv net of test 4 written with Linears over the (H, W) positions."""

    def __init__(self, conv1, conv2):
        super().__init__()
        self.l1 = nn.Linear(conv1.in_channels, conv1.out_channels)
        self.l2 = nn.Linear(conv2.in_channels, conv2.out_channels)
        with torch.no_grad():
            self.l1.weight.copy_(conv1.weight[:, :, 0, 0])
            self.l1.bias.copy_(conv1.bias)
            self.l2.weight.copy_(conv2.weight[:, :, 0, 0])
            self.l2.bias.copy_(conv2.bias)

    def forward(self, x):
        return self.l2(torch.tanh(self.l1(x.permute(0, 2, 3, 1)))).mean((1, 2))


class PatchMLP(nn.Module):
    """A 3x3 stride-2 conv written as a Linear over F.unfold patches, then tanh and a 1x1 conv."""

    def __init__(self, conv, head):
        super().__init__()
        self.conv = conv
        self.l1 = nn.Linear(conv.weight[0].numel(), conv.out_channels)
        self.l2 = nn.Linear(head.in_channels, head.out_channels)
        with torch.no_grad():
            self.l1.weight.copy_(conv.weight.flatten(1))
            self.l1.bias.copy_(conv.bias)
            self.l2.weight.copy_(head.weight[:, :, 0, 0])
            self.l2.bias.copy_(head.bias)

    def forward(self, x):
        c = self.conv
        cols = F.unfold(x, c.kernel_size, padding=c.padding, stride=c.stride).transpose(1, 2)
        return self.l2(torch.tanh(self.l1(cols))).mean(1)


def conv_head_net(conv, head):
    return nn.Sequential(conv, nn.Tanh(), head, nn.AdaptiveAvgPool2d(1), nn.Flatten())


def test_conv_1x1_matches_linear_path():
    torch.manual_seed(5)
    conv = conv_head_net(nn.Conv2d(3, 5, 1), nn.Conv2d(5, 2, 1))
    lin = TokenMLP(conv[0], conv[2])
    x, y = torch.randn(4, 3, 5, 6), torch.randn(4, 2)
    assert torch.allclose(conv(x), lin(x), atol=1e-12)
    S_conv = splitting_matrices(conv, conv[0], [(x, y)], F.mse_loss, tap=conv[2], act="tanh")
    S_lin = splitting_matrices(lin, lin.l1, [(x, y)], F.mse_loss, tap=lin.l2, act="tanh")
    assert S_conv.shape == (5, 3, 3)
    assert S_conv.abs().max() > 1e-4
    assert torch.allclose(S_conv, S_lin, rtol=1e-9, atol=1e-12)


def test_conv_3x3_strided_matches_linear_on_patches():
    torch.manual_seed(6)
    conv = conv_head_net(nn.Conv2d(2, 4, 3, stride=2, padding=1), nn.Conv2d(4, 3, 1))
    lin = PatchMLP(conv[0], conv[2])
    x, y = torch.randn(3, 2, 7, 6), torch.randn(3, 3)
    assert torch.allclose(conv(x), lin(x), atol=1e-12)
    S_conv = splitting_matrices(conv, conv[0], [(x, y)], F.mse_loss, tap=conv[2], act="tanh")
    S_lin = splitting_matrices(lin, lin.l1, [(x, y)], F.mse_loss, tap=lin.l2, act="tanh")
    assert torch.allclose(S_conv, S_lin, rtol=1e-9, atol=1e-12)


def test_batchnorm_folds_as_c_squared():
    """With BN (eval) between conv and act, S w.r.t. the conv's weights is c_i^2 times S of the
    equivalent fused conv, c_i = gamma_i / sqrt(var_i + eps)."""
    net = conv_bn_net(seed=7)
    fused = nn.Sequential(fuse_conv_bn_eval(net[0], net[1]), nn.Tanh(), *copy.deepcopy(list(net)[3:])).eval()
    x, y = torch.randn(5, 2, 6, 6), torch.randint(0, 3, (5,))
    assert torch.allclose(net(x), fused(x), atol=1e-10)
    S_bn = splitting_matrices(net, net[0], [(x, y)], F.cross_entropy, tap=net[3], act="tanh", bn=net[1])
    S_f = splitting_matrices(fused, fused[0], [(x, y)], F.cross_entropy, tap=fused[2], act="tanh")
    bn = net[1]
    c = (bn.weight / torch.sqrt(bn.running_var + bn.eps)).detach()
    assert torch.allclose(S_bn, c.view(-1, 1, 1) ** 2 * S_f, rtol=1e-8, atol=1e-12)


def test_tap_on_activation_output_and_inplace_relu_agree():
    net = conv_bn_net(seed=8, act=lambda: nn.ReLU(inplace=True))
    x, y = torch.randn(4, 2, 6, 6), torch.randint(0, 3, (4,))
    args = dict(act="relu", bn=net[1])
    S_in = splitting_matrices(net, net[0], [(x, y)], F.cross_entropy, tap=net[3], **args)
    S_out = splitting_matrices(net, net[0], [(x, y)], F.cross_entropy, tap=net[2], tap_side="output", **args)
    assert S_in.abs().max() > 0
    assert torch.allclose(S_in, S_out, rtol=1e-10, atol=1e-14)
    exact = splitting_matrices(net, net[0], [(x, y)], F.cross_entropy, tap=net[3], relu_beta=None, **args)
    assert torch.count_nonzero(exact) == 0  # relu'' = 0: without the surrogate nothing would split


def test_neuron_groups_give_the_same_eigenpairs():
    """A memory bound small enough for one neuron per pass gives what one pass gives."""
    net, _, x, lam, v = conv_case(seed=9)
    y = torch.randint(0, 3, (6,))
    args = dict(tap=net[3], act="tanh", bn=net[1])
    lam1, v1 = splitting_eigen(net, net[0], [(x, y)], F.cross_entropy, **args)
    lam2, v2 = splitting_eigen(net, net[0], [(x, y)], F.cross_entropy, max_matrix_bytes=1, **args)
    assert torch.allclose(lam1, lam2, atol=1e-12)
    assert torch.allclose((v1 * v2).sum(1).abs(), torch.ones(4), atol=1e-8)  # same up to sign
    with pytest.raises(ValueError, match="re-iterable|one-shot"):
        splitting_eigen(net, net[0], iter([(x, y)]), F.cross_entropy, max_matrix_bytes=1, **args)


def two_layer_net(seed=11):
    """conv+BN+tanh -> conv+BN+relu -> head: two layers whose neurons split, read in one forward."""
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.Tanh(),
                        nn.Conv2d(4, 5, 3, padding=1, stride=2), nn.BatchNorm2d(5), nn.ReLU(),
                        nn.Conv2d(5, 3, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    for bn in (net[1], net[4]):
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.5, 2.0)
    return net


def test_several_layers_in_one_pass_equal_each_alone():
    net = two_layer_net()
    batches = [(torch.randn(4, 2, 6, 6), torch.randint(0, 3, (4,))) for _ in range(2)]
    specs = [Neurons(net[0], net[2], "tanh", net[1], "output"), Neurons(net[3], net[5], "relu", net[4], "output")]
    both = splitting_matrices_many(net, specs, batches, F.cross_entropy)
    alone = [splitting_matrices(net, s.layer, batches, F.cross_entropy, tap=s.tap, act=s.act, bn=s.bn,
                                tap_side=s.tap_side) for s in specs]
    for a, b in zip(both, alone):
        assert a.abs().max() > 0 and torch.allclose(a, b, rtol=1e-10, atol=1e-14)
    sums = []
    split = splitting_matrices_many(net, specs, batches, F.cross_entropy, all_sum=lambda *t: sums.extend(t))
    assert len(sums) == 3 and sums[-1].item() == 8  # the per-layer sums of S, then the sample count
    assert all(torch.allclose(a, b) for a, b in zip(split, both))
    # a memory bound of one neuron's matrix per pass: 9 passes (4 + 5 neurons), the same eigenpairs
    class Counted(list):
        passes = 0

        def __iter__(self):
            Counted.passes += 1
            return super().__iter__()

    one = splitting_eigen_many(net, specs, Counted(batches), F.cross_entropy)
    assert Counted.passes == 1
    many = splitting_eigen_many(net, specs, Counted(batches), F.cross_entropy, max_matrix_bytes=1)
    assert Counted.passes == 1 + 9
    for (l1, v1), (l2, v2) in zip(one, many):
        assert torch.allclose(l1, l2, atol=1e-12) and torch.allclose((v1 * v2).sum(1).abs(), torch.ones(len(l1)))
    with pytest.raises(ValueError, match="at most once"):
        splitting_matrices_many(net, [specs[0], specs[0]], batches, F.cross_entropy)


# ----------------------------------------------------------------------------- the widened tensors


def test_split_pair_result_and_state():
    net = conv_bn_net(seed=10)
    conv, bn, head = net[0], net[1], net[3]
    w, b, g, hw = (t.detach().clone() for t in (conv.weight, conv.bias, bn.weight, head.weight))
    mean = bn.running_mean.clone()
    v = torch.randn(2, 2, 3, 3)
    result = split_pair(conv, head, [3, 1], v, 0.1, SITE, bn=bn, in_name="c", out_name="h", bn_name="n")
    assert conv.weight.shape == (6, 2, 3, 3) and conv.out_channels == 6
    assert head.weight.shape == (3, 6, 3, 3) and head.in_channels == 6
    assert bn.num_features == 6 and bn.running_mean.shape == (6,)
    assert torch.equal(conv.weight[[3, 1]], w[[3, 1]] + 0.1 * v)
    assert torch.equal(conv.weight[4:], w[[3, 1]] - 0.1 * v)
    assert torch.equal(conv.weight[[0, 2]], w[[0, 2]])
    assert torch.equal(conv.bias[4:], b[[3, 1]])
    assert torch.equal(bn.weight[4:], g[[3, 1]]) and torch.equal(bn.running_mean[4:], mean[[3, 1]])
    assert torch.equal(head.weight[:, 4:], hw[:, [3, 1]] / 2)
    assert torch.equal(head.weight[:, [3, 1]], hw[:, [3, 1]] / 2)
    assert torch.equal(head.weight[:, [0, 2]], hw[:, [0, 2]])
    names = {r.name: r for r in result.replaced}
    assert set(names) == {"c.weight", "c.bias", "n.weight", "n.bias", "h.weight"}
    assert names["c.weight"].new is conv.weight and names["c.weight"].old.shape == (4, 2, 3, 3)
    assert list(names["c.weight"].index) == [0] and list(names["h.weight"].index) == [1]
    assert names["h.weight"].index[1].tolist() == [0, 1, 2, 3]
    assert result.details["neurons"] == [3, 1]
    with pytest.raises(ValueError, match="at most once"):
        split_pair(conv, head, [1, 1], torch.zeros(2, 18), 0.1, SITE, bn=bn)


def test_wrong_wiring_is_refused():
    net = conv_bn_net(seed=11)
    x, y = torch.randn(2, 2, 6, 6), torch.randint(0, 3, (2,))
    with pytest.raises(ValueError, match="act\\(bn"):  # BN left out: the tapped values are not tanh(y)
        splitting_matrices(net, net[0], [(x, y)], F.cross_entropy, tap=net[3], act="tanh")
    with pytest.raises(ValueError, match="tap sees"):  # a Linear after pooling sees pooled values
        splitting_matrices(net, net[0], [(x, y)], F.cross_entropy, tap=net[5], tap_side="output",
                           act="tanh", bn=net[1])
