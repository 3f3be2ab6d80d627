"""End-to-end tests of the `nanonet` command line on tiny random models.

Most tests call `nanonet.cli.main` in-process; a few run the installed console script to prove
what a user really sees. One training run (module-scoped) is shared by the read-only tests.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import synthetic_rows
from nanonet.cli import main
from nanonet.models.classifier import NanoNetClassifier
from nanonet.train.config import RunConfig
from nanonet.train.trainer import NanoNetTrainer

NANONET = Path(sys.executable).parent / "nanonet"

# Few steps, a tiny holdout and one torch thread: a run takes about a second even on a busy
# machine (with all threads, torch's thread contention makes these tiny models ~30x slower).
FAST_OVERRIDES = (
    "train.teacher_warmup_steps=2",
    "train.teacher_contrastive_steps=2",
    "train.selection_holdout=5",
    "model.min_speedup=null",  # tiny models: no student is 10x faster than the teacher
)
STEPS = 3
WARMUP_STEPS = 2
CONTRASTIVE_STEPS = 2 * RunConfig().train.teacher_contrastive_draws  # steps per draw x draws

TEXTS = ["good great film", "bad awful plot", "the movie was fine", "boring dull story", "a"]

TrainArgv = Callable[..., list[str]]


# ---------------------------------------------------------------------------- helpers --------
def _write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def _train_argv(
    train: Path | str, pool: Path | str | None, out: Path, teacher: Path, student: Path, *extra: str
) -> list[str]:
    """`nanonet -q train` on the tiny models; `extra` options go before the overrides."""
    argv = ["-q", "train", "--train", str(train)]
    if pool is not None:
        argv += ["--unlabeled", str(pool)]
    argv += ["--teacher", str(teacher), "--students", "teacher:0,1", str(student)]
    argv += ["--steps", str(STEPS), "--threads", "1", "--out", str(out)]
    return [*argv, *extra, *FAST_OVERRIDES]


def _predict_argv(model: Path, input_file: Path, output: Path, *extra: str) -> list[str]:
    argv = ["-q", "predict", "--model", str(model), "--input", str(input_file)]
    return [*argv, "--output", str(output), *extra]


def _eval_argv(model: Path, input_file: Path, *extra: str) -> list[str]:
    return ["-q", "eval", "--model", str(model), "--input", str(input_file), *extra]


def _user_error(capsys: pytest.CaptureFixture[str], code: int) -> str:
    """Assert the CLI's contract for a user mistake and return the error line."""
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("nanonet: error: "), err
    return lines[0]


def _write(path: Path, content: str | bytes) -> None:
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")


def _exit_code(argv: list[str]) -> int:
    """main's exit code, also when argparse rejects the arguments (SystemExit)."""
    try:
        return main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)


def _leftovers(parent: Path) -> list[Path]:
    """Temporary folders of `nanonet train` (partial output, replaced old output)."""
    return sorted([*parent.glob(".*.partial*"), *parent.glob(".*.old-*")])


def _run_console(*args: str) -> subprocess.CompletedProcess[str]:
    assert NANONET.is_file(), f"console script not installed at {NANONET}"
    return subprocess.run(
        [str(NANONET), *args], capture_output=True, text=True, timeout=300, check=False
    )


def _raise_interrupt(*args: object, **kwargs: object) -> NoReturn:
    raise KeyboardInterrupt


# ---------------------------------------------------------------------------- fixtures -------
@pytest.fixture(scope="module", autouse=True)
def _restore_torch_threads() -> Iterator[None]:
    # `--threads 1` calls torch.set_num_threads for the whole process.
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@dataclass(frozen=True)
class Trained:
    out: Path
    code: int
    stdout: str


