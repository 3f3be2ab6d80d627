"""Property-based tests of the label budget and of building a task from files: any labels and
texts give either a correct, leak-free draw or exactly one NanoNetError."""

from __future__ import annotations

import json
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from fuzzing import FUZZ, TEXT, one_sentence
from nanonet.data.budget import sample_budget, task_from_files, text_key
from nanonet.errors import NanoNetError

# Few distinct values, so that classes repeat and texts collide (up to surrounding spaces).
LABEL = st.one_of(st.sampled_from(["pos", "neg", " pos ", "1", "10", "2", "a\nb"]), TEXT)
ROW_TEXT = st.one_of(st.sampled_from(["good", " good", "bad ", "ok", "x,y", '"q"', "é\n"]), TEXT)
ROWS = st.lists(st.tuples(ROW_TEXT, st.one_of(st.none(), LABEL)), min_size=1, max_size=12)


@pytest.fixture(scope="module")
def folder() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as name:
        yield Path(name)


@FUZZ
@given(
    labels=st.one_of(st.lists(LABEL, max_size=30), st.lists(st.integers(-3, 3), max_size=30)),
    per_class=st.integers(-1, 5),
    seed=st.integers(-1, 2**70),
)
@example(labels=["a\nb"], per_class=1, seed=0)  # one class: its name in a one-line message
@example(labels=["a", "a\r", "b"], per_class=2, seed=0)
def test_a_budget_is_a_stratified_draw_or_one_nanonet_error(
    labels: list[Any], per_class: int, seed: int
) -> None:
    counts = Counter(labels)
    try:
        chosen, remaining = sample_budget(labels, per_class, seed)
    except NanoNetError as err:
        one_sentence(err)
        assert per_class < 1 or seed < 0 or len(counts) < 2 or min(counts.values()) < per_class
        return
    classes = sorted(counts)
    assert [labels[i] for i in chosen] == [c for c in classes for _ in range(per_class)]
    assert sorted(chosen + remaining) == list(range(len(labels)))
    assert remaining == sorted(remaining)
    assert sample_budget(labels, per_class, seed) == (chosen, remaining)  # seeded


def _write(path: Path, rows: list[tuple[str, str | None]]) -> Path:
    if path.suffix == ".jsonl":
        lines = [json.dumps({"text": t, "label": label}, ensure_ascii=False) for t, label in rows]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    else:
        pd.DataFrame(rows, columns=["text", "label"], dtype=object).to_csv(path, index=False)
    return path


@FUZZ
@given(
    train=ROWS,
    pool=st.one_of(st.none(), st.lists(ROW_TEXT, min_size=1, max_size=8)),
    test=st.one_of(st.none(), st.lists(st.tuples(ROW_TEXT, LABEL), min_size=1, max_size=4)),
    per_class=st.one_of(st.none(), st.integers(1, 3)),
    seed=st.integers(0, 3),
    suffix=st.sampled_from([".csv", ".jsonl"]),
)
@example(
    train=[("good", "pos"), ("bad", "neg")],
    pool=None,
    test=[("new", "a\nb")],
    per_class=None,
    seed=0,
    suffix=".csv",
)
def test_a_task_from_files_is_leak_free_or_one_nanonet_error(
    folder: Path,
    train: list[tuple[str, str | None]],
    pool: list[str] | None,
    test: list[tuple[str, str]] | None,
    per_class: int | None,
    seed: int,
    suffix: str,
) -> None:
    train_path = _write(folder / f"train{suffix}", train)
    pool_path = (
        None if pool is None else _write(folder / f"pool{suffix}", [(t, None) for t in pool])
    )
    test_path = None if test is None else _write(folder / f"test{suffix}", test)

    def build() -> Any:
        return task_from_files(
            train_path, pool_path, labels_per_class=per_class, seed=seed, test_path=test_path
        )

    try:
        task = build()
    except NanoNetError as err:
        one_sentence(err)
        return
    labelled = [(t, label.strip()) for t, label in train if label is not None and label.strip()]
    names = [task.label_names[i] for i in task.labelled_labels]
    assert task.label_names == sorted({label for _, label in labelled})
    assert Counter(zip(task.labelled_texts, names, strict=True)) <= Counter(labelled)
    if per_class is not None:
        assert set(Counter(names).values()) == {per_class}
    else:
        assert len(task.labelled_texts) == len(labelled)

    keys = [text_key(t) for t in task.unlabelled_texts]
    taken = {text_key(t) for t in task.labelled_texts + task.test_texts}
    assert len(keys) == len(set(keys)) and not taken & set(keys)
    assert not {text_key(t) for t in task.test_texts} & {text_key(t) for t in task.labelled_texts}
    # Nothing is lost: every other text of the sources is in the pool.
    sources = [t for t, _ in train] + (pool or [])
    assert {text_key(t) for t in sources} - taken == set(keys)
    assert build() == task  # seeded
