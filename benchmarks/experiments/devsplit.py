"""The dev split every exploratory script scores on: texts of the *training* split (seeded),
never the test split. Imported by the scripts beside it. The dataset is rotten_tomatoes unless
NANONET_DEV_DATASET names another built-in one."""

import os

import numpy as np

from nanonet.data.builtin import BuiltinSplits, builtin_task, load_builtin_splits
from nanonet.data.task import Task
from nanonet.train.config import RunConfig

DATASET = os.environ.get("NANONET_DEV_DATASET", "rotten_tomatoes")
DEV_SEED = 123
# The protocol caps the pool at 5,000 texts; the older sittings used 2,000 for speed.
POOL_CAP = int(os.environ.get("NANONET_DEV_POOL", "2000"))


def splits() -> BuiltinSplits:
    return load_builtin_splits(DATASET)


def train_order(sp: BuiltinSplits) -> np.ndarray:
    """A fixed permutation of the training split: the first n texts are the dev split."""
    return np.random.default_rng(DEV_SEED).permutation(len(sp.train_texts))


def dev_task(seed: int, n_dev: int, pool_cap: int | None = None) -> Task:
    """The benchmark's label draw for `seed`, a pool without dev texts, the dev split as test."""
    sp = splits()
    dev = train_order(sp)[:n_dev]
    dev_texts = [sp.train_texts[i] for i in dev]
    excluded = set(dev_texts)
    t = builtin_task(DATASET, 10, seed, None)
    pool = [x for x in t.unlabelled_texts if x not in excluded][: pool_cap or POOL_CAP]
    return Task(
        DATASET,
        t.label_names,
        t.labelled_texts,
        t.labelled_labels,
        pool,
        dev_texts,
        [sp.train_labels[i] for i in dev],
        sp.max_length,
    )


def run_config(seed: int, threads: int, overrides: list[str]) -> RunConfig:
    cfg = RunConfig()
    cfg.train.seed = seed
    cfg.train.threads = threads
    for item in overrides:
        cfg.override(item)
    return cfg
