"""NanoNetClassifier: a trained encoder + head + tokenizer + label names, saved as a folder.

The folder's files and its manifest (``nanonet.json``, with a sha256 per file) are described
in :mod:`nanonet.models.model_folder`; no pickle anywhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from nanonet.data.batching import length_sorted_batches, pad_batch
from nanonet.errors import NanoNetError
from nanonet.models.device import autocast, device_of, resolve_device
from nanonet.models.encoder import Backbone, EncoderClassifier, load_hf_encoder
from nanonet.models.model_card import write_model_card
from nanonet.models.model_folder import (
    BACKENDS,
    CARD_FILE,
    CONFIG_FILE,
    HEAD_FILE,
    LOAD_BACKENDS,
    RUN_FILES,
    WEIGHTS_FILE,
    read_model_meta,
    write_manifest,
)
from nanonet.models.onnx_runtime import export_command, load_onnx_model
from nanonet.models.peft import merge_lora


class NanoNetClassifier:
    """A text classifier you can `predict` with, `save_pretrained` and `from_pretrained`."""

    def __init__(
        self,
        model: EncoderClassifier | Any,  # or any callable (ids, mask) -> logits with .eval()
        tokenizer: Any,
        label_names: Sequence[str],
        max_length: int = 128,
        summary: dict[str, Any] | None = None,
    ) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.label_names = list(label_names)
        self.max_length = max_length
        self.summary: dict[str, Any] = dict(summary or {})
        # On CUDA the forward pass runs under bf16 autocast; False keeps it in fp32.
        self.bf16 = True

    @property
    def device(self) -> torch.device:
        """Where the model runs (cpu, cuda:N)."""
        return device_of(self.model)

    # -- inference -------------------------------------------------------------------------
    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        return self.tokenizer(
            list(texts), truncation=True, max_length=self.max_length, add_special_tokens=True
        )["input_ids"]

    @torch.inference_mode()
    def predict_logits(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        texts = _check_texts(texts)
        ids = self.tokenize(texts)
        out = np.zeros((len(ids), len(self.label_names)), dtype=np.float32)
        pad = self.tokenizer.pad_token_id
        device = self.device
        # ONNX Runtime takes its inputs on the CPU even when it runs on CUDA.
        inputs_on = getattr(self.model, "input_device", device)
        # Length-sorted batches: almost no compute is spent on padding.
        with autocast(device, self.bf16):
            for batch in length_sorted_batches([len(x) for x in ids], batch_size):
                input_ids, mask = pad_batch([ids[i] for i in batch], pad, inputs_on)
                out[batch] = self.model(input_ids, mask).float().cpu().numpy()
        return out

    def predict_proba(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        logits = torch.from_numpy(self.predict_logits(texts, batch_size))
        return torch.softmax(logits, dim=-1).numpy()

    def predict(self, texts: Sequence[str], batch_size: int = 64) -> list[str]:
        ids = self.predict_logits(texts, batch_size).argmax(-1)
        return [self.label_names[i] for i in ids]

    # -- persistence ----------------------------------------------------------------------
    def save_pretrained(self, path: str | Path) -> Path:
        """Write the model folder; ``nanonet.json`` comes last and records every file's sha256
        (the run files of `nanonet train` too, when they are already in the folder)."""
        if not isinstance(self.model, EncoderClassifier):
            raise NanoNetError(
                "Only a torch-backed model can be saved; load it with backend='torch' first."
            )
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        merge_lora(self.model)
        hf = self.model.backbone.hf
        hf.config.id2label = dict(enumerate(self.label_names))
        hf.config.label2id = {n: i for i, n in enumerate(self.label_names)}
        hf.save_pretrained(path, safe_serialization=True)
        head = self.model.head
        save_file(
            {
                "weight": head.weight.detach().cpu().contiguous(),
                "bias": head.bias.detach().cpu().contiguous(),
            },
            str(path / HEAD_FILE),
        )
        tokenizer_files = [Path(f).name for f in self.tokenizer.save_pretrained(path)]
        meta = {
            "label_names": self.label_names,
            "max_length": self.max_length,
            "pooling": "mean",
            "summary": self.summary,
        }
        write_model_card(path, meta)
        # The run files only when `nanonet train` wrote them already; a tokenizer may skip some.
        names = [CONFIG_FILE, WEIGHTS_FILE, HEAD_FILE, CARD_FILE, *tokenizer_files, *RUN_FILES]
        write_manifest(path, meta, [name for name in names if (path / name).is_file()])
        return path

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        backend: str = "torch",
        quantized: bool = False,
        device: str | torch.device = "auto",
    ) -> NanoNetClassifier:
        """Load a saved model. `backend`: "torch" (default), "packed" (torch, no compute on
        padding) or "onnx" (ONNX Runtime; run `nanonet export` first; `quantized=True` takes
        the int8 file). `device`: auto (default: CUDA when PyTorch sees a GPU), cpu, cuda or
        cuda:N; ONNX on CUDA needs onnxruntime-gpu (`pip install 'nanonet[gpu]'`)."""
        if backend not in BACKENDS:
            raise NanoNetError(f"Unknown backend '{backend}'; choose one of {', '.join(BACKENDS)}.")
        if backend == "onnx":
            return onnx_classifier(path, quantized, device=device)
        target = resolve_device(device, "device")
        path = Path(path)
        meta = read_model_meta(path)
        hf, tokenizer = load_hf_encoder(path)
        head = load_file(str(path / HEAD_FILE))
        model: Any = EncoderClassifier(Backbone(hf), num_labels=len(meta["label_names"]))
        model.head.load_state_dict(head)
        model.to_device(target)
        if backend == "packed":
            from nanonet.models.packed import PackedEncoderClassifier

            model = PackedEncoderClassifier(model)
        return cls(model, tokenizer, meta["label_names"], meta["max_length"], meta["summary"])


def load_classifier(
    model_dir: str | Path, backend: str = "torch", device: str | torch.device = "auto"
) -> NanoNetClassifier:
    """`backend` as in NanoNetClassifier.from_pretrained, plus "onnx-int8" (quantized ONNX)."""
    if backend not in LOAD_BACKENDS:
        raise NanoNetError(
            f"Unknown backend '{backend}'; choose one of {', '.join(LOAD_BACKENDS)}."
        )
    if backend == "onnx-int8":
        return NanoNetClassifier.from_pretrained(
            model_dir, backend="onnx", quantized=True, device=device
        )
    return NanoNetClassifier.from_pretrained(model_dir, backend=backend, device=device)


def onnx_classifier(
    model_dir: str | Path,
    quantized: bool = False,
    threads: int | None = None,
    device: str | torch.device = "cpu",
) -> NanoNetClassifier:
    """A NanoNetClassifier that predicts with the ONNX export of `model_dir` (no torch weights)."""
    from transformers import AutoTokenizer

    meta = read_model_meta(model_dir)
    model = load_onnx_model(model_dir, quantized, threads, device)
    labels = meta["label_names"]
    if model.num_labels is not None and model.num_labels != len(labels):
        raise NanoNetError(
            f"The ONNX export in {Path(model_dir)} has {model.num_labels} outputs but the model "
            f"has {len(labels)} labels; re-create it with `{export_command(model_dir, quantized)}`."
        )
    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    # Duck-typed: NanoNetClassifier only calls model(ids, mask) and model.eval().
    return NanoNetClassifier(model, tokenizer, labels, meta["max_length"], meta["summary"])


def _check_texts(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        raise NanoNetError("predict() takes a list of texts, not a single string; wrap it: [text].")
    texts = list(texts)
    bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
    if bad:
        raise NanoNetError(
            f"Text number {bad[0]} is not a string ({type(texts[bad[0]]).__name__})."
        )
    return texts
