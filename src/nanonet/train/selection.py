"""Which student the run keeps: decided on held-out unlabelled text, never the test set."""

from __future__ import annotations

from typing import Any

import numpy as np

from nanonet.train.metrics import agreement


def choose_student(
    student_logits: list[np.ndarray],
    reference: np.ndarray | None,
    costs: list[int],
    tolerance: float,
    split: str,
) -> tuple[int, dict[str, Any]]:
    """Keep the student that agrees most with the reference on held-out unlabelled text.

    The reference is the adapted teacher's prediction (None: no teacher, then the cohort's mean
    prediction). Among students within `tolerance` of the best agreement, the cheapest at
    inference (`costs`: FLOPs per token) is kept: the point of the cohort is a small, fast model.
    """
    if reference is not None:
        criterion = f"agreement with the teacher on {split} texts"
    else:
        reference = np.mean([softmax(p) for p in student_logits], axis=0)
        criterion = f"agreement with the cohort's mean prediction on {split} texts"
    scores = [agreement(p, reference) for p in student_logits]
    best = max(scores)
    near = [k for k in range(len(scores)) if scores[k] >= best - tolerance]
    kept = min(near, key=lambda k: (costs[k], -scores[k]))
    criterion += f" (the cheapest within {tolerance:.3f} of the best)" if tolerance > 0 else ""
    return kept, {"criterion": criterion, "n": len(reference), "scores": scores}


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)
