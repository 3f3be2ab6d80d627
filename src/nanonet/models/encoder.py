"""A transformer encoder seen as embeddings -> layers -> mean pooling -> linear head.

We drive the Hugging Face modules layer by layer instead of calling the model's own forward,
because NanoNet needs three things HF's forward does not give: running only a range of layers
on cached hidden states (frozen teacher bottom), building students from a subset of layers,
and one code path for BERT and MPNet (the two families of the packaged encoders).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoConfig, AutoModel, AutoTokenizer, PreTrainedModel
from transformers.models.mpnet.modeling_mpnet import MPNetSelfAttention

SUPPORTED_FAMILIES = ("bert", "mpnet")


def load_hf_encoder(
    path: str | Path, attention: str | None = None
) -> tuple[PreTrainedModel, object]:
    """Load an encoder and its tokenizer from a local folder, offline. `attention` overrides the
    attention implementation (for experiments); None picks the family's fastest."""
    config = AutoConfig.from_pretrained(path, local_files_only=True)
    if config.model_type not in SUPPORTED_FAMILIES:
        from nanonet.errors import NanoNetError

        raise NanoNetError(
            f"Encoder at {path} is a '{config.model_type}' model; NanoNet supports "
            f"{', '.join(SUPPORTED_FAMILIES)} encoders."
        )
    # Both take our additive float mask unchanged. MPNet has only eager attention in
    # transformers (its self-attention has no SDPA branch; see use_sdpa_for_mpnet for ours on
    # CUDA); BERT gets SDPA's fused kernel, which never materialises the [T, T] scores: it is
    # what makes sentence-transformers run the same MiniLM faster on long texts.
    if attention is None:
        attention = "sdpa" if config.model_type == "bert" else "eager"
    model = AutoModel.from_pretrained(
        path,
        config=config,
        local_files_only=True,
        # Never fall back to pytorch_model.bin: unpickling a weights file can run any code.
        use_safetensors=True,
        attn_implementation=attention,
        add_pooling_layer=False,
    )
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    return model, tokenizer


class MPNetSdpaSelfAttention(MPNetSelfAttention):
    """MPNet self-attention through `F.scaled_dot_product_attention`: the relative position
    bias and the padding mask go in as one additive mask, which CUDA's memory-efficient kernel
    takes (flash attention takes no mask). Same weights, same function as the eager version."""

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_bias: torch.Tensor | None = None,
        output_attentions: bool = False,
        **kwargs: object,
    ) -> tuple[torch.Tensor]:
        shape = (*hidden_states.shape[:-1], -1, self.attention_head_size)
        q, k, v = (x(hidden_states).view(shape).transpose(1, 2) for x in (self.q, self.k, self.v))
        bias = position_bias
        if attention_mask is not None:
            bias = attention_mask if bias is None else bias + attention_mask
        if bias is not None:
            bias = bias.to(q.dtype)  # under autocast q is bf16; the kernel wants one dtype
        p = self.dropout.p if self.training else 0.0
        context = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=p)
        context = context.transpose(1, 2).reshape(*hidden_states.shape[:-1], self.all_head_size)
        return (self.o(context),)


def use_sdpa_for_mpnet(hf_model: PreTrainedModel) -> None:
    """Switch an MPNet model's attention layers to `MPNetSdpaSelfAttention` in place (a class
    swap: parameters and state dict unchanged). Done on CUDA only: on the CPU the eager
    attention stays, so CPU results are bit-for-bit what they were."""
    for module in hf_model.modules():
        if type(module) is MPNetSelfAttention:
            module.__class__ = MPNetSdpaSelfAttention


def mask_dtype(hidden: torch.Tensor) -> torch.dtype:
    """The dtype attention runs in: bf16 under CUDA autocast, else the hidden states'. A mask
    built in fp32 would turn its lowest value into -inf when autocast casts it to bf16."""
    if hidden.is_cuda and torch.is_autocast_enabled("cuda"):
        return torch.get_autocast_dtype("cuda")
    return hidden.dtype


