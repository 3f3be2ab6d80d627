"""The setfit-distill benchmark method: SetFit's teacher distilled with setfit's
DistillationTrainer into a small body on the unlabelled pool (tiny random encoders here)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conftest import synthetic_rows
from nanonet.bench.config import METHOD_DEFAULTS, expand_runs, load_bench_config
from nanonet.bench.methods import RunContext, get_method
from nanonet.data.task import Task
from nanonet.errors import NanoNetError

pytest.importorskip("setfit")

REPO = Path(__file__).resolve().parent.parent


def _task(unlabelled: int = 12) -> Task:
    rows = synthetic_rows(10, seed=1)
    test = synthetic_rows(10, seed=3)
    names = ["neg", "pos"]
    return Task(
        name="synthetic",
        label_names=names,
        labelled_texts=[t for t, _ in rows],
        labelled_labels=[names.index(label) for _, label in rows],
        unlabelled_texts=[t for t, _ in synthetic_rows(unlabelled, seed=2)],
        test_texts=[t for t, _ in test],
        test_labels=[names.index(label) for _, label in test],
        max_length=32,
    )


def _ctx(tmp_path: Path) -> RunContext:
    return RunContext(seed=0, threads=1, labels_per_class=10, batch_size=64, scratch=tmp_path)


def _settings(teacher: Path, **extra: Any) -> dict[str, Any]:
    # One pair per labelled text for the teacher, a few distillation steps: seconds, not hours.
    return {
        **METHOD_DEFAULTS["setfit-distill"],
        "teacher": str(teacher),
        "num_iterations": 1,
        "distill_max_steps": 3,
        "distill_batch_size": 8,
        **extra,
    }


@pytest.fixture
def spied(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[list[str]]]:
    """What the distillation's two phases were given: the texts its pairs were built from
    and the texts the student's head was fitted on."""
    from setfit import DistillationTrainer
    from setfit.sampler import ContrastiveDistillationDataset

    seen: dict[str, list[list[str]]] = {"pairs": [], "head": []}
    pairs_init = ContrastiveDistillationDataset.__init__
    train_classifier = DistillationTrainer.train_classifier

    def spy_pairs(self: Any, sentences: list[str], *args: Any, **kwargs: Any) -> None:
        seen["pairs"].append(list(sentences))
        pairs_init(self, sentences, *args, **kwargs)

    def spy_head(self: Any, x_train: list[str], *args: Any, **kwargs: Any) -> None:
        seen["head"].append(list(x_train))
        train_classifier(self, x_train, *args, **kwargs)

    monkeypatch.setattr(ContrastiveDistillationDataset, "__init__", spy_pairs)
    monkeypatch.setattr(DistillationTrainer, "train_classifier", spy_head)
    return seen


@pytest.mark.parametrize("student", ["bert", "teacher:bottom1"])
def test_distils_on_the_unlabelled_pool(
    tmp_path: Path,
    tiny_mpnet: Path,
    tiny_bert: Path,
    spied: dict[str, list[list[str]]],
    student: str,
) -> None:
    task = _task()
    spec = str(tiny_bert) if student == "bert" else student
    trained = get_method("setfit-distill")(
        task, _settings(tiny_mpnet, student=spec), _ctx(tmp_path)
    )

    predictions = trained.predict(task.test_texts)
    assert predictions.shape == (len(task.test_texts),)
    assert set(predictions.tolist()) <= {0, 1}
    # Both phases ran on exactly the unlabelled pool (the teacher's own SetFit training builds
    # labelled pairs with another dataset class, so it is not among these).
    assert spied["pairs"] == [task.unlabelled_texts]
    assert spied["head"] == [task.unlabelled_texts]

    details = trained.details
    assert details["teacher_body"] == str(tiny_mpnet) and details["student_body"] == spec
    assert details["teacher_setfit"] == {"num_iterations": 1, "batch_size": 16, "num_epochs": 1}
    distillation = details["distillation"]
    assert distillation["steps"] == 3 and distillation["max_steps"] == 3
    assert distillation["unlabelled_texts"] == len(task.unlabelled_texts)
    assert distillation["pairs_per_epoch"] == 3 * 8 // 2 + 1  # setfit's halved pair cap
    assert distillation["pair_targets"] == "teacher cosine"

    # The deployed student alone: all its weights train (SetFit fine-tunes the whole body).
    layers = 3 if student == "bert" else 1  # the tiny BERT, or one layer of the tiny MPNet
    assert trained.trainable_params == trained.total_params
    trained.save(tmp_path / "model")
    config = json.loads((tmp_path / "model" / "config.json").read_text())
    assert config["num_hidden_layers"] == layers
    assert config["model_type"] == ("bert" if student == "bert" else "mpnet")


