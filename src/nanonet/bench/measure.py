"""Measurements shared by every method: scores, inference throughput, size on disk."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from nanonet.models.speed import Predict, class_ids, docs_per_second, untrained_classifier
from nanonet.train.metrics import classification_metrics


def score(predict: Predict, texts: list[str], labels: list[int], num_labels: int) -> dict:
    """Accuracy, macro-F1 and confusion matrix on the whole test set."""
    pred = np.asarray(predict(texts)).astype(int)
    return classification_metrics(labels, pred.tolist(), num_labels)


def throughput_sample(n_test: int, cap: int | None) -> list[int]:
    """Indices of the test texts timed for docs/s: a fixed random sample, the same for every
    method and seed. Random rather than the first N because some test sets are stored grouped
    by class, and document length (hence speed) differs between classes."""
    if cap is None or cap >= n_test:
        return list(range(n_test))
    rng = np.random.default_rng(12345)
    return sorted(int(i) for i in rng.choice(n_test, size=cap, replace=False))


def folder_size_mb(path: Path) -> float:
    total = sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())
    return round(total / 2**20, 3)


def teacher_docs_per_second(
    teacher: str,
    num_labels: int,
    max_length: int,
    texts: Sequence[str],
    batch_size: int,
    device: str = "cpu",
) -> float:
    """Throughput of the teacher (mean-pooled encoder + linear head) on the same texts, in the
    same process and with the same threads as the model it is compared with.

    The head's weights do not matter for speed, so a fresh one is used: every method gets the
    same reference, whatever it trained.
    """
    from nanonet.models.assets import encoder_dir
    from nanonet.models.device import resolve_device
    from nanonet.models.encoder import load_hf_encoder

    clf = untrained_classifier(*load_hf_encoder(encoder_dir(teacher)), num_labels, max_length)
    clf.model.to_device(resolve_device(device))
    return docs_per_second(class_ids(clf, batch_size), texts)
