"""What the teacher computes once instead of on every step.

Two caches, for two phases of a run:
- `FrozenBottomCache`: while the teacher adapts, the output of its frozen bottom layers per
  text (valid because nothing below `cut` trains and the teacher sees no views).
- `TeacherTargets`: once it has adapted, its sentence vector and logits per text, so the
  students can take many passes over the pool at a fraction of the teacher's cost.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from nanonet.data.batching import length_sorted_batches, pad_batch
from nanonet.models.device import device_of
from nanonet.models.encoder import EncoderClassifier

Ids = list[list[int]]


class FrozenBottomCache:
    """Hidden states after the teacher's frozen layers, per split and text, filled on first use.

    Filled lazily, so a run that draws 2,000 of 5,000 unlabelled texts pays for 2,000.
    Stored in fp16 (half the memory) on the model's device; converted back to fp32 per batch.
    """

    def __init__(self, model: EncoderClassifier, ids: dict[str, Ids], pad_id: int, cut: int):
        self.model, self.ids, self.pad_id, self.cut = model, ids, pad_id, cut
        self.store: dict[str, list[torch.Tensor | None]] = {
            split: [None] * len(x) for split, x in ids.items()
        }

    @torch.no_grad()
    def fill(self, split: str, idx: list[int]) -> None:
        store = self.store[split]
        missing = [i for i in idx if store[i] is None]
        if not missing:
            return
        ids = [self.ids[split][i] for i in missing]
        input_ids, mask = pad_batch(ids, self.pad_id, device_of(self.model))
        backbone = self.model.backbone
        h = backbone.run_layers(backbone.embed(input_ids), mask, 0, self.cut)
        for row, i in enumerate(missing):
            store[i] = h[row, : len(self.ids[split][i])].to(torch.float16).clone()

    def states(self, split: str, idx: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Padded fp32 hidden states and mask of `idx`, computing the missing ones."""
        self.fill(split, idx)
        return pad_states([self.store[split][i] for i in idx])  # type: ignore[misc]

    def clear(self) -> None:
        """Free the memory once the teacher stops training."""
        for split in self.store:
            self.store[split] = [None] * len(self.store[split])


class TeacherTargets:
    """The adapted teacher's sentence vectors and logits for every text of the given splits."""

    def __init__(
        self,
        pooled_fn: Callable[[str, list[int]], torch.Tensor],
        classify: Callable[[torch.Tensor], torch.Tensor],
        lengths: dict[str, list[int]],
        batch_size: int,
    ) -> None:
        self.pooled: dict[str, torch.Tensor] = {}
        self.logits: dict[str, torch.Tensor] = {}
        with torch.no_grad():
            for split, lens in lengths.items():
                pooled: list[torch.Tensor | None] = [None] * len(lens)
                for batch in length_sorted_batches(lens, batch_size):
                    for i, row in zip(batch, pooled_fn(split, batch), strict=True):
                        pooled[i] = row
                if pooled:
                    stacked = torch.stack(pooled)  # type: ignore[arg-type]
                    self.pooled[split] = stacked
                    self.logits[split] = classify(stacked)

    def get(self, split: str, idx: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """(sentence vectors, logits) of `idx` in `split`."""
        pooled = self.pooled[split]
        index = torch.as_tensor(np.asarray(idx, dtype=np.int64)).to(pooled.device)
        return pooled[index], self.logits[split][index]


def pad_states(states: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    width, device = max(s.shape[0] for s in states), states[0].device
    hidden = torch.zeros(len(states), width, states[0].shape[1], device=device)
    mask = torch.zeros(len(states), width, dtype=torch.long, device=device)
    for row, s in enumerate(states):
        hidden[row, : s.shape[0]] = s.float()
        mask[row, : s.shape[0]] = 1
    return hidden, mask
