"""Label budgets (a seeded, stratified choice of k labelled examples per class) and the builder
that turns user files into a :class:`~nanonet.data.task.Task` without test leakage."""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from pathlib import Path

import numpy as np

from nanonet.data.readers import read_training_file, read_unlabelled_file
from nanonet.data.task import Task
from nanonet.errors import NanoNetError


def text_key(text: str) -> str:
    """The identity used for de-duplication and leakage checks.

    Surrounding whitespace is ignored so that "a review\\n" and "a review" count as the same
    text; anything inside the text (case, punctuation) is significant.
    """
    return text.strip()


def sample_budget(
    labels: Sequence[str] | Sequence[int], per_class: int, seed: int
) -> tuple[list[int], list[int]]:
    """Choose ``per_class`` indices of every class, seeded and stratified.

    Returns ``(chosen, remaining)``: ``chosen`` is grouped by class (classes in sorted order),
    each group in draw order; ``remaining`` is every other index in ascending order. The same
    labels, ``per_class`` and ``seed`` always give the same result.
    """
    if per_class < 1:
        raise NanoNetError(
            f"the label budget must be at least 1 per class, got {per_class}; "
            "pass a positive --labels-per-class."
        )
    if seed < 0:
        raise NanoNetError(f"the seed must be 0 or more, got {seed}; pass a non-negative --seed.")
    by_class = _indices_by_class(labels)
    _require_two_classes(by_class)
    for label, indices in by_class.items():
        if len(indices) < per_class:
            raise NanoNetError(
                f"class {_quoted(label)} has only {len(indices)} labelled example"
                f"{'' if len(indices) == 1 else 's'} but {per_class} per "
                f"class were asked for; pass --labels-per-class {len(indices)} or fewer."
            )
    rng = np.random.default_rng(seed)
    chosen: list[int] = []
    for indices in by_class.values():
        draw = rng.choice(len(indices), size=per_class, replace=False)
        chosen.extend(indices[int(j)] for j in draw)
    picked = set(chosen)
    remaining = [i for i in range(len(labels)) if i not in picked]
    return chosen, remaining


def _indices_by_class(labels: Sequence[Hashable]) -> dict[Hashable, list[int]]:
    by_class: dict[Hashable, list[int]] = {}
    for index, label in enumerate(labels):
        by_class.setdefault(label, []).append(index)
    # Sorted classes make the draw independent of the order rows appear in a file.
    return {label: by_class[label] for label in sorted(by_class)}  # type: ignore[type-var]


def _require_two_classes(by_class: dict[Hashable, list[int]]) -> None:
    if len(by_class) < 2:
        found = ", ".join(map(_quoted, by_class)) or "none"
        raise NanoNetError(
            f"classification needs at least two classes but the labelled rows have "
            f"{len(by_class)} ({found}); label examples of at least two classes."
        )


def _quoted(label: Hashable) -> str:
    # repr, so that a label holding a line break cannot split the one-line error message.
    return repr(str(label))


def task_from_files(
    train_path: str | Path,
    unlabelled_path: str | Path | None = None,
    *,
    text_column: str = "text",
    label_column: str = "label",
    labels_per_class: int | None = None,
    seed: int = 0,
    max_length: int = 128,
    test_path: str | Path | None = None,
) -> Task:
    """Build a task from a training file (labelled rows, and rows with an empty label), an
    optional unlabelled file and an optional labelled test file.

    With ``labels_per_class`` the labelled set is a seeded stratified sample and the texts of
    the other labelled rows join the unlabelled pool (their labels dropped). The pool is
    de-duplicated and never holds a labelled or test text. A test text that is also a labelled
    training text is refused, because the test score would then be inflated.
    """
    texts, labels, pool = read_training_file(train_path, text_column, label_column)
    _require_two_classes(_indices_by_class(labels))
    label_names = sorted(set(labels))
    test_texts, test_names = _read_test(test_path, text_column, label_column, label_names)
    _refuse_test_in_train(texts, test_texts, train_path, test_path)

    if labels_per_class is not None:
        chosen, remaining = sample_budget(labels, labels_per_class, seed)
        pool = pool + [texts[i] for i in remaining]
        texts = [texts[i] for i in chosen]
        labels = [labels[i] for i in chosen]
    if unlabelled_path is not None:
        pool = pool + read_unlabelled_file(unlabelled_path, text_column, label_column)

    index = {name: i for i, name in enumerate(label_names)}
    task = Task(
        name="custom",
        label_names=label_names,
        labelled_texts=texts,
        labelled_labels=[index[label] for label in labels],
        unlabelled_texts=clean_pool(pool, exclude=[*texts, *test_texts]),
        test_texts=test_texts,
        test_labels=[index[label] for label in test_names],
        max_length=max_length,
    )
    check_no_leakage(task)
    return task


def _read_test(
    test_path: str | Path | None, text_column: str, label_column: str, label_names: list[str]
) -> tuple[list[str], list[str]]:
    if test_path is None:
        return [], []
    texts, labels, unlabelled = read_training_file(test_path, text_column, label_column)
    if unlabelled:
        raise NanoNetError(
            f"{test_path} has {len(unlabelled)} rows without a label in column "
            f"'{label_column}'; every test row needs a label."
        )
    unknown = sorted(set(labels) - set(label_names))
    if unknown:
        shown = ", ".join(map(_quoted, unknown[:5]))
        raise NanoNetError(
            f"{test_path} has labels that no training row has ({shown}); "
            "label training examples of those classes or remove those test rows."
        )
    return texts, labels


def _refuse_test_in_train(
    train_texts: list[str],
    test_texts: list[str],
    train_path: str | Path,
    test_path: str | Path | None,
) -> None:
    overlap = {text_key(t) for t in train_texts} & {text_key(t) for t in test_texts}
    if overlap:
        example = next(iter(sorted(overlap)))[:60]
        raise NanoNetError(
            f"{len(overlap)} texts of {test_path} are also labelled in {train_path} "
            f"(e.g. {example!r}); remove them from one of the files so the test score is honest."
        )


def clean_pool(pool: Iterable[str], exclude: Iterable[str]) -> list[str]:
    """De-duplicate ``pool`` (first occurrence kept, original text kept) and drop every text
    whose key is in ``exclude``."""
    seen = {text_key(t) for t in exclude}
    kept: list[str] = []
    for text in pool:
        key = text_key(text)
        if key not in seen:
            seen.add(key)
            kept.append(text)
    return kept


def check_no_leakage(task: Task) -> None:
    """Fail loudly if a test text is among the labelled or unlabelled texts.

    Not an ``assert``: it must also run under ``python -O``, since a leaked test text silently
    inflates every reported score.
    """
    test = {text_key(t) for t in task.test_texts}
    if not test:
        return
    for what, texts in (("labelled", task.labelled_texts), ("unlabelled", task.unlabelled_texts)):
        leaked = sum(text_key(t) in test for t in texts)
        if leaked:
            raise RuntimeError(f"{leaked} test texts leaked into the {what} texts of {task.name}")