def test_pair_targets_are_the_teachers_cosines() -> None:
    import torch

    from nanonet.bench.methods.setfit_distill import teacher_cosine_pairs

    texts = ["a", "b", "c", "d", "e"]
    emb = torch.nn.functional.normalize(
        torch.randn(5, 8, generator=torch.Generator().manual_seed(0))
    )
    cos = emb @ emb.T
    pairs = teacher_cosine_pairs(texts, cos, None)
    assert len(pairs) == 15  # every pair with self-pairs, as setfit samples them
    for p in pairs:
        i, j = texts.index(p["sentence_1"]), texts.index(p["sentence_2"])
        assert float(p["label"]) == pytest.approx(float(cos[i, j]))
    assert len({round(float(p["label"]), 6) for p in pairs}) > 2


def test_setfit_1_2_distillation_targets_are_all_one() -> None:
    """The bug `fix_pair_targets` works around. When this fails, setfit has fixed it: the
    workaround (and this test) can go."""
    import torch
    from setfit.sampler import ContrastiveDistillationDataset

    cos = torch.full((4, 4), 0.25).fill_diagonal_(1.0)
    pairs = list(ContrastiveDistillationDataset(["a", "b", "c", "d"], cos, None))
    assert {float(p["label"]) for p in pairs} == {1.0}


