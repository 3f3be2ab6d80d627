"""Encoders for the baselines, built the way NanoNet builds its students."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import PreTrainedModel

from nanonet.data.batching import length_sorted_batches, pad_batch
from nanonet.models.assets import encoder_dir
from nanonet.models.device import autocast, device_of
from nanonet.models.encoder import EncoderClassifier, load_hf_encoder
from nanonet.models.students import parse_student_spec, select_layers, subset_layers


def build_encoder(spec: str, teacher: str = "all-mpnet-base-v2") -> tuple[PreTrainedModel, Any]:
    """A HF encoder and its tokenizer for a student spec (`minilm-l3`, `teacher:bottom2`, ...).

    Same meaning as `model.students`, so a baseline can use exactly a NanoNet student's
    architecture and initial weights.
    """
    parsed = parse_student_spec(spec)
    source = teacher if parsed.source == "teacher" else parsed.source
    hf, tok = load_hf_encoder(encoder_dir(source))
    if parsed.layers is not None:
        hf = subset_layers(hf, select_layers(parsed.layers, hf.config.num_hidden_layers))
    return hf, tok


def plain_encoder_dir(spec: str) -> Path | None:
    """The packaged folder of a spec that is a whole encoder, or None for a layer subset."""
    parsed = parse_student_spec(spec)
    if parsed.layers is not None or parsed.source == "teacher":
        return None
    return encoder_dir(parsed.source)


def tokenize(tokenizer: Any, texts: list[str], max_length: int) -> list[list[int]]:
    if not texts:
        return []
    return tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]


@torch.inference_mode()
def embed(
    model: EncoderClassifier, tokenizer: Any, texts: list[str], max_length: int, batch_size: int
) -> np.ndarray:
    """Mean-pooled last hidden states, in length-sorted batches (no compute on padding)."""
    model.eval()
    device = device_of(model)
    ids = tokenize(tokenizer, texts, max_length)
    out = np.zeros((len(ids), model.backbone.hidden_size), dtype=np.float32)
    with autocast(device):
        for batch in length_sorted_batches([len(x) for x in ids], batch_size):
            input_ids, mask = pad_batch([ids[i] for i in batch], tokenizer.pad_token_id, device)
            out[batch] = model.embed_pooled(input_ids, mask).float().cpu().numpy()
    return out
