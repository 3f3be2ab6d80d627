"""End to end on real packaged models and a small slice of a real dataset (slow; CI runs it).

The default cohort: the MPNet teacher, a student of its bottom layer, the packaged MiniLM-L3
(converted from ONNX) and MiniLM-L6 where it is fast enough; 300 unlabelled reviews and 20 steps
keep it to minutes.
"""

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
            "--max-unlabeled",
            "300",
            "--steps",
            "20",
            "--out",
            str(out),
            "train.teacher_warmup_steps=10",
            "train.selection_holdout=60",
        ]
    )
    assert code == 0
    return out


def test_real_run_reports_every_member_and_keeps_one(trained: Path) -> None:
    report = json.loads((trained / "training_summary.json").read_text())
    members = report["members"]
    # The default cohort minus any student the speed screen left out (MiniLM-L6 on reviews).
    screen = report["speed_screen"]
    assert [e["student"] for e in screen] == ["teacher:bottom1", "minilm-l3", "minilm-l6"]
    assert len(members) == 1 + sum(e["trained"] for e in screen) >= 2
    assert sum(m.get("kept", False) for m in members) == 1
    for m in members:
        assert m["test"]["n"] == 2000
        # Not a constant predictor (that scores macro-F1 <= 0.37 on this split).
        assert m["test"]["macro_f1"] > 0.45, m["name"]
    # The real MPNet teacher from 10 labels per class: its frozen-probe level is about 0.8.
    assert members[0]["test"]["accuracy"] > 0.7
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
