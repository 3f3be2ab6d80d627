"""Checkpoint and resume: a `nanonet train` killed at any point continues to the same model."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from nanonet.cli import main, run_state_folder
from nanonet.data.batching import bucketed_epochs
from nanonet.models.classifier import NanoNetClassifier
from nanonet.train.checkpoint import Checkpoints
from test_cli import NANONET, TEXTS, _user_error

# Long enough to be killed in the middle of a stage (~300 tiny steps), checkpoints every 20.
RUN = (
    "train.teacher_contrastive_steps=6",
    "train.teacher_warmup_steps=6",
    "train.selection_holdout=5",
    "train.checkpoint_every=20",
    "model.min_speedup=null",
)
# A resumed run rebuilds the teacher's frozen-bottom cache in other batches than the first
# run did (other padding widths), which moves its fp16 values by a rounding step at most.
ATOL = 1e-4


def _argv(data: tuple[Path, Path], teacher: Path, student: Path, out: Path) -> list[str]:
    train, pool = data
    return [
        *("-q", "train", "--train", str(train), "--unlabeled", str(pool)),
        *("--teacher", str(teacher), "--students", "teacher:0,1", str(student)),
        *("--steps", "300", "--threads", "1", "--seed", "3", "--out", str(out), *RUN),
    ]


def _newest_number(folder: Path) -> int:
    files = sorted(folder.glob("checkpoint-*.pt"))
    return int(files[-1].stem.split("-")[1]) if files else -1


def _start_and_stop(argv: list[str], out: Path, at: int, sig: signal.Signals) -> int:
    """Start `nanonet train`, send `sig` once checkpoint number `at` exists; its exit code."""
    proc = subprocess.Popen([str(NANONET), *argv], stderr=subprocess.PIPE, text=True)
    folder = run_state_folder(out) / "checkpoints"
    deadline = time.monotonic() + 240
    while _newest_number(folder) < at:
        assert proc.poll() is None, f"the run ended before checkpoint {at}: {proc.stderr}"
        assert time.monotonic() < deadline, "no checkpoint in time"
        time.sleep(0.01)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    if sig == signal.SIGINT:
        assert "--resume" in err and "Traceback" not in err, err
    return proc.returncode


def _proba(folder: Path) -> np.ndarray:
    return NanoNetClassifier.from_pretrained(folder).predict_proba(TEXTS)


@pytest.fixture(scope="module")
def reference(
    tmp_path_factory: pytest.TempPathFactory, tiny_mpnet: Path, tiny_bert: Path
) -> tuple[tuple[Path, Path], Path]:
    """The data and an uninterrupted run of the same config (seed 3)."""
    from conftest import synthetic_rows

    folder = tmp_path_factory.mktemp("resume")
    train, pool = folder / "train.csv", folder / "pool.csv"
    rows = synthetic_rows(10, seed=1)
    train.write_text("text,label\n" + "".join(f"{t},{y}\n" for t, y in rows), encoding="utf-8")
    pool.write_text(
        "text\n" + "".join(f"{t}\n" for t, _ in synthetic_rows(40, seed=2)), encoding="utf-8"
    )
    out = folder / "uninterrupted"
    assert main(_argv((train, pool), tiny_mpnet, tiny_bert, out)) == 0
    return (train, pool), out


def _saves(model: Path) -> int:
    summary = json.loads((model / "training_summary.json").read_text(encoding="utf-8"))
    return int(summary["checkpoints"]["checkpoint_saves"])


@pytest.mark.slow
@pytest.mark.parametrize("where", ["early", "middle", "late"])
def test_a_run_killed_with_sigkill_resumes_to_the_uninterrupted_model(
    reference: tuple[tuple[Path, Path], Path],
    tiny_mpnet: Path,
    tiny_bert: Path,
    tmp_path: Path,
    where: str,
) -> None:
    data, uninterrupted = reference
    saves = _saves(uninterrupted)
    # early: in the contrastive stage or warm-up; middle: the joint stage; late: the last save
    at = {"early": 1, "middle": saves // 2, "late": saves - 1}[where]
    out = tmp_path / "run"
    argv = _argv(data, tiny_mpnet, tiny_bert, out)
    assert _start_and_stop(argv, out, at, signal.SIGKILL) == -signal.SIGKILL
    assert not out.exists() and run_state_folder(out).is_dir()

    assert (
        subprocess.run([str(NANONET), "-q", "train", "--resume", "--out", str(out)]).returncode == 0
    )
    assert not run_state_folder(out).exists()
    np.testing.assert_allclose(_proba(out), _proba(uninterrupted), atol=ATOL)
    # the step log continues where the checkpoint stopped: no step twice, none missing
    log = (out / "train_log.jsonl").read_text(encoding="utf-8").splitlines()
    ref = (uninterrupted / "train_log.jsonl").read_text(encoding="utf-8").splitlines()
    steps = [(json.loads(x)["phase"], json.loads(x)["step"]) for x in log]
    assert steps == [(json.loads(x)["phase"], json.loads(x)["step"]) for x in ref]


@pytest.mark.slow
def test_a_run_with_self_training_resumes_in_the_joint_stage_to_the_same_model(
    reference: tuple[tuple[Path, Path], Path], tiny_mpnet: Path, tiny_bert: Path, tmp_path: Path
) -> None:
    """The teacher's pseudo-labels and where its batches stand travel in the checkpoint."""
    data, _ = reference
    argv = [
        *_argv(data, tiny_mpnet, tiny_bert, tmp_path / "whole"),
        "train.teacher_pseudo_per_class=4",
    ]
    assert main(argv) == 0
    whole = tmp_path / "whole"
    out = tmp_path / "run"
    argv = [*_argv(data, tiny_mpnet, tiny_bert, out), "train.teacher_pseudo_per_class=4"]
    assert _start_and_stop(argv, out, _saves(whole) // 2, signal.SIGKILL) == -signal.SIGKILL
    state = Checkpoints(run_state_folder(out) / "checkpoints", 0).latest()
    assert state is not None and state["position"][0] == "train"
    assert len(state["pseudo_labels"][0]) == 8  # 4 per class
    assert main(["-q", "train", "--resume", "--out", str(out)]) == 0
    np.testing.assert_allclose(_proba(out), _proba(whole), atol=ATOL)


@pytest.mark.slow
def test_a_run_with_the_self_training_check_resumes_to_the_same_model(
    reference: tuple[tuple[Path, Path], Path], tiny_mpnet: Path, tiny_bert: Path, tmp_path: Path
) -> None:
    """The check's verdict (and pseudo-labels, if it let them in) travel in the checkpoint:
    a resume reuses it rather than reading the pool again."""
    data, _ = reference
    settings = ["train.teacher_pseudo_per_class=4", "train.teacher_pseudo_check=true"]
    assert main([*_argv(data, tiny_mpnet, tiny_bert, tmp_path / "whole"), *settings]) == 0
    whole = tmp_path / "whole"
    out = tmp_path / "run"
    argv = [*_argv(data, tiny_mpnet, tiny_bert, out), *settings]
    assert _start_and_stop(argv, out, _saves(whole) // 2, signal.SIGKILL) == -signal.SIGKILL
    state = Checkpoints(run_state_folder(out) / "checkpoints", 0).latest()
    assert state is not None and state["position"][0] == "train"
    verdict = state["pseudo_check"]
    assert verdict["labels"] == 20 and (state["pseudo_labels"] is not None) is verdict["ran"]
    assert main(["-q", "train", "--resume", "--out", str(out)]) == 0
    np.testing.assert_allclose(_proba(out), _proba(whole), atol=ATOL)


@pytest.mark.slow
def test_ctrl_c_writes_a_checkpoint_and_resume_finishes_the_same_model(
    reference: tuple[tuple[Path, Path], Path], tiny_mpnet: Path, tiny_bert: Path, tmp_path: Path
) -> None:
    data, uninterrupted = reference
    out = tmp_path / "run"
    argv = _argv(data, tiny_mpnet, tiny_bert, out)
    assert _start_and_stop(argv, out, 4, signal.SIGINT) == 130
    assert main(["-q", "train", "--resume", "--out", str(out)]) == 0
    np.testing.assert_allclose(_proba(out), _proba(uninterrupted), atol=ATOL)


def test_a_checkpoint_holds_only_the_trainable_weights(
    reference: tuple[tuple[Path, Path], Path], tiny_mpnet: Path, tiny_bert: Path, tmp_path: Path
) -> None:
    from nanonet.train.config import RunConfig
    from nanonet.train.run import fit, load_task

    (train, pool), _ = reference
    cfg = RunConfig()
    cfg.data.train_file, cfg.data.unlabeled_file = str(train), str(pool)
    cfg.model.teacher, cfg.model.students = str(tiny_mpnet), ["teacher:0,1", str(tiny_bert)]
    for item in ("train.steps=30", "train.threads=1", *RUN):
        cfg.override(item)
    result = fit(cfg, load_task(cfg.data), progress=False, checkpoint_dir=tmp_path)
    state = Checkpoints(tmp_path, 0).latest()
    assert state is not None and state["position"] == ["done", 0]
    assert len(list(tmp_path.glob("checkpoint-*.pt"))) == 2  # the last two
    saved = [sum(t.numel() for t in m["params"].values()) for m in state["members"]]
    # The teacher's stage-1 adapters and bottom biases are folded in and frozen after stage 1:
    # the checkpoint keeps them once, beside the weights that still train.
    teacher_params = state["members"][0]["params"]
    saved[0] += sum(
        t.numel() for n, t in state["teacher_stage1"][0].items() if n not in teacher_params
    )
    assert saved == [m["trainable_params"] for m in result.report["members"]]
    assert sum(saved) < 0.2 * sum(m["total_params"] for m in result.report["members"])


def test_checkpoint_files_rotate_and_a_damaged_newest_falls_back(tmp_path: Path) -> None:
    ckpts = Checkpoints(tmp_path, every=1)
    for step in range(4):
        ckpts.save({"position": ["train", step]})
    assert [p.name for p in ckpts.files()] == ["checkpoint-000002.pt", "checkpoint-000003.pt"]
    assert not list(tmp_path.glob("*.tmp"))
    ckpts.files()[-1].write_bytes(b"not a checkpoint")
    state = ckpts.latest()
    assert state is not None and state["position"] == ["train", 2]


def test_a_checkpoint_with_a_pickle_payload_is_refused(tmp_path: Path) -> None:
    class Payload:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (print, ("executed",))

    torch.save({"format": 1, "evil": Payload()}, tmp_path / "checkpoint-000000.pt")
    assert Checkpoints(tmp_path, every=1).latest() is None  # unreadable, not executed


def test_batch_iterator_state_continues_the_same_sequence() -> None:
    lengths = list(np.random.default_rng(0).integers(1, 50, size=37))
    rng = np.random.default_rng(5)
    it = bucketed_epochs(lengths, 4, rng)
    for _ in range(13):
        next(it)
    state, rng_state = it.state(), rng.bit_generator.state
    expected = [next(it) for _ in range(30)]  # crosses two epoch boundaries
    rng2 = np.random.default_rng(99)
    rng2.bit_generator.state = rng_state
    resumed = bucketed_epochs(lengths, 4, rng2)
    resumed.load_state(state)
    assert [next(resumed) for _ in range(30)] == expected


def test_resume_errors_are_one_sentence(
    reference: tuple[tuple[Path, Path], Path],
    tiny_mpnet: Path,
    tiny_bert: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    data, uninterrupted = reference
    out = tmp_path / "run"
    code = main(["-q", "train", "--resume", "--out", str(out)])
    assert "Nothing to resume" in _user_error(capsys, code)
    code = main(["-q", "train", "--resume", "--out", str(uninterrupted)])
    assert "it finished" in _user_error(capsys, code)
    code = main(["-q", "train", "--resume", "--steps", "5", "--seed", "0", "--out", str(out)])
    assert "drop --seed, --steps" in _user_error(capsys, code)
    # an interrupted run's state is not silently thrown away by a new run
    run_state_folder(out).mkdir()
    code = main(_argv(data, tiny_mpnet, tiny_bert, out))
    assert "pass --resume to continue it" in _user_error(capsys, code)
