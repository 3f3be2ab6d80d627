"""Property-based tests of the readers: any input is either read correctly or refused with
exactly one NanoNetError (never another exception), and the streamed read agrees with the
whole-file read on every input both accept."""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from fuzzing import FUZZ, TEXT, one_sentence
from nanonet.data.readers import read_table, read_training_file
from nanonet.data.stream_readers import count_rows, iter_texts
from nanonet.errors import NanoNetError

# One field in twenty is huge (200k characters), past csv's default field limit of 128 KiB.
_huge = st.sampled_from(["x", "é", "a b", '"', "\n"]).map(lambda s: s * 200_000)
TEXTS = st.integers(0, 19).flatmap(lambda i: _huge if i == 0 else TEXT)
_ints = st.integers(-(2**63), 2**63 - 1)  # Parquet's int64: 2**53 + 1 is not a float
LABELS = st.one_of(
    st.lists(st.one_of(st.none(), TEXT), min_size=8, max_size=8),
    st.lists(st.one_of(st.none(), _ints), min_size=8, max_size=8),
)
FLOAT_LABELS = st.lists(st.one_of(st.none(), st.floats()), min_size=8, max_size=8)


def _expected_label(value: Any) -> str | None:
    """The readers' contract for labels (module docstring of stream_readers)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip() or None


@pytest.fixture(scope="module")
def folder() -> Iterator[Path]:
    # One folder for all examples: hypothesis runs many per test, tmp_path is per test.
    with tempfile.TemporaryDirectory() as name:
        yield Path(name)


# ---------------------------------------------------------------------------- writers --------
def _label_series(labels: list[Any]) -> pd.Series:
    if all(v is None or isinstance(v, int) for v in labels):
        return pd.Series(labels, dtype="Int64")  # nullable: ints stay ints next to missing ones
    if all(v is None or isinstance(v, float) for v in labels):
        return pd.Series(labels, dtype="float64")
    return pd.Series(labels, dtype=object)


def _frame(texts: list[str], labels: list[Any]) -> pd.DataFrame:
    return pd.DataFrame({"text": pd.Series(texts, dtype=object), "label": _label_series(labels)})


def _write_delimited(path: Path, texts: list[str], labels: list[Any], draw: Any) -> None:
    _frame(texts, labels).to_csv(
        path,
        index=False,
        sep="\t" if path.suffix == ".tsv" else ",",
        lineterminator=draw(st.sampled_from(["\n", "\r\n"])),
        encoding=draw(st.sampled_from(["utf-8", "utf-8-sig"])),
    )


def _records(texts: list[str], labels: list[Any], draw: Any) -> list[dict[str, Any]]:
    omit = draw(st.booleans())  # a missing label as an absent key or as null
    return [
        {"text": t} if label is None and omit else {"text": t, "label": label}
        for t, label in zip(texts, labels, strict=False)
    ]


def _write_jsonl(path: Path, texts: list[str], labels: list[Any], draw: Any) -> None:
    ascii_only = draw(st.booleans())
    lines = [json.dumps(r, ensure_ascii=ascii_only) for r in _records(texts, labels, draw)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _write_json(path: Path, texts: list[str], labels: list[Any], draw: Any) -> None:
    records = _records(texts, labels, draw)
    path.write_text(json.dumps(records, ensure_ascii=draw(st.booleans())), encoding="utf-8")


def _write_parquet(path: Path, texts: list[str], labels: list[Any], draw: Any) -> None:
    _frame(texts, labels).to_parquet(path)


WRITERS: dict[str, Callable[[Path, list[str], list[Any], Any], None]] = {
    ".csv": _write_delimited,
    ".tsv": _write_delimited,
    ".jsonl": _write_jsonl,
    ".json": _write_json,
    ".parquet": _write_parquet,
}


def _read_both(path: Path, chunk_rows: int) -> tuple[Any, Any]:
    """(whole-file result or its NanoNetError, streamed texts or their NanoNetError); any
    other exception fails the test."""
    outcomes = []
    for read in (lambda: read_table(path), lambda: _streamed(path, chunk_rows)):
        try:
            outcomes.append(read())
        except NanoNetError as err:
            one_sentence(err)
            outcomes.append(err)
    return outcomes[0], outcomes[1]


def _streamed(path: Path, chunk_rows: int) -> list[str]:
    return [t for chunk in iter_texts(path, chunk_rows=chunk_rows) for t in chunk]


def _check_agreement(path: Path, whole: Any, streamed: Any) -> None:
    if not isinstance(whole, NanoNetError):
        assert streamed == whole[0], "the stream read other texts than the whole-file read"
    if not isinstance(streamed, NanoNetError):
        rows = count_rows(path)
        assert rows is None or rows == len(streamed)


# ---------------------------------------------------------------------------- round trips ----
@FUZZ
@given(
    data=st.data(),
    suffix=st.sampled_from(sorted(WRITERS)),
    texts=st.lists(TEXTS, min_size=1, max_size=8),
    chunk_rows=st.integers(1, 4),
)
def test_a_written_frame_reads_back_or_is_refused(
    folder: Path, data: st.DataObject, suffix: str, texts: list[str], chunk_rows: int
) -> None:
    labels = data.draw(
        st.one_of(LABELS, FLOAT_LABELS) if suffix in (".json", ".jsonl", ".parquet") else LABELS
    )
    path = folder / f"frame{suffix}"
    WRITERS[suffix](path, texts, labels[: len(texts)], data.draw)
    whole, streamed = _read_both(path, chunk_rows)
    if any(not t.strip() for t in texts):
        assert isinstance(whole, NanoNetError), "an empty text was not refused"
        assert "empty or whitespace-only" in str(whole)
    else:
        assert whole == (texts, [_expected_label(v) for v in labels[: len(texts)]])
    _check_agreement(path, whole, streamed)


@FUZZ
@given(
    texts=st.lists(TEXTS.filter(lambda t: "\n" not in t and not t.endswith("\r")), min_size=1),
    newline=st.sampled_from(["\n", "\r\n"]),
    final_newline=st.booleans(),
    bom=st.booleans(),
    chunk_rows=st.integers(1, 4),
)
def test_a_written_txt_reads_back_or_is_refused(
    folder: Path, texts: list[str], newline: str, final_newline: bool, bom: bool, chunk_rows: int
) -> None:
    path = folder / "lines.txt"
    # A first text that starts with U+FEFF needs a BOM before it, or it reads as one.
    encoding = "utf-8-sig" if bom or texts[0].startswith("\ufeff") else "utf-8"
    # A last empty text is only there when a newline ends the line before it.
    body = newline.join(texts) + (newline if final_newline or not texts[-1] else "")
    path.write_bytes(body.encode(encoding))
    whole, streamed = _read_both(path, chunk_rows)
    if any(not t.strip() for t in texts):
        assert isinstance(whole, NanoNetError)
    else:
        assert whole == (texts, [None] * len(texts))
    _check_agreement(path, whole, streamed)


# ---------------------------------------------------------------------------- any bytes ------
# Format syntax, line ends, quotes, BOMs and invalid UTF-8, glued in any order.
TOKENS = [
    b"text",
    b"label",
    b'"text"',
    b'"label"',
    b",",
    b"\t",
    b'"',
    b"\n",
    b"\r\n",
    b"\r",
    b"\x00",
    b"\xef\xbb\xbf",
    b"\xff",
    b"\xc3",
    "é".encode(),
    b" ",
    b"{",
    b"}",
    b"[",
    b"]",
    b":",
    b"1",
    b"1.0",
    b"null",
    b"NaN",
    b"a",
]
CONTENT = st.lists(st.one_of(st.sampled_from(TOKENS), st.binary(max_size=3)), max_size=40).map(
    b"".join
)
SUFFIXES = [".csv", ".tsv", ".jsonl", ".json", ".txt"]


@FUZZ
@given(suffix=st.sampled_from(SUFFIXES), content=CONTENT, chunk_rows=st.integers(1, 3))
@example(suffix=".jsonl", content=b'{"text": "a", "label": ' + b"1" * 5000 + b"}", chunk_rows=1)
@example(suffix=".json", content=b"[" * 100_000, chunk_rows=1)
@example(suffix=".csv", content=b'text,label\n"unclosed,a\nb,c\n', chunk_rows=1)
@example(suffix=".csv", content=b"text,label\ngood film,pos,\n", chunk_rows=1)
@example(suffix=".jsonl", content=b'{"text": "a\xe2\x80\xa8b"}\n', chunk_rows=1)
def test_any_bytes_read_or_fail_with_one_nanonet_error(
    folder: Path, suffix: str, content: bytes, chunk_rows: int
) -> None:
    path = folder / f"any{suffix}"
    path.write_bytes(content)
    whole, streamed = _read_both(path, chunk_rows)
    _check_agreement(path, whole, streamed)
    try:
        read_training_file(path)
    except NanoNetError as err:
        one_sentence(err)


@FUZZ
@given(
    texts=st.lists(TEXT, min_size=1, max_size=5),
    flips=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(1, 255)), max_size=4),
)
# Found by this test: a flipped bit in the footer made its row count -3 for 2 readable rows.
@example(
    texts=["\x80\x80\x80\x80\U00010000" + "00", "\x80\x80\x80\x80\U00010000" + "0"],
    flips=[(0.0873, 1)],
)
def test_a_damaged_parquet_file_reads_or_fails_with_one_nanonet_error(
    folder: Path, texts: list[str], flips: list[tuple[float, int]]
) -> None:
    path = folder / "damaged.parquet"
    pd.DataFrame({"text": texts}).to_parquet(path)
    data = bytearray(path.read_bytes())
    for where, mask in flips:
        data[int(where * len(data))] ^= mask
    path.write_bytes(bytes(data))
    whole, streamed = _read_both(path, 2)
    _check_agreement(path, whole, streamed)
