"""Parameter efficiency: which weights train (BitFit by default, LoRA or full as options)."""

from __future__ import annotations

import math
import re
from collections.abc import Callable

import torch
from torch import nn

PEFT_MODES = ("bitfit", "lora", "full")
_LAYER_RE = re.compile(r"(?:^|\.)layer\.(\d+)\.")


def inject_missing_biases(module: nn.Module) -> int:
    """Give every Linear/LayerNorm without a bias a zero bias, so BitFit can train it.

    Zero-initialised, so the function computed at step 0 is exactly the pretrained one.
    Returns how many bias vectors were added.
    """
    added = 0
    for sub in module.modules():
        if isinstance(sub, nn.Linear) and sub.bias is None:
            sub.bias = nn.Parameter(torch.zeros(sub.out_features, dtype=sub.weight.dtype))
            added += 1
        elif (
            isinstance(sub, nn.LayerNorm)
            and sub.elementwise_affine
            and getattr(sub, "bias", None) is None
        ):
            sub.bias = nn.Parameter(torch.zeros(sub.normalized_shape, dtype=sub.weight.dtype))
            added += 1
    return added


class LoRALinear(nn.Module):
    """y = W x + b + (alpha / r) * B A x, with B zero-initialised (function unchanged at start)."""

    def __init__(
        self,
        base: nn.Linear,
        rank: int,
        alpha: float,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.base = base
        self.scale = alpha / rank
        self.lora_a = nn.Parameter(torch.empty(rank, base.in_features))
        self.lora_b = nn.Parameter(torch.zeros(base.out_features, rank))
        self.reset(generator)

    @torch.no_grad()
    def reset(self, generator: torch.Generator | None = None) -> None:
        """A fresh start: A drawn anew, B zero (the function is the base's again)."""
        a = torch.empty(self.lora_a.shape)  # drawn on the CPU: a CPU generator's numbers
        nn.init.kaiming_uniform_(a, a=math.sqrt(5), generator=generator)
        self.lora_a.copy_(a)
        self.lora_b.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + (x @ self.lora_a.t() @ self.lora_b.t()) * self.scale

    def merged(self) -> nn.Linear:
        with torch.no_grad():
            self.base.weight += (self.lora_b @ self.lora_a) * self.scale
        return self.base


# Attention query/value projections of BERT ("query", "value") and MPNet ("q", "v").
LORA_TARGETS = ("query", "value", "q", "v")


def apply_lora(
    module: nn.Module,
    rank: int = 8,
    alpha: float = 16.0,
    generator: torch.Generator | None = None,
) -> int:
    """Wrap the attention query/value projections in LoRA adapters; returns how many.

    `generator`: where the adapters' random start comes from (default: torch's global one)."""
    wrapped = 0
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if name in LORA_TARGETS and isinstance(child, nn.Linear):
                setattr(parent, name, LoRALinear(child, rank, alpha, generator))
                wrapped += 1
    return wrapped


def merge_lora(module: nn.Module) -> None:
    """Fold adapters into plain Linear layers, so a saved model is a standard checkpoint."""
    _replace_lora(module, LoRALinear.merged)


def drop_lora(module: nn.Module) -> None:
    """Put the base layers back in place of their adapters, whose update is discarded: for
    adapters whose update was already folded into the base weights by the caller."""
    _replace_lora(module, lambda adapter: adapter.base)


def _replace_lora(module: nn.Module, plain: Callable[[LoRALinear], nn.Linear]) -> None:
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, LoRALinear):
                setattr(parent, name, plain(child))


def _layer_index(name: str) -> int | None:
    match = _LAYER_RE.search(name)
    return int(match.group(1)) if match else None


def set_trainable(model: nn.Module, mode: str, first_layer: int = 0) -> None:
    """Freeze everything, then unfreeze what `mode` trains, in layers >= `first_layer` only.

    Parameters outside the transformer layers (embeddings, relative position bias) count as
    below layer 0. The classification head (`head.*`) always trains. `first_layer > 0` is how
    the teacher keeps a frozen bottom whose outputs can be cached.
    """
    if mode not in PEFT_MODES:
        from nanonet.errors import NanoNetError

        raise NanoNetError(f"Unknown peft mode '{mode}'; choose one of {', '.join(PEFT_MODES)}.")
    for name, param in model.named_parameters():
        if name.startswith("head."):
            param.requires_grad = True
            continue
        layer = _layer_index(name)
        in_range = first_layer == 0 or (layer is not None and layer >= first_layer)
        if mode == "full":
            wanted = True
        elif mode == "bitfit":
            wanted = name.endswith("bias")
        else:
            # LoRA on top of BitFit: the adapters add capacity, the biases cost almost nothing.
            wanted = ".lora_" in name or name.endswith("bias")
        param.requires_grad = wanted and in_range


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, total
