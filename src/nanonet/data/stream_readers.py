"""One streaming reader per input format: CSV, TSV, JSON lines, JSON, Parquet, plain text.

Every read of a user file goes through :func:`iter_rows`: `nanonet predict` streams its texts
(:func:`iter_texts`) and :mod:`nanonet.data.readers` builds the whole-file reads of `train` and
`eval` on the same chunks, so a file is parsed one way and fails with one set of sentences.

What a row is, per format:

- CSV/TSV: a record of the file (a quoted text may span lines); the first record is the
  header. Empty lines are not records; a record with more fields than the header is refused.
  Values are the exact strings of the file: "NA", "null" and "007" stay texts.
- JSON lines (``.jsonl``, ``.ndjson``, or ``.json`` whose first line is an object): one object
  per line, blank lines skipped; a record without a key has no value there.
- JSON: one document, a list of objects (or one object); read whole, the only format that is.
- Parquet: a row; only the wanted columns are decoded, one batch at a time.
- Plain text (``.txt``): a line, without its ``\\n`` or ``\\r\\n``; it has no label column.

Lines end at ``\\n`` (or ``\\r\\n``) in every format; a lone ``\\r`` is part of a text, as
pandas writes it unquoted into CSV. A line number in a message counts ``\\n``. A UTF-8 BOM
is dropped. Texts are returned as stored, spaces included; a missing text is ``""``. Labels
are ``str(value).strip()``, ``None`` when missing or empty, and integral numbers read ``"1"``,
not ``"1.0"``.
"""

from __future__ import annotations

import csv
import itertools
import json
import math
import sys
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, TextIO

from nanonet.data.input_checks import (
    BLOCK,
    check_input_file,
    check_not_blank,
    missing_column,
    no_rows,
    utf8_errors,
)
from nanonet.errors import NanoNetError

# No limit on a field's length but memory: csv's default (128 KiB) would refuse long documents.
_FIELD_LIMIT = min(sys.maxsize, 2**31 - 1)
# Stands for a lone \r inside a CSV line: a lone surrogate, which decoded UTF-8 never holds.
_CR = "\ud800"


class Rows(NamedTuple):
    """A chunk of consecutive rows: their texts and labels (``None`` without a label)."""

    texts: list[str]
    labels: list[str | None]


@dataclass(frozen=True)
class _Columns:
    text: str
    label: str | None
    require_label: bool  # a file without the label column is an error, not unlabelled


RowChunks = Generator[Rows, None, None]


def iter_rows(
    path: str | Path,
    text_column: str = "text",
    label_column: str | None = None,
    *,
    require_label: bool = False,
    chunk_rows: int = 4096,
) -> RowChunks:
    """Yield the rows of ``path`` in chunks of at most ``chunk_rows``, reading as it goes.

    The file is checked on the call (exists, extension, not blank, its columns where the
    format names them up front), so a mistake surfaces before a model is loaded; problems
    further in (a bad JSON line, non-UTF-8 bytes) raise when that row is reached, and a file
    without rows raises at its end. JSON lines name their keys per record, so a text column
    that none of the first chunk's records has is unknown, and a required label column is
    missing when no record has it (known at the end). Empty texts are yielded as they are.
    """
    path = Path(path)
    if chunk_rows < 1:
        raise NanoNetError(f"chunk_rows must be at least 1, not {chunk_rows}.")
    suffix = check_input_file(path)
    if suffix != ".parquet":
        check_not_blank(path)
    columns = _Columns(text_column, label_column, require_label)
    with utf8_errors(path):
        chunks = _open(path, suffix, columns, chunk_rows)
    return _guarded(path, chunks)


def iter_texts(
    path: str | Path, text_column: str = "text", chunk_rows: int = 4096
) -> Generator[list[str], None, None]:
    """The texts of :func:`iter_rows`, a list per chunk; checks the file on the call."""
    rows = iter_rows(path, text_column, chunk_rows=chunk_rows)
    return _texts_of(rows)


def _texts_of(rows: RowChunks) -> Generator[list[str], None, None]:
    try:
        for chunk in rows:
            yield chunk.texts
    finally:
        rows.close()


