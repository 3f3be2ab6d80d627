"""The labelling page's answers: a CSV of `text,label` that `nanonet train --train` reads.

Each answer is appended as one line in one write, flushed and fsynced before the page hears
back, so a crash loses nothing that was acknowledged. A skipped text is a row with an empty
label (`train` counts it as unlabelled, and it is not asked again). Undo rewrites the file
without its last row through a temporary file and a rename, so the file is whole at every
moment. The queue of texts to ask sits beside it (`labels.csv.queue.json`), so a restarted
page asks the same remaining texts in the same order.
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

from nanonet.data.stream_readers import iter_rows
from nanonet.errors import NanoNetError

HEADER = ["text", "label"]


@dataclass
class Answer:
    text: str
    label: str | None  # None: skipped


class AnswerFile:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.answers: list[Answer] = self._read() if self.path.is_file() else []
        if not self.path.is_file():
            self._rewrite()

    @property
    def queue_path(self) -> Path:
        return self.path.with_name(self.path.name + ".queue.json")

    def _read(self) -> list[Answer]:
        with open(self.path, encoding="utf-8", errors="replace") as f:
            if sum(1 for _, line in zip(range(2), f, strict=False) if line.strip()) < 2:
                return []  # a header alone: nothing answered yet
        answers = []
        try:
            for chunk in iter_rows(self.path, "text", "label", require_label=True):
                answers.extend(Answer(t, lab) for t, lab in zip(*chunk, strict=True))
        except NanoNetError as exc:
            raise NanoNetError(f"{exc} (the --labels file must have 'text' and 'label').") from None
        return answers

    def append(self, answer: Answer) -> None:
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerow([answer.text, answer.label or ""])
        with open(self.path, "a", encoding="utf-8", newline="") as f:
            f.write(buffer.getvalue())
            f.flush()
            os.fsync(f.fileno())
        self.answers.append(answer)

    def undo(self) -> Answer | None:
        if not self.answers:
            return None
        last = self.answers.pop()
        self._rewrite()
        return last

    def _rewrite(self) -> None:
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            w = csv.writer(f, lineterminator="\n")
            w.writerow(HEADER)
            w.writerows([a.text, a.label or ""] for a in self.answers)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    def answered(self) -> set[str]:
        return {a.text for a in self.answers}

    def counts(self, classes: list[str]) -> dict[str, int]:
        counts = dict.fromkeys(classes, 0)
        for a in self.answers:
            if a.label is not None:
                counts[a.label] = counts.get(a.label, 0) + 1
        return counts

    def save_queue(self, queue: list[tuple[int, str]], round_number: int) -> None:
        tmp = self.queue_path.with_name(f".{self.queue_path.name}.tmp")
        data = {"round": round_number, "queue": [[r, t] for r, t in queue]}
        tmp.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
        os.replace(tmp, self.queue_path)

    def load_queue(self) -> tuple[list[tuple[int, str]], int] | None:
        if not self.queue_path.is_file():
            return None
        try:
            data = json.loads(self.queue_path.read_text(encoding="utf-8"))
            queue = [(int(r), str(t)) for r, t in data["queue"]]
            return queue, int(data["round"])
        except (ValueError, KeyError, TypeError):
            return None  # a damaged queue is rebuilt from the pool
