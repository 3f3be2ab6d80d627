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

Ids = list[np.ndarray]  # token ids per text


class FrozenBottomCache:
    """Hidden states after the teacher's frozen layers, per split and text, filled on first use.

    Filled lazily, so a run that draws 2,000 of 5,000 unlabelled texts pays for 2,000.
    Stored in fp16 (half the memory) on the model's device; converted back to fp32 per batch.
    Bounded by `max_bytes`: once full, the states of texts not yet stored are computed per
    batch and not kept, so memory does not grow with the pool (a 500,000-text pool at 128
    tokens would need 98 GB); what is stored first stays.
    Once the teacher stops training (`read_once`), a stored state is dropped when it is read
    and nothing new is stored: its one remaining use is its text's distillation target.
    """

    def __init__(
        self,
        model: EncoderClassifier,
        ids: dict[str, Ids],
        pad_id: int,
        cut: int,
        max_bytes: int | None = None,
    ):
        self.model, self.ids, self.pad_id, self.cut = model, ids, pad_id, cut
        self.max_bytes = max_bytes
        self.stored_bytes = 0
        self.keep = True  # False once read_once() was called
        self.store: dict[str, list[torch.Tensor | None]] = {
            split: [None] * len(x) for split, x in ids.items()
        }

    @torch.no_grad()
    def fill(self, split: str, idx: list[int]) -> dict[int, torch.Tensor]:
        """Computes the states of `idx` not stored; returns those it could not store."""
        store = self.store[split]
        missing = [i for i in dict.fromkeys(idx) if store[i] is None]
        if not missing:
            return {}
        ids = [self.ids[split][i] for i in missing]
        input_ids, mask = pad_batch(ids, self.pad_id, device_of(self.model))
        backbone = self.model.backbone
        h = backbone.run_layers(backbone.embed(input_ids), mask, 0, self.cut)
        unstored = {}
        for row, i in enumerate(missing):
            state = h[row, : len(self.ids[split][i])].to(torch.float16).clone()
            size = state.numel() * state.element_size()
            fits = self.max_bytes is None or self.stored_bytes + size <= self.max_bytes
            if self.keep and fits:
                store[i] = state
                self.stored_bytes += size
            else:
                unstored[i] = state
        return unstored

    def states(self, split: str, idx: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Padded fp32 hidden states and mask of `idx`, computing the missing ones."""
        fresh = self.fill(split, idx)
        store = self.store[split]
        out = pad_states([store[i] if store[i] is not None else fresh[i] for i in idx])  # type: ignore[misc]
        if not self.keep:
            for i in dict.fromkeys(idx):
                state = store[i]
                if state is not None:
                    self.stored_bytes -= state.numel() * state.element_size()
                    store[i] = None
        return out

    def read_once(self) -> None:
        """The teacher has stopped training. States stored so far are handed out once more
        and dropped; none are stored any more. Stage 4 computes each pool text's target once,
        so a state kept after that read would only hold memory."""
        self.keep = False

    def clear(self) -> None:
        """Free the memory once the teacher stops training."""
        for split in self.store:
            self.store[split] = [None] * len(self.store[split])
        self.stored_bytes = 0


class TeacherTargets:
    """The adapted teacher's logits per text of the given splits, computed when a batch first
    asks for them (a run that distils over a fraction of a 500,000-text pool pays for that
    fraction), and its sentence vectors too when `keep_vectors` (embedding distillation needs
    them: 3 KB per text, where the logits of 20 classes take 80 bytes)."""

    def __init__(
        self,
        pooled_fn: Callable[[str, list[int]], torch.Tensor],
        classify: Callable[[torch.Tensor], torch.Tensor],
        lengths: dict[str, list[int]],
        batch_size: int,
        keep_vectors: bool = True,
    ) -> None:
        self.pooled_fn, self.classify = pooled_fn, classify
        self.lengths, self.batch_size, self.keep_vectors = lengths, batch_size, keep_vectors
        self.logits: dict[str, torch.Tensor] = {}
        self.pooled: dict[str, torch.Tensor] = {}
        self.done = {split: np.zeros(len(lens), dtype=bool) for split, lens in lengths.items()}

    @torch.no_grad()
    def _fill(self, split: str, batches: list[list[int]]) -> None:
        for batch in batches:
            vectors = self.pooled_fn(split, batch)
            out = self.classify(vectors)
            if split not in self.logits:
                n = len(self.lengths[split])
                self.logits[split] = out.new_zeros(n, out.shape[1])
                if self.keep_vectors:
                    self.pooled[split] = vectors.new_zeros(n, vectors.shape[1])
            index = torch.as_tensor(batch, device=out.device)
            self.logits[split][index] = out
            if self.keep_vectors:
                self.pooled[split][index] = vectors
            self.done[split][batch] = True

    def put(self, split: str, logits: torch.Tensor, pooled: torch.Tensor | None) -> None:
        """Every text's outputs of `split`, computed elsewhere (on a Ray actor pool)."""
        self.logits[split] = logits
        if self.keep_vectors and pooled is not None:
            self.pooled[split] = pooled
        self.done[split][:] = True

    def get(self, split: str, idx: list[int]) -> tuple[torch.Tensor | None, torch.Tensor]:
        """(sentence vectors or None, logits) of `idx` in `split`."""
        missing = [i for i in dict.fromkeys(idx) if not self.done[split][i]]
        size = self.batch_size
        self._fill(split, [missing[k : k + size] for k in range(0, len(missing), size)])
        logits = self.logits[split]
        index = torch.as_tensor(np.asarray(idx, dtype=np.int64)).to(logits.device)
        pooled = self.pooled.get(split)
        return (pooled[index] if pooled is not None else None), logits[index]

    def all_logits(self, split: str) -> torch.Tensor:
        """The logits of every text of `split` (length-sorted batches for what is missing)."""
        missing = np.flatnonzero(~self.done[split])
        lengths = [self.lengths[split][i] for i in missing]
        batches = [
            [int(missing[j]) for j in b] for b in length_sorted_batches(lengths, self.batch_size)
        ]
        self._fill(split, batches)
        return self.logits[split]


def pad_states(states: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    width, device = max(s.shape[0] for s in states), states[0].device
    hidden = torch.zeros(len(states), width, states[0].shape[1], device=device)
    mask = torch.zeros(len(states), width, dtype=torch.long, device=device)
    for row, s in enumerate(states):
        hidden[row, : s.shape[0]] = s.float()
        mask[row, : s.shape[0]] = 1
    return hidden, mask