def reads_whole(path: str | Path) -> bool:
    """True for the one format that is not streamed: a ``.json`` file holding one document."""
    path = Path(path)
    return path.suffix.lower() == ".json" and path.is_file() and not _looks_like_json_lines(path)


def count_rows(path: str | Path) -> int | None:
    """The number of rows :func:`iter_rows` yields, where that is cheap to know; else None.

    Parquet keeps it in its metadata; a ``.txt`` file has one text per ``\\n`` (a fast byte
    count). CSV (a quoted text may span lines) and JSON lines (blank lines are skipped) would
    need a full parse, so they give None: the progress bar then shows a count and a rate.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            with pq.ParquetFile(path) as parquet:
                return int(parquet.metadata.num_rows)
        except Exception:  # iter_rows reports a bad file in the user's words
            return None
    if suffix == ".txt" and path.is_file():
        count, last = 0, b"\n"
        with path.open("rb") as f:
            while block := f.read(BLOCK):
                count += block.count(b"\n")
                last = block[-1:]
        return count + (last != b"\n")  # a last line without a newline still counts
    return None


def _open(path: Path, suffix: str, columns: _Columns, chunk_rows: int) -> RowChunks:
    """Run the format's up-front checks now and return its (lazy) chunk generator."""
    if suffix == ".parquet":
        return _parquet_rows(path, columns.text, _parquet_label(path, columns), chunk_rows)
    if suffix in (".csv", ".tsv"):
        sep = "\t" if suffix == ".tsv" else ","
        header = _delimited_header(path, sep)
        return _delimited_rows(path, sep, _field_indices(path, header, columns), chunk_rows)
    if suffix == ".txt":
        if columns.require_label:
            raise missing_column(path, str(columns.label), [columns.text], "--label-column")
        return _txt_rows(path, chunk_rows)
    if suffix in (".jsonl", ".ndjson") or _looks_like_json_lines(path):
        return _record_rows(path, _json_lines(path), columns, chunk_rows)
    return _record_rows(path, _json_document(path), columns, chunk_rows)


def _guarded(path: Path, chunks: RowChunks) -> RowChunks:
    """Translate decoding errors into the user's words and refuse a file without rows."""
    rows = 0
    try:
        with utf8_errors(path):
            for chunk in chunks:
                if chunk.texts:
                    rows += len(chunk.texts)
                    yield chunk
    finally:
        chunks.close()  # close the file now, also when the caller stops early
    if rows == 0:
        raise no_rows(path)


def _chunked(items: Iterator[Any], size: int) -> Iterator[list[Any]]:
    while chunk := list(itertools.islice(items, size)):
        yield chunk


# --- values -------------------------------------------------------------------------------------
def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _as_text(value: Any) -> str:
    # Missing text reads as empty, so that whole-file reads report it with the empty rows.
    if _is_missing(value):
        return ""
    return value if isinstance(value, str) else str(value)


def _label(value: Any) -> str | None:
    if _is_missing(value):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # a float column (Parquet with nulls, JSON 1.0): 1.0 means "1"
    label = str(value).strip()
    return label or None


# --- plain text ---------------------------------------------------------------------------------
def _txt_rows(path: Path, chunk_rows: int) -> RowChunks:
    # newline="\n": a lone \r stays inside its text, so rows match count_rows' \n count.
    with path.open(encoding="utf-8-sig", newline="\n") as f:
        lines = (line.removesuffix("\n").removesuffix("\r") for line in f)
        for texts in _chunked(lines, chunk_rows):
            yield Rows(texts, [None] * len(texts))


# --- CSV / TSV ----------------------------------------------------------------------------------
def _csv_records(path: Path, f: TextIO, sep: str) -> Iterator[list[str]]:
    """Non-empty records, the header first; strict, so an unclosed or stray quote is an error,
    not a text that swallows the rest of the file, and so is a record wider than the header
    (pandas would silently take its first field for an index and shift every column)."""
    csv.field_size_limit(max(csv.field_size_limit(), _FIELD_LIMIT))
    reader = csv.reader(_csv_lines(f), delimiter=sep, strict=True)
    width = None
    try:
        for record in reader:
            if not record:
                continue
            if any(_CR in field for field in record):
                record = [field.replace(_CR, "\r") for field in record]
            if width is None:
                width = len(record)
            elif len(record) > width:
                raise _parse_error(
                    path, f"line {reader.line_num} has {len(record)} fields, the header {width}"
                )
            yield record
    except csv.Error as err:
        raise _parse_error(path, f"{err}, line {reader.line_num}") from None


