"""Read user text files (CSV, TSV, JSON, JSON lines, Parquet, plain text) into texts and labels.

Every problem a user can cause raises :class:`~nanonet.errors.NanoNetError` with one sentence
saying what is wrong and what to do. Texts are returned exactly as stored in the file.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from nanonet.errors import NanoNetError

SUPPORTED_EXTENSIONS = (".csv", ".tsv", ".jsonl", ".ndjson", ".json", ".parquet", ".txt")

# How many offending row numbers to show in a message: enough to find them, short enough to read.
_SHOW_ROWS = 5


def read_table(
    path: str | Path, text_column: str = "text", label_column: str | None = "label"
) -> tuple[list[str], list[str | None]]:
    """Return ``(texts, labels)``; a label is ``None`` where the row has none.

    With ``label_column=None``, or a file without that column, every label is ``None``.
    Labels are ``str(value).strip()``; integral numbers become ``"1"``, not ``"1.0"``.
    """
    path = Path(path)
    frame = _read_frame(path, text_column)
    texts = _texts(frame, text_column, path)
    if label_column is None or label_column not in frame.columns:
        return texts, [None] * len(texts)
    return texts, [_label(v) for v in frame[label_column].tolist()]


def read_training_file(
    path: str | Path, text_column: str = "text", label_column: str = "label"
) -> tuple[list[str], list[str], list[str]]:
    """Return ``(labelled_texts, labels, unlabelled_texts)``; rows with an empty label are
    unlabelled."""
    path = Path(path)
    frame = _read_frame(path, text_column)
    if label_column not in frame.columns:
        raise NanoNetError(_missing_column_message(path, label_column, frame, "--label-column"))
    texts = _texts(frame, text_column, path)
    labelled_texts: list[str] = []
    labels: list[str] = []
    unlabelled: list[str] = []
    for text, raw in zip(texts, frame[label_column].tolist(), strict=True):
        label = _label(raw)
        if label is None:
            unlabelled.append(text)
        else:
            labelled_texts.append(text)
            labels.append(label)
    return labelled_texts, labels, unlabelled


def read_unlabelled_file(
    path: str | Path, text_column: str = "text", label_column: str = "label"
) -> list[str]:
    """Return the texts of a file that must carry no labels.

    A label column that is present but empty is tolerated (exports often keep it); a label
    column with values is refused, because silently ignoring labels would waste supervision.
    """
    path = Path(path)
    texts, labels = read_table(path, text_column, label_column)
    n_labelled = sum(label is not None for label in labels)
    if n_labelled:
        raise NanoNetError(
            f"{path} contains labels in column '{label_column}' ({n_labelled} rows); "
            "put labelled rows in --train, or drop the column."
        )
    return texts


# --- file formats -------------------------------------------------------------------------------


def check_input_file(path: Path) -> str:
    """The file exists and has a format we read; returns its lower-case extension."""
    if not path.is_file():
        raise NanoNetError(f"{path} does not exist or is not a file; check the path.")
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_EXTENSIONS:
        raise NanoNetError(
            f"{path} has an unsupported extension '{suffix}'; "
            f"use one of {', '.join(SUPPORTED_EXTENSIONS)}."
        )
    return suffix


def _read_frame(path: Path, text_column: str) -> pd.DataFrame:
    """Parse ``path`` into a DataFrame of object columns (``.txt`` gives one column)."""
    suffix = check_input_file(path)
    if suffix == ".parquet":
        frame = _read_parquet(path)
    else:
        text = _decode(path)
        if not text.strip():
            raise NanoNetError(f"{path} is empty; give a file with at least one text.")
        frame = _parse_text(path, suffix, text, text_column)
    if len(frame) == 0:
        raise NanoNetError(f"{path} has no data rows; give a file with at least one text.")
    return frame


def _decode(path: Path) -> str:
    raw = path.read_bytes()
    try:
        # utf-8-sig so a BOM written by Excel does not end up in the first column's name.
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise NanoNetError(
            f"{path} is not valid UTF-8 (byte 0x{raw[err.start]:02x} at byte offset {err.start}, "
            f"line {line}); re-save the file as UTF-8."
        ) from None


def _parse_text(path: Path, suffix: str, text: str, text_column: str) -> pd.DataFrame:
    if suffix == ".txt":
        # The column name is whatever the caller asked for, so --text-column never fails here.
        return pd.DataFrame({text_column: text.splitlines()}, dtype=object)
    if suffix in (".csv", ".tsv"):
        return _read_delimited(path, text, "\t" if suffix == ".tsv" else ",")
    if suffix in (".jsonl", ".ndjson"):
        return _records_frame(path, _json_lines(path, text))
    return _records_frame(path, _json_document(path, text))


def _read_delimited(path: Path, text: str, sep: str) -> pd.DataFrame:
    try:
        # dtype=str + keep_default_na=False: a review reading "NA" or "null" stays a text,
        # and numeric-looking texts keep their exact spelling.
        return pd.read_csv(io.StringIO(text), sep=sep, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        detail = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise NanoNetError(
            f"{path} could not be parsed ({detail}); check its quoting and separators."
        ) from None


def _json_lines(path: Path, text: str) -> list[Any]:
    records = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as err:
            raise NanoNetError(
                f"{path} line {number} is not valid JSON ({err.msg}); fix or remove that line."
            ) from None
    return records


def _json_document(path: Path, text: str) -> list[Any]:
    try:
        document = json.loads(text)
    except json.JSONDecodeError as err:
        if err.msg == "Extra data":
            # Several JSON values one after another: a JSON lines file saved as .json.
            return _json_lines(path, text)
        raise NanoNetError(
            f"{path} is not valid JSON ({err.msg} at line {err.lineno}); fix the file."
        ) from None
    if isinstance(document, dict):
        return [document]
    if not isinstance(document, list):
        raise NanoNetError(f'{path} must hold a list of records like {{"text": ...}}.')
    return document


def _records_frame(path: Path, records: list[Any]) -> pd.DataFrame:
    for number, record in enumerate(records, start=1):
        if not isinstance(record, dict):
            raise NanoNetError(
                f"{path} record {number} is not an object; write one object per record, "
                'like {"text": "...", "label": "..."}.'
            )
    return pd.DataFrame.from_records(records).astype(object)


def _read_parquet(path: Path) -> pd.DataFrame:
    try:
        return pd.read_parquet(path).astype(object)
    except Exception as err:  # pyarrow raises several unrelated types for a bad file
        raise NanoNetError(
            f"{path} could not be read as Parquet ({type(err).__name__}); check the file."
        ) from None


# --- columns ------------------------------------------------------------------------------------


def _missing_column_message(path: Path, column: str, frame: pd.DataFrame, option: str) -> str:
    if path.suffix.lower() == ".txt":
        return (
            f"{path} is plain text with one text per line and no column '{column}'; "
            "use a CSV, TSV, JSON or Parquet file to give labels."
        )
    existing = ", ".join(repr(str(c)) for c in frame.columns)
    return f"{path} has no column '{column}' (columns: {existing}); choose one with {option}."


def _texts(frame: pd.DataFrame, text_column: str, path: Path) -> list[str]:
    if text_column not in frame.columns:
        raise NanoNetError(_missing_column_message(path, text_column, frame, "--text-column"))
    texts = [_as_text(v) for v in frame[text_column].tolist()]
    empty = [row for row, text in enumerate(texts, start=1) if not text.strip()]
    if empty:
        shown = ", ".join(map(str, empty[:_SHOW_ROWS])) + (
            ", ..." if len(empty) > _SHOW_ROWS else ""
        )
        raise NanoNetError(
            f"{path} has {len(empty)} empty or whitespace-only texts in column '{text_column}' "
            f"(data rows {shown}, counting from 1); remove those rows."
        )
    return texts


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA


def _as_text(value: Any) -> str:
    # Missing text reads as empty so that it is reported with the empty rows.
    if _is_missing(value):
        return ""
    return value if isinstance(value, str) else str(value)


def _label(value: Any) -> str | None:
    if _is_missing(value):
        return None
    # A label column with a missing value is float in pandas/Parquet: 1.0 must still mean "1".
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    label = str(value).strip()
    return label or None
