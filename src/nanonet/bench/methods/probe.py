"""Linear probe: logistic regression on frozen mean-pooled embeddings of a packaged encoder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression

from nanonet.bench.methods.base import RunContext, Trained
from nanonet.bench.methods.encoders import build_encoder, embed
from nanonet.data.task import Task
from nanonet.models.device import resolve_device
from nanonet.models.encoder import Backbone, EncoderClassifier
from nanonet.models.peft import count_parameters


def fit(task: Task, settings: dict[str, Any], ctx: RunContext) -> Trained:
    hf, tok = build_encoder(settings["encoder"])
    # The head of this module is unused: only its backbone + mean pooling are called.
    model = EncoderClassifier(Backbone(hf), len(task.label_names), dropout=0.0).eval()
    model.to_device(resolve_device(ctx.device))
    normalize = bool(settings["normalize"])

    def features_of(texts: list[str]) -> np.ndarray:
        x = embed(model, tok, texts, task.max_length, ctx.batch_size)
        # Unit length, as sentence-transformers compares embeddings: with raw norms C=1
        # over-regularises few-label problems (measured: -3 points on MiniLM-L3).
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12) if normalize else x

    features = features_of(task.labelled_texts)
    clf = LogisticRegression(C=settings["C"], max_iter=settings["max_iter"], random_state=ctx.seed)
    clf.fit(features, task.labelled_labels)

    def predict(texts: list[str]) -> np.ndarray:
        return clf.predict(features_of(texts))

    def save(folder: Path) -> None:
        hf.save_pretrained(folder, safe_serialization=True)
        tok.save_pretrained(folder)
        np.savez(folder / "probe.npz", coef=clf.coef_, bias=clf.intercept_, normalize=normalize)

    head = int(clf.coef_.size + clf.intercept_.size)
    encoder_params = count_parameters(model.backbone)[1]
    return Trained(
        predict=predict,
        save=save,
        trainable_params=head,
        total_params=encoder_params + head,
        details={"encoder": settings["encoder"], "normalize": normalize},
    )