def _csv_lines(f: TextIO) -> Iterator[str]:
    """The file's lines, ending at ``\\n`` only, every ``\\r`` but a line end's hidden as _CR.

    csv and pandas end a record at a lone ``\\r``, but pandas and csv.writer write a text's
    ``\\r`` unquoted, so reading such a file back would split that text into two rows.
    """
    for line in f:
        if "\r" in line:
            end = "\r\n" if line.endswith("\r\n") else ""
            line = line[: len(line) - len(end)].replace("\r", _CR) + end
        yield line


def _delimited_header(path: Path, sep: str) -> list[str]:
    with path.open(encoding="utf-8-sig", newline="\n") as f:
        return next(_csv_records(path, f, sep), [])


def _field_indices(path: Path, header: list[str], columns: _Columns) -> tuple[int, int | None]:
    """Where the text and label fields are; the first of duplicate names counts."""
    if columns.text not in header:
        raise missing_column(path, columns.text, header, "--text-column")
    label = columns.label if columns.label in header else None
    if label is None and columns.require_label:
        raise missing_column(path, str(columns.label), header, "--label-column")
    return header.index(columns.text), None if label is None else header.index(label)


def _delimited_rows(
    path: Path, sep: str, fields: tuple[int, int | None], chunk_rows: int
) -> RowChunks:
    text_at, label_at = fields
    with path.open(encoding="utf-8-sig", newline="\n") as f:
        records = _csv_records(path, f, sep)
        next(records)  # the header
        for chunk in _chunked(records, chunk_rows):
            # A short record (fewer fields than the header) has no value in the missing ones.
            texts = [r[text_at] if text_at < len(r) else "" for r in chunk]
            if label_at is None:
                yield Rows(texts, [None] * len(chunk))
            else:
                labels = [_label(r[label_at]) if label_at < len(r) else None for r in chunk]
                yield Rows(texts, labels)


def _parse_error(path: Path, detail: str) -> NanoNetError:
    return NanoNetError(f"{path} could not be parsed ({detail}); check its quoting and separators.")


# --- JSON lines / JSON --------------------------------------------------------------------------
def _json_lines(path: Path) -> Iterator[Any]:
    # newline="\n": a JSON line ends at \n only (a \r before it is JSON whitespace).
    with path.open(encoding="utf-8-sig", newline="\n") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue  # blank lines are not records
            try:
                yield json.loads(line)
            except (ValueError, RecursionError) as err:
                raise NanoNetError(
                    f"{path} line {number} is not valid JSON ({_json_reason(err)}); "
                    "fix or remove that line."
                ) from None


def _json_reason(err: ValueError | RecursionError) -> str:
    if isinstance(err, json.JSONDecodeError):
        return err.msg
    if isinstance(err, RecursionError):
        return "nested too deeply"
    return str(err).split(";")[0]  # e.g. an integer of more digits than Python converts


def _looks_like_json_lines(path: Path) -> bool:
    """For ``.json``: is the first non-blank line a whole JSON object (then: JSON lines)?"""
    # errors="replace": bad bytes are reported with their position by the real read.
    with path.open(encoding="utf-8-sig", errors="replace", newline="\n") as f:
        for line in f:
            if line.strip():
                try:
                    return isinstance(json.loads(line), dict)
                except (ValueError, RecursionError):
                    return False  # "[" or a pretty-printed object: one JSON document
    return False


