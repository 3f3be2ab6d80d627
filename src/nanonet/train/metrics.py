"""Classification metrics and timed evaluation."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

from nanonet.models.classifier import NanoNetClassifier


def classification_metrics(
    y_true: Sequence[int], y_pred: Sequence[int], num_labels: int
) -> dict[str, Any]:
    labels = list(range(num_labels))
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(
            f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)
        ),
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
    }


def evaluate(
    clf: NanoNetClassifier, texts: Sequence[str], labels: Sequence[int], batch_size: int = 64
) -> dict[str, Any]:
    """Metrics on a labelled set, and throughput (docs/s, tokenization included)."""
    start = time.perf_counter()
    pred = clf.predict_logits(texts, batch_size).argmax(-1)
    seconds = time.perf_counter() - start
    out = classification_metrics(labels, pred.tolist(), len(clf.label_names))
    out["docs_per_s"] = len(texts) / seconds if seconds > 0 else float("inf")
    out["n"] = len(texts)
    return out


def agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Fraction of rows where two logit/probability arrays pick the same class."""
    return float((a.argmax(-1) == b.argmax(-1)).mean()) if len(a) else 0.0


def softmax(x: np.ndarray) -> np.ndarray:
    """Row-wise softmax of logits (numerically stable)."""
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)