def test_as_released_runs_the_library_pairs(tmp_path: Path, tiny_mpnet: Path) -> None:
    settings = _settings(tiny_mpnet, student="teacher:bottom1", fix_pair_targets=False)
    trained = get_method("setfit-distill")(_task(), settings, _ctx(tmp_path))
    assert trained.details["distillation"]["pair_targets"] == "as released"
    assert trained.details["distillation"]["steps"] == 3


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"distill_max_steps": 0}, "distill_max_steps must be an integer >= 1 or -1"),
        ({"distill_num_iterations": 0}, "distill_num_iterations must be a positive integer"),
        ({"distill_batch_size": "16"}, "distill_batch_size must be >= 1"),
        ({"num_iterations": 0, "fix_pair_targets": "yes"}, "num_iterations must be >= 1.*"
         "fix_pair_targets must be true or false"),
        ({"teacher": "teacher:bottom2"}, "teacher must be a whole encoder"),
        ({"student": " "}, "student must be an encoder name or a student spec"),
    ],
)  # fmt: skip
def test_bad_settings_fail_at_once_with_one_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, change: dict[str, Any], message: str
) -> None:
    import nanonet.bench.methods.setfit_distill as module

    def no_training(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("trained before the settings were checked")

    monkeypatch.setattr(module, "train_setfit", no_training)
    monkeypatch.setattr(module, "load_setfit_model", no_training)
    settings = {**METHOD_DEFAULTS["setfit-distill"], "distill_max_steps": 10, **change}
    with pytest.raises(NanoNetError, match=f"setfit-distill settings: .*{message}"):
        get_method("setfit-distill")(_task(), settings, _ctx(tmp_path))


def test_a_task_without_unlabelled_texts_is_refused(tmp_path: Path, tiny_mpnet: Path) -> None:
    with pytest.raises(NanoNetError, match="no unlabelled texts"):
        get_method("setfit-distill")(_task(0), _settings(tiny_mpnet), _ctx(tmp_path))


def test_a_student_that_cannot_be_built_fails_before_the_teacher_trains(
    tmp_path: Path, tiny_mpnet: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import nanonet.bench.methods.setfit_distill as module

    def no_training(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the teacher trained first")

    monkeypatch.setattr(module, "train_setfit", no_training)
    settings = _settings(tiny_mpnet, student="teacher:bottom9")  # the tiny MPNet has 4 layers
    with pytest.raises(NanoNetError, match="Layer selector 'bottom9'"):
        get_method("setfit-distill")(_task(), settings, _ctx(tmp_path))


def test_protocol_rows_mirror_setfit_mpnet() -> None:
    protocol = load_bench_config(REPO / "benchmarks/configs/protocol.yaml")
    runs = expand_runs(protocol)
    mpnet = {(r.dataset, r.seed): r.settings for r in runs if r.method.name == "setfit-mpnet"}
    for name, student in (
        ("setfit-distill", "minilm-l3"),
        ("setfit-distill-bottom1", "teacher:bottom1"),
    ):
        mine = {(r.dataset, r.seed): r.settings for r in runs if r.method.name == name}
        assert mine.keys() == mpnet.keys()  # same datasets and seeds (seed 0 on 20newsgroups)
        for key, settings in mine.items():
            assert settings["teacher"] == mpnet[key]["body"] == "mpnet"
            assert settings["student"] == student
            for k in ("num_iterations", "batch_size", "num_epochs"):
                assert settings[k] == mpnet[key][k]
            assert settings["distill_max_steps"] >= 1  # a cost cap, stated in the note
            assert settings["fix_pair_targets"] is True
        note = protocol.method(name).note
        assert "max_steps" in note and "teacher" in note


def test_report_row(tmp_path: Path) -> None:
    from nanonet.bench.report import write_report
    from nanonet.bench.results import base_record, result_path, write_json_atomic

    raw = {
        "datasets": ["rotten_tomatoes"],
        "seeds": [0],
        "results_dir": str(tmp_path / "results"),
        "report": str(tmp_path / "RESULTS.md"),
        "plots_dir": str(tmp_path / "plots"),
        "methods": [
            {"name": "setfit-distill", "kind": "setfit-distill",
             "settings": {"distill_max_steps": 100}, "note": "distill max_steps=100"},
        ],
    }  # fmt: skip
    path = tmp_path / "bench.yaml"
    path.write_text(json.dumps(raw), encoding="utf-8")
    cfg = load_bench_config(path)
    [run] = expand_runs(cfg)
    record = base_record(run, "ok")
    record.update(
        accuracy=0.8, macro_f1=0.79, train_seconds=1800.0, peak_rss_mb=2000.0,
        baseline_rss_mb=450.0, trainable_params=17_400_000, total_params=17_400_000,
        model_size_mb=66.0, docs_per_s=500.0, teacher_docs_per_s=50.0, throughput_ratio=10.0,
        throughput_texts=500, test_size=2000, details={"student_body": "minilm-l3"},
    )  # fmt: skip
    write_json_atomic(result_path(cfg.results_dir, run), record)
    write_report(cfg.results_dir, cfg.report, cfg.plots_dir, cfg)
    row = next(
        line for line in cfg.report.read_text().splitlines() if line.startswith("| setfit-distill")
    )
    assert "| 0.800 |" in row and "| 1800 |" in row and "17.4M / 17.4M" in row
    assert "| 500.0 | 10.0 | 10.0 |" in row  # docs/s, x teacher, x teacher mean
    assert row.endswith("distill max_steps=100 |")


def test_method_defaults_are_the_librarys() -> None:
    from setfit import TrainingArguments

    defaults = METHOD_DEFAULTS["setfit-distill"]
    library = TrainingArguments()
    assert defaults["distill_max_steps"] == library.max_steps
    assert defaults["distill_num_iterations"] == library.num_iterations
    assert defaults["distill_batch_size"] == library.embedding_batch_size
    assert defaults["distill_num_epochs"] == library.embedding_num_epochs
    assert np.isclose(library.body_embedding_learning_rate, 2e-5)  # as the docstring says


@pytest.mark.slow
def test_real_packaged_bodies(tmp_path: Path) -> None:
    """The protocol's packaged MPNet teacher and a student cut from it (teacher:bottom1) on a
    tiny task: a few steps only, to check they load, train and count as expected."""
    settings = {
        **METHOD_DEFAULTS["setfit-distill"],
        "student": "teacher:bottom1",
        "num_iterations": 1,
        "distill_max_steps": 2,
    }
    task = _task()
    trained = get_method("setfit-distill")(task, settings, _ctx(tmp_path))
    assert trained.predict(task.test_texts).shape == (len(task.test_texts),)
    assert trained.details["teacher_body"] == "mpnet"
    assert trained.details["distillation"]["steps"] == 2
    # One MPNet layer on MPNet's embeddings (23M of them): about 31M parameters, not 110M.
    assert 29e6 < trained.total_params < 33e6
