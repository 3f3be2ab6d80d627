"""Training checkpoints: what a killed run needs to continue where it stopped.

Only what changes is written: each member's trainable weights (under 1% of it), its optimiser
and scheduler, the random generators, the batch iterators' place in their epoch and the step.
Frozen weights come back from the packaged encoders, so a checkpoint of a NanoNet run is a few
megabytes. Files are written to a temporary name and renamed (a kill mid-write leaves the last
good one), the last `keep` are kept, and they are read with `torch.load(weights_only=True)`,
which refuses pickled code.
"""

from __future__ import annotations

import hashlib
import logging
import os
import signal
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from nanonet.data.task import Task
from nanonet.errors import NanoNetError

if TYPE_CHECKING:
    from nanonet.train.cohort import Member

log = logging.getLogger("nanonet")

# The stages in run order; a checkpoint's position is (stage, steps of it done).
STAGES = ("contrastive", "warmup", "self-training", "train", "distill", "done")
FORMAT_VERSION = 1


class Checkpoints:
    """The checkpoint files of one run, in `folder`."""

    def __init__(self, folder: Path, every: int, keep: int = 2) -> None:
        self.folder, self.every, self.keep = Path(folder), every, keep
        self.save_seconds: list[float] = []
        self.last_bytes = 0

    def files(self) -> list[Path]:
        return sorted(self.folder.glob("checkpoint-*.pt")) if self.folder.is_dir() else []

    def due(self, steps_done: int) -> bool:
        return self.every > 0 and steps_done > 0 and steps_done % self.every == 0

    def save(self, state: dict[str, Any]) -> Path:
        started = time.perf_counter()
        self.folder.mkdir(parents=True, exist_ok=True)
        files = self.files()
        number = int(files[-1].stem.split("-")[1]) + 1 if files else 0
        path = self.folder / f"checkpoint-{number:06d}.pt"
        tmp = path.with_suffix(".tmp")
        try:
            with open(tmp, "wb") as f:
                torch.save({"format": FORMAT_VERSION, **state}, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        for old in self.files()[: -self.keep]:
            old.unlink(missing_ok=True)
        self.last_bytes = path.stat().st_size
        self.save_seconds.append(time.perf_counter() - started)
        return path

    def latest(self) -> dict[str, Any] | None:
        """The newest readable checkpoint; an unreadable newest one falls back to the one before."""
        for path in reversed(self.files()):
            try:
                state = torch.load(path, map_location="cpu", weights_only=True)
            except Exception as exc:  # a damaged file: say so and try the previous one
                log.warning("checkpoint %s cannot be read (%s); trying the one before", path, exc)
                continue
            if state.get("format") != FORMAT_VERSION:
                raise NanoNetError(
                    f"{path} was written by another version of NanoNet; start the run again "
                    "with --overwrite."
                )
            return state
        return None

    def summary(self) -> dict[str, float]:
        saves = self.save_seconds
        return {
            "checkpoint_mb": round(self.last_bytes / 2**20, 3),
            "checkpoint_saves": len(saves),
            "checkpoint_mean_s": round(float(np.mean(saves)), 4) if saves else 0.0,
        }


def task_fingerprint(task: Task) -> str:
    """A digest of the texts and labels a run learns from: a resumed run must see the same."""
    h = hashlib.sha256()
    for part in (task.label_names, task.labelled_texts, task.labelled_labels):
        h.update(repr(list(part)).encode("utf-8", "surrogatepass"))
    for text in task.unlabelled_texts:
        h.update(text.encode("utf-8", "surrogatepass") + b"\0")
    return h.hexdigest()


def rng_states(rngs: dict[str, np.random.Generator]) -> dict[str, Any]:
    states: dict[str, Any] = {k: r.bit_generator.state for k, r in rngs.items()}
    states["torch"] = torch.get_rng_state()
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def load_rng_states(rngs: dict[str, np.random.Generator], states: dict[str, Any]) -> None:
    for k, r in rngs.items():
        r.bit_generator.state = states[k]
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def trainable_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().cpu().clone() for n, p in module.named_parameters() if p.requires_grad}


@torch.no_grad()
def load_trainable_state(module: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    params = dict(module.named_parameters())
    for name, value in state.items():
        params[name].copy_(value.to(params[name].device))


def member_states(members: Sequence[Member]) -> list[dict[str, Any]]:
    """What a checkpoint keeps of each member: its trainable weights (and training-only
    projection), optimiser and scheduler."""
    states = []
    for m in members:
        assert m.optimizer is not None and m.scheduler is not None
        states.append(
            {
                "params": trainable_state(m.model),
                "projection": trainable_state(m.projection) if m.projection else None,
                "optimizer": m.optimizer.state_dict(),
                "scheduler": m.scheduler.state_dict(),
            }
        )
    return states


def load_member_states(members: Sequence[Member], states: list[dict[str, Any]]) -> None:
    for m, saved in zip(members, states, strict=True):
        assert m.optimizer is not None and m.scheduler is not None
        load_trainable_state(m.model, saved["params"])
        if m.projection is not None:
            load_trainable_state(m.projection, saved["projection"])
        m.optimizer.load_state_dict(saved["optimizer"])
        m.scheduler.load_state_dict(saved["scheduler"])


class CtrlC:
    """With checkpoints, a first Ctrl-C during a stage asks the run to finish the step, write a
    checkpoint and stop (`requested`); a second one, or one outside a stage, stops at once,
    leaving the last checkpoint."""

    def __init__(self) -> None:
        self.requested = False
        self.in_stage = False  # set by the loop while a resumable stage runs

    @contextmanager
    def handled(self, enabled: bool) -> Iterator[None]:
        """Ctrl-C handled as above while inside, where `enabled` (signals reach the main
        thread only; under torchrun ranks would finish different steps and wait on each other
        forever, so there it stops at once)."""
        if not enabled or threading.current_thread() is not threading.main_thread():
            yield
            return

        def on_sigint(signum: int, frame: Any) -> None:
            if self.requested or not self.in_stage:
                raise KeyboardInterrupt
            self.requested = True
            log.warning("stopping after this step to write a checkpoint (Ctrl-C again: at once)")

        previous = signal.signal(signal.SIGINT, on_sigint)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)
