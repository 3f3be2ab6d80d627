"""The benchmark harness: config, skip logic, failure recording, report, and the cheap methods."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conftest import synthetic_rows
from nanonet.bench.config import RunSpec, expand_runs, load_bench_config, parse_bench_config
from nanonet.bench.harness import bench_main, run_isolated
from nanonet.bench.measure import folder_size_mb, score, throughput_sample
from nanonet.bench.methods import RunContext, get_method
from nanonet.bench.report import fmt_mean_std, pareto_front, write_report
from nanonet.bench.results import (
    base_record,
    read_result,
    result_path,
    skip_reason,
    write_json_atomic,
)
from nanonet.data.task import Task
from nanonet.errors import NanoNetError
from nanonet.models.classifier import NanoNetClassifier
from nanonet.models.speed import best_docs_per_second_in_turn, docs_per_second
from nanonet.train.run_report import TEACHER_SCORE_BATCH

REPO = Path(__file__).resolve().parent.parent


def _config(tmp_path: Path, methods: list[dict[str, Any]] | None = None, **extra: Any) -> Path:
    raw = {
        "name": "t",
        "datasets": {"rotten_tomatoes": {"throughput_texts": 16}, "bbc_news": {}},
        "seeds": [0, 1, 2],
        "results_dir": str(tmp_path / "results"),
        "report": str(tmp_path / "RESULTS.md"),
        "plots_dir": str(tmp_path / "plots"),
        "methods": methods
        or [
            {"name": "tfidf", "kind": "tfidf"},
            {
                "name": "setfit-mpnet",
                "kind": "setfit",
                "per_dataset": {"bbc_news": {"num_iterations": 5}},
                "seeds": [0],
            },
        ],
        **extra,
    }
    path = tmp_path / "bench.yaml"
    path.write_text(json.dumps(raw), encoding="utf-8")  # JSON is YAML
    return path


def _ok(run: RunSpec, accuracy: float, **extra: Any) -> dict[str, Any]:
    record = base_record(run, "ok")
    record.update(
        accuracy=accuracy,
        macro_f1=accuracy - 0.05,
        train_seconds=10.0,
        peak_rss_mb=900.0,
        baseline_rss_mb=450.0,
        trainable_params=1000,
        total_params=20_000_000,
        model_size_mb=66.0,
        docs_per_s=100.0,
        teacher_docs_per_s=10.0,
        throughput_ratio=10.0,
        throughput_texts=16,
        test_size=2000,
        commit="abc123",
        threads=2,
        machine={"cpu": "Test CPU", "cores": 2, "ram_gb": 8.0, "python": "3.11"},
        **extra,
    )
    return record


def _task() -> Task:
    rows = synthetic_rows(10, seed=1)
    test = synthetic_rows(20, seed=3)
    names = ["neg", "pos"]
    return Task(
        name="synthetic",
        label_names=names,
        labelled_texts=[t for t, _ in rows],
        labelled_labels=[names.index(label) for _, label in rows],
        unlabelled_texts=[t for t, _ in synthetic_rows(30, seed=2)],
        test_texts=[t for t, _ in test],
        test_labels=[names.index(label) for _, label in test],
        max_length=32,
    )


def _ctx(tmp_path: Path) -> RunContext:
    return RunContext(seed=0, threads=1, labels_per_class=10, batch_size=64, scratch=tmp_path)


# --- config -------------------------------------------------------------------------------------


def test_config_expands_runs_with_filters_and_per_dataset_settings(tmp_path: Path) -> None:
    cfg = load_bench_config(_config(tmp_path))
    runs = expand_runs(cfg)
    # tfidf: 2 datasets x 3 seeds; setfit: seed 0 only, on both datasets.
    assert len(runs) == 8
    assert [r.stem for r in expand_runs(cfg, "bbc_news", "setfit-mpnet")] == [
        "bbc_news__setfit-mpnet__seed0"
    ]
    assert expand_runs(cfg, only_seed=2) == [r for r in runs if r.seed == 2]
    setfit = cfg.method("setfit-mpnet")
    assert setfit.settings_for("bbc_news")["num_iterations"] == 5
    assert setfit.settings_for("rotten_tomatoes")["num_iterations"] == 20
    assert setfit.settings_for("rotten_tomatoes")["batch_size"] == 16
    with pytest.raises(NanoNetError, match="not in"):
        expand_runs(cfg, only_method="nope")


def test_config_seeds_per_dataset(tmp_path: Path) -> None:
    method = {"name": "slow", "kind": "tfidf", "seeds": {"bbc_news": [0]}}
    cfg = load_bench_config(_config(tmp_path, [method]))
    assert [(r.dataset, r.seed) for r in expand_runs(cfg)] == [
        ("rotten_tomatoes", 0), ("rotten_tomatoes", 1), ("rotten_tomatoes", 2), ("bbc_news", 0)
    ]  # fmt: skip
    with pytest.raises(NanoNetError, match="unknown dataset 'imdb'"):
        load_bench_config(_config(tmp_path, [{**method, "seeds": {"imdb": [0]}}]))
    with pytest.raises(NanoNetError, match="must be a list"):
        load_bench_config(_config(tmp_path, [{**method, "seeds": 3}]))


def test_config_refuses_unknown_settings_and_kinds(tmp_path: Path) -> None:
    with pytest.raises(NanoNetError, match="num_iteration"):
        load_bench_config(
            _config(tmp_path, [{"name": "s", "kind": "setfit", "settings": {"num_iteration": 3}}])
        )
    with pytest.raises(NanoNetError, match="unknown kind"):
        load_bench_config(_config(tmp_path, [{"name": "x", "kind": "magic"}]))


def test_shipped_configs_parse() -> None:
    protocol = load_bench_config(REPO / "benchmarks/configs/protocol.yaml")
    names = {m.name for m in protocol.methods}
    for needed in ("nanonet", "nanonet-no-mutual", "nanonet-no-teacher", "nanonet-full-ft"):
        assert needed in names
    kinds = {m.kind for m in protocol.methods}
    assert kinds == {"nanonet", "setfit", "setfit-distill", "finetune", "probe", "tfidf"}
    assert [d.name for d in protocol.datasets] == ["rotten_tomatoes", "bbc_news", "20newsgroups"]
    assert protocol.seeds == [0, 1, 2]
    setfit = [r for r in expand_runs(protocol) if r.method.kind == "setfit"]
    for run in setfit:  # the protocol's SetFit settings
        assert run.settings["num_iterations"] == (5 if run.dataset == "20newsgroups" else 20)
    mpnet_20ng = [r.seed for r in setfit if r.stem.startswith("20newsgroups__setfit-mpnet")]
    assert mpnet_20ng == [0]  # seed 0 only, as the protocol allows there
    load_bench_config(REPO / "benchmarks/configs/smoke.yaml")
    extras = load_bench_config(REPO / "benchmarks/configs/extras.yaml")
    assert extras.results_dir == protocol.results_dir and extras.report != protocol.report
    assert not {m.name for m in extras.methods} & names


def test_fingerprint_follows_settings_only() -> None:
    raw = {"datasets": ["rotten_tomatoes"], "methods": [{"name": "t", "kind": "tfidf"}]}
    a = expand_runs(parse_bench_config(raw, Path("a.yaml")))[0]
    b = expand_runs(parse_bench_config({**raw, "threads": 1}, Path("b.yaml")))[0]
    raw_c = {**raw, "methods": [{"name": "t", "kind": "tfidf", "settings": {"C": 10.0}}]}
    c = expand_runs(parse_bench_config(raw_c, Path("c.yaml")))[0]
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()


# --- skip logic ---------------------------------------------------------------------------------


def test_skip_reason(tmp_path: Path) -> None:
    run = expand_runs(load_bench_config(_config(tmp_path)))[0]
    assert skip_reason(None, run, retry_failed=False) is None
    assert skip_reason(_ok(run, 0.8), run, retry_failed=True) == "already stored"
    crashed = base_record(run, "crashed")
    assert "crashed" in skip_reason(crashed, run, retry_failed=False)
    assert skip_reason(crashed, run, retry_failed=True) is None
    assert skip_reason(base_record(run, "unavailable"), run, retry_failed=False) is None
    stale = {**_ok(run, 0.8), "fingerprint": "other settings"}
    assert skip_reason(stale, run, retry_failed=False) is None


def test_bench_main_skips_stored_runs(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = _config(tmp_path)
    cfg = load_bench_config(path)
    for run in expand_runs(cfg, only_dataset="rotten_tomatoes", only_method="tfidf"):
        write_json_atomic(result_path(cfg.results_dir, run), _ok(run, 0.7 + 0.01 * run.seed))
    code = bench_main(str(path), "rotten_tomatoes", "tfidf", None, None, report=False)
    assert code == 0
    out = capsys.readouterr().out
    assert out.count("skipped, already stored") == 3
    assert "running" not in out


def test_bench_main_refuses_a_bad_filter(tmp_path: Path) -> None:
    assert bench_main(str(_config(tmp_path)), "imdb", None, None, None) == 2


# --- failure recording --------------------------------------------------------------------------


@pytest.fixture
def one_run(tmp_path: Path) -> RunSpec:
    return expand_runs(load_bench_config(_config(tmp_path)))[0]


def test_crash_is_recorded_with_the_log_tail(tmp_path: Path, one_run: RunSpec) -> None:
    out, log = tmp_path / "r.json", tmp_path / "logs" / "r.log"
    script = "import sys; print('loading'); raise RuntimeError('boom in the method')"
    record = run_isolated(one_run, [sys.executable, "-c", script], out, log, timeout_s=60)
    assert record["status"] == "crashed"
    assert record["returncode"] == 1
    assert "boom in the method" in record["error"]
    assert read_result(out) == record


def test_timeout_is_recorded_and_the_child_ended(tmp_path: Path, one_run: RunSpec) -> None:
    out, log = tmp_path / "r.json", tmp_path / "r.log"
    started = time.monotonic()
    record = run_isolated(
        one_run, [sys.executable, "-c", "import time; time.sleep(60)"], out, log, timeout_s=1
    )
    assert time.monotonic() - started < 20
    assert record["status"] == "timeout"
    assert read_result(out)["status"] == "timeout"


def test_a_child_that_exits_0_without_a_result_is_a_crash(tmp_path: Path, one_run: RunSpec) -> None:
    out = tmp_path / "r.json"
    write_json_atomic(out, _ok(one_run, 0.9))  # a stale result must not pass for this run's
    record = run_isolated(one_run, [sys.executable, "-c", "pass"], out, tmp_path / "l", 60)
    assert record["status"] == "crashed"


def test_the_childs_own_result_is_returned(tmp_path: Path, one_run: RunSpec) -> None:
    out = tmp_path / "r.json"
    payload = json.dumps(_ok(one_run, 0.75))
    script = f"import pathlib, sys; pathlib.Path(sys.argv[1]).write_text({payload!r})"
    record = run_isolated(
        one_run, [sys.executable, "-c", script, str(out)], out, tmp_path / "l", 60
    )
    assert record["status"] == "ok" and record["accuracy"] == 0.75


# --- report -------------------------------------------------------------------------------------


def test_mean_std_format() -> None:
    assert fmt_mean_std([0.7, 0.8, 0.9]) == "0.800 ± 0.100"  # sample std
    assert fmt_mean_std([0.5]) == "0.500"
    assert fmt_mean_std([]) == "–"


def test_report_from_synthetic_results(tmp_path: Path) -> None:
    path = _config(tmp_path)
    cfg = load_bench_config(path)
    tfidf = {r.seed: r for r in expand_runs(cfg, "rotten_tomatoes", "tfidf")}
    for seed, acc in ((0, 0.7), (1, 0.8)):
        command = f"python -m nanonet.bench --dataset rotten_tomatoes --method tfidf --seed={seed}"
        record = _ok(tfidf[seed], acc, command=command)
        if seed == 1:  # the teacher ran twice as fast in this process
            record.update(teacher_docs_per_s=20.0, throughput_ratio=5.0)
        write_json_atomic(result_path(cfg.results_dir, tfidf[seed]), record)
    timeout = base_record(tfidf[2], "timeout")
    write_json_atomic(result_path(cfg.results_dir, tfidf[2]), timeout)
    [setfit] = expand_runs(cfg, "rotten_tomatoes", "setfit-mpnet")
    crashed = {**base_record(setfit, "crashed"), "error": "Traceback ...\nValueError: bad"}
    write_json_atomic(result_path(cfg.results_dir, setfit), crashed)
    # A NanoNet-like run with cohort members for the Pareto table.
    bbc = expand_runs(cfg, "bbc_news", "tfidf")[0]
    members = [
        {"name": "teacher:bottom2", "role": "student", "accuracy": 0.9, "docs_per_s": 50.0,
         "throughput_ratio": 5.0, "trainable_params": 10, "total_params": 100, "kept": True},
    ]  # fmt: skip
    record = _ok(bbc, 0.9, members=members, details={"kept": "teacher:bottom2"})
    record["pareto_members"] = True
    write_json_atomic(result_path(cfg.results_dir, bbc), record)

    written = write_report(cfg.results_dir, cfg.report, cfg.plots_dir, cfg)
    text = cfg.report.read_text(encoding="utf-8")
    tfidf_row = next(line for line in text.splitlines() if line.startswith("| tfidf | 0.750"))
    assert "0.750 ± 0.071" in tfidf_row
    assert "2/3, seed 2 timeout" in tfidf_row
    # × teacher averages the per-process ratios (10, 5); × teacher mean divides by the mean
    # teacher speed of the dataset's runs (100 / 15).
    assert "| 7.50 | 6.67 |" in tfidf_row
    assert "| setfit-mpnet | **crashed** |" in text
    assert "0/1, seed 0 crashed" in text
    assert "seed 1,2 missing" in text  # bbc_news tfidf: only seed 0 stored
    assert "kept: teacher:bottom2 ×1" in text
    assert "| tfidf | teacher:bottom2 | 0.900 |" in text  # the member table
    assert "Test CPU, 2 cores" in text and "`abc123`" in text
    # Per-run arguments become placeholders, so the two commands are one template.
    assert "`python -m nanonet.bench --dataset D --method M --seed S` (2 runs)" in text
    assert "- code:" not in text and "older code" not in text  # no git here: nothing claimed
    if any(p.suffix == ".png" for p in written):
        assert (cfg.plots_dir / "accuracy.png").stat().st_size > 0
        assert (cfg.plots_dir / "pareto.png").stat().st_size > 0
        assert "![pareto](plots/pareto.png)" in text


def _git(repo: Path, *args: str) -> str:
    import subprocess

    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
        cwd=repo, check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip


def _commit_files(repo: Path, files: dict[str, str]) -> str:
    for name, text in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text, encoding="utf-8")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "step")
    return _git(repo, "rev-parse", "HEAD")


def test_report_names_runs_made_by_older_code(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    old = _commit_files(repo, {"src/nanonet/core.py": "v1"})
    same = _commit_files(repo, {"src/nanonet/core.py": "v2"})
    # Neither the report, the server nor the docs decide a result.
    head = _commit_files(
        repo,
        {"src/nanonet/bench/report.py": "new", "src/nanonet/serve/app.py": "x", "README": "y"},
    )
    path = _config(repo, methods=[{"name": "tfidf", "kind": "tfidf"}])
    cfg = load_bench_config(path)
    runs = {r.seed: r for r in expand_runs(cfg, "rotten_tomatoes", "tfidf")}
    for seed, commit in ((0, old), (1, same), (2, f"{head}-dirty")):
        record = {**_ok(runs[seed], 0.7), "commit": commit}
        write_json_atomic(result_path(cfg.results_dir, runs[seed]), record)

    write_report(cfg.results_dir, cfg.report, cfg.plots_dir, cfg)
    text = cfg.report.read_text(encoding="utf-8")
    row = next(line for line in text.splitlines() if line.startswith("| tfidf | 0.700"))
    assert "older code: seed 0" in row and "code unknown: seed 2" in row
    assert "seed 1" not in row.split("older code")[1]
    assert "- code: 1 of 3 runs were made by the code checked out now" in text


def test_pareto_front() -> None:
    pts = [(10.0, 0.9), (100.0, 0.8), (50.0, 0.7), (1000.0, 0.6), (5.0, 0.85)]
    assert pareto_front(pts) == [(1000.0, 0.6), (100.0, 0.8), (10.0, 0.9)]


# --- measurements and methods -------------------------------------------------------------------


def test_throughput_sample_is_fixed_and_capped() -> None:
    a = throughput_sample(1000, 100)
    assert a == throughput_sample(1000, 100) and len(a) == 100 and a == sorted(a)
    assert throughput_sample(10, 100) == list(range(10))
    assert throughput_sample(10, None) == list(range(10))


def test_docs_per_second_and_folder_size(tmp_path: Path) -> None:
    rate = docs_per_second(lambda texts: np.zeros(len(texts)), ["a"] * 50)
    assert rate > 0
    (tmp_path / "f.bin").write_bytes(b"x" * (1 << 20))
    assert folder_size_mb(tmp_path) == 1.0


def test_speeds_in_turn_spread_a_busy_spell_over_every_model() -> None:
    # A fake clock: each pass costs its model's time, and the machine is three times slower for
    # the first 10 s (another job). Timed one after another, the teacher's three passes would
    # all fall in the busy spell and the students' in the quiet one.
    now = [0.0]
    calls: list[str] = []

    def model(name: str, seconds: float):
        def predict(texts: list[str]) -> np.ndarray:
            calls.append(name)
            now[0] += seconds * (3.0 if now[0] < 10.0 else 1.0)
            return np.zeros(len(texts))

        return predict

    speeds = best_docs_per_second_in_turn(
        [model("teacher", 2.0), model("student", 0.2)],
        ["a"] * 10,
        rounds=3,
        warmup=1,
        clock=lambda: now[0],
    )
    assert calls == ["teacher", "student", *["teacher", "student"] * 3]
    # Both best passes come from the quiet rounds: the ratio is the models' own, 10.
    assert speeds == pytest.approx([10 / 2.0, 10 / 0.2])
    assert best_docs_per_second_in_turn([model("teacher", 1.0)], []) == [
        pytest.approx(np.nan, nan_ok=True)
    ]


def test_tfidf_on_a_tiny_task(tmp_path: Path) -> None:
    task = _task()
    trained = get_method("tfidf")(task, {**_defaults("tfidf"), "min_df": 1}, _ctx(tmp_path))
    metrics = score(trained.predict, task.test_texts, task.test_labels, 2)
    assert metrics["accuracy"] >= 0.9  # the label is readable from the words
    assert trained.trainable_params == trained.total_params > 0
    trained.save(tmp_path / "model")
    assert folder_size_mb(tmp_path / "model") > 0
    assert not list((tmp_path / "model").glob("*.pkl"))


def test_probe_and_finetune_on_a_tiny_encoder(tmp_path: Path, tiny_bert: Path) -> None:
    task = _task()
    probe = get_method("probe")(
        task, {**_defaults("probe"), "encoder": str(tiny_bert)}, _ctx(tmp_path)
    )
    assert probe.trainable_params < probe.total_params
    assert set(probe.predict(task.test_texts[:5]).tolist()) <= {0, 1}
    settings = {**_defaults("finetune"), "student": str(tiny_bert), "epochs": 2}
    ft = get_method("finetune")(task, settings, _ctx(tmp_path))
    assert ft.trainable_params == ft.total_params
    assert len(ft.predict(task.test_texts)) == len(task.test_texts)
    ft.save(tmp_path / "ft")
    assert (tmp_path / "ft" / "nanonet.json").is_file()


@pytest.mark.slow
def test_harness_end_to_end_on_rotten_tomatoes(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """A real child process: tfidf on rotten_tomatoes, teacher timing on 16 texts."""
    path = _config(
        tmp_path,
        [{"name": "tfidf", "kind": "tfidf"}],
        datasets={"rotten_tomatoes": {"throughput_texts": 16}},
        seeds=[0],
        threads=1,
    )
    assert bench_main(str(path), None, None, None, 10.0) == 0
    cfg = load_bench_config(path)
    [run] = expand_runs(cfg)
    record = read_result(result_path(cfg.results_dir, run))
    assert record["status"] == "ok" and record["test_size"] == 2000
    for key in ("accuracy", "macro_f1", "peak_rss_mb", "docs_per_s", "teacher_docs_per_s"):
        assert record[key] > 0
    assert record["threads"] == record["torch_threads"] == 1
    assert record["commit"] and record["machine"]["cpu"]
    assert cfg.report.is_file()
    capsys.readouterr()
    assert bench_main(str(path), None, None, None, 10.0) == 0
    assert "skipped, already stored" in capsys.readouterr().out


def _defaults(kind: str) -> dict[str, Any]:
    from nanonet.bench.config import METHOD_DEFAULTS

    return dict(METHOD_DEFAULTS[kind])


def test_setfit_without_the_package_is_unavailable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nanonet.bench.methods import MethodUnavailable

    monkeypatch.setitem(sys.modules, "setfit", None)  # makes `import setfit` fail
    with pytest.raises(MethodUnavailable, match="setfit"):
        get_method("setfit")(_task(), _defaults("setfit"), _ctx(tmp_path))


def test_stored_runs_stay_current_through_comment_and_docstring_edits(tmp_path: Path) -> None:
    import subprocess

    from nanonet.bench.code_version import current_code

    def git(*args: str) -> str:
        out = subprocess.run(["git", *args], cwd=tmp_path, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        return out.stdout.strip()

    code = tmp_path / "src" / "step.py"
    code.parent.mkdir()
    code.write_text('def step(x):\n    """Doubles."""\n    return 2 * x  # why\n', encoding="utf-8")
    git("init", "-q")
    git("-c", "user.name=t", "-c", "user.email=t@t", "add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "first")
    commit = git("rev-parse", "HEAD")
    code.write_text('def step(x):\n    """Twice x."""\n    return 2 * x  # because\n', "utf-8")
    assert current_code([commit], tmp_path) == {commit: True}
    code.write_text('def step(x):\n    """Twice x."""\n    return 3 * x\n', encoding="utf-8")
    assert current_code([commit], tmp_path) == {commit: False}
    assert current_code(["0" * 40], tmp_path) == {"0" * 40: None}  # not in this repository


def test_the_nanonet_method_records_labels_per_class_and_scores_the_teacher_in_small_batches(
    tmp_path: Path, tiny_mpnet: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    task = _task()
    task.labelled_labels = [0] * 14 + [1] * 6  # uneven, as suggested picks may be
    overrides = [
        f"model.teacher={tiny_mpnet}",
        "model.students=[teacher:0]",
        "model.teacher_trainable_layers=2",
        "model.min_speedup=null",
        "train.steps=2",
        "train.teacher_warmup_steps=1",
        "train.teacher_contrastive_steps=1",
        "train.distill_epochs=0.2",
    ]
    settings = {**_defaults("nanonet"), "overrides": overrides, "score_teacher": True}
    trained = get_method("nanonet")(task, settings, _ctx(tmp_path))
    assert trained.details["labelled_per_class"] == {"neg": 14, "pos": 6}
    assert trained.details["teacher_contrastive_steps"] == 1  # short synthetic reviews
    assert len(trained.predict(task.test_texts)) == len(task.test_texts)

    # Students are timed through their predictor at the protocol's batch; the teacher, only
    # scored, reads smaller batches (its batch of long texts was a run's memory peak).
    batches: list[int] = []
    real = NanoNetClassifier.predict_logits

    def spy(self: NanoNetClassifier, texts: list[str], batch_size: int = 64) -> np.ndarray:
        batches.append(batch_size)
        return real(self, texts, batch_size)

    monkeypatch.setattr(NanoNetClassifier, "predict_logits", spy)
    read = {}
    for m in trained.members:
        batches.clear()
        assert m.predict is not None
        m.predict(task.test_texts)
        read[m.role] = set(batches)
    assert read == {"teacher": {TEACHER_SCORE_BATCH}, "student": {64}}


def test_results_dir_replaces_the_configs_folder_report_and_plots(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    path = _config(tmp_path, [{"name": "tfidf", "kind": "tfidf"}], seeds=[0])
    cfg = load_bench_config(path)
    trial = tmp_path / "trial"
    runs = expand_runs(cfg, "rotten_tomatoes")
    write_json_atomic(result_path(trial, runs[0]), _ok(runs[0], 0.7))
    assert bench_main(str(path), dry_run=True, results_dir=str(trial)) == 0
    out = capsys.readouterr().out
    assert f"results in {trial}/" in out
    assert "rotten_tomatoes / tfidf / seed 0: skipped, already stored" in out
    assert "bbc_news / tfidf / seed 0: would run" in out
    assert bench_main(str(path), "bbc_news", results_dir=str(trial), dry_run=True) == 0
    capsys.readouterr()
    assert not (tmp_path / "results").exists()  # the config's folder is left alone
    (tmp_path / "file").write_text("x")
    assert bench_main(str(path), results_dir=str(tmp_path / "file")) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
