"""Streaming prediction: label files of any size in constant memory, resumably.

The input is read in chunks of rows (CSV/TSV, JSON lines, Parquet, plain text one per line);
each chunk is predicted and appended to the output, which is flushed after every chunk. The
output carries a 0-based ``row`` column (the input row a prediction belongs to), so a run that
was stopped can continue where it stopped (``resume=True``) and anyone can check the pairing.

Memory is bounded by ``chunk_rows`` texts plus the model, never by the size of the input.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import io
import itertools
import json
import logging
import time
from collections.abc import Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

# The private helpers are shared on purpose: a streamed file must fail with the same words as
# a file read whole by `nanonet train`/`eval`.
from nanonet.data.readers import (
    _SHOW_ROWS,
    _as_text,
    _missing_column_message,
    _read_frame,
    check_input_file,
)
from nanonet.errors import NanoNetError

if TYPE_CHECKING:
    import pyarrow.parquet as pq

    from nanonet.models.classifier import NanoNetClassifier

log = logging.getLogger(__name__)

OUTPUT_EXTENSIONS = (".csv", ".jsonl")
# Bytes read at a time when scanning a whole file (blank check, line count, UTF-8 check).
_BLOCK = 1 << 20


class StreamInterrupted(KeyboardInterrupt):
    """Ctrl-C during :func:`predict_stream`; the output holds ``rows`` complete rows.

    A KeyboardInterrupt still, so code that does not know this class behaves as before.
    """

    def __init__(self, rows: int, output: Path) -> None:
        super().__init__(f"interrupted after {rows} rows")
        self.rows = rows
        self.output = output


# ---------------------------------------------------------------------------- reading --------
def iter_texts(
    path: str | Path, text_column: str = "text", chunk_rows: int = 4096
) -> Iterator[list[str]]:
    """Yield the texts of ``path`` in lists of at most ``chunk_rows``, reading as it goes.

    The file is checked on the call (exists, extension, not blank, the text column where the
    format names its columns up front), so a mistake surfaces before a model is loaded;
    problems further in (a bad JSON line, non-UTF-8 bytes) raise when that row is reached.
    Missing, empty or whitespace-only texts are yielded as they are (missing as ``""``):
    failing at row 900,000 of a stream would waste the work before it.
    A ``.json`` file holding one JSON document (not JSON lines) is read whole, and its column
    checked, when reading starts.
    """
    path = Path(path)
    if chunk_rows < 1:
        raise NanoNetError(f"chunk_rows must be at least 1, not {chunk_rows}.")
    suffix = _check_input(path)
    with _utf8_errors(path):
        chunks = _open_chunks(path, suffix, text_column, chunk_rows)
    return _guarded(path, chunks)


def _open_chunks(
    path: Path, suffix: str, text_column: str, chunk_rows: int
) -> Generator[list[str], None, None]:
    """Run the format's up-front checks now and return its (lazy) chunk generator."""
    if suffix == ".parquet":
        parquet = _open_parquet(path, text_column)
        return _parquet_chunks(path, parquet, text_column, chunk_rows)
    if suffix in (".csv", ".tsv"):
        sep = "\t" if suffix == ".tsv" else ","
        _check_column(path, text_column, _delimited_columns(path, sep))
        return _delimited_chunks(path, sep, text_column, chunk_rows)
    if suffix == ".txt":
        return _chunked(_txt_lines(path), chunk_rows)
    if suffix in (".jsonl", ".ndjson") or _looks_like_json_lines(path):
        return _jsonl_chunks(path, text_column, chunk_rows)
    return _json_document_chunks(path, text_column, chunk_rows)


def _guarded(
    path: Path, chunks: Generator[list[str], None, None]
) -> Generator[list[str], None, None]:
    """Translate decoding errors into the user's words and refuse a file without rows."""
    rows = 0
    try:
        with _utf8_errors(path):
            for chunk in chunks:
                if chunk:
                    rows += len(chunk)
                    yield chunk
    finally:
        chunks.close()  # close the file now, also when the caller stops early
    if rows == 0:
        raise NanoNetError(f"{path} has no data rows; give a file with at least one text.")


def _check_input(path: Path) -> str:
    # The same checks and words as readers._read_frame, without reading the whole file.
    suffix = check_input_file(path)
    if suffix != ".parquet" and _is_blank(path):
        raise NanoNetError(f"{path} is empty; give a file with at least one text.")
    return suffix


