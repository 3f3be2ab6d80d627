"""From a RunConfig to a trained result: the recipe behind `nanonet train` and `nanonet.fit`."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np

from nanonet.data.budget import task_from_files
from nanonet.data.builtin import BUILTIN_DATASETS, builtin_task
from nanonet.data.task import Task
from nanonet.errors import NanoNetError
from nanonet.train.checkpoint import Checkpoints
from nanonet.train.config import DataConfig, RunConfig
from nanonet.train.trainer import NanoNetTrainer, TrainResult

log = logging.getLogger("nanonet")


def load_task(data: DataConfig, seed: int = 0) -> Task:
    """The labelled budget, unlabelled pool and (optional) test split a config describes."""
    if data.train_file is not None:
        task = task_from_files(
            data.train_file,
            data.unlabeled_file,
            text_column=data.text_column,
            label_column=data.label_column,
            labels_per_class=data.labels_per_class,
            seed=seed,
            max_length=data.max_length or 128,
            test_path=data.test_file,
        )
        return _cap_pool(task, data.max_unlabeled, seed)
    if data.dataset is None:
        raise NanoNetError(
            "No data given; pass --train FILE (and optionally --unlabeled FILE) or "
            f"--dataset {'|'.join(BUILTIN_DATASETS)}."
        )
    if data.dataset not in BUILTIN_DATASETS:
        raise NanoNetError(
            f"Unknown dataset '{data.dataset}'; choose one of {', '.join(BUILTIN_DATASETS)}."
        )
    task = builtin_task(data.dataset, data.labels_per_class or 10, seed, data.max_unlabeled)
    if data.max_length is not None:
        task.max_length = data.max_length
    return task


def _cap_pool(task: Task, cap: int | None, seed: int) -> Task:
    if cap is None or len(task.unlabelled_texts) <= cap:
        return task
    # Said out loud: a user with 50,000 texts would otherwise train on 5,000 without knowing.
    log.warning(
        "using a seeded sample of %d of the %d unlabelled texts (data.max_unlabeled=%d); "
        "set data.max_unlabeled=null to use them all",
        cap,
        len(task.unlabelled_texts),
        cap,
    )
    keep = np.sort(np.random.default_rng(seed).choice(len(task.unlabelled_texts), cap, False))
    task.unlabelled_texts = [task.unlabelled_texts[int(i)] for i in keep]
    return task


def fit(
    config: RunConfig | None = None,
    task: Task | None = None,
    on_step: Callable[[dict[str, float]], None] | None = None,
    progress: bool = True,
    checkpoint_dir: str | Path | None = None,
    resume: bool = False,
) -> TrainResult:
    """Run NanoNet. Without a task, the one described by `config.data` is loaded.

    With `checkpoint_dir`, checkpoints are written there as the run goes (the last two are
    kept); with `resume=True` too, the run continues from the newest of them.
    """
    config = config or RunConfig()
    task = task or load_task(config.data, config.train.seed)
    checkpoints = None
    if checkpoint_dir is not None:
        checkpoints = Checkpoints(Path(checkpoint_dir), config.train.checkpoint_every)
    elif resume:
        raise NanoNetError("resume=True needs the checkpoint_dir of the interrupted run.")
    trainer = NanoNetTrainer(
        task, config, on_step=on_step, progress=progress, checkpoints=checkpoints, resume=resume
    )
    return trainer.train()
