"""`nanonet label`: a small labelling page on localhost (FastAPI, one HTML file, no build).

It asks the texts `suggest` picks, one at a time; every answer goes to the labels CSV at once
(see `answers.py`). "Train now" runs `nanonet train` on the labels and the pool in a
subprocess and, when it is done, the next round asks what the new model is least sure of.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException
from fastapi.responses import HTMLResponse
from pydantic import BaseModel

from nanonet.errors import NanoNetError
from nanonet.label.answers import Answer, AnswerFile
from nanonet.label.page_html import PAGE
from nanonet.label.suggest import suggest

log = logging.getLogger("nanonet")


@dataclass
class LabelSession:
    """What the page asks, what it was told, and the training run it may have started."""

    pool: Path
    labels: Path
    classes: list[str]
    n: int = 40
    text_column: str = "text"
    encoder: str = "all-mpnet-base-v2"
    seed: int = 0
    model: Path | None = None
    train_args: list[str] = field(default_factory=list)
    progress: bool = True

    def __post_init__(self) -> None:
        self.lock = threading.Lock()
        self.answers = AnswerFile(self.labels)
        self._check_classes()
        self.training: dict[str, Any] = {"state": "idle"}
        saved = self.answers.load_queue()
        answered = self.answers.answered()
        if saved is not None:
            queue, self.round = saved
            self.queue = [(r, t) for r, t in queue if t not in answered]
        else:
            self.round = 1
            self.queue = self._suggest(self.model)
            self.answers.save_queue(self.queue, self.round)

    def _check_classes(self) -> None:
        seen = [a.label for a in self.answers.answers if a.label is not None]
        for label in seen:
            if label not in self.classes:
                self.classes.append(label)  # a class answered in an earlier session
        if len(self.classes) < 2:
            raise NanoNetError(
                "Name at least two classes with --classes a,b,... (or continue a --labels "
                "file that has them)."
            )
        if len(self.classes) > 9:
            log.warning("more than 9 classes: keys 1-9 reach the first nine, click the rest")

    def _suggest(self, model: Path | None) -> list[tuple[int, str]]:
        picks = suggest(
            self.pool,
            self.n,
            model_dir=model,
            encoder=self.encoder,
            text_column=self.text_column,
            seed=self.seed + self.round - 1,
            exclude=self.answers.answered(),
            progress=self.progress,
        )
        return [(p.row, p.text) for p in picks]

    # ------------------------------------------------------------------ actions ---------
    def state(self) -> dict[str, Any]:
        current = self.queue[0] if self.queue else None
        answered = self.answers.answers
        return {
            "current": {"row": current[0], "text": current[1]} if current else None,
            "remaining": len(self.queue),
            "round": self.round,
            "classes": self.classes,
            "counts": self.answers.counts(self.classes),
            "skipped": sum(a.label is None for a in answered),
            "answered": len(answered),
            "can_undo": bool(answered),
            "training": dict(self.training),
            "labels_file": str(self.labels),
        }

    def answer(self, row: int, label: str | None) -> dict[str, Any]:
        with self.lock:
            if not self.queue or self.queue[0][0] != row:
                raise HTTPException(409, "That text was already answered; reload the page.")
            if label is not None and label not in self.classes:
                raise HTTPException(422, f"Unknown class '{label}'.")
            self.answers.append(Answer(self.queue[0][1], label))
            self.queue.pop(0)
            return self.state()

    def undo(self) -> dict[str, Any]:
        with self.lock:
            last = self.answers.undo()
            if last is None:
                raise HTTPException(409, "Nothing to undo.")
            row = _row_of(self.pool, self.text_column, last.text)
            self.queue.insert(0, (row, last.text))
            self.answers.save_queue(self.queue, self.round)
            return self.state()

    def train(self) -> dict[str, Any]:
        with self.lock:
            if self.training["state"] == "running":
                raise HTTPException(409, "A training run is already going.")
            counts = self.answers.counts(self.classes)
            if sum(c > 0 for c in counts.values()) < 2:
                raise HTTPException(409, "Label texts of at least two classes first.")
            out = self.labels.with_name(f"{self.labels.stem}-model-round{self.round}")
            cmd = [sys.executable, "-m", "nanonet", "-q", "train", "--train", str(self.labels)]
            cmd += ["--unlabeled", str(self.pool), "--text-column", "text", "--overwrite"]
            cmd += ["--out", str(out), *self.train_args]
            self.training = {"state": "running", "model": str(out)}
            threading.Thread(target=self._run_training, args=(cmd, out), daemon=True).start()
            return self.state()

    def _run_training(self, cmd: list[str], out: Path) -> None:
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            with self.lock:
                error = (proc.stderr.strip().splitlines() or ["no message"])[-1]
                self.training = {"state": "failed", "model": str(out), "error": error}
            return
        with self.lock:
            self.training = {"state": "suggesting", "model": str(out)}
            self.round += 1
        queue = self._suggest(out)
        with self.lock:
            self.queue = queue
            self.model = out
            self.answers.save_queue(self.queue, self.round)
            self.training = {"state": "done", "model": str(out)}


def _row_of(pool: Path, text_column: str, text: str) -> int:
    from nanonet.data.stream_readers import iter_texts

    row = 0
    for chunk in iter_texts(pool, text_column):
        if text in chunk:
            return row + chunk.index(text)
        row += len(chunk)
    return -1


class AnswerBody(BaseModel):
    row: int
    label: str | None = None  # None: skip


def create_label_app(session: LabelSession) -> FastAPI:
    app = FastAPI(title="NanoNet labelling", docs_url=None, redoc_url=None)

    @app.get("/", response_class=HTMLResponse)
    def page() -> str:
        return PAGE

    @app.get("/api/state")
    def state() -> dict[str, Any]:
        with session.lock:
            return session.state()

    @app.post("/api/answer")
    def answer(body: AnswerBody) -> dict[str, Any]:
        return session.answer(body.row, body.label)

    @app.post("/api/undo")
    def undo() -> dict[str, Any]:
        return session.undo()

    @app.post("/api/train")
    def train() -> dict[str, Any]:
        return session.train()

    return app


def serve_label_page(session: LabelSession, host: str, port: int) -> None:
    import uvicorn

    from nanonet.serve.server import bind_socket

    sock = bind_socket(host, port)
    print(
        f"nanonet: labelling page on http://{host}:{sock.getsockname()[1]} "
        f"(answers go to {session.labels}; Ctrl-C stops, a restart continues)",
        flush=True,
    )
    server = uvicorn.Server(
        uvicorn.Config(create_label_app(session), log_level="warning", access_log=False)
    )
    server.run(sockets=[sock])  # uvicorn stops on Ctrl-C / SIGTERM after open requests
    print(
        f"nanonet: labelling page stopped; {len(session.answers.answers)} answers in "
        f"{session.labels}.",
        flush=True,
    )
