"""The output of `nanonet predict`: its columns, its rows, and how far an existing output got.

One prediction row is ``row`` (the 0-based input row), ``label`` and one ``prob_<class>`` per
class. The single-process path appends them to a CSV or JSON lines file chunk by chunk
(:class:`OutputWriter`, resumable with :func:`resume_point`); the Ray path writes the same
columns to Parquet parts (:func:`prediction_columns`).
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from nanonet.data.input_checks import BLOCK
from nanonet.errors import NanoNetError

log = logging.getLogger(__name__)

OUTPUT_EXTENSIONS = (".csv", ".jsonl")


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


class OutputWriter:
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
        labels = predicted_labels(proba, self.label_names)
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


def predicted_labels(proba: np.ndarray, label_names: Sequence[str]) -> list[str]:
    return [label_names[i] for i in proba.argmax(-1)]


def prediction_columns(
    first_row: int, proba: np.ndarray, label_names: Sequence[str]
) -> dict[str, Any]:
    """The output's columns for rows ``first_row...`` as arrays (row int64, label str,
    prob_<class> float32 each), for a columnar writer such as Parquet's."""
    proba = proba.astype(np.float32)
    columns: dict[str, Any] = {
        "row": np.arange(first_row, first_row + len(proba), dtype=np.int64),
        "label": predicted_labels(proba, label_names),
    }
    for k, name in enumerate(output_columns(label_names)[2:]):
        columns[name] = proba[:, k]
    return columns