@pytest.fixture(scope="module")
def module_csv(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Like conftest's synthetic_csv, but shared by the module: (train.csv, pool.csv)."""
    folder = tmp_path_factory.mktemp("cli_data")
    rows = synthetic_rows(10, seed=1)
    train = _write_csv(folder / "train.csv", ["text", "label"], rows)
    seen = {text for text, _ in rows}
    pool_rows = [[t] for t, _ in synthetic_rows(40, seed=2) if t not in seen]
    return train, _write_csv(folder / "pool.csv", ["text"], pool_rows)


@pytest.fixture(scope="module")
def trained(
    tmp_path_factory: pytest.TempPathFactory,
    module_csv: tuple[Path, Path],
    tiny_mpnet: Path,
    tiny_bert: Path,
) -> Trained:
    """One `nanonet train` run; its --out folder must only be read."""
    out = tmp_path_factory.mktemp("cli_run") / "model"
    train, pool = module_csv
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = main(_train_argv(train, pool, out, tiny_mpnet, tiny_bert))
    return Trained(out, code, stdout.getvalue())


@pytest.fixture
def train_argv(synthetic_csv: tuple[Path, Path], tiny_mpnet: Path, tiny_bert: Path) -> TrainArgv:
    """Builds train argv on the function-scoped synthetic_csv; train/pool can be replaced."""
    default_train, default_pool = synthetic_csv

    def build(
        out: Path, *extra: str, train: Path | str = default_train, pool: Path | None = default_pool
    ) -> list[str]:
        return _train_argv(train, pool, out, tiny_mpnet, tiny_bert, *extra)

    return build


@pytest.fixture
def texts_csv(tmp_path: Path) -> Path:
    return _write_csv(tmp_path / "texts.csv", ["text"], [[t] for t in TEXTS])


# ---------------------------------------------------------------------------- train: output --
def test_train_exits_0_and_names_the_kept_student(trained: Trained) -> None:
    assert trained.code == 0
    assert "[kept]" in trained.stdout
    assert "saved the kept student" in trained.stdout and str(trained.out) in trained.stdout


def test_train_writes_model_config_log_and_card(trained: Trained) -> None:
    names = {p.name for p in trained.out.iterdir()}
    expected = {
        "config.json",
        "model.safetensors",
        "head.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "nanonet.json",
        "README.md",
        "config.yaml",
        "training_summary.json",
        "train_log.jsonl",
    }
    assert expected <= names, sorted(expected - names)


def test_train_leaves_no_partial_folder(trained: Trained) -> None:
    assert _leftovers(trained.out.parent) == []
    assert sorted(p.name for p in trained.out.parent.iterdir()) == [trained.out.name]


def test_train_nanonet_json_and_model_card_name_the_labels(trained: Trained) -> None:
    meta = json.loads((trained.out / "nanonet.json").read_text(encoding="utf-8"))
    assert meta["label_names"] == ["neg", "pos"]
    card = (trained.out / "README.md").read_text(encoding="utf-8")
    assert "`neg`, `pos`" in card


def test_train_summary_records_seed_data_sizes_and_parameters(trained: Trained) -> None:
    report = json.loads((trained.out / "training_summary.json").read_text(encoding="utf-8"))
    summary = report["summary"]
    assert summary["seed"] == 0
    assert summary["labelled_examples"] == 20  # every labelled row: no --labels-per-class
    assert summary["unlabelled_examples"] > 0
    assert 0 < summary["trainable_params"] < summary["total_params"]


def test_train_log_has_one_json_object_per_step(trained: Trained) -> None:
    lines = (trained.out / "train_log.jsonl").read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines]
    summary = json.loads((trained.out / "training_summary.json").read_text(encoding="utf-8"))
    distill = summary["distill_steps"]
    assert distill > 0  # stage 4 (students from the cached teacher) is on by default
    assert len(records) == CONTRASTIVE_STEPS + WARMUP_STEPS + STEPS + distill
    phases = ["contrastive"] * CONTRASTIVE_STEPS + ["warmup"] * WARMUP_STEPS + ["train"] * STEPS
    assert [r["phase"] for r in records] == [*phases, *["distill"] * distill]
    for record in records:
        assert isinstance(record["step"], int)
        teacher_key = {"contrastive": "teacher_pair", "distill": "s0_kd"}.get(
            record["phase"], "teacher_sup"
        )
        assert teacher_key in record
    assert all("loss" in r for r in records if r["phase"] in ("train", "distill"))


def test_train_config_yaml_holds_the_run_settings(trained: Trained) -> None:
    cfg = RunConfig.from_yaml(trained.out / "config.yaml")
    assert cfg.train.steps == STEPS
    assert cfg.train.teacher_warmup_steps == WARMUP_STEPS
    assert cfg.model.students[0] == "teacher:0,1"
    assert cfg.data.dataset is None and cfg.data.train_file is not None


def test_train_from_saved_config_reproduces_the_model(trained: Trained, tmp_path: Path) -> None:
    again = tmp_path / "again"
    code = main(["-q", "train", "--config", str(trained.out / "config.yaml"), "--out", str(again)])
    assert code == 0
    first = NanoNetClassifier.from_pretrained(trained.out).predict_proba(TEXTS)
    second = NanoNetClassifier.from_pretrained(again).predict_proba(TEXTS)
    np.testing.assert_allclose(first, second, atol=1e-6)


