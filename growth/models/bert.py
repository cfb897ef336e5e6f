"""A growable BERT classifier: transformers' `BertModel` (built from a `BertConfig`, never downloaded),
grown in depth (a new layer) and heads (new attention heads in every layer). Arch strings as ViT's:
`d{depth}h{heads}`, e.g. `d2h6` (the original's default). Hidden size = head_dim * heads of the starting
arch (64 per head by default, as the original) unless `grow_hidden` widens it; the MLP is `mlp_ratio` (4) x hidden.
Input: token ids (B, L); the attention mask comes from the pad id. The classifier reads the mean of the
non-pad token states (like our ViT's mean pooling; no pooler, no [CLS] readout).

Head growth adds head groups whose output projection starts at zero: exactly function-preserving, and
old tensors keep their optimizer state (growth/models/bert_layers.py says how BertSelfAttention is
replaced for that). `deploy()` returns the same function in plain torch, each layer's head groups merged
(growth/models/transformer_deploy.py).

Hidden size (`grow_hidden`, every tensor with the hidden dim; BertConfig.hidden_size follows) and FFN
width (`grow_ffn`, per layer: `layer_ffn` in the spec; BertConfig.intermediate_size is what a new layer
gets, int(hidden * mlp_ratio)) grow by replacing tensors with larger ones. Under an MSG hidden-size mask
(growth/models/transformer_masks.py) every LayerNorm is a MaskedLayerNorm: post-norm, each writer of the
residual stream ends in one, so its masked output is all the stream sees. MSG's depth mask is a fixed
ramp, so a layer grown under it has no learnable gate.

Depth growth CANNOT be exactly function-preserving: BERT is post-LayerNorm. With both residual branches
ending at zero, a new layer computes LN2(LN1(x)) rather than x. Every x it receives left an earlier
LayerNorm, x = g * u + b with u standardised per token; LN(x) re-standardises x, which equals x only if
x is already standardised up to the same per-channel affine map, i.e. (for all u) only when g is one
positive constant c and b = 0. A trained LayerNorm has neither, and no choice of the new layer's own
gammas and betas can undo a per-channel g and b inside the standardisation. What we keep instead: a new
layer starts with both LayerNorms copied from the one feeding it (the layer below, or the embedding
LayerNorm), and with `zero_init_last()` its branches end at zero, so it maps g * u + b to
g * standardise(g * u + b) + b: exactly the identity when that LayerNorm has uniform positive gamma and
zero beta (e.g. at initialisation), and close to it while gammas are near-uniform and betas small.
Growth events record the change (`max_abs_output_change`).

So by default (`depth_gate=True`) a grown layer is gated: out = x + gate * (layer(x) - x) with one
learnable scalar gate starting at 0 (as ReZero gates a residual branch). The function is then exactly
kept whatever the LayerNorms hold, and the gate's gradient, mean of (layer(x) - x) * dL/dout, is non-zero,
so the layer joins training at the next step. `depth_gate=False` gives the ungated layer described above
(what the original's plain appended layer amounts to). Layers the model was built with have no gate.
"""
import copy

import torch
from torch import nn

from growth.errors import ConfigError
from growth.models import register
from growth.models.transformer import TransformerArch, init_linear_and_norm, parse_vit_arch
from growth.models.transformer_masks import MaskedLayerNorm, Widener


def _init(module):
    """BERT's initialisation (normal 0.02, zero biases, LayerNorm 1/0) for the modules we build."""
    init_linear_and_norm(module, lambda w: nn.init.normal_(w, std=0.02))


