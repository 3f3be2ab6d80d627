"""Packed inference: no compute on padding in the linear layers.

Tokens of a batch are packed into one [N, H] matrix (N = real tokens), so every linear layer
(fused QKV, attention output, feed-forward) multiplies only real tokens; attention alone is
computed per sequence on a padded view, masked. Same weights and same function as
`EncoderClassifier`, inference only.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from nanonet.models.encoder import EncoderClassifier, additive_mask, mask_dtype


@dataclass
class _Layer:
    qkv: nn.Linear  # q, k, v fused: one GEMM instead of three
    out: nn.Linear
    attn_norm: nn.LayerNorm
    ffn_in: nn.Module  # dense + activation
    ffn_out: nn.Linear
    ffn_norm: nn.LayerNorm
    heads: int


def _fuse(linears: list[nn.Linear]) -> nn.Linear:
    w = linears[0].weight
    out = sum(lin.out_features for lin in linears)
    fused = nn.Linear(linears[0].in_features, out, device=w.device, dtype=w.dtype)
    with torch.no_grad():
        fused.weight.copy_(torch.cat([lin.weight for lin in linears]))
        fused.bias.copy_(torch.cat([lin.bias for lin in linears]))
    return fused


def _parts(layer: nn.Module, family: str) -> _Layer:
    if family == "bert":
        att = layer.attention
        q, k, v = att.self.query, att.self.key, att.self.value
        out, norm, heads = att.output.dense, att.output.LayerNorm, att.self.num_attention_heads
    else:
        att = layer.attention
        q, k, v = att.attn.q, att.attn.k, att.attn.v
        out, norm, heads = att.attn.o, att.LayerNorm, att.attn.num_attention_heads
    return _Layer(
        qkv=_fuse([q, k, v]),
        out=out,
        attn_norm=norm,
        ffn_in=layer.intermediate,
        ffn_out=layer.output.dense,
        ffn_norm=layer.output.LayerNorm,
        heads=heads,
    )


class PackedEncoderClassifier:
    """Callable like `EncoderClassifier` (input_ids, mask) -> logits, for inference."""

    def __init__(self, model: EncoderClassifier) -> None:
        self.model = model.eval()
        self.backbone = model.backbone
        self.layers = [_parts(layer, self.backbone.family) for layer in self.backbone.layers]

    def eval(self) -> PackedEncoderClassifier:
        return self

    @property
    def device(self) -> torch.device:
        return self.model.head.weight.device

    @torch.inference_mode()
    def __call__(self, input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        batch, width = mask.shape
        real = mask.bool()
        embedded = self.backbone.embed(input_ids)  # a table lookup: padding here costs nothing
        hidden = embedded.shape[-1]
        x = embedded[real]  # [N, H] real tokens only
        bias = additive_mask(mask, mask_dtype(x))
        if self.backbone.family == "mpnet":
            bias = bias + self.backbone.hf.encoder.compute_position_bias(embedded)
        for p in self.layers:
            packed_qkv = p.qkv(x)  # bf16 under CUDA autocast, fp32 otherwise
            qkv = packed_qkv.new_zeros(batch, width, 3 * hidden)
            qkv[real] = packed_qkv
            q, k, v = qkv.view(batch, width, 3, p.heads, hidden // p.heads).permute(2, 0, 3, 1, 4)
            ctx = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype))
            ctx = ctx.transpose(1, 2).reshape(batch, width, hidden)[real]
            x = p.attn_norm(p.out(ctx) + x)
            x = p.ffn_norm(p.ffn_out(p.ffn_in(x)) + x)
        seq = torch.arange(batch, device=x.device).repeat_interleave(mask.sum(1))
        pooled = x.new_zeros(batch, hidden).index_add_(0, seq, x)
        pooled = pooled / mask.sum(1, keepdim=True).to(x.dtype)
        return self.model.classify(pooled)
