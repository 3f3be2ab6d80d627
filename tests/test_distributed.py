"""Data-parallel training: `torchrun --nproc_per_node=2 -m nanonet train` trains the model that
one process trains on the same global batches."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nanonet.cli import main
from nanonet.models.classifier import NanoNetClassifier
from nanonet.train.distributed import Distributed
from test_cli import TEXTS

# Without dropout (the layers' too) and views, every rank computes its share of a batch as one
# process computes it, and with even batch sizes the averaged gradient is the whole batch's.
# What is left is float summation order (two halves instead of one batch) and the teacher's
# fp16 frozen-bottom cache built in other batches. With dropout on, the ranks draw other masks
# and the models differ by ~0.03 in probability after a single step: sampling, not error.
ATOL = 1e-4
RUN = (
    "model.dropout=0",
    "train.views=[none]",
    "model.min_speedup=null",
    "train.batch_reference_length=null",
    "train.labeled_batch_size=8",
    "train.unlabeled_batch_size=16",
    "train.teacher_contrastive_steps=4",
    "train.teacher_warmup_steps=4",
    "train.selection_holdout=6",
    "train.distill_epochs=1",
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _without_dropout(folder: Path, to: Path) -> Path:
    """A copy of a tiny encoder whose layers have no dropout (model.dropout is the head's)."""
    shutil.copytree(folder, to)
    config = json.loads((to / "config.json").read_text(encoding="utf-8"))
    config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (to / "config.json").write_text(json.dumps(config), encoding="utf-8")
    return to


def _argv(data: tuple[Path, Path], teacher: Path, student: Path, out: Path) -> list[str]:
    train, pool = data
    return [
        *("-q", "train", "--train", str(train), "--unlabeled", str(pool)),
        *("--teacher", str(teacher), "--students", "teacher:0,1", str(student)),
        *("--steps", "20", "--threads", "1", "--seed", "5", "--out", str(out), *RUN),
    ]


def test_a_shard_is_every_world_th_text_and_small_batches_stay_whole() -> None:
    assert Distributed(0, 2).shard([5, 6, 7, 8, 9]) == [5, 7, 9]
    assert Distributed(1, 2).shard([5, 6, 7, 8, 9]) == [6, 8]
    assert Distributed(1, 4).shard([5, 6]) == [5, 6]
    assert Distributed().shard([1, 2, 3]) == [1, 2, 3]


@pytest.mark.slow
def test_two_torchrun_processes_train_the_single_process_model(
    synthetic_csv: tuple[Path, Path], tiny_mpnet: Path, tiny_bert: Path, tmp_path: Path
) -> None:
    train, pool = synthetic_csv
    tiny_mpnet = _without_dropout(tiny_mpnet, tmp_path / "mpnet")
    tiny_bert = _without_dropout(tiny_bert, tmp_path / "bert")
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    assert main(_argv((train, pool), tiny_mpnet, tiny_bert, single)) == 0

    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2"]
    rendezvous = ["--master_addr=127.0.0.1", f"--master_port={_free_port()}"]
    done = subprocess.run(
        [
            *torchrun,
            *rendezvous,
            "-m",
            "nanonet",
            *_argv((train, pool), tiny_mpnet, tiny_bert, ddp),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr

    a = NanoNetClassifier.from_pretrained(single).predict_proba(TEXTS)
    b = NanoNetClassifier.from_pretrained(ddp).predict_proba(TEXTS)
    np.testing.assert_allclose(b, a, atol=ATOL)
    # The same steps, logged once (by rank 0; its losses are those of its share)
    logs = [
        [json.loads(x) for x in (f / "train_log.jsonl").read_text(encoding="utf-8").splitlines()]
        for f in (single, ddp)
    ]
    assert [(x["phase"], x["step"]) for x in logs[0]] == [(x["phase"], x["step"]) for x in logs[1]]
    summary = json.loads((ddp / "training_summary.json").read_text(encoding="utf-8"))
    assert summary["processes"] == 2
    # Both ranks held the same weights: the kept student is the one a single process keeps.
    assert (
        summary["summary"]["student"]
        == json.loads((single / "training_summary.json").read_text(encoding="utf-8"))["summary"][
            "student"
        ]
    )
