"""Data views: each student sees its own perturbation of the same token ids.

Views act on token id lists before padding, so a "cutoff" view also removes compute.
Special tokens at both ends ([CLS]/<s> and [SEP]/</s>) are never touched.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

VIEWS = ("none", "cutoff", "shuffle", "mask")


def apply_view(
    ids: Sequence[int], view: str, rate: float, rng: np.random.Generator, mask_id: int | None
) -> list[int]:
    inner = list(ids[1:-1])
    if view == "none" or len(inner) < 2 or rate <= 0:
        return list(ids)
    if view == "cutoff":
        keep = rng.random(len(inner)) >= rate
        if not keep.any():
            keep[rng.integers(len(inner))] = True
        inner = [t for t, k in zip(inner, keep, strict=True) if k]
    elif view == "mask":
        if mask_id is None:
            return list(ids)
        hit = rng.random(len(inner)) < rate
        inner = [mask_id if h else t for t, h in zip(inner, hit, strict=True)]
    elif view == "shuffle":
        # Local shuffle: each token moves at most a few places (window 3), as in DisCo.
        noise = np.arange(len(inner)) + rng.uniform(0, 3, size=len(inner))
        inner = [inner[i] for i in np.argsort(noise, kind="stable")]
    else:
        raise ValueError(f"unknown view {view!r}")
    return [ids[0], *inner, ids[-1]]


def apply_views(
    batch: Sequence[Sequence[int]],
    view: str,
    rate: float,
    rng: np.random.Generator,
    mask_id: int | None = None,
) -> list[list[int]]:
    return [apply_view(ids, view, rate, rng, mask_id) for ids in batch]
