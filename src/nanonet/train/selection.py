"""Which student the run keeps: decided on held-out unlabelled text, never the test set."""

from __future__ import annotations

from typing import Any

import numpy as np

from nanonet.train.metrics import agreement, softmax


def choose_student(
    student_logits: list[np.ndarray],
    reference: np.ndarray | None,
    costs: list[int],
    tolerance: float,
    split: str,
) -> tuple[int, dict[str, Any]]:
    """Keep the student expected to be most accurate on held-out unlabelled text, or the
    cheapest at inference (`costs`: FLOPs per token) within `tolerance` of it.

    A student's score is its expected accuracy if the reference's probabilities were the truth:
    the mean over texts of the probability the reference gives to the student's class. Unlike
    plain agreement (did both pick the same class?) it counts a disagreement on a text the
    teacher is unsure of as half wrong, not wholly wrong, which is both closer to accuracy and
    less noisy. The reference is the adapted teacher (None: no teacher; then the cohort's mean
    prediction).
    """
    if reference is not None:
        criterion = f"expected accuracy under the teacher's probabilities on {split} texts"
        probs = softmax(reference)
    else:
        criterion = f"expected accuracy under the cohort's mean prediction on {split} texts"
        probs = np.mean([softmax(p) for p in student_logits], axis=0)
    per_text = [probs[np.arange(len(p)), p.argmax(-1)] for p in student_logits]
    scores = [float(x.mean()) for x in per_text]
    best = int(np.argmax(scores))
    near = [k for k in range(len(scores)) if scores[k] >= scores[best] - tolerance]
    kept = min(near, key=lambda k: (costs[k], -scores[k]))
    criterion += f" (the cheapest within {tolerance:.3f} of the best)" if tolerance > 0 else ""
    return kept, {
        "criterion": criterion,
        "n": len(probs),
        "scores": scores,
        # Standard error of each score and of its paired difference from the best: how far
        # apart two students must be before the choice between them is more than noise.
        "stderr": [standard_error(x) for x in per_text],
        "stderr_vs_best": [standard_error(x - per_text[best]) for x in per_text],
        "agreement": [agreement(p, probs) for p in student_logits],
    }


def standard_error(x: np.ndarray) -> float:
    return float(x.std(ddof=1) / np.sqrt(len(x))) if len(x) > 1 else 0.0
