"""The transformers-side pieces of our growable BERT (growth/models/bert.py), kept apart so that importing
the model registry does not import transformers (about a second) unless a BERT is built.

Head growth keeps every old tensor. transformers' BertSelfAttention assumes heads * head_dim == hidden,
so each layer's `attention.self` is replaced by `GrowableSelfAttention`: the same call signature and the
same attention functions (the mask format transformers builds is passed through unchanged), but its heads
live in head groups, one per growth event, each with its own q/k/v and its slice of the output projection
(which therefore moves here from `attention.output.dense`, now an Identity; BertSelfOutput keeps its
dropout, residual and LayerNorm). A new group's projection starts at zero: the function is exactly kept,
and old parameters keep their identity and optimizer state. `merged()` gives all groups as one (deploy).
"""
import torch
from torch import nn
from transformers.models.bert.modeling_bert import ALL_ATTENTION_FUNCTIONS, BertLayer, eager_attention_forward


class HeadGroup(nn.Module):
    """`heads` attention heads: their query, key, value and their slice of the output projection."""
    ramp = None  # an MSG mask on this group's output while it ramps in (growth/models/transformer_masks.py)

    def __init__(self, hidden, heads, head_dim):
        super().__init__()
        self.heads = heads
        self.query = nn.Linear(hidden, heads * head_dim)
        self.key = nn.Linear(hidden, heads * head_dim)
        self.value = nn.Linear(hidden, heads * head_dim)
        self.proj = nn.Linear(heads * head_dim, hidden, bias=False)

    def zero_init_last(self):
        """Output projection 0: the new heads add nothing until they learn (q, k, v stay random)."""
        nn.init.zeros_(self.proj.weight)

    def qkv_heads(self) -> list:
        """Views of q, k, v per head: [(weight (heads, head_dim, hidden), bias (heads, head_dim))]
        (bert2BERT's head split, growth/models/transformer_fpi.py)."""
        return [(lin.weight.view(self.heads, -1, lin.in_features), lin.bias.view(self.heads, -1))
                for lin in (self.query, self.key, self.value)]


class GrowableSelfAttention(nn.Module):
    """Stands in for BertSelfAttention (same forward signature and return) and also applies the output
    projection, whose input width grows with the heads."""

    def __init__(self, config, heads, head_dim):
        super().__init__()
        self.config, self.hidden, self.head_dim = config, config.hidden_size, head_dim
        self.groups = nn.ModuleList([HeadGroup(self.hidden, heads, head_dim)])
        self.proj_bias = nn.Parameter(torch.zeros(self.hidden))
        self.scaling = head_dim ** -0.5
        self.is_causal = False  # transformers' sdpa path assumes causal when a module lacks this
        self.layer_idx = None

    @property
    def heads(self) -> int:
        return sum(g.heads for g in self.groups)

    def add_heads(self, n: int) -> HeadGroup:
        group = HeadGroup(self.hidden, n, self.head_dim).to(self.proj_bias.device, self.proj_bias.dtype)
        group.train(self.training)
        self.groups.append(group)
        return group

    def forward(self, hidden_states, attention_mask=None, encoder_hidden_states=None, past_key_values=None,
                **kwargs):
        b, n, _ = hidden_states.shape
        heads = lambda fn: torch.cat([fn(g)(hidden_states).view(b, n, g.heads, self.head_dim)
                                      for g in self.groups], dim=2).transpose(1, 2)  # (b, heads, n, d)
        q, k, v = heads(lambda g: g.query), heads(lambda g: g.key), heads(lambda g: g.value)
        attend = ALL_ATTENTION_FUNCTIONS.get_interface(self.config._attn_implementation, eager_attention_forward)
        dropout = self.config.attention_probs_dropout_prob if self.training else 0.0
        out, weights = attend(self, q, k, v, attention_mask, dropout=dropout, scaling=self.scaling, **kwargs)
        y, start = self.proj_bias, 0  # out: (b, n, heads, d)
        for g in self.groups:
            part = g.proj(out[:, :, start:start + g.heads].reshape(b, n, -1))
            y = y + (part if g.ramp is None else part * g.ramp.value)
            start += g.heads
        return y, weights

    @torch.no_grad()
    def merged(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Every head as one group: (qkv weight laid out q | k | v, its bias, proj weight). With proj_bias
        that is the same function with one qkv and one proj matmul (the deploy form's)."""
        cat = lambda name, part: torch.cat([getattr(getattr(g, name), part) for g in self.groups])
        names = ("query", "key", "value")
        return (torch.cat([cat(n, "weight") for n in names]), torch.cat([cat(n, "bias") for n in names]),
                torch.cat([g.proj.weight for g in self.groups], dim=1))


class GrowableBertLayer(BertLayer):
    """transformers' BertLayer with our self-attention; `attn` and `zero_init_last` as ViT's Block."""
    ramp = None  # MSG's depth mask, a fixed schedule (unlike the learnable gate): x + m * (layer(x) - x)

    def __init__(self, config, heads, head_dim, gated=False):
        super().__init__(config)
        self.attention.self = GrowableSelfAttention(config, heads, head_dim)
        self.attention.output.dense = nn.Identity()  # the projection (and its bias) moved into attention.self
        # A grown layer's gate: out = x + gate * (layer(x) - x), learnable, starting at 0 (see bert.py).
        self.gate = nn.Parameter(torch.zeros(())) if gated else None

    def forward(self, hidden_states, *args, **kwargs):
        out = super().forward(hidden_states, *args, **kwargs)
        if self.gate is not None:
            out = hidden_states + self.gate * (out - hidden_states)
        if self.ramp is not None:
            out = hidden_states + self.ramp.value * (out - hidden_states)
        return out

    @property
    def attn(self) -> GrowableSelfAttention:
        return self.attention.self

    def zero_init_last(self):
        """Both residual branches end at zero (attention projection, MLP output dense). The layer is then
        LN2(LN1(x)): growth/models/bert.py says when that is x."""
        for g in self.attn.groups:
            nn.init.zeros_(g.proj.weight)
        nn.init.zeros_(self.attn.proj_bias)
        nn.init.zeros_(self.output.dense.weight)
        nn.init.zeros_(self.output.dense.bias)