def _is_blank(path: Path) -> bool:
    """True when the file holds nothing but ASCII whitespace (and maybe a BOM)."""
    with path.open("rb") as f:
        # Small blocks: the first one almost always decides, and this runs on every call.
        block = f.read(1 << 16).removeprefix(codecs.BOM_UTF8)
        while block:
            if block.strip():
                return False
            block = f.read(1 << 16)
    return True


def _check_column(path: Path, column: str, columns: Sequence[str]) -> None:
    if column not in columns:
        # readers' message takes a frame; an empty one with these columns is enough.
        frame = pd.DataFrame(columns=list(columns))
        raise NanoNetError(_missing_column_message(path, column, frame, "--text-column"))


def _chunked(items: Iterator[str], size: int) -> Generator[list[str], None, None]:
    while chunk := list(itertools.islice(items, size)):
        yield chunk


# --- plain text ---------------------------------------------------------------------------------
def _txt_lines(path: Path) -> Iterator[str]:
    # Universal newlines (\n, \r\n, \r) as in readers.py; only the newline itself is removed,
    # so a text keeps its own leading and trailing spaces. utf-8-sig drops an Excel BOM.
    with path.open(encoding="utf-8-sig", newline=None) as f:
        for line in f:
            yield line[:-1] if line.endswith("\n") else line


# --- CSV / TSV ----------------------------------------------------------------------------------
def _delimited_columns(path: Path, sep: str) -> list[str]:
    try:
        header = pd.read_csv(path, sep=sep, nrows=0, dtype=str, encoding="utf-8-sig")
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise _parse_error(path, err) from None
    return [str(c) for c in header.columns]


def _delimited_chunks(
    path: Path, sep: str, text_column: str, chunk_rows: int
) -> Generator[list[str], None, None]:
    # dtype=str + keep_default_na=False as in readers.py: "NA" or "null" stays a text.
    # usecols: the other columns of a wide file are never held in memory.
    reader = pd.read_csv(
        path,
        sep=sep,
        usecols=[text_column],
        dtype=str,
        keep_default_na=False,
        encoding="utf-8-sig",
        chunksize=chunk_rows,
    )
    with reader:
        try:
            for frame in reader:
                yield [_as_text(v) for v in frame[text_column].tolist()]
        except pd.errors.ParserError as err:
            raise _parse_error(path, err) from None


def _parse_error(path: Path, err: Exception) -> NanoNetError:
    detail = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return NanoNetError(f"{path} could not be parsed ({detail}); check its quoting and separators.")


