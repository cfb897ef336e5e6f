import torch
from torch import nn

from growth.measure import count_params, forward_macs, train_step_macs


def test_conv_and_linear_macs_are_exact():
    m = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.Flatten(), nn.Linear(4 * 5 * 5, 3))
    # conv: out 4x5x5, each 2*3*3 MACs; linear 100*3
    assert forward_macs(m, (2, 5, 5)) == 4 * 25 * 18 + 300
    assert count_params(m) == (2 * 4 * 9 + 4) + (100 * 3 + 3)


def test_attention_is_counted():
    class Attn(nn.Module):
        def forward(self, x):
            return nn.functional.scaled_dot_product_attention(x, x, x)

    macs = forward_macs(Attn(), (1, 16, 8))  # batch*heads 1, 16 tokens, dim 8
    assert macs == 2 * 16 * 16 * 8  # QK^T and AV


def test_train_step_counts_backward_and_leaves_model_alone():
    m = nn.Sequential(nn.Linear(10, 10), nn.BatchNorm1d(10), nn.Linear(10, 10))
    assert forward_macs(m, (10,)) == 200
    # forward 200 + weight grads 200 + input grad of the 2nd layer only (the data needs none) 100
    assert train_step_macs(m, (10,)) == 500
    assert m[1].num_batches_tracked.item() == 0 and m[0].weight.grad is None


def test_measuring_leaves_the_global_rng_alone():
    m = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
    state = torch.get_rng_state()
    forward_macs(m, (4,))
    train_step_macs(m, (4,))
    assert torch.equal(torch.get_rng_state(), state)


def test_measures_accept_an_example_batch_of_token_ids():
    m = nn.Sequential(nn.Embedding(50, 8), nn.Flatten(), nn.Linear(8 * 6, 3))
    tokens = torch.randint(0, 50, (4, 6))
    assert forward_macs(m, tokens) == 8 * 6 * 3  # the lookup is free, the linear layer is counted
    # forward + weight grad + grad into the embedding output (the table is trained)
    assert train_step_macs(m, tokens) == 3 * 8 * 6 * 3


def test_a_grouped_convs_backward_is_counted_once_per_group():
    """Grad input and grad weight each take as many MACs as the forward conv; torch's own formula counts a
    depthwise conv's grad weight `groups` (here 8) times over."""
    model = nn.Sequential(nn.Conv2d(4, 8, 3, padding=1, bias=False), nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False))
    dense, depthwise = 8 * 8 * 9 * 4 * 8, 8 * 8 * 9 * 1 * 8  # per sample, 8x8 px: positions x taps x in/g x out
    assert forward_macs(model, (4, 8, 8)) == dense + depthwise
    # forward + grad weight of both; grad input of the second only (the input needs no gradient)
    assert train_step_macs(model, (4, 8, 8)) == 2 * dense + 3 * depthwise


def test_ungrouped_convs_count_as_torchs_formula():
    from torch.utils.flop_counter import FlopCounterMode
    model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 12, 3, stride=2),
                          nn.Flatten(), nn.Linear(12 * 3 * 3, 10)).train()
    x = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    with FlopCounterMode(display=False) as fc:
        model(x).sum().backward()
    assert train_step_macs(model, (1, 8, 8)) == fc.get_total_flops() // 2 // 2 > 0
