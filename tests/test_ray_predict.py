"""`nanonet predict --engine ray`: Parquet parts that equal the single-process output row for
row, on a local Ray instance (loopback only)."""

from __future__ import annotations

import csv
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nanonet.cli import main
from test_stream import TEXTS, WRITERS, _classifier, _user_error

ray = pytest.importorskip("ray")

# Long enough for several blocks, with the awkward texts of the stream tests and empty ones.
MANY = [f"{t} {i}" if i % 3 else t for i, t in enumerate(TEXTS * 5)] + ["", " ", "", "x"]


@pytest.fixture(scope="module")
def model_dir(tiny_bert: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    clf = _classifier(tiny_bert, ["neg", "pos", "mixed"])
    return clf.save_pretrained(tmp_path_factory.mktemp("ray") / "model")


@pytest.fixture(scope="module")
def cluster() -> Iterator[None]:
    """One local instance for the module (the CLI reuses a connected session): 3 CPUs, for 2
    actors and Ray Data's read tasks."""
    from nanonet.ray_cluster import ray_session

    with ray_session(None, 3):
        yield


def _read_parts(folder: Path) -> pd.DataFrame:
    parts = sorted(folder.glob("part-*.parquet"))
    assert parts, f"no parts in {folder}"
    return pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True)


@pytest.mark.slow
@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet", ".txt", "*.tsv"])
def test_ray_parts_equal_the_single_process_output(
    suffix: str, model_dir: Path, cluster: None, tmp_path: Path
) -> None:
    source = WRITERS[suffix.lstrip("*")](tmp_path / f"texts{suffix.lstrip('*')}", MANY)
    ray_input = str(source)
    if suffix.startswith("*"):  # a glob over two files: their rows in the order of their names
        (tmp_path / "split").mkdir()
        half = len(MANY) // 2
        WRITERS[".tsv"](tmp_path / "split" / "a.tsv", MANY[:half])
        WRITERS[".tsv"](tmp_path / "split" / "b.tsv", MANY[half:])
        ray_input = str(tmp_path / "split" / suffix)
    argv = ["-q", "predict", "--model", str(model_dir)]
    assert main([*argv, "--input", str(source), "--output", str(tmp_path / "local.csv")]) == 0
    argv += ["--input", ray_input, "--output", str(tmp_path / "out")]
    assert main([*argv, "--engine", "ray", "--workers", "2"]) == 0

    got = _read_parts(tmp_path / "out")
    with (tmp_path / "local.csv").open(encoding="utf-8") as f:
        want = list(csv.DictReader(f))
    assert list(got.columns) == ["row", "label", "prob_neg", "prob_pos", "prob_mixed"]
    assert got["row"].dtype == np.int64 and got["prob_neg"].dtype == np.float32
    assert got["row"].tolist() == [int(r["row"]) for r in want] == list(range(len(MANY)))
    assert got["label"].tolist() == [r["label"] for r in want]
    for name in ("prob_neg", "prob_pos", "prob_mixed"):
        np.testing.assert_allclose(got[name], [float(r[name]) for r in want], atol=1e-6)


@pytest.mark.slow
def test_onnx_int8_backend_scores_on_ray(model_dir: Path, cluster: None, tmp_path: Path) -> None:
    assert main(["-q", "export", "--model", str(model_dir), "--quantize", "int8"]) == 0
    source = WRITERS[".csv"](tmp_path / "texts.csv", MANY)
    argv = ["-q", "predict", "--model", str(model_dir), "--input", str(source)]
    argv += ["--backend", "onnx-int8"]
    assert main([*argv, "--output", str(tmp_path / "local.csv")]) == 0
    assert main([*argv, "--output", str(tmp_path / "out"), "--engine", "ray"]) == 0
    got = _read_parts(tmp_path / "out")
    want = pd.read_csv(tmp_path / "local.csv")
    assert got["label"].tolist() == want["label"].tolist()
    np.testing.assert_allclose(got["prob_pos"], want["prob_pos"], atol=1e-6)


def test_user_mistakes_are_one_sentence_before_ray_starts(
    model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = WRITERS[".csv"](tmp_path / "texts.csv", MANY)
    base = ["predict", "--model", str(model_dir), "--input", str(source), "--engine", "ray"]

    message = _user_error(capsys, main([*base, "--output", str(tmp_path / "p.csv")]))
    assert "folder for Parquet parts" in message
    message = _user_error(capsys, main([*base, "--output", str(tmp_path / "o"), "--resume"]))
    assert "--overwrite" in message
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "part-00000.parquet").write_bytes(b"x")
    message = _user_error(capsys, main([*base, "--output", str(tmp_path / "full")]))
    assert "not empty" in message and "--overwrite" in message
    message = _user_error(capsys, main([*base, "--output", str(tmp_path / "o"), "--workers", "0"]))
    assert "--workers must be at least 1" in message
    odd = tmp_path / "texts.xml"
    odd.write_text("<a/>", encoding="utf-8")
    argv = ["predict", "--model", str(model_dir), "--input", str(odd), "--engine", "ray"]
    message = _user_error(capsys, main([*argv, "--output", str(tmp_path / "o")]))
    assert "Cannot tell the format" in message
    local = ["predict", "--model", str(model_dir), "--input", str(source), "--workers", "2"]
    message = _user_error(capsys, main([*local, "--output", str(tmp_path / "x.csv")]))
    assert "--engine ray" in message


@pytest.mark.slow
def test_mistakes_found_on_the_cluster_are_one_sentence(
    model_dir: Path, cluster: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = WRITERS[".csv"](tmp_path / "texts.csv", MANY)
    argv = ["predict", "--model", str(model_dir), "--input", str(source), "--engine", "ray"]
    message = _user_error(
        capsys, main([*argv, "--text-column", "body", "--output", str(tmp_path / "o")])
    )
    assert "no column 'body'" in message and "'id', 'text'" in message
    argv = ["predict", "--model", str(model_dir), "--input", str(source), "--engine", "ray"]
    message = _user_error(capsys, main([*argv, "--workers", "3", "--output", str(tmp_path / "o")]))
    assert "every CPU of the Ray cluster (3)" in message and "--workers 2" in message


# Ray 2.40's driver can abort the whole process when Ray Data cancels its remaining read tasks
# after one failed ("Check failed: it != submissible_tasks_.end() Tried to fail task that was
# not pending", task_manager.cc): seen once in CI, where it took pytest down with it. The
# failing read therefore runs in its own process, and that upstream abort alone is retried.
RAY_CANCEL_RACE = "Tried to fail task that was not pending"


def test_a_file_that_fails_on_the_cluster_is_one_sentence(model_dir: Path, tmp_path: Path) -> None:
    from test_cli import NANONET

    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"id,text\n1,caf\xe9\n")
    argv = ["predict", "--model", str(model_dir), "--input", str(bad), "--engine", "ray"]
    for attempt in range(3):
        out = tmp_path / f"b{attempt}"
        proc = subprocess.run(
            [str(NANONET), *argv, "--workers", "1", "--output", str(out)],
            capture_output=True,
            text=True,
        )
        if RAY_CANCEL_RACE not in proc.stderr:
            break
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert "could not be read on Ray" in proc.stderr and "invalid UTF8" in proc.stderr
