"""How much work a run does, from its settings and its texts' lengths: stage 1's steps, the
batch sizes, stage 4's steps. Decided once, before training, and logged."""

from __future__ import annotations

import logging
import math

import numpy as np

from nanonet.data.batching import scaled_batch_size
from nanonet.train.config import TrainConfig

log = logging.getLogger("nanonet.train")


def stage1_steps(tc: TrainConfig, labelled_lengths: list[int]) -> int:
    """Stage 1's steps per draw: none where the labelled texts are longer than it reads,
    unless `train.contrastive_long_texts` (see its comment in config.py)."""
    read, steps = tc.contrastive_max_length, tc.teacher_contrastive_steps
    if tc.contrastive_long_texts or read is None or steps == 0:
        return steps
    median = float(np.median(labelled_lengths))
    if median <= read:
        return steps
    log.info(
        "stage 1 skipped: the labelled texts' median is %.0f tokens, longer than the %d it "
        "reads (train.contrastive_long_texts=true runs it)",
        median,
        read,
    )
    return 0


def batch_sizes(tc: TrainConfig, lengths: list[int], read_length: int) -> tuple[int, int, float]:
    """Labelled and unlabelled batch sizes, and the mean length (in tokens, at the training
    read length) of the texts `lengths` they were sized for."""
    mean_len = float(np.mean(lengths))
    lab = scaled_batch_size(tc.labeled_batch_size, mean_len, tc.batch_reference_length)
    unl = scaled_batch_size(tc.unlabeled_batch_size, mean_len, tc.batch_reference_length)
    log.info(
        "texts of %.0f tokens on average (training reads at most %d): "
        "batches of %d labelled + %d unlabelled texts",
        mean_len,
        read_length,
        lab,
        unl,
    )
    return lab, unl, mean_len


def distill_steps(tc: TrainConfig, pool_size: int, unl_bs: int, mean_len: float) -> int:
    """Stage 4's length: `train.distill_epochs` passes over the pool, cut where each student
    has read `train.distill_max_tokens` tokens of it. Long texts fill every batch to the read
    length, so epochs alone cost a pool of e-mails several times what they cost a pool of
    reviews."""
    if not (pool_size and tc.use_teacher):
        return 0
    steps = math.ceil(tc.distill_epochs * pool_size / unl_bs)
    if tc.distill_max_tokens:
        steps = min(steps, math.ceil(tc.distill_max_tokens / (mean_len * unl_bs)))
    return steps
