"""Streaming prediction: label files of any size in constant memory, resumably.

The input is read in chunks of rows by :func:`nanonet.data.stream_readers.iter_texts` (CSV/TSV,
JSON lines, Parquet, plain text one per line); each chunk is predicted and appended to the
output (:mod:`nanonet.infer.output`), which is flushed after every chunk. The output carries a
0-based ``row`` column (the input row a prediction belongs to), so a run that was stopped can
continue where it stopped (``resume=True``) and anyone can check the pairing.

Memory is bounded by ``chunk_rows`` texts plus the model, never by the size of the input.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tqdm.auto import tqdm

from nanonet.data.input_checks import SHOW_ROWS, format_rows
from nanonet.data.stream_readers import count_rows, iter_texts, reads_whole
from nanonet.errors import NanoNetError
from nanonet.infer.output import OUTPUT_EXTENSIONS, OutputWriter, output_columns, resume_point

if TYPE_CHECKING:
    from nanonet.models.classifier import NanoNetClassifier

log = logging.getLogger(__name__)


class StreamInterrupted(KeyboardInterrupt):
    """Ctrl-C during :func:`predict_stream`; the output holds ``rows`` complete rows.

    A KeyboardInterrupt still, so code that does not know this class behaves as before.
    """

    def __init__(self, rows: int, output: Path) -> None:
        super().__init__(f"interrupted after {rows} rows")
        self.rows = rows
        self.output = output


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
    writer = OutputWriter(output_path, clf.label_names, append=resume)
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
