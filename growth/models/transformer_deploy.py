"""Deploy forms of the growable transformers (ViT, BERT): what `deploy()` returns.

A grown transformer has no re-parameterisable branches (the original's have none either), so its deploy
form cannot save FLOPs: every weight is used. What it can drop is work that is not arithmetic on weights,
and it computes exactly the same function:
- the head groups of each layer become one qkv matmul and one output projection (with its bias inside
  the matmul), instead of one q/k/v and one projection per growth event plus the cat and slices around them;
- ViT (pre-norm): each LayerNorm's affine map folds into the linear layer it feeds (norm1 -> qkv,
  norm2 -> fc1, final norm -> head), leaving a plain standardisation;
- BERT: the layers are plain torch modules instead of transformers' BertLayer (no mask builder, no output
  dataclasses, no attention-interface dispatch); the token-type embedding (one type) folds into the
  position table, and a grown layer's gate g folds into its last LayerNorm (out = (1 - g) x + LN'(h)).
The benchmark (`python -m benchmarks fused_speedup`) measures what that is worth: little at large batches,
where the matmuls dominate, more at batch 1, where the number of ops does.
"""
import torch
import torch.nn.functional as F
from torch import nn


def attention(qkv: torch.Tensor, heads: int, head_dim: int, mask=None) -> torch.Tensor:
    """(b, n, 3 * heads * head_dim), laid out q | k | v with heads inside -> (b, n, heads * head_dim)."""
    b, n, _ = qkv.shape
    q, k, v = qkv.view(b, n, 3, heads, head_dim).permute(2, 0, 3, 1, 4)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask).transpose(1, 2).reshape(b, n, -1)


def linear(weight: torch.Tensor, bias: torch.Tensor | None) -> nn.Linear:
    """An nn.Linear holding copies of these tensors (bias None: zeros)."""
    # skip_init: no random init to overwrite, and the global RNG (growth's next init) stays untouched
    out = nn.utils.skip_init(nn.Linear, weight.shape[1], weight.shape[0], device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        out.weight.copy_(weight)
        out.bias.copy_(torch.zeros_like(out.bias) if bias is None else bias)
    return out


def fold_norm(norm: nn.LayerNorm, layer: nn.Linear) -> tuple[nn.LayerNorm, nn.Linear]:
    """layer(norm(x)) as plain_norm(x) -> layer': W (g * u + b) + c = (W g) u + (W b + c)."""
    plain = nn.LayerNorm(norm.normalized_shape, eps=norm.eps, elementwise_affine=False)
    bias = layer.weight @ norm.bias + (layer.bias if layer.bias is not None else 0)
    return plain, linear(layer.weight * norm.weight, bias)


class PreNormBlock(nn.Module):
    """A ViT block in deploy form: x + proj(attn(qkv(std(x)))), then x + fc2(gelu(fc1(std(x))))."""

    def __init__(self, block):
        super().__init__()
        self.heads, self.head_dim = block.attn.heads, block.attn.head_dim
        qkv_w, qkv_b, proj_w = block.attn.merged()
        self.norm1, self.qkv = fold_norm(block.norm1, linear(qkv_w, qkv_b))
        self.proj = linear(proj_w, block.attn.proj_bias)
        self.norm2, self.fc1 = fold_norm(block.norm2, block.mlp.fc1)
        self.act = block.mlp.act  # timm Mlp: GELU; its dropouts and norm are identities at eval
        self.fc2 = linear(block.mlp.fc2.weight, block.mlp.fc2.bias)

    def forward(self, x):
        x = x + self.proj(attention(self.qkv(self.norm1(x)), self.heads, self.head_dim))
        return x + self.fc2(self.act(self.fc1(self.norm2(x))))


class PostNormLayer(nn.Module):
    """A BERT layer in deploy form: a = LN1(x + proj(attn(qkv(x)))), out = LN2(a + fc2(gelu(fc1(a)))),
    and for a grown (gated) layer out = (1 - g) x + g LN2(...), with g folded into LN2."""

    def __init__(self, layer):
        super().__init__()
        attn = layer.attn
        self.heads, self.head_dim = attn.heads, attn.head_dim
        qkv_w, qkv_b, proj_w = attn.merged()
        self.qkv, self.proj = linear(qkv_w, qkv_b), linear(proj_w, attn.proj_bias)
        self.norm1 = _copy_norm(layer.attention.output.LayerNorm)
        self.fc1 = linear(layer.intermediate.dense.weight, layer.intermediate.dense.bias)
        self.act = layer.intermediate.intermediate_act_fn
        self.fc2 = linear(layer.output.dense.weight, layer.output.dense.bias)
        gate = None if layer.gate is None else layer.gate.item()
        self.norm2 = _copy_norm(layer.output.LayerNorm, 1.0 if gate is None else gate)
        self.keep = None if gate is None else 1.0 - gate  # the share of x a gated layer passes on

    def forward(self, x, mask):
        a = self.norm1(x + self.proj(attention(self.qkv(x), self.heads, self.head_dim, mask)))
        out = self.norm2(a + self.fc2(self.act(self.fc1(a))))
        return out if self.keep is None else torch.add(out, x, alpha=self.keep)


def _copy_norm(norm: nn.LayerNorm, scale: float = 1.0) -> nn.LayerNorm:
    out = nn.LayerNorm(norm.normalized_shape, eps=norm.eps, device=norm.weight.device, dtype=norm.weight.dtype)
    with torch.no_grad():
        out.weight.copy_(norm.weight * scale)
        out.bias.copy_(norm.bias * scale)
    return out


class DeployedBert(nn.Module):
    """Our BERT classifier in plain torch: embeddings, PostNormLayers, masked mean pooling, head."""

    def __init__(self, model):
        super().__init__()
        emb = model.bert.embeddings
        self.pad_id = model.pad_id
        self.word = nn.Embedding.from_pretrained(emb.word_embeddings.weight.detach().clone(), freeze=False)
        # one token type (id 0) everywhere: its embedding is a constant, added to every position's
        self.pos = nn.Parameter((emb.position_embeddings.weight + emb.token_type_embeddings.weight[0]).detach())
        self.norm = _copy_norm(emb.LayerNorm)
        self.layers = nn.ModuleList(PostNormLayer(layer) for layer in model.layers)
        self.head = linear(model.head.weight, model.head.bias)

    def forward(self, ids):
        keep = ids != self.pad_id
        x = self.norm(self.word(ids) + self.pos[:ids.shape[1]])
        # (b, 1, 1, n): every query attends to the non-pad keys; an all-pad row attends to all
        # keys instead of none (no NaN; the pooling below ignores its states anyway)
        mask = (keep | ~keep.any(1, keepdim=True))[:, None, None, :]
        for layer in self.layers:
            x = layer(x, mask)
        w = keep.unsqueeze(-1).to(x.dtype)
        return self.head((x * w).sum(1) / w.sum(1).clamp_min(1.0))
