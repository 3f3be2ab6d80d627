"""Measurements shared by every method: scores, inference throughput, size on disk."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from nanonet.train.metrics import classification_metrics

if TYPE_CHECKING:
    from nanonet.models.classifier import NanoNetClassifier

Predict = Callable[[list[str]], np.ndarray]  # texts -> class ids


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


def docs_per_second(
    predict: Predict, texts: Sequence[str], warmup: int = 8, min_seconds: float = 1.0
) -> float:
    """Documents per second for `predict` over `texts` (tokenization included).

    A short warm-up call first: the first call pays one-off costs (allocator growth, lazy
    initialisation) that a long-running service would not. It is kept small because a large
    model on long texts reads only a document or two per second on 2 cores. Fast models
    (TF-IDF) finish a pass in milliseconds, so passes repeat until `min_seconds` have elapsed.
    """
    texts = list(texts)
    if not texts:
        return float("nan")
    predict(texts[: max(1, min(warmup, len(texts)))])
    docs, start = 0, time.perf_counter()
    while True:
        predict(texts)
        docs += len(texts)
        seconds = time.perf_counter() - start
        if seconds >= min_seconds:
            return docs / seconds


def folder_size_mb(path: Path) -> float:
    total = sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())
    return round(total / 2**20, 3)


def teacher_docs_per_second(
    teacher: str, num_labels: int, max_length: int, texts: Sequence[str], batch_size: int
) -> float:
    """Throughput of the teacher (mean-pooled encoder + linear head) on the same texts, in the
    same process and with the same threads as the model it is compared with.

    The head's weights do not matter for speed, so a fresh one is used: every method gets the
    same reference, whatever it trained.
    """
    from nanonet.models.assets import encoder_dir
    from nanonet.models.encoder import load_hf_encoder

    clf = untrained_classifier(*load_hf_encoder(encoder_dir(teacher)), num_labels, max_length)
    return docs_per_second(lambda t: clf.predict_logits(t, batch_size).argmax(-1), texts)


def untrained_classifier(
    hf: Any, tokenizer: Any, num_labels: int, max_length: int
) -> NanoNetClassifier:
    """An encoder with a fresh head, for timing only: head weights do not change speed."""
    from nanonet.models.classifier import NanoNetClassifier
    from nanonet.models.encoder import Backbone, EncoderClassifier

    model = EncoderClassifier(Backbone(hf), num_labels, dropout=0.0)
    return NanoNetClassifier(model, tokenizer, [str(i) for i in range(num_labels)], max_length)
