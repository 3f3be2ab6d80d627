"""Pseudo-labels the teacher gives itself from the pool: class-balanced, most confident first."""

from __future__ import annotations

import numpy as np

from nanonet.train.metrics import softmax


def balanced_pseudo_labels(logits: np.ndarray, per_class: int) -> tuple[list[int], list[int]]:
    """Indices and labels of up to `per_class` texts per class: those the model predicts as that
    class with the highest probability.

    The same number for every class, so that a class the model over-predicts cannot take over
    the labelled set (a global confidence threshold did, and drifted the teacher).
    """
    probs = softmax(logits)
    pred, conf = probs.argmax(-1), probs.max(-1)
    chosen: list[int] = []
    labels: list[int] = []
    for c in range(logits.shape[1]):
        members = np.flatnonzero(pred == c)
        top = members[np.argsort(-conf[members], kind="stable")[:per_class]]
        chosen.extend(int(i) for i in top)
        labels.extend([c] * len(top))
    return chosen, labels
