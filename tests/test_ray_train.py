"""`nanonet train --engine ray`: the teacher's targets read on a Ray actor pool train the model
a local run trains."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from nanonet.cli import main
from nanonet.models.classifier import NanoNetClassifier
from test_cli import TEXTS, _user_error

RUN = (
    "train.teacher_contrastive_steps=4",
    "train.teacher_warmup_steps=4",
    "train.selection_holdout=6",
    "model.min_speedup=null",
)


def _argv(data: tuple[Path, Path], teacher: Path, student: Path, out: Path) -> list[str]:
    train, pool = data
    return [
        *("-q", "train", "--train", str(train), "--unlabeled", str(pool)),
        *("--teacher", str(teacher), "--students", "teacher:0,1", str(student)),
        *("--steps", "10", "--threads", "1", "--seed", "4", "--out", str(out), *RUN),
    ]


@pytest.mark.slow
def test_targets_read_on_ray_train_the_local_model(
    synthetic_csv: tuple[Path, Path], tiny_mpnet: Path, tiny_bert: Path, tmp_path: Path
) -> None:
    pytest.importorskip("ray")
    local, on_ray = tmp_path / "local", tmp_path / "ray"
    assert main(_argv(synthetic_csv, tiny_mpnet, tiny_bert, local)) == 0
    argv = _argv(synthetic_csv, tiny_mpnet, tiny_bert, on_ray)
    assert main([*argv[: -len(RUN)], "--engine", "ray", "--workers", "2", *RUN]) == 0
    # Only the padding of the teacher's batches differs (float rounding of the targets).
    a = NanoNetClassifier.from_pretrained(local).predict_proba(TEXTS)
    b = NanoNetClassifier.from_pretrained(on_ray).predict_proba(TEXTS)
    np.testing.assert_allclose(b, a, atol=1e-4)
    config = (on_ray / "config.yaml").read_text(encoding="utf-8")
    assert "engine: ray" in config and "ray_workers: 2" in config
    summary = json.loads((on_ray / "training_summary.json").read_text(encoding="utf-8"))
    assert summary["distill_steps"] > 0  # the distillation stage did read those targets


def test_engine_ray_without_ray_says_how_to_install_it(
    synthetic_csv: tuple[Path, Path],
    tiny_mpnet: Path,
    tiny_bert: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    argv = _argv(synthetic_csv, tiny_mpnet, tiny_bert, tmp_path / "m")
    message = _user_error(capsys, main([*argv[: -len(RUN)], "--engine", "ray", *RUN]))
    assert "pip install 'nanonet[ray]'" in message
    assert not (tmp_path / "m").exists()


def test_bad_worker_count_is_refused_before_anything_loads(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    argv = ["train", "--dataset", "rotten_tomatoes", "--workers", "0", "--out", str(tmp_path / "m")]
    message = _user_error(capsys, main(argv))
    assert "train.ray_workers must be at least 1" in message
