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


def self_training_check(
    x_lab: np.ndarray, y_lab: np.ndarray, x_pool: np.ndarray, per_class: int
) -> dict[str, int]:
    """Whether the labels say self-training helps, judged without any held-out data.

    A leave-one-per-class-out cross-validation on the labels: fold f holds out the f-th
    labelled text of every class; a class-balanced linear head on the teacher's vectors learns
    from the rest, alone and with the `per_class` pool texts per class it is surest of, and both
    label the held-out texts. Returns how many of them each got right (`without`, `with`) out of
    `labels`. On the dev splits this went the way the pseudo-labels moved a frozen probe's
    accuracy (benchmarks/EXPERIMENTS.md, thirty-third sitting).
    """
    # Imported here: scikit-learn is slow to import and only this check needs it in training.
    from sklearn.linear_model import LogisticRegression

    def fit(x: np.ndarray, y: np.ndarray) -> LogisticRegression:
        return LogisticRegression(C=1.0, max_iter=2000, class_weight="balanced").fit(x, y)

    rank = np.zeros(len(y_lab), dtype=int)
    for c in np.unique(y_lab):
        rank[y_lab == c] = np.arange(int((y_lab == c).sum()))
    right = [0, 0]
    for f in np.unique(rank):
        train, held = rank != f, rank == f
        if len(np.unique(y_lab[train])) < 2:  # a fold must leave two classes to learn from
            continue
        head = fit(x_lab[train], y_lab[train])
        right[0] += int((head.predict(x_lab[held]) == y_lab[held]).sum())
        chosen, columns = balanced_pseudo_labels(head.predict_log_proba(x_pool), per_class)
        head = fit(
            np.concatenate([x_lab[train], x_pool[chosen]]),
            np.concatenate([y_lab[train], head.classes_[columns]]),
        )
        right[1] += int((head.predict(x_lab[held]) == y_lab[held]).sum())
    return {"labels": len(y_lab), "without": right[0], "with": right[1]}
