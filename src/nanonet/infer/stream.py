"""Streaming prediction: label files of any size in constant memory, resumably.

The input is read in chunks of rows by :func:`nanonet.data.stream_readers.iter_texts` (CSV/TSV,
JSON lines, Parquet, plain text one per line); each chunk is predicted and appended to the
output, which is flushed after every chunk. The output carries a 0-based ``row`` column (the
input row a prediction belongs to), so a run that was stopped can continue where it stopped
(``resume=True``) and anyone can check the pairing.

Memory is bounded by ``chunk_rows`` texts plus the model, never by the size of the input.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np
from tqdm.auto import tqdm

from nanonet.data.input_checks import BLOCK, SHOW_ROWS, format_rows
from nanonet.data.stream_readers import count_rows, iter_texts, reads_whole
from nanonet.errors import NanoNetError

if TYPE_CHECKING:
    from nanonet.models.classifier import NanoNetClassifier

log = logging.getLogger(__name__)

OUTPUT_EXTENSIONS = (".csv", ".jsonl")


class StreamInterrupted(KeyboardInterrupt):
    """Ctrl-C during :func:`predict_stream`; the output holds ``rows`` complete rows.

    A KeyboardInterrupt still, so code that does not know this class behaves as before.
    """

    def __init__(self, rows: int, output: Path) -> None:
        super().__init__(f"interrupted after {rows} rows")
        self.rows = rows
        self.output = output


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
    while left > 0 and (block := f.read(min(BLOCK, left))):
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
                if len(self.first_rows) < SHOW_ROWS:
                    self.first_rows.append(first_row + i)

    def warn(self, path: Path) -> None:
        if self.count:
            shown = format_rows(self.first_rows, self.count)
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
    if reads_whole(input_path):
        log.warning(
            "%s is one JSON document and is read whole; save it as JSON lines (.jsonl) to stream "
            "it in constant memory.",
            input_path,
        )
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
