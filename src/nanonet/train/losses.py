"""The three NanoNet losses (method.md): supervised, distillation, mutual learning."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def supervised_loss(
    logits: torch.Tensor, labels: torch.Tensor, class_weight: torch.Tensor | None = None
) -> torch.Tensor:
    return F.cross_entropy(logits, labels, weight=class_weight)


def balanced_class_weights(labels: Sequence[int], num_labels: int) -> torch.Tensor | None:
    """Per-class weights that give every class present the same total weight in the
    supervised loss (n / (k * n_c), as scikit-learn's class_weight="balanced"); None when the
    classes present are equally represented already, so balanced labels train exactly as
    without weights."""
    counts = torch.bincount(torch.as_tensor(list(labels), dtype=torch.long), minlength=num_labels)
    present = counts[counts > 0]
    if len(present) == 0 or bool((present == present[0]).all()):
        return None
    weights = torch.zeros(num_labels)
    weights[counts > 0] = counts.sum() / (len(present) * present.float())
    return weights


def distillation_loss(
    student_logits: torch.Tensor, target_logits: torch.Tensor, temperature: float, kind: str = "kl"
) -> torch.Tensor:
    """Student towards a detached target: KL(target_T || student_T) * T^2, or MSE on logits.

    The T^2 factor keeps the gradient scale independent of the temperature (Hinton et al.).
    """
    target_logits = target_logits.detach()
    if kind == "mse":
        return F.mse_loss(student_logits, target_logits)
    if kind != "kl":
        raise ValueError(f"unknown distillation loss {kind!r}")
    log_p = F.log_softmax(student_logits / temperature, dim=-1)
    q = F.softmax(target_logits / temperature, dim=-1)
    return F.kl_div(log_p, q, reduction="batchmean") * temperature**2


def mutual_loss(
    own_logits: torch.Tensor, peer_logits: list[torch.Tensor], temperature: float, kind: str = "kl"
) -> torch.Tensor:
    """Mean divergence from each peer's detached prediction (deep mutual learning)."""
    if not peer_logits:
        return own_logits.new_zeros(())
    losses = [distillation_loss(own_logits, p, temperature, kind) for p in peer_logits]
    return torch.stack(losses).mean()


def rampup(step: int, total_steps: int, fraction: float) -> float:
    """Linear ramp from 0 to 1 over the first `fraction` of training (DisCo used 20%)."""
    length = fraction * total_steps
    if length <= 0:
        return 1.0
    return min(1.0, step / length)


def pair_similarity_loss(embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """SetFit's pair loss over every pair in the batch: cosine → 1 within a class, → 0 across.

    Positive and negative pairs are averaged separately and weighted equally, the way SetFit
    samples them in equal numbers; otherwise with many classes the negatives drown the few
    positive pairs.
    """
    z = F.normalize(embeddings, dim=-1)
    cos = z @ z.T
    same = labels[:, None] == labels[None, :]
    upper = torch.triu(torch.ones_like(same), diagonal=1)
    pos, neg = same & upper, ~same & upper
    terms = []
    if pos.any():
        terms.append(((cos[pos] - 1.0) ** 2).mean())
    if neg.any():
        terms.append((cos[neg] ** 2).mean())
    if not terms:
        return embeddings.new_zeros(())
    return torch.stack(terms).mean()


def embedding_loss(
    student: torch.Tensor, teacher: torch.Tensor, kind: str = "cosine"
) -> torch.Tensor:
    """Student sentence vectors towards the teacher's (detached).

    cosine: 1 - cos, per text. mse: mean squared error on the raw vectors (what
    sentence-transformers' MSELoss distils with; it also matches the norm). similarity: the
    batch's pairwise cosine matrix of the student against the teacher's, which needs no common
    width (SetFit's distillation target, and Tung & Mori's similarity-preserving KD).
    """
    teacher = teacher.detach()
    if kind == "similarity":
        zs, zt = F.normalize(student, dim=-1), F.normalize(teacher, dim=-1)
        return F.mse_loss(zs @ zs.T, zt @ zt.T)
    if kind == "cosine":
        return (1.0 - F.cosine_similarity(student, teacher, dim=-1)).mean()
    if kind == "mse":
        return F.mse_loss(student, teacher)
    raise ValueError(f"unknown embedding loss {kind!r}")
