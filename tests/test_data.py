"""Readers, label budgets, task building and the three built-in benchmark datasets."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from nanonet.data.budget import sample_budget, task_from_files
from nanonet.data.builtin import (
    BUILTIN_DATASETS,
    builtin_task,
    load_builtin_splits,
)
from nanonet.data.readers import read_table, read_training_file, read_unlabelled_file
from nanonet.data.task import Task
from nanonet.errors import NanoNetError

ROWS = [
    {"text": "a fine film", "label": "pos"},
    {"text": 'he said "NA", twice,\nthen left', "label": "neg"},
    {"text": "  leading spaces stay", "label": ""},
    {"text": "NA", "label": "pos"},
]


def _write(path: Path, content: str | bytes) -> Path:
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def _frame_file(tmp_path: Path, suffix: str, rows: list[dict] = ROWS) -> Path:
    frame = pd.DataFrame(rows)
    path = tmp_path / f"data{suffix}"
    if suffix == ".csv":
        frame.to_csv(path, index=False)
    elif suffix == ".tsv":
        frame.to_csv(path, index=False, sep="\t")
    elif suffix in (".jsonl", ".ndjson"):
        path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    elif suffix == ".json":
        path.write_text(json.dumps(rows), encoding="utf-8")
    elif suffix == ".parquet":
        frame.to_parquet(path)
    return path


# --- readers: formats ---------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl", ".ndjson", ".json", ".parquet"])
def test_formats_round_trip(tmp_path: Path, suffix: str) -> None:
    texts, labels = read_table(_frame_file(tmp_path, suffix))
    assert texts == [r["text"] for r in ROWS]
    assert labels == ["pos", "neg", None, "pos"]


def test_json_lines_saved_as_json(tmp_path: Path) -> None:
    path = _write(tmp_path / "d.json", "\n".join(json.dumps(r) for r in ROWS))
    assert read_table(path)[0] == [r["text"] for r in ROWS]


def test_txt_one_text_per_line(tmp_path: Path) -> None:
    path = _write(tmp_path / "d.txt", "first text\n  second text\n")
    assert read_table(path) == (["first text", "  second text"], [None, None])


def test_numeric_and_missing_labels(tmp_path: Path) -> None:
    rows = [{"text": "a", "label": 1.0}, {"text": "b", "label": None}, {"text": "c", "label": 2}]
    path = _frame_file(tmp_path, ".parquet", rows)
    assert read_table(path)[1] == ["1", None, "2"]
    path = _write(tmp_path / "d.csv", "text,label\na, 1 \nb,\nc,2\n")
    assert read_table(path)[1] == ["1", None, "2"]


def test_custom_columns_and_no_label_column(tmp_path: Path) -> None:
    path = _write(tmp_path / "d.csv", "body,y\nhello,x\n")
    assert read_table(path, text_column="body", label_column="y") == (["hello"], ["x"])
    assert read_table(path, text_column="body", label_column=None) == (["hello"], [None])
    assert read_table(path, text_column="body") == (["hello"], [None])


def test_utf8_bom_is_not_part_of_the_header(tmp_path: Path) -> None:
    path = _write(tmp_path / "d.csv", "\ufefftext,label\nhé,x\n".encode())
    assert read_table(path) == (["hé"], ["x"])


def test_csv_texts_keep_lone_carriage_returns_and_whitespace_rows(tmp_path: Path) -> None:
    # pandas writes a text's lone \r unquoted; it must not end the row. A whitespace-only line
    # of a one-column CSV is a row (an empty text), not skipped: row numbers stay aligned.
    pd.DataFrame({"text": ["one\rtwo", "three"], "label": ["a", "b"]}).to_csv(
        tmp_path / "cr.csv", index=False
    )
    assert read_table(tmp_path / "cr.csv") == (["one\rtwo", "three"], ["a", "b"])
    with pytest.raises(NanoNetError, match="data rows 2"):
        read_table(_write(tmp_path / "ws.csv", "text\na\n   \nb\n"))


def test_json_lines_keep_unicode_line_separators_and_exact_integers(tmp_path: Path) -> None:
    lines = ['{"text": "a\u2028b", "label": 9007199254740993}', '{"text": "c"}']
    path = _write(tmp_path / "d.jsonl", "\n".join(lines) + "\n")
    assert read_table(path) == (["a\u2028b", "c"], ["9007199254740993", None])


# --- readers: errors ----------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(NanoNetError, match="does not exist"):
        read_table(tmp_path / "nope.csv")


def test_unsupported_extension_lists_supported(tmp_path: Path) -> None:
    with pytest.raises(NanoNetError, match=r"\.xlsx.*\.csv.*\.parquet"):
        read_table(_write(tmp_path / "d.xlsx", "x"))


def test_unknown_text_column_names_columns_and_option(tmp_path: Path) -> None:
    path = _write(tmp_path / "d.csv", "body,label\nhi,x\n")
    with pytest.raises(NanoNetError, match=r"'text'.*'body', 'label'.*--text-column"):
        read_table(path)


def test_non_utf8_reports_position(tmp_path: Path) -> None:
    path = _write(tmp_path / "d.csv", b"text,label\ncaf\xe9,x\n")
    with pytest.raises(NanoNetError, match=r"UTF-8.*offset 14, line 2.*re-save") as err:
        read_table(path)
    assert "0xe9" in str(err.value)


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_empty_texts_counted_with_rows(tmp_path: Path, suffix: str) -> None:
    rows = [{"text": t, "label": "a"} for t in ["ok", "  ", "fine", "", "\t", "x", " ", " ", " "]]
    with pytest.raises(NanoNetError, match=r"has 6 empty.*rows 2, 4, 5, 7, 8, \.\.\..*remove") as e:
        read_table(_frame_file(tmp_path, suffix, rows))
    assert ", 9" not in str(e.value)


def test_blank_line_inside_txt_is_an_empty_text(tmp_path: Path) -> None:
    with pytest.raises(NanoNetError, match="rows 2"):
        read_table(_write(tmp_path / "d.txt", "one\n\nthree\n"))


@pytest.mark.parametrize("name", ["d.csv", "d.txt", "d.jsonl", "d.json"])
def test_empty_file(tmp_path: Path, name: str) -> None:
    with pytest.raises(NanoNetError, match="empty"):
        read_table(_write(tmp_path / name, " \n"))


def test_header_only_csv_has_no_rows(tmp_path: Path) -> None:
    with pytest.raises(NanoNetError, match="no data rows"):
        read_table(_write(tmp_path / "d.csv", "text,label\n"))


@pytest.mark.parametrize(
    ("content", "words"),
    [
        # pandas took the first field for an index and shifted every column one left.
        ("text,label\ngood film,pos,\n", "line 2 has 3 fields, the header 2"),
        ('text,label\n"unclosed,a\nb,c\n', "unexpected end of data"),
        ('text,label\n"a"b,c\n', "expected after"),
    ],
    ids=["trailing-separator", "unclosed-quote", "text-after-quote"],
)
def test_malformed_csv_is_refused_with_its_line(tmp_path: Path, content: str, words: str) -> None:
    with pytest.raises(NanoNetError, match=f"could not be parsed.*{words}.*check its quoting"):
        read_table(_write(tmp_path / "d.csv", content))


@pytest.mark.parametrize(
    ("content", "words"),
    [("[" * 100_000, "nested too deeply"), ('{"text": ' + "1" * 5000 + "}", "4300 digits")],
    ids=["deep-nesting", "huge-integer"],
)
def test_json_that_python_cannot_hold_is_a_user_error(
    tmp_path: Path, content: str, words: str
) -> None:
    with pytest.raises(NanoNetError, match=words):
        read_table(_write(tmp_path / "d.json", content))


def test_bad_json_line_is_named(tmp_path: Path) -> None:
    with pytest.raises(NanoNetError, match="line 2"):
        read_table(_write(tmp_path / "d.jsonl", '{"text": "a"}\n{"text": \n'))


def test_json_must_hold_records(tmp_path: Path) -> None:
    with pytest.raises(NanoNetError, match="record 1"):
        read_table(_write(tmp_path / "d.json", '["just a string"]'))


# --- training and unlabelled files --------------------------------------------------------------


def test_empty_labels_become_unlabelled(tmp_path: Path) -> None:
    texts, labels, unlabelled = read_training_file(_frame_file(tmp_path, ".csv"))
    assert texts == [ROWS[0]["text"], ROWS[1]["text"], "NA"]
    assert labels == ["pos", "neg", "pos"]
    assert unlabelled == ["  leading spaces stay"]


def test_training_file_needs_label_column(tmp_path: Path) -> None:
    path = _write(tmp_path / "d.csv", "text,y\nhi,x\n")
    with pytest.raises(NanoNetError, match=r"'label'.*'text', 'y'.*--label-column"):
        read_training_file(path)
    with pytest.raises(NanoNetError, match="plain text"):
        read_training_file(_write(tmp_path / "d.txt", "hi\n"))


def test_unlabelled_file_refuses_labels(tmp_path: Path) -> None:
    with pytest.raises(NanoNetError, match=r"contains labels in column 'label'.*--train"):
        read_unlabelled_file(_frame_file(tmp_path, ".csv"))


def test_unlabelled_file_accepts_empty_label_column(tmp_path: Path) -> None:
    path = _write(tmp_path / "d.csv", "text,label\na,\nb,\n")
    assert read_unlabelled_file(path) == ["a", "b"]
    assert read_unlabelled_file(_write(tmp_path / "d.txt", "a\nb\n")) == ["a", "b"]


# --- label budget -------------------------------------------------------------------------------

LABELS = ["b", "a", "c"] * 20


def test_budget_is_stratified_and_ordered_by_class() -> None:
    chosen, remaining = sample_budget(LABELS, 4, seed=0)
    assert [LABELS[i] for i in chosen] == ["a"] * 4 + ["b"] * 4 + ["c"] * 4
    assert sorted(chosen + remaining) == list(range(len(LABELS)))
    assert remaining == sorted(remaining)


def test_budget_deterministic_per_seed_and_differs_across_seeds() -> None:
    assert sample_budget(LABELS, 5, seed=3) == sample_budget(LABELS, 5, seed=3)
    assert sample_budget(LABELS, 5, seed=3)[0] != sample_budget(LABELS, 5, seed=4)[0]
    assert sample_budget([1, 0] * 10, 2, seed=0)[0] == sample_budget([1, 0] * 10, 2, seed=0)[0]


def test_budget_errors() -> None:
    with pytest.raises(NanoNetError, match="at least two classes"):
        sample_budget(["a"] * 10, 2, seed=0)
    with pytest.raises(NanoNetError, match=r"class 'c' has only 1.*--labels-per-class 1"):
        sample_budget(["a", "a", "b", "b", "c"], 2, seed=0)
    with pytest.raises(NanoNetError, match="at least 1"):
        sample_budget(LABELS, 0, seed=0)
    with pytest.raises(NanoNetError, match="seed"):
        sample_budget(LABELS, 1, seed=-1)


# --- task_from_files ----------------------------------------------------------------------------


def _train_rows(n_per_class: int = 6) -> list[dict]:
    rows = [
        {"text": f"{c} text {i}", "label": c} for c in ("pos", "neg") for i in range(n_per_class)
    ]
    rows += [{"text": "shared text", "label": ""}, {"text": "only unlabelled", "label": ""}]
    rows += [{"text": "in the test file", "label": ""}, {"text": "pos text 0 ", "label": ""}]
    return rows


def test_task_from_files_uses_all_labels_without_budget(tmp_path: Path) -> None:
    task = task_from_files(_frame_file(tmp_path, ".csv", _train_rows()))
    assert task.name == "custom"
    assert task.label_names == ["neg", "pos"]
    assert len(task.labelled_texts) == 12
    # "pos text 0 " duplicates a labelled text up to whitespace, so it leaves the pool.
    assert task.unlabelled_texts == ["shared text", "only unlabelled", "in the test file"]
    assert task.summary()["labelled_per_class"] == {"neg": 6, "pos": 6}


def test_task_from_files_budget_has_no_leakage(tmp_path: Path) -> None:
    train = _frame_file(tmp_path, ".csv", _train_rows())
    extra = _write(tmp_path / "pool.txt", "shared text\nfrom the pool file\nin the test file\n")
    test = _write(tmp_path / "test.jsonl", '{"text": "in the test file", "label": "pos"}\n')
    task = task_from_files(train, extra, labels_per_class=2, seed=1, test_path=test)
    assert task.summary() == {
        "name": "custom",
        "classes": 2,
        "labelled": 4,
        "labelled_per_class": {"neg": 2, "pos": 2},
        "unlabelled": len(task.unlabelled_texts),
        "test": 1,
        "max_length": 128,
    }
    pool = [t.strip() for t in task.unlabelled_texts]
    assert len(pool) == len(set(pool))
    assert not set(pool) & {t.strip() for t in task.labelled_texts + task.test_texts}
    # The 8 labelled rows not drawn join the pool, along with both unlabelled sources.
    assert len(pool) == 8 + len({"shared text", "only unlabelled", "from the pool file"})
    assert task.test_labels == [task.label_names.index("pos")]
    again = task_from_files(train, extra, labels_per_class=2, seed=1, test_path=test)
    assert again == task


def test_task_from_files_errors(tmp_path: Path) -> None:
    one_class = _frame_file(tmp_path, ".csv", [{"text": "a", "label": "x"}])
    with pytest.raises(NanoNetError, match="at least two classes"):
        task_from_files(one_class)
    train = _frame_file(tmp_path, ".jsonl", _train_rows())
    bad_test = _write(tmp_path / "t.csv", "text,label\nsomething,maybe\n")
    with pytest.raises(NanoNetError, match="'maybe'"):
        task_from_files(train, test_path=bad_test)
    leaky_test = _write(tmp_path / "t2.csv", "text,label\npos text 1,pos\n")
    with pytest.raises(NanoNetError, match="also labelled"):
        task_from_files(train, test_path=leaky_test)
    unlabelled_test = _write(tmp_path / "t3.csv", "text,label\nnew,pos\nnewer,\n")
    with pytest.raises(NanoNetError, match="every test row needs a label"):
        task_from_files(train, test_path=unlabelled_test)
    with pytest.raises(NanoNetError, match="class 'neg' has only 6"):
        task_from_files(train, labels_per_class=7)


def test_task_checks_label_ids() -> None:
    with pytest.raises(ValueError):
        Task("x", ["a", "b"], ["t"], [2], [])


# --- built-in datasets (real packaged data) -----------------------------------------------------


def test_unknown_builtin_lists_names() -> None:
    with pytest.raises(NanoNetError, match="rotten_tomatoes, bbc_news, 20newsgroups"):
        load_builtin_splits("imdb")


EXPECTED = {
    # name: (classes, test size or None for 20%, protocol pool cap or None, max_length)
    "rotten_tomatoes": (2, 2000, 5000, 128),
    "bbc_news": (5, None, None, 256),
    "20newsgroups": (20, 2000, 5000, 256),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", BUILTIN_DATASETS)
def test_builtin_splits(name: str) -> None:
    classes, test_size, cap, max_length = EXPECTED[name]
    splits = load_builtin_splits(name)
    assert splits is load_builtin_splits(name)  # cached
    assert len(splits.label_names) == classes
    n_total = len(splits.train_texts) + len(splits.test_texts)
    expected_test = test_size if test_size is not None else round(0.2 * n_total)
    assert len(splits.test_texts) == expected_test
    assert set(splits.test_labels) == set(range(classes))
    test_keys = {t.strip() for t in splits.test_texts}
    train_keys = {t.strip() for t in splits.train_texts}
    assert len(train_keys) == len(splits.train_texts)
    assert not test_keys & train_keys
    assert not test_keys & {t.strip() for t in splits.extra_unlabelled}

    tasks = [builtin_task(name, labels_per_class=10, seed=seed) for seed in (0, 1)]
    for task in tasks:
        assert task.test_texts == splits.test_texts
        assert task.max_length == max_length
        assert task.summary()["labelled_per_class"] == dict.fromkeys(splits.label_names, 10)
        pool_keys = {t.strip() for t in task.unlabelled_texts}
        assert len(pool_keys) == len(task.unlabelled_texts)
        assert not test_keys & pool_keys
        assert not test_keys & {t.strip() for t in task.labelled_texts}
        assert not pool_keys & {t.strip() for t in task.labelled_texts}
        remaining = len(splits.train_texts) - 10 * classes
        assert len(task.unlabelled_texts) == (remaining if cap is None else min(cap, remaining))
    assert tasks[0].labelled_texts != tasks[1].labelled_texts
    assert builtin_task(name, seed=0) == tasks[0]
    assert len(builtin_task(name, seed=0, max_unlabelled=100).unlabelled_texts) == 100


@pytest.mark.slow
def test_rotten_tomatoes_plot_rows_are_extra_only() -> None:
    splits = load_builtin_splits("rotten_tomatoes")
    assert len(splits.extra_unlabelled) > 1000
    task = builtin_task("rotten_tomatoes", seed=0, max_unlabelled=20000)
    assert not set(splits.extra_unlabelled) & set(task.unlabelled_texts)


def test_a_capped_pool_of_the_users_own_file_is_said_out_loud(
    synthetic_csv: tuple[Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    from nanonet.train.config import DataConfig
    from nanonet.train.run import load_task

    train, pool = synthetic_csv
    data = DataConfig(dataset=None, train_file=str(train), unlabeled_file=str(pool))
    data.max_unlabeled = 10
    with caplog.at_level("WARNING", logger="nanonet"):
        task = load_task(data)
    assert len(task.unlabelled_texts) == 10
    assert "data.max_unlabeled=null" in caplog.text and "of the" in caplog.text
    caplog.clear()
    data.max_unlabeled = None
    with caplog.at_level("WARNING", logger="nanonet"):
        assert len(load_task(data).unlabelled_texts) > 10
    assert "max_unlabeled" not in caplog.text