def test_saved_config_reproduces_from_another_working_directory(
    synthetic_csv: tuple[Path, Path],
    tiny_mpnet: Path,
    tiny_bert: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The model card promises `nanonet train --config config.yaml` reproduces the model; a
    # user who trained with relative paths must be able to rerun it from anywhere.
    train, pool = synthetic_csv
    monkeypatch.chdir(train.parent)
    assert main(_train_argv(train.name, pool.name, Path("first"), tiny_mpnet, tiny_bert)) == 0
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    config = train.parent / "first" / "config.yaml"
    assert main(["-q", "train", "--config", str(config), "--out", "second"]) == 0


def test_train_overwrite_replaces_existing_out(train_argv: TrainArgv, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "stale.txt").write_text("old run", encoding="utf-8")
    assert main(train_argv(out, "--overwrite")) == 0
    assert not (out / "stale.txt").exists()
    assert (out / "nanonet.json").is_file()
    assert _leftovers(tmp_path) == []


# ---------------------------------------------------------------------------- predict --------
def test_predict_csv_writes_label_and_probability_columns(
    trained: Trained, texts_csv: Path, tmp_path: Path
) -> None:
    output = tmp_path / "preds.csv"
    assert main(_predict_argv(trained.out, texts_csv, output)) == 0
    frame = pd.read_csv(output)
    assert list(frame.columns) == ["row", "label", "prob_neg", "prob_pos"]
    assert len(frame) == len(TEXTS)
    np.testing.assert_allclose(frame["prob_neg"] + frame["prob_pos"], 1.0, atol=1e-5)
    expected = np.where(frame["prob_pos"] > frame["prob_neg"], "pos", "neg")
    assert frame["label"].tolist() == expected.tolist()
    assert not list(tmp_path.glob(".*.partial"))


def test_predict_matches_the_python_api(trained: Trained, texts_csv: Path, tmp_path: Path) -> None:
    output = tmp_path / "preds.csv"
    main(_predict_argv(trained.out, texts_csv, output))
    proba = NanoNetClassifier.from_pretrained(trained.out).predict_proba(TEXTS)
    frame = pd.read_csv(output)
    np.testing.assert_allclose(frame[["prob_neg", "prob_pos"]].to_numpy(), proba, atol=1e-6)


def test_predict_jsonl_output_has_one_record_per_text(
    trained: Trained, texts_csv: Path, tmp_path: Path
) -> None:
    output = tmp_path / "preds.jsonl"
    assert main(_predict_argv(trained.out, texts_csv, output)) == 0
    records = [json.loads(line) for line in output.read_text(encoding="utf-8").splitlines()]
    assert len(records) == len(TEXTS)
    for record in records:
        assert set(record) == {"row", "label", "prob_neg", "prob_pos"}
        assert record["label"] in ("neg", "pos")
        assert record["prob_neg"] + record["prob_pos"] == pytest.approx(1.0, abs=1e-5)


def test_predict_txt_input_is_one_text_per_line(trained: Trained, tmp_path: Path) -> None:
    txt = tmp_path / "texts.txt"
    txt.write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    output = tmp_path / "preds.csv"
    assert main(_predict_argv(trained.out, txt, output)) == 0
    assert len(pd.read_csv(output)) == len(TEXTS)


def test_predict_overwrite_replaces_an_existing_output(
    trained: Trained, texts_csv: Path, tmp_path: Path
) -> None:
    output = tmp_path / "preds.csv"
    output.write_text("keep me\n", encoding="utf-8")  # without --overwrite: a user error below
    assert main([*_predict_argv(trained.out, texts_csv, output), "--overwrite"]) == 0
    assert len(pd.read_csv(output)) == len(TEXTS)


# ---------------------------------------------------------------------------- eval -----------
def test_eval_prints_accuracy_and_confusion_matrix(
    trained: Trained, module_csv: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    train, _ = module_csv
    assert main(_eval_argv(trained.out, train)) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("accuracy  ")
    assert 0.0 <= float(lines[0].split()[1]) <= 1.0
    header = lines.index("confusion matrix (rows = true, columns = predicted):")
    assert lines[header + 1].split() == ["neg", "pos"]
    rows = [line.split() for line in lines[header + 2 : header + 4]]
    assert [row[0] for row in rows] == ["neg", "pos"]
    assert [sum(int(v) for v in row[1:]) for row in rows] == [10, 10]


def test_eval_writes_metrics_json(
    trained: Trained, module_csv: tuple[Path, Path], tmp_path: Path
) -> None:
    train, _ = module_csv
    output = tmp_path / "metrics.json"
    assert main(_eval_argv(trained.out, train, "--output", str(output))) == 0
    metrics = json.loads(output.read_text(encoding="utf-8"))
    assert metrics["n"] == 20
    assert np.asarray(metrics["confusion_matrix"]).sum() == 20


# ---------------------------------------------------------------------------- user errors ----
def _train(
    *extra: str, train: str = "{train}", pool: str | None = "{pool}", teacher: str = "{teacher}"
) -> list[str]:
    """`nanonet train` argv with placeholders, filled in by the catalogue test below."""
    return _train_argv(train, pool, Path("{out}"), Path(teacher), Path("{student}"), *extra)


def _predict(*extra: str, model: str = "{model}", output: str = "{tmp}/preds.csv") -> list[str]:
    return _predict_argv(Path(model), Path("{texts}"), Path(output), *extra)


def _eval(*extra: str, source: str = "{labelled}") -> list[str]:
    return _eval_argv(Path("{model}"), Path(source), *extra)


def _config(name: str) -> list[str]:
    return ["-q", "train", "--config", f"{{tmp}}/{name}", "--out", "{out}"]


# One row per user mistake: the command, the files it needs (written into the test's folder),
# and a fragment of the one sentence it must end in.
USER_ERRORS = [
    # train: the data
    pytest.param(_train(train="{tmp}/missing.csv"), {}, "missing.csv", id="train-missing-file"),
    pytest.param(_train("--text-column", "nope"), {}, "'nope'", id="train-unknown-text-column"),
    pytest.param(
        _train("--labels-per-class", "50"), {}, "--labels-per-class 10", id="train-too-few-labels"
    ),
    pytest.param(
        _train(train="{tmp}/one.csv"),
        {"one.csv": "text,label\n" + "good film,pos\n" * 3},
        "two classes",
        id="train-single-class",
    ),
    pytest.param(
        _train(train="{tmp}/blank.csv"),
        {"blank.csv": "text,label\ngood film,pos\n   ,pos\nbad film,neg\n"},
        "empty or whitespace-only",
        id="train-whitespace-only-text",
    ),
    pytest.param(
        _train(train="{tmp}/latin.csv"),
        {"latin.csv": b"text,label\n\xff\xfe bad,pos\ngood film,neg\n"},
        "not valid UTF-8",
        id="train-non-utf8-file",
    ),
    pytest.param(
        _train(pool="{tmp}/pool_labelled.csv"),
        {"pool_labelled.csv": "text,label\na film,pos\n"},
        "contains labels",
        id="train-labels-in-unlabelled-file",
    ),
    # train: the run's settings and output
    pytest.param(
        ["-q", "train", "--dataset", "nope", "--out", "{out}"],
        {},
        "nope",
        id="train-unknown-dataset",
    ),
    pytest.param(_train("train.nope=1"), {}, "train.nope", id="train-unknown-override"),
    pytest.param(
        _config("run.yaml"),
        {"run.yaml": "train:\n  steps: 3\n  stepz: 4\n"},
        "train.stepz",
        id="train-config-unknown-key",
    ),
    pytest.param(_config("nope.yaml"), {}, "nope.yaml", id="train-missing-config"),
    # The teacher is resolved inside the trainer, after the partial folder was created.
    pytest.param(_train(teacher="{tmp}/no-teacher"), {}, "no-teacher", id="train-unknown-teacher"),
    pytest.param(_train("--seed", "-1"), {}, "train.seed must be at least 0", id="train-seed"),
    pytest.param(
        _train("--max-unlabeled", "-1"),
        {},
        "data.max_unlabeled must be at least 0",
        id="train-max-unlabeled",
    ),
    pytest.param(
        _train("--threads", "-1"), {}, "train.threads must be at least 1", id="train-threads"
    ),
    pytest.param(_train(), {"out/mine.txt": "precious"}, "--overwrite", id="train-existing-out"),
    # predict
    pytest.param(
        _predict(), {"preds.csv": "keep me\n"}, "--overwrite", id="predict-existing-output"
    ),
    pytest.param(_predict(output="{tmp}/preds.xlsx"), {}, ".xlsx", id="predict-output-extension"),
    pytest.param(_predict(model="{tmp}/nope"), {}, "does not exist", id="predict-missing-model"),
    pytest.param(
        _predict(output="{tmp}/no-such-folder/preds.csv"),
        {},
        "create it first",
        id="predict-output-in-missing-folder",
    ),
    pytest.param(
        _predict("--batch-size", "0"),
        {},
        "--batch-size must be at least 1",
        id="predict-batch-size",
    ),
    # eval
    pytest.param(
        _eval(source="{tmp}/other.csv"),
        {"other.csv": "text,label\ngood film,meh\n"},
        "'meh'",
        id="eval-unknown-label",
    ),
    pytest.param(
        _eval(source="{tmp}/unlabelled.csv"),
        {"unlabelled.csv": "text,label\ngood film,\n"},
        "no labelled rows",
        id="eval-no-labels",
    ),
    pytest.param(
        _eval("--output", "{tmp}/no-such-folder/metrics.json"),
        {},
        "create it first",
        id="eval-output-in-missing-folder",
    ),
]


def _snapshot(folder: Path) -> dict[str, bytes | None]:
    return {
        str(p.relative_to(folder)): p.read_bytes() if p.is_file() else None
        for p in folder.rglob("*")
    }


@pytest.mark.parametrize(("argv", "files", "words"), USER_ERRORS)
def test_user_error_is_one_sentence_exit_2_and_writes_nothing(
    argv: list[str],
    files: dict[str, str | bytes],
    words: str,
    trained: Trained,
    module_csv: tuple[Path, Path],
    synthetic_csv: tuple[Path, Path],
    tiny_mpnet: Path,
    tiny_bert: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name, content in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        _write(tmp_path / name, content)
    train, pool = synthetic_csv
    paths = {
        "tmp": tmp_path,
        "out": tmp_path / "out",
        "train": train,
        "pool": pool,
        "texts": _write_csv(tmp_path / "texts.csv", ["text"], [[t] for t in TEXTS]),
        "labelled": module_csv[0],
        "model": trained.out,
        "teacher": tiny_mpnet,
        "student": tiny_bert,
    }
    before = _snapshot(tmp_path)
    code = _exit_code([arg.format(**paths) for arg in argv])
    assert words in _user_error(capsys, code)
    # Nothing written, nothing half-written, nothing replaced: no --out, no partial folder,
    # no --output, an existing one untouched.
    assert _snapshot(tmp_path) == before


# ---------------------------------------------------------------------------- interrupts -----
def test_interrupted_train_returns_130_and_leaves_nothing(
    train_argv: TrainArgv,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(NanoNetTrainer, "train", _raise_interrupt)
    out = tmp_path / "out"
    assert main(train_argv(out)) == 130
    assert "interrupted" in capsys.readouterr().err
    assert not out.exists()
    assert _leftovers(tmp_path) == []


def test_interrupted_overwrite_keeps_the_previous_model(
    train_argv: TrainArgv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(NanoNetTrainer, "train", _raise_interrupt)
    out = tmp_path / "out"
    out.mkdir()
    (out / "nanonet.json").write_text("{}", encoding="utf-8")
    assert main(train_argv(out, "--overwrite")) == 130
    assert [p.name for p in out.iterdir()] == ["nanonet.json"]
    assert _leftovers(tmp_path) == []


def test_interrupt_while_saving_leaves_no_model_folder_and_resumes(
    train_argv: TrainArgv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def half_save(self: NanoNetClassifier, path: str | Path) -> NoReturn:
        (Path(path) / "model.safetensors").write_bytes(b"half a model")
        raise KeyboardInterrupt

    monkeypatch.setattr(NanoNetClassifier, "save_pretrained", half_save)
    out = tmp_path / "out"
    assert main(train_argv(out)) == 130
    assert not out.exists()
    # Only the run's state is left (its last checkpoint), and --resume finishes the model.
    assert [p.name for p in _leftovers(tmp_path)] == [".out.partial"]
    monkeypatch.undo()
    assert main(["-q", "train", "--resume", "--out", str(out)]) == 0
    assert _leftovers(tmp_path) == []
    NanoNetClassifier.from_pretrained(out)


# ---------------------------------------------------------------------------- console script -
def test_console_script_user_error_exits_2_without_traceback(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = _run_console("-q", "train", "--train", str(tmp_path / "missing.csv"), "--out", str(out))
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.splitlines() == [proc.stderr.strip()]  # exactly one line
    assert proc.stderr.startswith("nanonet: error: ")
    assert not out.exists()


def test_console_script_error_after_loading_a_model_has_no_traceback(
    trained: Trained, tmp_path: Path
) -> None:
    data = _write_csv(tmp_path / "other.csv", ["text", "label"], [["good film", "meh"]])
    proc = _run_console(*_eval_argv(trained.out, data))
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("nanonet: error: ")


def test_console_script_quiet_error_is_the_only_stderr_line(
    trained: Trained, tmp_path: Path
) -> None:
    # -q promises no progress bars or info logs, so the error must be all there is on stderr.
    data = _write_csv(tmp_path / "other.csv", ["text", "label"], [["good film", "meh"]])
    proc = _run_console(*_eval_argv(trained.out, data))
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
