"""End to end on real packaged models and a small slice of a real dataset (slow; CI runs it)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nanonet.cli import main
from nanonet.models.classifier import NanoNetClassifier

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("rt") / "model"
    code = main(
        [
            "-q",
            "train",
            "--dataset",
            "rotten_tomatoes",
            "--labels-per-class",
            "10",
            "--seed",
            "0",
            "--teacher",
            "minilm-l6",
            "--students",
            "teacher:bottom2",
            "minilm-l3",
            "--max-unlabeled",
            "300",
            "--steps",
            "20",
            "--out",
            str(out),
            "train.teacher_warmup_steps=10",
            "train.selection_holdout=60",
            "model.teacher_trainable_layers=2",
        ]
    )
    assert code == 0
    return out


def test_real_run_reports_every_member_and_keeps_one(trained: Path) -> None:
    report = json.loads((trained / "training_summary.json").read_text())
    members = report["members"]
    assert len(members) == 3 and sum(m.get("kept", False) for m in members) == 1
    for m in members:
        assert m["test"]["n"] == 2000
        # 10 labels per class on real reviews: clearly better than the majority class (0.578).
        assert m["test"]["accuracy"] > 0.6 and m["test"]["macro_f1"] > 0.55, m["name"]
    s = report["summary"]
    assert s["labelled_examples"] == 20 and s["unlabelled_examples"] == 240
    assert s["trainable_params"] < 0.01 * s["total_params"]


def test_real_model_reloads_and_evaluates(trained: Path, capsys: pytest.CaptureFixture) -> None:
    clf = NanoNetClassifier.from_pretrained(trained)
    assert set(clf.predict(["a masterpiece, moving and funny", "a dull, lifeless mess"])) <= {
        "fresh",
        "rotten",
    }
    assert main(["eval", "--model", str(trained), "--dataset", "rotten_tomatoes"]) == 0
    assert "accuracy" in capsys.readouterr().out
