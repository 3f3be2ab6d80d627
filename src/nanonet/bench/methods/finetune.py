"""Supervised full fine-tuning of a student architecture on the labelled budget only.

The ordinary recipe: AdamW, linear warm-up and decay, cross-entropy, a fixed number of epochs
(no early stopping: there is no labelled dev set to stop on). The head starts as the labelled
examples' class centroids, as NanoNet's heads do, so the comparison isolates what NanoNet adds
(teacher, unlabelled text, cohort) rather than a head-initialisation trick.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nanonet.bench.methods.base import RunContext, Trained
from nanonet.bench.methods.encoders import build_encoder, tokenize
from nanonet.data.batching import pad_batch
from nanonet.data.task import Task
from nanonet.errors import NanoNetError
from nanonet.models.classifier import NanoNetClassifier
from nanonet.models.device import autocast, full_precision, resolve_device
from nanonet.models.encoder import Backbone, EncoderClassifier
from nanonet.models.peft import count_parameters, set_trainable
from nanonet.train.losses import supervised_loss


def fit(task: Task, settings: dict[str, Any], ctx: RunContext) -> Trained:
    if settings["head_init"] not in ("centroid", "random"):
        raise NanoNetError("finetune head_init must be 'centroid' or 'random'.")
    torch.manual_seed(ctx.seed)
    rng = np.random.default_rng(ctx.seed)
    hf, tok = build_encoder(settings["student"])
    model = EncoderClassifier(Backbone(hf), len(task.label_names), dropout=settings["dropout"])
    set_trainable(model, "full")
    device = resolve_device(ctx.device)
    model.to_device(device)
    ids = tokenize(tok, task.labelled_texts, task.max_length)
    y = torch.tensor(task.labelled_labels, dtype=torch.long, device=device)
    if settings["head_init"] == "centroid":
        model.eval()
        with torch.no_grad(), autocast(device):
            pooled = model.embed_pooled(*pad_batch(ids, tok.pad_token_id, device))
        model.init_head_from_centroids(pooled, y)

    batch_size = settings["batch_size"]
    steps_per_epoch = math.ceil(len(ids) / batch_size)
    total = steps_per_epoch * settings["epochs"]
    warmup = int(settings["warmup_fraction"] * total)
    head = [p for n, p in model.named_parameters() if n.startswith("head.")]
    body = [p for n, p in model.named_parameters() if not n.startswith("head.")]
    optimizer = torch.optim.AdamW(
        [
            {"params": body, "lr": settings["lr"]},
            {"params": head, "lr": settings["lr_head"]},
        ],
        weight_decay=settings["weight_decay"],
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda s: (s + 1) / max(1, warmup) if s < warmup else (total - s) / max(1, total - warmup),
    )
    model.train()
    losses = []
    for _ in range(settings["epochs"]):
        order = rng.permutation(len(ids))
        for start in range(0, len(ids), batch_size):
            batch = order[start : start + batch_size].tolist()
            with autocast(device):  # bf16 forward on CUDA, fp32 on the CPU
                logits = model(*pad_batch([ids[i] for i in batch], tok.pad_token_id, device))
                loss = supervised_loss(logits, y[batch])
            optimizer.zero_grad(set_to_none=True)
            with full_precision(device):
                loss.backward()
                optimizer.step()
            scheduler.step()
            losses.append(loss.item())
    model.eval()
    clf = NanoNetClassifier(model, tok, task.label_names, task.max_length)

    def predict(texts: list[str]) -> np.ndarray:
        return clf.predict_logits(texts, ctx.batch_size).argmax(-1)

    def save(folder: Path) -> None:
        clf.save_pretrained(folder)

    trainable, total_params = count_parameters(model)
    return Trained(
        predict=predict,
        save=save,
        trainable_params=trainable,
        total_params=total_params,
        details={
            "student": settings["student"],
            "steps": total,
            "final_loss": float(np.mean(losses[-steps_per_epoch:])) if losses else None,
        },
    )
