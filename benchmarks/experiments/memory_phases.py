"""Peak memory at each phase boundary of a short NanoNet run: where does a run's peak come from?

    .venv/bin/python benchmarks/experiments/memory_phases.py 20newsgroups 0 \
        [section.key=value ...]   # e.g. train.max_train_length=256

Runs 4 contrastive, 3 warm-up and 4 NanoNet steps (the phases' peaks do not depend on the step
count; growth over a full run, e.g. the teacher cache, is not seen here) and prints the process's
peak RSS (`ru_maxrss`) before each phase and around the centroid head init. Run it at two
commits to compare them. The seventh sitting's output is in results/memory_phases_20newsgroups.txt.
"""

import dataclasses
import resource
import sys
import time

from nanonet.bench.environment import pin_threads
from nanonet.data.task import Task
from nanonet.train import trainer as trainer_module
from nanonet.train.config import DataConfig, RunConfig
from nanonet.train.run import load_task

SHORT = [
    "train.teacher_contrastive_steps=4",
    "train.teacher_warmup_steps=3",
    "train.steps=4",
    "train.selection_holdout=64",
]


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def training_run(dataset: str, seed: int, overrides: list[str]) -> tuple[Task, RunConfig]:
    """The protocol's labelled draw and pool of `dataset` (no test split: only training is
    measured) and the default config with `overrides`, on two threads."""
    pin_threads(2)
    task = load_task(DataConfig(dataset=dataset, labels_per_class=10), seed)
    task = dataclasses.replace(task, test_texts=[], test_labels=[])
    cfg = RunConfig()
    cfg.data.dataset = dataset
    cfg.train.seed = seed
    cfg.train.threads = 2
    for override in overrides:
        cfg.override(override)
    return task, cfg


def main(dataset: str, seed: int, overrides: list[str]) -> None:
    trainer_cls = trainer_module.NanoNetTrainer
    init_heads = trainer_cls._init_heads

    def phase(name: str, started: float) -> None:
        print(f"  peak {peak_mb():7.0f} MB before: {name}", flush=True)

    def traced_init_heads(self: trainer_module.NanoNetTrainer) -> None:
        print(f"  peak {peak_mb():7.0f} MB before: head init", flush=True)
        init_heads(self)
        print(f"  peak {peak_mb():7.0f} MB after: head init", flush=True)

    trainer_cls._phase = staticmethod(phase)  # type: ignore[method-assign]
    trainer_cls._init_heads = traced_init_heads  # type: ignore[method-assign]
    task, cfg = training_run(dataset, seed, [*SHORT, *overrides])
    print(f"after loading the data: {peak_mb():.0f} MB", flush=True)
    t0 = time.time()
    trainer_cls(task, cfg, progress=False).train()
    print(f"final peak {peak_mb():.0f} MB in {time.time() - t0:.0f} s {overrides}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3:])
