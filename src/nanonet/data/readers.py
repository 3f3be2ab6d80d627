"""Whole-file reads of user files (texts and labels) for `nanonet train` and `eval`.

Built on the streaming readers of :mod:`nanonet.data.stream_readers`, which define the
formats; what a whole-file read adds is that an empty or whitespace-only text is an error
(training on it, or scoring it, would mean nothing). Every problem a user can cause raises
:class:`~nanonet.errors.NanoNetError` with one sentence saying what is wrong and what to do.
"""

from __future__ import annotations

from pathlib import Path

from nanonet.data.input_checks import format_rows
from nanonet.data.stream_readers import iter_rows
from nanonet.errors import NanoNetError

# Rows per chunk of the underlying stream: large, as everything is kept anyway.
_CHUNK_ROWS = 1 << 16


def read_table(
    path: str | Path, text_column: str = "text", label_column: str | None = "label"
) -> tuple[list[str], list[str | None]]:
    """Return ``(texts, labels)``; a label is ``None`` where the row has none.

    With ``label_column=None``, or a file without that column, every label is ``None``.
    Labels are ``str(value).strip()``; integral numbers become ``"1"``, not ``"1.0"``.
    """
    return _read_all(Path(path), text_column, label_column, require_label=False)


def read_training_file(
    path: str | Path, text_column: str = "text", label_column: str = "label"
) -> tuple[list[str], list[str], list[str]]:
    """Return ``(labelled_texts, labels, unlabelled_texts)``; rows with an empty label are
    unlabelled."""
    texts, labels = _read_all(Path(path), text_column, label_column, require_label=True)
    labelled_texts: list[str] = []
    labelled: list[str] = []
    unlabelled: list[str] = []
    for text, label in zip(texts, labels, strict=True):
        if label is None:
            unlabelled.append(text)
        else:
            labelled_texts.append(text)
            labelled.append(label)
    return labelled_texts, labelled, unlabelled


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


def _read_all(
    path: Path, text_column: str, label_column: str | None, require_label: bool
) -> tuple[list[str], list[str | None]]:
    texts: list[str] = []
    labels: list[str | None] = []
    chunks = iter_rows(
        path, text_column, label_column, require_label=require_label, chunk_rows=_CHUNK_ROWS
    )
    for chunk in chunks:
        texts += chunk.texts
        labels += chunk.labels
    empty = [row for row, text in enumerate(texts, start=1) if not text.strip()]
    if empty:
        raise NanoNetError(
            f"{path} has {len(empty)} empty or whitespace-only texts in column '{text_column}' "
            f"(data rows {format_rows(empty, len(empty))}, counting from 1); remove those rows."
        )
    return texts, labels