def additive_mask(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """[B, T] 0/1 mask -> [B, 1, 1, T] additive mask (0 keep, very negative drop)."""
    return (1.0 - mask[:, None, None, :].to(dtype)) * torch.finfo(dtype).min


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over real tokens: how the packaged sentence-transformers encoders were trained."""
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)


class Backbone(nn.Module):
    """Wraps a HF BertModel or MPNetModel; forward returns the last hidden states."""

    def __init__(self, hf_model: PreTrainedModel) -> None:
        super().__init__()
        self.hf = hf_model
        self.family: str = hf_model.config.model_type
        self.hidden_size: int = hf_model.config.hidden_size

    @property
    def layers(self) -> nn.ModuleList:
        return self.hf.encoder.layer

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        if self.family == "bert":
            return self.hf.embeddings(
                input_ids=input_ids, token_type_ids=torch.zeros_like(input_ids)
            )
        return self.hf.embeddings(input_ids=input_ids)

    def run_layers(
        self,
        hidden: torch.Tensor,
        mask: torch.Tensor,
        start: int = 0,
        end: int | None = None,
        checkpoint: bool = False,
    ) -> torch.Tensor:
        """Layers `start:end`. checkpoint: keep only each layer's input for the backward pass
        and recompute the rest there (same gradients, less memory, more time: +34% for the
        contrastive stage on 20newsgroups at 256 tokens)."""
        ext = additive_mask(mask, mask_dtype(hidden))
        extra = {}
        if self.family == "mpnet":
            # MPNet's relative position bias depends only on length; shared by all layers.
            extra["position_bias"] = self.hf.encoder.compute_position_bias(hidden)

        def run(layer: nn.Module, h: torch.Tensor) -> torch.Tensor:
            out = layer(h, attention_mask=ext, **extra)
            return out[0] if isinstance(out, tuple) else out

        for layer in self.layers[start:end]:
            if checkpoint and torch.is_grad_enabled():
                hidden = torch.utils.checkpoint.checkpoint(run, layer, hidden, use_reentrant=False)
            else:
                hidden = run(layer, hidden)
        return hidden

    def forward(self, input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.run_layers(self.embed(input_ids), mask)


class EncoderClassifier(nn.Module):
    """Backbone + mean pooling + linear head: the teacher and every student."""

    def __init__(self, backbone: Backbone, num_labels: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.backbone = backbone
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(backbone.hidden_size, num_labels)

    def embed_pooled(self, input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return mean_pool(self.backbone(input_ids, mask), mask)

    def classify(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(pooled))

    def forward(self, input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.classify(self.embed_pooled(input_ids, mask))

    def to_device(self, device: torch.device) -> EncoderClassifier:
        """Move to `device`; on CUDA, MPNet layers also switch to SDPA attention."""
        self.to(device)
        if device.type == "cuda" and self.backbone.family == "mpnet":
            use_sdpa_for_mpnet(self.backbone.hf)
        return self

    def pooled_from(
        self, hidden: torch.Tensor, mask: torch.Tensor, start: int, checkpoint: bool = False
    ) -> torch.Tensor:
        """Sentence vectors from hidden states cached after layer `start` (frozen below it)."""
        return mean_pool(self.backbone.run_layers(hidden, mask, start, checkpoint=checkpoint), mask)

    @torch.no_grad()
    def init_head_from_centroids(
        self, pooled: torch.Tensor, labels: torch.Tensor, scale: float = 10.0
    ) -> None:
        """Start the head as a nearest-class-centroid classifier (cosine, scaled).

        With ten examples per class a randomly initialised head wastes the first steps and
        makes early distillation targets noise; centroids give a sensible classifier at step 0.
        """
        num_labels = self.head.out_features
        z = nn.functional.normalize(pooled, dim=-1)
        cents = torch.stack([z[labels == c].mean(0) for c in range(num_labels)])
        cents = nn.functional.normalize(cents, dim=-1)
        mean_norm = pooled.norm(dim=-1).mean().clamp(min=1e-6)
        # The head sees unnormalised pooled vectors, so divide by their typical norm.
        self.head.weight.copy_(scale * cents / mean_norm)
        self.head.bias.zero_()
