"""Inference speed, measured the same way wherever it is compared: the benchmark's docs/s and
the trainer's screen of cohort members against the teacher."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from nanonet.models.classifier import NanoNetClassifier
from nanonet.models.encoder import Backbone, EncoderClassifier

Predict = Callable[[list[str]], np.ndarray]  # texts -> class ids


def docs_per_second(
    predict: Predict, texts: Sequence[str], warmup: int = 8, min_seconds: float = 1.0
) -> float:
    """Documents per second for `predict` over `texts` (tokenization included).

    A short warm-up call first: the first call pays one-off costs (allocator growth, lazy
    initialisation) that a long-running service would not. It is kept small because a large
    model on long texts reads only a document or two per second on 2 cores. Fast models
    (TF-IDF) finish a pass in milliseconds, so passes repeat until `min_seconds` have elapsed.
    """
    texts = _warmed_up(predict, texts, warmup)
    if not texts:
        return float("nan")
    docs, start = 0, time.perf_counter()
    while True:
        predict(texts)
        docs += len(texts)
        seconds = time.perf_counter() - start
        if seconds >= min_seconds:
            return docs / seconds


def best_docs_per_second(
    predict: Predict, texts: Sequence[str], passes: int = 3, warmup: int = 8
) -> float:
    """Documents per second of the fastest of `passes` passes over `texts`: the fastest pass
    is the one least disturbed by whatever else the machine was doing, so it varies less
    between runs than the mean. (One model alone: to compare models, time them in turn.)"""
    return best_docs_per_second_in_turn([predict], texts, passes, warmup)[0]


def best_docs_per_second_in_turn(
    predicts: Sequence[Predict],
    texts: Sequence[str],
    rounds: int = 3,
    warmup: int = 8,
    clock: Callable[[], float] = time.perf_counter,
) -> list[float]:
    """Documents per second of each of `predicts`: the fastest of `rounds` passes over `texts`,
    the models taking turns within each round.

    For ratios that decide something (is a student fast enough to replace the teacher?).
    Timing all of one model's passes and then the next model's lets a spell of other work on
    the machine fall on one of them alone and skew their ratio; taking turns spreads it over
    all of them, and the fastest pass of each is the one least disturbed.
    """
    texts = list(texts)
    if not texts:
        return [float("nan")] * len(predicts)
    for predict in predicts:
        _warmed_up(predict, texts, warmup)
    best = [float("inf")] * len(predicts)
    for _ in range(rounds):
        for k, predict in enumerate(predicts):
            start = clock()
            predict(texts)
            best[k] = min(best[k], clock() - start)
    return [len(texts) / max(b, 1e-9) for b in best]


class CpuShare:
    """How much of the CPU its threads asked for this process got over a stretch of work.

    About 1.0 on a quiet machine: compute-bound threads run whenever they are ready. Beside
    other work they wait their turn and it falls (about 0.5 on 2 cores beside another 2-thread
    job). Wall-clock timings taken meanwhile read small models slower against large ones than
    on a quiet machine, so a figure that decides something says how busy the machine was.
    """

    def __init__(self, threads: int) -> None:
        self.threads = max(1, threads)
        self.cpu, self.wall = time.process_time(), time.perf_counter()

    def share(self) -> float:
        wall = time.perf_counter() - self.wall
        return (time.process_time() - self.cpu) / max(wall * self.threads, 1e-9)


def untrained_classifier(
    hf: Any, tokenizer: Any, num_labels: int, max_length: int
) -> NanoNetClassifier:
    """An encoder with a fresh head, for timing only: head weights do not change speed."""
    model = EncoderClassifier(Backbone(hf), num_labels, dropout=0.0)
    return NanoNetClassifier(model, tokenizer, [str(i) for i in range(num_labels)], max_length)


def class_ids(clf: NanoNetClassifier, batch_size: int = 64) -> Predict:
    """`clf` as a texts -> class ids function, the thing every speed figure times."""
    return lambda texts: clf.predict_logits(texts, batch_size).argmax(-1)


def _warmed_up(predict: Predict, texts: Sequence[str], warmup: int) -> list[str]:
    texts = list(texts)
    if texts:
        predict(texts[: max(1, min(warmup, len(texts)))])
    return texts