def _json_document(path: Path) -> Iterator[Any]:
    # Lazy like the other formats, so that checking the input up front costs nothing here.
    # Read outside the try: a UnicodeDecodeError is a ValueError too, and _guarded words it.
    text = path.read_text(encoding="utf-8-sig")
    try:
        document = json.loads(text)
    except (ValueError, RecursionError) as err:
        if isinstance(err, json.JSONDecodeError) and err.msg == "Extra data":
            # Several JSON values one after another: a JSON lines file saved as .json.
            yield from _json_lines(path)
            return
        at = f" at line {err.lineno}" if isinstance(err, json.JSONDecodeError) else ""
        raise NanoNetError(
            f"{path} is not valid JSON ({_json_reason(err)}{at}); fix the file."
        ) from None
    if isinstance(document, dict):
        document = [document]
    if not isinstance(document, list):
        raise NanoNetError(f'{path} must hold a list of records like {{"text": ...}}.')
    yield from document


def _record_rows(
    path: Path, values: Iterator[Any], columns: _Columns, chunk_rows: int
) -> RowChunks:
    records = _objects(path, values)
    label = columns.label
    label_seen = False
    keys: dict[str, None] = {}  # every key so far, for the message of a missing label column
    for number, chunk in enumerate(_chunked(records, chunk_rows)):
        if number == 0 and not any(columns.text in r for r in chunk):
            raise missing_column(path, columns.text, list(_keys(chunk)), "--text-column")
        if columns.require_label and not label_seen:
            keys |= _keys(chunk)
            label_seen = any(label in r for r in chunk)
        texts = [_as_text(r.get(columns.text)) for r in chunk]
        labels = [None] * len(chunk) if label is None else [_label(r.get(label)) for r in chunk]
        yield Rows(texts, labels)
    if columns.require_label and not label_seen:
        raise missing_column(path, str(label), list(keys), "--label-column")


def _keys(records: list[dict[str, Any]]) -> dict[str, None]:
    return dict.fromkeys(k for r in records for k in r)


def _objects(path: Path, values: Iterator[Any]) -> Iterator[dict[str, Any]]:
    for number, value in enumerate(values, start=1):
        if not isinstance(value, dict):
            raise NanoNetError(
                f"{path} record {number} is not an object; write one object per record, "
                'like {"text": "...", "label": "..."}.'
            )
        yield value


# --- Parquet ------------------------------------------------------------------------------------
def _parquet_label(path: Path, columns: _Columns) -> str | None:
    """Check the schema now (the file is closed again); returns the label column to decode."""
    import pyarrow.parquet as pq

    try:
        with pq.ParquetFile(path) as parquet:
            names = list(parquet.schema_arrow.names)
    except Exception as err:  # pyarrow raises several unrelated types for a bad file
        raise _parquet_error(path, err) from None
    if columns.text not in names:
        raise missing_column(path, columns.text, names, "--text-column")
    if columns.label in names:
        return columns.label
    if columns.require_label:
        raise missing_column(path, str(columns.label), names, "--label-column")
    return None


def _parquet_rows(path: Path, text: str, label: str | None, chunk_rows: int) -> RowChunks:
    import pyarrow as pa
    import pyarrow.parquet as pq

    wanted = list(dict.fromkeys([text] if label is None else [text, label]))
    rows = 0
    try:
        with pq.ParquetFile(path) as parquet:
            # Only the wanted columns are decoded, one batch at a time.
            for batch in parquet.iter_batches(batch_size=chunk_rows, columns=wanted):
                rows += batch.num_rows
                texts = [_as_text(v) for v in batch.column(text).to_pylist()]
                if label is None:
                    yield Rows(texts, [None] * len(texts))
                else:
                    yield Rows(texts, [_label(v) for v in batch.column(label).to_pylist()])
            expected = parquet.metadata.num_rows
    except (pa.ArrowException, OSError) as err:
        raise _parquet_error(path, err) from None
    if rows != expected:  # a damaged footer; count_rows, which trusts it, would be wrong too
        raise NanoNetError(
            f"{path} could not be read as Parquet ({rows} rows where its metadata says "
            f"{expected}); check the file."
        )


def _parquet_error(path: Path, err: Exception) -> NanoNetError:
    return NanoNetError(
        f"{path} could not be read as Parquet ({type(err).__name__}); check the file."
    )
