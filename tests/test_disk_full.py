"""A full disk or a read-only folder while `train` or `predict` writes: one sentence, nothing
half-written, and `--resume` continues once the cause is gone (writes patched to fail, so the
test needs no special mount)."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from nanonet.cli import main, run_state_folder
from nanonet.infer.output import OutputWriter
from nanonet.models.classifier import NanoNetClassifier
from nanonet.train.checkpoint import Checkpoints
from test_cli import TEXTS, _predict_argv, _user_error, _write_csv
from test_resume import RUN


@pytest.fixture(autouse=True)
def _restore_torch_threads() -> Iterator[None]:
    threads = torch.get_num_threads()  # `--threads 1` sets them for the whole process
    yield
    torch.set_num_threads(threads)


def _failing(real: Callable[..., Any], fail_on: int, code: int) -> Callable[..., Any]:
    """`real`, except that its `fail_on`-th call raises OSError(code), as a full disk does."""
    calls = []

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == fail_on:
            raise OSError(code, os.strerror(code), "the-file")
        return real(*args, **kwargs)

    return wrapper


def _train_argv(data: tuple[Path, Path], teacher: Path, student: Path, out: Path) -> list[str]:
    train, pool = data
    return [
        *("-q", "train", "--train", str(train), "--unlabeled", str(pool)),
        *("--teacher", str(teacher), "--students", "teacher:0,1", str(student)),
        *("--steps", "60", "--threads", "1", "--out", str(out), *RUN),
    ]


def _proba(folder: Path) -> np.ndarray:
    return NanoNetClassifier.from_pretrained(folder).predict_proba(TEXTS)


@pytest.mark.parametrize("where", ["checkpoint", "model"])
def test_train_on_a_full_disk_stops_cleanly_and_resumes(
    synthetic_csv: tuple[Path, Path],
    tiny_mpnet: Path,
    tiny_bert: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    where: str,
) -> None:
    reference = tmp_path / "reference"
    assert main(_train_argv(synthetic_csv, tiny_mpnet, tiny_bert, reference)) == 0
    out = tmp_path / "run"
    if where == "checkpoint":  # the fourth checkpoint, in the joint stage
        monkeypatch.setattr(Checkpoints, "save", _failing(Checkpoints.save, 4, errno.ENOSPC))
    else:  # writing the kept student's weights, after training
        real = NanoNetClassifier.save_pretrained
        monkeypatch.setattr(NanoNetClassifier, "save_pretrained", _failing(real, 1, errno.ENOSPC))
    code = main(_train_argv(synthetic_csv, tiny_mpnet, tiny_bert, out))
    err = _user_error(capsys, code)
    assert "No space left on device" in err and "--resume" in err
    assert not out.exists()
    state = run_state_folder(out)
    assert not list(state.rglob("*.tmp"))  # no half-written checkpoint
    monkeypatch.undo()  # space freed
    assert main(["-q", "train", "--resume", "--out", str(out)]) == 0
    np.testing.assert_allclose(_proba(out), _proba(reference), atol=1e-4)


def test_train_into_a_read_only_folder_is_one_sentence(
    synthetic_csv: tuple[Path, Path],
    tiny_mpnet: Path,
    tiny_bert: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "run"
    real = Path.mkdir

    def read_only(self: Path, *args: Any, **kwargs: Any) -> None:
        if self.parent == tmp_path:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))
        real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", read_only)
    err = _user_error(capsys, main(_train_argv(synthetic_csv, tiny_mpnet, tiny_bert, out)))
    assert "Read-only file system" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pool.csv", "train.csv"]


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS])
def test_predict_on_a_full_disk_keeps_whole_rows_and_resumes(
    trained_model: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    code: int,
) -> None:
    texts = _write_csv(tmp_path / "texts.csv", ["text"], [[t] for t in TEXTS * 3])
    full, output = tmp_path / "full.csv", tmp_path / "preds.csv"
    assert main([*_predict_argv(trained_model, texts, full), "--chunk-rows", "4"]) == 0
    commit = OutputWriter._commit
    monkeypatch.setattr(OutputWriter, "_commit", _failing(commit, 3, code))
    argv = [*_predict_argv(trained_model, texts, output), "--chunk-rows", "4"]
    err = _user_error(capsys, main(argv))
    assert os.strerror(code) in err and "--resume" in err
    kept = output.read_bytes()
    assert full.read_bytes().startswith(kept) and kept.endswith(b"\n")  # whole rows only
    monkeypatch.undo()
    assert main([*argv, "--resume"]) == 0
    assert output.read_bytes() == full.read_bytes()


@pytest.fixture
def trained_model(
    synthetic_csv: tuple[Path, Path], tiny_mpnet: Path, tiny_bert: Path, tmp_path: Path
) -> Path:
    out = tmp_path / "model"
    argv = _train_argv(synthetic_csv, tiny_mpnet, tiny_bert, out)
    argv[argv.index("--steps") + 1] = "3"
    assert main(argv) == 0
    return out
