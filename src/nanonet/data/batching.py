"""Length bucketing: batches of similar length so that almost no compute goes to padding."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch


def pad_batch(ids: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad token id lists to the longest in the batch (not to a global max length)."""
    width = max(len(x) for x in ids)
    input_ids = torch.full((len(ids), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    for row, seq in enumerate(ids):
        input_ids[row, : len(seq)] = torch.as_tensor(seq, dtype=torch.long)
        mask[row, : len(seq)] = 1
    return input_ids, mask


def length_sorted_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Deterministic batches for inference: sorted by length, longest first.

    Longest first so that a memory problem shows up in the first batch, not after an hour.
    """
    order = np.argsort(-np.asarray(lengths), kind="stable")
    return [order[i : i + batch_size].tolist() for i in range(0, len(order), batch_size)]


def bucketed_epochs(
    lengths: Sequence[int], batch_size: int, rng: np.random.Generator, bucket_factor: int = 50
) -> Iterator[list[int]]:
    """Endless training batches: shuffle, sort within large chunks by length, shuffle the batches.

    Sorting only within chunks of `bucket_factor` batches keeps batches random enough for
    SGD while removing most padding.
    """
    n = len(lengths)
    if n == 0:
        return
    lengths_arr = np.asarray(lengths)
    batch_size = min(batch_size, n)
    while True:
        perm = rng.permutation(n)
        chunk = batch_size * bucket_factor
        batches: list[list[int]] = []
        for start in range(0, n, chunk):
            part = perm[start : start + chunk]
            part = part[np.argsort(lengths_arr[part], kind="stable")]
            batches.extend(
                part[i : i + batch_size].tolist() for i in range(0, len(part), batch_size)
            )
        for b in rng.permutation(len(batches)):
            yield batches[b]
