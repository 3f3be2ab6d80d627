"""Length bucketing: batches of similar length so that almost no compute goes to padding."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch


def pad_batch(
    ids: Sequence[Sequence[int]], pad_id: int, device: torch.device | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad token id lists to the longest in the batch (not to a global max length);
    built on the CPU, then moved to `device` when one is given."""
    width = max(len(x) for x in ids)
    input_ids = torch.full((len(ids), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    for row, seq in enumerate(ids):
        input_ids[row, : len(seq)] = torch.as_tensor(seq, dtype=torch.long)
        mask[row, : len(seq)] = 1
    if device is None:
        return input_ids, mask
    return to_device(input_ids, device), to_device(mask, device)


def head_of(ids: np.ndarray, max_length: int) -> np.ndarray:
    """The first `max_length` tokens of a tokenised text, its closing special token kept
    (as the tokenizer's own truncation does)."""
    if len(ids) <= max_length:
        return ids
    return np.concatenate([ids[: max_length - 1], ids[-1:]])


def to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A CPU tensor onto `device`. To CUDA through pinned memory and without blocking: a copy
    from pageable memory waits for the GPU to drain its queue, and this runs once per batch."""
    if device.type != "cuda":
        return tensor
    return tensor.pin_memory().to(device, non_blocking=True)


def scaled_batch_size(nominal: int, mean_length: float, reference: int | None) -> int:
    """`nominal` texts per batch for texts of about `reference` tokens; fewer for longer texts.

    Keeps the tokens per batch (and so the cost of a step) roughly constant; never below 2.
    """
    if reference is None or mean_length <= reference:
        return nominal
    return max(2, min(nominal, round(nominal * reference / mean_length)))


def length_sorted_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Deterministic batches for inference: sorted by length, longest first.

    Longest first so that a memory problem shows up in the first batch, not after an hour.
    """
    order = np.argsort(-np.asarray(lengths), kind="stable")
    return [order[i : i + batch_size].tolist() for i in range(0, len(order), batch_size)]


class BucketedEpochs:
    """Endless training batches: shuffle, sort within large chunks by length, shuffle the batches.

    Sorting only within chunks of `bucket_factor` batches keeps batches random enough for
    SGD while removing most padding. An iterator with a `state()`, so that a resumed run
    continues the epoch it was in (together with the state of `rng`, which it shares).
    """

    def __init__(
        self,
        lengths: Sequence[int],
        batch_size: int,
        rng: np.random.Generator,
        bucket_factor: int = 50,
    ) -> None:
        self.lengths = np.asarray(lengths)
        self.batch_size = min(batch_size, len(lengths))
        self.rng, self.bucket_factor = rng, bucket_factor
        self.epoch: list[list[int]] = []
        self.position = 0

    def __iter__(self) -> Iterator[list[int]]:
        return self

    def __next__(self) -> list[int]:
        if len(self.lengths) == 0:
            raise StopIteration
        if self.position == len(self.epoch):
            self.epoch, self.position = self._new_epoch(), 0
        self.position += 1
        return self.epoch[self.position - 1]

    def _new_epoch(self) -> list[list[int]]:
        n, rng = len(self.lengths), self.rng
        perm = rng.permutation(n)
        chunk = self.batch_size * self.bucket_factor
        batches: list[list[int]] = []
        for start in range(0, n, chunk):
            part = perm[start : start + chunk]
            part = part[np.argsort(self.lengths[part], kind="stable")]
            batches.extend(
                part[i : i + self.batch_size].tolist() for i in range(0, len(part), self.batch_size)
            )
        return [batches[b] for b in rng.permutation(len(batches))]

    def state(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "position": self.position}

    def load_state(self, state: dict[str, Any]) -> None:
        self.epoch, self.position = [list(b) for b in state["epoch"]], int(state["position"])


def bucketed_epochs(
    lengths: Sequence[int], batch_size: int, rng: np.random.Generator, bucket_factor: int = 50
) -> BucketedEpochs:
    return BucketedEpochs(lengths, batch_size, rng, bucket_factor)


def pair_batch(labels: Sequence[int], batch_size: int, rng: np.random.Generator) -> list[int]:
    """Indices of a batch for a pair loss: whole classes of at least two examples each.

    A uniform sample of 32 texts from 20 classes holds almost no same-class pairs; here a
    random subset of classes contributes an equal share each, so positives are always present.
    """
    by_class: dict[int, list[int]] = {}
    for i, y in enumerate(labels):
        by_class.setdefault(int(y), []).append(i)
    classes = list(by_class)
    per_class = max(2, batch_size // len(classes))
    n_classes = max(1, min(len(classes), batch_size // per_class))
    chosen = rng.choice(len(classes), size=n_classes, replace=False)
    batch: list[int] = []
    for c in chosen:
        members = by_class[classes[int(c)]]
        take = min(len(members), per_class)
        batch.extend(int(i) for i in rng.choice(members, size=take, replace=False))
    return batch