# --- JSON lines / JSON --------------------------------------------------------------------------
def _json_records(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8-sig") as f:
        records = 0
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue  # blank lines are not records, as in readers.py
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise NanoNetError(
                    f"{path} line {number} is not valid JSON ({err.msg}); fix or remove that line."
                ) from None
            records += 1
            if not isinstance(record, dict):
                raise NanoNetError(
                    f"{path} record {records} is not an object; write one object per record, "
                    'like {"text": "...", "label": "..."}.'
                )
            yield record


def _jsonl_chunks(
    path: Path, text_column: str, chunk_rows: int
) -> Generator[list[str], None, None]:
    records = _json_records(path)
    first = True
    while chunk := list(itertools.islice(records, chunk_rows)):
        # Records need not all carry every key, so the column is "unknown" only when none of
        # the first chunk has it; a later record without it is a missing (empty) text.
        if first and not any(text_column in r for r in chunk):
            _check_column(path, text_column, list(dict.fromkeys(k for r in chunk for k in r)))
        first = False
        yield [_as_text(r.get(text_column)) for r in chunk]


def _looks_like_json_lines(path: Path) -> bool:
    """For ``.json``: is the first non-blank line a whole JSON object (then: JSON lines)?"""
    # errors="replace": bad bytes are reported with their position by the real read.
    with path.open(encoding="utf-8-sig", errors="replace") as f:
        for line in f:
            if line.strip():
                try:
                    return isinstance(json.loads(line), dict)
                except json.JSONDecodeError:
                    return False  # "[" or a pretty-printed object: one JSON document
    return False


def _json_document_chunks(
    path: Path, text_column: str, chunk_rows: int
) -> Generator[list[str], None, None]:
    # Lazy like the other formats, so that checking the input up front costs nothing here.
    log.warning(
        "%s is one JSON document and is read whole; save it as JSON lines (.jsonl) to stream "
        "it in constant memory.",
        path,
    )
    frame = _read_frame(path, text_column)
    _check_column(path, text_column, [str(c) for c in frame.columns])
    texts = [_as_text(v) for v in frame[text_column].tolist()]
    del frame
    yield from _chunked(iter(texts), chunk_rows)


# --- Parquet ------------------------------------------------------------------------------------
def _open_parquet(path: Path, text_column: str) -> pq.ParquetFile:
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except Exception as err:  # pyarrow raises several unrelated types for a bad file
        raise NanoNetError(
            f"{path} could not be read as Parquet ({type(err).__name__}); check the file."
        ) from None
    _check_column(path, text_column, parquet.schema_arrow.names)
    return parquet


def _parquet_chunks(
    path: Path, parquet: pq.ParquetFile, text_column: str, chunk_rows: int
) -> Generator[list[str], None, None]:
    import pyarrow as pa

    with parquet:
        try:
            # Only the text column is decoded, one batch at a time.
            for batch in parquet.iter_batches(batch_size=chunk_rows, columns=[text_column]):
                yield [_as_text(v) for v in batch.column(0).to_pylist()]
        except (pa.ArrowException, OSError) as err:
            raise NanoNetError(
                f"{path} could not be read as Parquet ({type(err).__name__}); check the file."
            ) from None


# --- encoding errors ----------------------------------------------------------------------------
@contextlib.contextmanager
def _utf8_errors(path: Path) -> Iterator[None]:
    try:
        yield
    except UnicodeDecodeError:
        # The decoder's offsets are relative to some buffer; find the real place in the file.
        raise _utf8_error(path) from None


def _utf8_error(path: Path) -> NanoNetError:
    """The first invalid UTF-8 byte of ``path`` in readers.py's words, found in O(1) memory."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    consumed = 0  # bytes handed to the decoder before this block
    lines = 1
    with path.open("rb") as f:
        while True:
            block = f.read(_BLOCK)
            pending = len(decoder.getstate()[0])  # an unfinished character from the last block
            try:
                decoder.decode(block, final=not block)
            except UnicodeDecodeError as err:
                offset = consumed - pending + err.start
                line = lines + err.object[: err.start].count(b"\n")
                return NanoNetError(
                    f"{path} is not valid UTF-8 (byte 0x{err.object[err.start]:02x} at byte "
                    f"offset {offset}, line {line}); re-save the file as UTF-8."
                )
            if not block:
                break
            consumed += len(block)
            lines += block.count(b"\n")
    return NanoNetError(f"{path} is not valid UTF-8; re-save the file as UTF-8.")


# ---------------------------------------------------------------------------- counting -------
def count_rows(path: str | Path) -> int | None:
    """The number of texts :func:`iter_texts` yields, where that is cheap to know; else None.

    Parquet keeps it in its metadata; a ``.txt`` file has one text per line (a fast byte
    count). CSV (a quoted text may span lines) and JSON lines (blank lines are skipped) would
    need a full parse, so they give None: the progress bar then shows a count and a rate.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            return int(pq.ParquetFile(path).metadata.num_rows)
        except Exception:  # iter_texts reports a bad file in the user's words
            return None
    if suffix == ".txt" and path.is_file():
        return _count_lines(path)
    return None


def _count_lines(path: Path) -> int:
    """Lines as a text reader sees them: a last line without a newline still counts."""
    count, last = 0, b"\n"
    with path.open("rb") as f:
        while block := f.read(_BLOCK):
            count += block.count(b"\n")
            last = block[-1:]
    return count + (last != b"\n")


# ---------------------------------------------------------------------------- output ---------
def output_columns(label_names: Sequence[str]) -> list[str]:
    """The output's columns (CSV header, JSON keys): row, label, prob_<name>..."""
    return ["row", "label", *(f"prob_{name}" for name in label_names)]


def resume_point(output: str | Path, columns: Sequence[str]) -> int:
    """How many prediction rows ``output`` holds, after cutting off a partial last line.

    Raises NanoNetError when the file was not written by `nanonet predict` with these columns
    (another model, another program), or when its rows are not 0..n-1; such a file is left
    as it is.
    """
    output = Path(output)
    jsonl = output.suffix.lower() == ".jsonl"
    with output.open("r+b") as f:
        size = f.seek(0, io.SEEK_END)
        end = _rfind_newline(f, size) + 1  # just after the last complete line
        if end == 0:
            _check_partial_first_line(output, _read_line(f, 0), columns, jsonl)
        else:
            _check_first_line(output, _read_line(f, 0), columns, jsonl)
        last_start = _rfind_newline(f, end - 1) + 1 if end else 0
        if end and (jsonl or last_start > 0):  # some row, not only the CSV header
            done = _row_of(output, _read_line(f, last_start), columns, jsonl) + 1
            lines = _count_lines_upto(f, end) - (0 if jsonl else 1)
            if lines != done:
                raise NanoNetError(
                    f"{output} has {lines} rows but its last row is number {done - 1}; it is "
                    "not one uninterrupted output of `nanonet predict`. Pass --overwrite to "
                    "start over."
                )
        else:
            done = 0
        if end < size:
            # A write cut short (a crash, a kill -9): the line is redone on this run.
            log.info("dropping a partial last line (%d bytes) of %s", size - end, output)
            f.truncate(end)
    return done


def _rfind_newline(f: BinaryIO, end: int) -> int:
    """Offset of the last newline before ``end``, or -1; reads backwards in blocks."""
    pos = end
    while pos > 0:
        step = min(1 << 16, pos)
        f.seek(pos - step)
        newline = f.read(step).rfind(b"\n")
        if newline >= 0:
            return pos - step + newline
        pos -= step
    return -1


def _read_line(f: BinaryIO, start: int) -> bytes:
    f.seek(start)
    return f.readline(1 << 20)


def _count_lines_upto(f: BinaryIO, end: int) -> int:
    f.seek(0)
    count, left = 0, end
    while left > 0 and (block := f.read(min(_BLOCK, left))):
        count += block.count(b"\n")
        left -= len(block)
    return count


def _check_first_line(output: Path, line: bytes, columns: Sequence[str], jsonl: bool) -> None:
    try:
        text = line.decode("utf-8")
        found = list(json.loads(text)) if jsonl else next(csv.reader([text]))
    except (UnicodeDecodeError, json.JSONDecodeError, TypeError, csv.Error, StopIteration):
        found = None
    if found != list(columns):
        shown = ", ".join(found) if isinstance(found, list) else "unreadable"
        raise NanoNetError(
            f"{output} has the columns ({shown}) but this model writes ({', '.join(columns)}); "
            "it comes from another model or program. Pass --overwrite to start over, or "
            "choose another --output."
        )


def _check_partial_first_line(
    output: Path, line: bytes, columns: Sequence[str], jsonl: bool
) -> None:
    """A file without any newline: fine if empty or a cut-off start of what we write."""
    ours = b'{"row"' if jsonl else _csv_line(columns).encode("utf-8")
    if line and not (line.startswith(ours) or ours.startswith(line)):
        _check_first_line(output, line, columns, jsonl)  # raises, naming what it found


def _csv_line(fields: Sequence[Any]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(fields)
    return buffer.getvalue()


def _row_of(output: Path, line: bytes, columns: Sequence[str], jsonl: bool) -> int:
    try:
        text = line.decode("utf-8")
        if jsonl:
            record = json.loads(text)
            row = record["row"] if len(record) == len(columns) else None
        else:
            fields = next(csv.reader([text]))
            row = int(fields[0]) if len(fields) == len(columns) else None
    except (UnicodeDecodeError, json.JSONDecodeError, TypeError, KeyError, ValueError):
        row = None
    if not isinstance(row, int) or row < 0:
        raise NanoNetError(
            f"The last line of {output} is not a prediction row; pass --overwrite to start over."
        )
    return row


class _OutputWriter:
    """Appends prediction rows, one write + flush per chunk.

    On an interrupt, :meth:`rollback` cuts the file back to the last whole chunk, so the
    output is always a valid prefix that ``resume`` can continue. Opened on the first chunk,
    so an input that fails its checks leaves an existing output untouched.
    """

    def __init__(self, path: Path, label_names: Sequence[str], append: bool) -> None:
        self.path = path
        self.label_names = list(label_names)
        self.columns = output_columns(label_names)
        self.jsonl = path.suffix.lower() == ".jsonl"
        self.rows = 0  # rows written by this writer
        self._append = append
        self._file: BinaryIO | None = None
        self._committed = 0

    def write(self, first_row: int, proba: np.ndarray) -> None:
        if self._file is None:
            self._open()
        self._commit(self._format(first_row, proba))
        self.rows += len(proba)

    def rollback(self) -> None:
        if self._file is not None:
            self._file.truncate(self._committed)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()

    def _open(self) -> None:
        self._file = self.path.open("ab" if self._append else "wb")
        self._committed = self._file.seek(0, io.SEEK_END)
        if self._committed == 0 and not self.jsonl:
            self._commit(_csv_line(self.columns))

    def _commit(self, text: str) -> None:
        assert self._file is not None
        data = text.encode("utf-8")
        self._file.write(data)
        self._file.flush()
        self._committed += len(data)

    def _format(self, first_row: int, proba: np.ndarray) -> str:
        labels = [self.label_names[i] for i in proba.argmax(-1)]
        # astype(str): the shortest decimal that reads back as the same float32, no noise digits.
        probs = proba.astype(np.float32).astype(str).tolist()
        rows = zip(range(first_row, first_row + len(labels)), labels, probs, strict=True)
        if self.jsonl:
            keys = self.columns[2:]
            return "".join(
                json.dumps({"row": r, "label": label, **_floats(keys, ps)}, ensure_ascii=False)
                + "\n"
                for r, label, ps in rows
            )
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerows([r, lab, *ps] for r, lab, ps in rows)
        return buffer.getvalue()


def _floats(keys: Sequence[str], values: Sequence[str]) -> dict[str, float]:
    return {k: float(v) for k, v in zip(keys, values, strict=True)}


@dataclass
class _EmptyTexts:
    """Counts empty or whitespace-only texts; they are labelled anyway, and reported once."""

    count: int = 0
    first_rows: list[int] = field(default_factory=list)

    def note(self, first_row: int, texts: Sequence[str]) -> None:
        for i, text in enumerate(texts):
            if not text or text.isspace():
                self.count += 1
                if len(self.first_rows) < _SHOW_ROWS:
                    self.first_rows.append(first_row + i)

    def warn(self, path: Path) -> None:
        if self.count:
            shown = ", ".join(map(str, self.first_rows)) + (
                ", ..." if self.count > len(self.first_rows) else ""
            )
            log.warning(
                "%s has %d empty or whitespace-only texts (output rows %s); they were labelled "
                "anyway, but those labels mean nothing.",
                path,
                self.count,
                shown,
            )


# ---------------------------------------------------------------------------- predicting -----
def predict_stream(
    clf: NanoNetClassifier,
    input_path: str | Path,
    output_path: str | Path,
    text_column: str = "text",
    batch_size: int = 64,
    chunk_rows: int = 4096,
    resume: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Label every text of ``input_path`` into ``output_path`` (.csv or .jsonl), chunk by chunk.

    Without ``resume`` an existing output is replaced (refusing it is the caller's choice);
    with ``resume`` the rows it already holds are skipped and the rest appended. Returns
    ``rows`` (written now), ``skipped`` (already there), ``total``, ``seconds``,
    ``docs_per_s`` and ``empty_texts``. Ctrl-C raises :class:`StreamInterrupted`.
    """
    input_path, output_path = Path(input_path), Path(output_path)
    if output_path.suffix.lower() not in OUTPUT_EXTENSIONS:
        raise NanoNetError(f"The output must end in .csv or .jsonl, not '{output_path.suffix}'.")
    chunks = iter_texts(input_path, text_column, chunk_rows)  # checks the input first
    columns = output_columns(clf.label_names)
    done = resume_point(output_path, columns) if resume and output_path.exists() else 0
    writer = _OutputWriter(output_path, clf.label_names, append=resume)
    empty = _EmptyTexts()
    bar = tqdm(
        total=count_rows(input_path), initial=done, unit="doc", desc="predict", disable=not progress
    )
    start = time.perf_counter()
    try:
        for first_row, texts in _skip_rows(chunks, done, input_path, output_path):
            empty.note(first_row, texts)
            writer.write(first_row, clf.predict_proba(texts, batch_size=batch_size))
            bar.update(len(texts))
    except BaseException as exc:
        writer.rollback()
        if isinstance(exc, KeyboardInterrupt):
            raise StreamInterrupted(done + writer.rows, output_path) from None
        raise
    finally:
        writer.close()
        bar.close()
    seconds = time.perf_counter() - start
    empty.warn(input_path)
    return {
        "rows": writer.rows,
        "skipped": done,
        "total": done + writer.rows,
        "seconds": seconds,
        "docs_per_s": writer.rows / max(seconds, 1e-9),
        "empty_texts": empty.count,
    }


def _skip_rows(
    chunks: Iterable[list[str]], skip: int, input_path: Path, output_path: Path
) -> Iterator[tuple[int, list[str]]]:
    """(0-based row of the first text, texts) for the rows after the first ``skip``."""
    row = 0
    for chunk in chunks:
        keep_from = max(0, skip - row)
        if keep_from < len(chunk):
            yield row + keep_from, chunk[keep_from:]
        row += len(chunk)
    if row < skip:
        raise NanoNetError(
            f"{output_path} already holds {skip} rows but {input_path} has only {row}; it was "
            "written for another input. Pass --overwrite to start over."
        )
