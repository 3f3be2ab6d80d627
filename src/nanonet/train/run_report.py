"""The run's report: every member's size and (when the task has a test split) its scores."""

from __future__ import annotations

import logging
from typing import Any

from nanonet.data.task import Task
from nanonet.models.classifier import NanoNetClassifier
from nanonet.train.cohort import Member
from nanonet.train.config import RunConfig
from nanonet.train.metrics import evaluate

log = logging.getLogger("nanonet")

# Texts per batch when the teacher is scored: at 64 texts of 256 tokens MPNet held 0.96 GB more
# for the batch alone, the peak of a 20newsgroups run (6.4 GB, training 5.9); at 16 it holds
# 0.37 GB. The batch moves its scores by float rounding only (padding differs).
TEACHER_SCORE_BATCH = 16


def score_batch_size(role: str, batch_size: int) -> int:
    """Students read at `batch_size` (the batch they are timed at); the teacher, which is only
    scored, at no more than TEACHER_SCORE_BATCH."""
    return batch_size if role == "student" else min(batch_size, TEACHER_SCORE_BATCH)


def log_parameters(members: list[Member]) -> None:
    for m in members:
        trainable, total = m.params()
        extra = m.projection_params()
        log.info(
            "%-34s trainable %10s / %12s parameters (%.3f%%)%s",
            m.name,
            f"{trainable:,}",
            f"{total:,}",
            100 * trainable / total,
            f" + {extra:,} in a training-only projection" if extra else "",
        )


def build_report(
    task: Task,
    cfg: RunConfig,
    teacher: Member,
    students: list[Member],
    read_lengths: list[int],
    kept: int,
    selection: dict[str, Any],
    sizes: dict[str, int],
    extra: dict[str, Any],
) -> dict[str, Any]:
    """`read_lengths`: tokens each member reads at prediction (teacher first).
    `sizes`: labelled / unlabelled / holdout counts. `extra`: merged into the report as is."""
    members = []
    for k, m in enumerate([teacher, *students]):
        trainable, total = m.params()
        entry: dict[str, Any] = {
            "name": m.name,
            "role": "teacher" if k == 0 else "student",
            "trainable_params": trainable,
            "total_params": total,
        }
        if k > 0:
            entry["selection_score"] = selection["scores"][k - 1]
            entry["selection_stderr"] = selection["stderr"][k - 1]
            entry["selection_stderr_vs_best"] = selection["stderr_vs_best"][k - 1]
            entry["teacher_agreement"] = selection["agreement"][k - 1]
            entry["kept"] = k - 1 == kept
            entry["training_only_params"] = m.projection_params()
        members.append(entry)
    if task.test_texts:
        for entry, m, length in zip(members, [teacher, *students], read_lengths, strict=True):
            clf = NanoNetClassifier(m.model, m.tokenizer, task.label_names, length)
            log.info("evaluating %s on %d test texts", m.name, len(task.test_texts))
            batch = score_batch_size(entry["role"], cfg.train.eval_batch_size)
            entry["test"] = evaluate(clf, task.test_texts, task.test_labels, batch)
    kept_entry = members[kept + 1]
    summary = {
        "dataset": task.name,
        "seed": cfg.train.seed,
        "labels_per_class": cfg.data.labels_per_class,
        "labelled_examples": sizes["labelled"],
        "unlabelled_examples": sizes["unlabelled"],
        "selection_holdout": sizes["holdout"],
        "student": kept_entry["name"],
        "teacher": cfg.model.teacher,
        "peft": cfg.model.peft,
        "trainable_params": kept_entry["trainable_params"],
        "total_params": kept_entry["total_params"],
        "teacher_trainable_params": members[0]["trainable_params"],
        "teacher_total_params": members[0]["total_params"],
        "train_seconds": round(extra["train_seconds"], 1),
        "selection": selection["criterion"],
    }
    if "test" in kept_entry:
        summary["test_accuracy"] = kept_entry["test"]["accuracy"]
        summary["test_macro_f1"] = kept_entry["test"]["macro_f1"]
        summary["test_size"] = kept_entry["test"]["n"]
    return {"summary": summary, "members": members, **extra}