@register("bert")
class Bert(TransformerArch):
    grown_keys = TransformerArch.grown_keys + ("gated",)

    def __init__(self, depth=2, heads=6, embed_dim=None, head_dim=64, vocab_size=30522, max_len=128, pad_id=0,
                 num_classes=2, mlp_ratio=4.0, dropout=0.1, layer_heads=None, depth_gate=True, gated=None,
                 layer_ffn=None, masks=None):
        super().__init__()
        self.hidden = int(embed_dim or head_dim * heads)
        self.head_dim, self.vocab_size, self.max_len, self.pad_id = head_dim, vocab_size, max_len, pad_id
        self.num_classes, self.mlp_ratio, self.dropout = num_classes, mlp_ratio, dropout
        self.num_heads = int(heads)  # what a new layer gets; kept even at depth 0
        self.depth_gate = bool(depth_gate)
        from transformers import BertConfig, BertModel  # here: importing the registry stays light

        self.config = BertConfig(
            vocab_size=vocab_size, hidden_size=self.hidden, num_hidden_layers=0, intermediate_size=int(
                self.hidden * mlp_ratio), hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout,
            max_position_embeddings=max_len, type_vocab_size=1, pad_token_id=pad_id, attn_implementation="sdpa",
            # only for BertLayer's own (discarded) self-attention, which needs hidden % heads == 0
            num_attention_heads=heads if self.hidden % heads == 0 else 1)
        self.bert = BertModel(self.config, add_pooling_layer=False)  # embeddings + (empty) encoder
        self.config = self.bert.config  # the one its mask builder reads; our attention reads the same
        # layer_heads: per layer, the head count of each head group (grown models differ from `heads`)
        layer_heads = layer_heads or [[heads]] * depth
        layer_ffn = layer_ffn or [None] * len(layer_heads)  # per layer FFN width (None: mlp_ratio x hidden)
        for groups, gate, ffn in zip(layer_heads, gated or [False] * len(layer_heads), layer_ffn):
            layer = self._layer(groups[0], gate, ffn)
            for n in groups[1:]:
                layer.attn.add_heads(n)
            self.layers.append(layer)
        self.config.num_hidden_layers = len(self.layers)
        self.head = nn.Linear(self.hidden, num_classes)
        _init(self.layers)
        _init(self.head)
        self.apply_masks(masks)

    def _layer(self, heads, gated=False, ffn=None):
        from growth.models.bert_layers import GrowableBertLayer
        default = self.config.intermediate_size
        self.config.intermediate_size = int(ffn or default)  # BertLayer reads its width from the config
        try:
            return GrowableBertLayer(self.config, heads, self.head_dim, gated)
        finally:
            self.config.intermediate_size = default

    @property
    def hidden_size(self) -> int:
        return self.hidden

    # ---- arch -----------------------------------------------------------------------------------
    @property
    def layers(self) -> nn.ModuleList:
        return self.bert.encoder.layer

    blocks = layers  # the name AdaGrow's transformer code uses

    def spec_kwargs(self) -> dict:
        return {"depth": self.depth, "heads": self.heads, "embed_dim": self.hidden, "head_dim": self.head_dim,
                "vocab_size": self.vocab_size, "max_len": self.max_len, "pad_id": self.pad_id,
                "num_classes": self.num_classes, "mlp_ratio": self.mlp_ratio, "dropout": self.dropout,
                "layer_heads": [[g.heads for g in layer.attn.groups] for layer in self.layers],
                "depth_gate": self.depth_gate, "gated": [layer.gate is not None for layer in self.layers],
                **({"layer_ffn": self.layer_ffn()} if self.layer_ffn() else {}),
                **({"masks": self.masks_spec()} if self.ramps else {})}

    @classmethod
    def from_config(cls, cfg: dict, data: dict) -> "Bert":
        if any(k not in data for k in ("vocab_size", "max_len", "pad_id")):
            raise ConfigError("data", data.get("name"), "model=bert reads token ids; allowed: text, synthetic_text")
        depth, heads = parse_vit_arch(cfg.get("arch", "d2h6"))
        return cls(depth, heads, cfg.get("embed_dim"), int(cfg.get("head_dim", 64)), int(data["vocab_size"]),
                   int(data["max_len"]), int(data["pad_id"]), data["num_classes"], float(cfg.get("mlp_ratio", 4.0)),
                   float(cfg.get("dropout", 0.1)), depth_gate=bool(cfg.get("depth_gate", True)))

    def layer_saliency(self) -> list[float]:
        """Per layer, mean |gamma| of its attention-output LayerNorm (the original reads that norm)."""
        return [layer.attention.output.LayerNorm.weight.detach().abs().mean().item() for layer in self.layers]

    # ---- growth API -------------------------------------------------------------------------------
    def grow_depth(self, stage: int = 0, position: int | None = None, gated: bool | None = None):
        """Insert a fresh layer at `position` (default: at the end): gated at 0 with `depth_gate` (exactly
        function-preserving), else with LayerNorms copied from the one feeding it (module docstring).
        `gated` overrides depth_gate (an MSG depth mask makes its own ramp)."""
        position = self.depth if position is None else position
        ref = self.head.weight
        layer = self._layer(self.heads, self.depth_gate if gated is None else gated).to(ref.device, ref.dtype)
        _init(layer)
        feed = self.layers[position - 1].output.LayerNorm if position else self.bert.embeddings.LayerNorm
        with torch.no_grad():
            for norm in (layer.attention.output.LayerNorm, layer.output.LayerNorm):
                norm.weight.copy_(feed.weight)
                norm.bias.copy_(feed.bias)
        layer.train(self.training)
        self.layers.insert(position, layer)
        self.after_depth_change()
        return layer

    def after_depth_change(self) -> None:
        self.config.num_hidden_layers = self.depth

    def copy_block(self, layer):
        """A deep copy that shares the model's BertConfig (the one the mask builder reads), not its own."""
        return copy.deepcopy(layer, {id(self.config): self.config})

    def init_new(self, module) -> None:
        _init(module)

    def grow_hidden(self, n: int) -> list:
        """hidden += n: every tensor with the hidden dim is replaced by a larger one (old entries first, new
        ones normal 0.02 / bias 0 / LayerNorm 1, 0; the pad token's new dims 0). The config follows."""
        d, zero = self.hidden + n, nn.init.zeros_
        w = Widener(self, self.weight_init)
        emb = self.bert.embeddings
        for table in (emb.word_embeddings, emb.position_embeddings, emb.token_type_embeddings):
            w.param(table, "weight", {1: d})
            table.embedding_dim = d
        if emb.word_embeddings.padding_idx is not None:
            with torch.no_grad():
                emb.word_embeddings.weight[emb.word_embeddings.padding_idx, self.hidden:] = 0
        w.norm(emb.LayerNorm, d)
        for layer in self.layers:
            attn = layer.attn
            for g in attn.groups:
                for lin in (g.query, g.key, g.value):
                    w.linear(lin, n_in=d)
                w.linear(g.proj, n_out=d)
            w.param(attn, "proj_bias", {0: d}, zero)
            attn.hidden = d
            w.norm(layer.attention.output.LayerNorm, d)
            w.linear(layer.intermediate.dense, n_in=d)
            w.linear(layer.output.dense, n_out=d)
            w.norm(layer.output.LayerNorm, d)
        w.linear(self.head, n_in=d)
        self.hidden = d
        self.config.hidden_size, self.config.intermediate_size = d, int(d * self.mlp_ratio)
        if d % self.config.num_attention_heads:  # only BertLayer's discarded self-attention reads it
            self.config.num_attention_heads = 1
        return w.replaced

    def ffn_linears(self, layer) -> tuple[nn.Linear, nn.Linear]:
        return layer.intermediate.dense, layer.output.dense

    @staticmethod
    def weight_init(weight) -> None:
        nn.init.normal_(weight, std=0.02)

    def ffn_act(self, layer):
        return layer.intermediate, "intermediate_act_fn"

    def attach_hidden(self, masked) -> None:
        """MSG's hidden-size mask: every LayerNorm (embeddings' and both of each layer's) masked."""
        emb = self.bert.embeddings
        emb.LayerNorm = MaskedLayerNorm(emb.LayerNorm, masked)
        for layer in self.layers:
            for holder in (layer.attention.output, layer.output):
                holder.LayerNorm = MaskedLayerNorm(holder.LayerNorm, masked)

    def forward(self, ids):
        keep = ids != self.pad_id
        h = self.bert(input_ids=ids, attention_mask=keep.long()).last_hidden_state
        w = keep.unsqueeze(-1).to(h.dtype)
        return self.head((h * w).sum(1) / w.sum(1).clamp_min(1.0))  # mean of the non-pad tokens

    def deploy(self) -> nn.Module:
        """Plain torch, same function: head groups merged, gates folded (growth/models/transformer_deploy.py)."""
        if self.ramps:  # mid-ramp (MSG): the masks have no plain-torch form; the same function, a copy
            return copy.deepcopy(self).eval()
        from growth.models.transformer_deploy import DeployedBert
        return DeployedBert(self).eval()
