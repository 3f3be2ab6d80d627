"""The checks on a user's input file and their sentences, shared by every reader.

Each problem raises :class:`~nanonet.errors.NanoNetError` with one sentence saying what is
wrong, what exists and what to do.
"""

from __future__ import annotations

import codecs
import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path

from nanonet.errors import NanoNetError

SUPPORTED_EXTENSIONS = (".csv", ".tsv", ".jsonl", ".ndjson", ".json", ".parquet", ".txt")
# How many offending row numbers to show in a message: enough to find them, short enough to read.
SHOW_ROWS = 5
# Bytes read at a time when scanning a whole file (blank check, line count, UTF-8 check).
BLOCK = 1 << 20


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


def check_not_blank(path: Path) -> None:
    """Refuse a file holding nothing but ASCII whitespace (and maybe a BOM)."""
    with path.open("rb") as f:
        # Small blocks: the first one almost always decides, and this runs on every read.
        block = f.read(1 << 16).removeprefix(codecs.BOM_UTF8)
        while block:
            if block.strip():
                return
            block = f.read(1 << 16)
    raise NanoNetError(f"{path} is empty; give a file with at least one text.")


def missing_column(path: Path, column: str, columns: Sequence[str], option: str) -> NanoNetError:
    if path.suffix.lower() == ".txt":
        return NanoNetError(
            f"{path} is plain text with one text per line and no column '{column}'; "
            "use a CSV, TSV, JSON or Parquet file to give labels."
        )
    existing = ", ".join(repr(str(c)) for c in columns)
    return NanoNetError(
        f"{path} has no column '{column}' (columns: {existing}); choose one with {option}."
    )


def no_rows(path: Path) -> NanoNetError:
    return NanoNetError(f"{path} has no data rows; give a file with at least one text.")


def format_rows(rows: Sequence[int], count: int) -> str:
    """'2, 4, 5' for the first rows of ``count`` offending ones, with ', ...' if there are more."""
    return ", ".join(map(str, rows[:SHOW_ROWS])) + (", ..." if count > SHOW_ROWS else "")


@contextlib.contextmanager
def utf8_errors(path: Path) -> Iterator[None]:
    """Turn a UnicodeDecodeError met while reading ``path`` into the user's words."""
    try:
        yield
    except UnicodeDecodeError:
        # The decoder's offsets are relative to some buffer; find the real place in the file.
        raise _utf8_error(path) from None


def _utf8_error(path: Path) -> NanoNetError:
    """The first invalid UTF-8 byte of ``path``, with its offset and line, found in O(1) memory."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    consumed = 0  # bytes handed to the decoder before this block
    lines = 1
    with path.open("rb") as f:
        while True:
            block = f.read(BLOCK)
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
