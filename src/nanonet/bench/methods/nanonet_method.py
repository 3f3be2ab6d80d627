"""NanoNet as the project ships it: `RunConfig` defaults plus the method's overrides.

The scored model is the kept student. Every cohort member is scored too (and the adapted
teacher when `score_teacher`), which is where the Pareto view's students of other sizes come
from.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from nanonet.bench.methods.base import Member, RunContext, Trained
from nanonet.data.task import Task
from nanonet.models.classifier import NanoNetClassifier
from nanonet.models.model_folder import RUN_CONFIG_FILE
from nanonet.train.config import RunConfig
from nanonet.train.run import load_task
from nanonet.train.run_report import score_batch_size
from nanonet.train.trainer import NanoNetTrainer

log = logging.getLogger("nanonet.bench")


def run_config(task: Task, settings: dict[str, Any], ctx: RunContext) -> RunConfig:
    cfg = RunConfig()
    cfg.data.dataset = task.name
    cfg.data.labels_per_class = ctx.labels_per_class
    cfg.train.seed = ctx.seed
    cfg.train.threads = ctx.threads
    cfg.train.eval_batch_size = ctx.batch_size
    cfg.train.device = ctx.device
    for override in settings["overrides"]:
        cfg.override(override)
    return cfg


def fit(task: Task, settings: dict[str, Any], ctx: RunContext) -> Trained:
    cfg = run_config(task, settings, ctx)
    if any(o.startswith("data.") for o in settings["overrides"]):
        # The override changes the task itself (pool size, max length): rebuild it, still
        # without its test split.
        full = load_task(cfg.data, ctx.seed)
        full.test_texts, full.test_labels = [], []
        task = full
    if settings.get("label_selection") == "suggest":
        task = suggested_labels(task, cfg.train.seed)
        # The harness logged the random draw's counts before this swap.
        log.info("training on the suggested labels: %s", task.summary()["labelled_per_class"])
    trainer = NanoNetTrainer(task, cfg, progress=False)
    result = trainer.train()
    kept = result.classifier

    members = []
    report_members = result.report["members"]
    for entry, member in zip(report_members, [trainer.teacher, *trainer.students], strict=True):
        scored = entry["role"] == "student" or settings["score_teacher"]
        length = trainer.read_length(member)
        clf = NanoNetClassifier(member.model, member.tokenizer, task.label_names, length)
        members.append(
            Member(
                name=entry["name"],
                role=entry["role"],
                predict=_predictor(clf, score_batch_size(entry["role"], ctx.batch_size))
                if scored
                else None,
                trainable_params=entry["trainable_params"],
                total_params=entry["total_params"],
                info={k: entry[k] for k in ("kept", "selection_score") if k in entry},
            )
        )

    def save(folder: Path) -> None:
        # The config first, so that the model's nanonet.json records its sha256 too.
        folder.mkdir(parents=True, exist_ok=True)
        cfg.to_yaml(folder / RUN_CONFIG_FILE)
        kept.save_pretrained(folder)

    summary = result.report["summary"]
    return Trained(
        predict=_predictor(kept, ctx.batch_size),
        save=save,
        trainable_params=summary["trainable_params"],
        total_params=summary["total_params"],
        details={
            "kept": result.kept,
            "selection": summary["selection"],
            "students": [s.name for s in trainer.students],
            "speed_screen": result.report["speed_screen"],
            "overrides": list(settings["overrides"]),
            "unlabelled_examples": summary["unlabelled_examples"],
            # What the run learnt from, per class (uneven where `suggest` picked the labels).
            "labelled_per_class": task.summary()["labelled_per_class"],
            # NanoNet's own clock stops before choosing the kept student; the table uses the
            # harness's wall clock around the whole fit, the same for every method.
            "trainer_train_seconds": round(float(result.report["train_seconds"]), 1),
            # Stage 1's steps per draw as run: 0 where the texts were longer than it reads.
            "teacher_contrastive_steps": result.report["teacher_contrastive_steps"],
            "config": cfg.to_dict(),
        },
        members=members,
    )


def suggested_labels(task: Task, seed: int, encoder: str = "all-mpnet-base-v2") -> Task:
    """The same budget (as many labels as the random draw) picked by `nanonet suggest`'s cold
    start from the same texts (the draw plus the pool), labelled by the dataset's own labels:
    a simulated annotator. Per-class counts may then be uneven."""
    from nanonet.data.builtin import load_builtin_splits
    from nanonet.label.suggest import choose_texts

    splits = load_builtin_splits(task.name)
    truth = dict(zip(splits.train_texts, splits.train_labels, strict=True))
    texts = [*task.labelled_texts, *task.unlabelled_texts]
    picked = choose_texts(texts, len(task.labelled_texts), encoder=encoder, seed=seed)
    chosen = set(picked)
    return dataclasses.replace(
        task,
        labelled_texts=[texts[i] for i in picked],
        labelled_labels=[truth[texts[i]] for i in picked],
        unlabelled_texts=[t for i, t in enumerate(texts) if i not in chosen],
    )


def _predictor(clf: NanoNetClassifier, batch_size: int) -> Callable[[list[str]], np.ndarray]:
    def predict(texts: list[str]) -> np.ndarray:
        return clf.predict_logits(texts, batch_size).argmax(-1)

    return predict
