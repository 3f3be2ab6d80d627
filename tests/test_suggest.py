"""`nanonet suggest`: which texts to label, cold start and with a model."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import pool_csv
from nanonet.cli import main
from nanonet.label.suggest import cover, least_sure, sample_pool, spherical_kmeans
from test_cli import _user_error


@pytest.fixture(autouse=True)
def _restore_torch_threads() -> Iterator[None]:
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _blobs(sizes: list[int], dim: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = np.eye(dim)[: len(sizes)]
    x = np.concatenate(
        [c + 0.05 * rng.normal(size=(s, dim)) for c, s in zip(centres, sizes, strict=True)]
    )
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32), np.repeat(np.arange(len(sizes)), sizes)


def test_cover_takes_one_central_text_per_region_largest_first() -> None:
    x, blob = _blobs([50, 30, 5])
    picks = cover(x, 3, seed=0)
    assert [blob[i] for i, _ in picks] == [0, 1, 2]  # the small region is not missed
    assert [round(share, 3) for _, share in picks] == [round(s / 85, 3) for s in (50, 30, 5)]
    assert picks == cover(x, 3, seed=0)  # deterministic for a seed


def test_kmeans_separates_blobs_whatever_the_seed() -> None:
    x, blob = _blobs([20, 20, 20, 20])
    for seed in range(5):
        assign, _ = spherical_kmeans(x, 4, seed)
        # each cluster is exactly one blob
        assert len({(a, b) for a, b in zip(assign, blob, strict=True)}) == 4


def test_least_sure_prefers_doubt_and_spreads_over_regions() -> None:
    x, blob = _blobs([40, 40])
    logits = np.zeros((80, 2), dtype=np.float32)
    logits[:, 0] = np.linspace(5, 0, 80)  # the later a text, the less sure the model
    picks = least_sure(x, logits, 2, seed=0, uncertain_factor=40)
    assert {blob[i] for i, _ in picks} == {0, 1}  # one per region, not two near-twins
    assert picks[0][0] == 79  # the least sure of all comes first
    doubt = [d for _, d in picks]
    assert doubt == sorted(doubt, reverse=True)


def test_pool_sample_is_bounded_distinct_and_names_rows() -> None:
    texts = [f"text {i % 300}" for i in range(1000)] + ["", "  "]
    chunks = [texts[i : i + 64] for i in range(0, len(texts), 64)]
    rows, kept, size = sample_pool(chunks, 100, seed=1, skip={"text 7"})
    assert size == 1002 and len(kept) == 100 == len(set(kept))
    assert "text 7" not in kept and all(t.strip() for t in kept)
    assert all(texts[r] == t for r, t in zip(rows, kept, strict=True))
    assert sample_pool(chunks, 100, seed=1, skip={"text 7"}) == (rows, kept, size)
    # a uniform draw: over seeds, early and late rows of the 300 distinct texts are kept alike
    counts = np.zeros(300)
    for seed in range(40):
        for t in sample_pool(chunks, 100, seed=seed)[1]:
            counts[int(t.split()[1])] += 1
    assert abs(counts[:150].mean() - counts[150:].mean()) < 0.15 * counts.mean()


def _pool(tmp_path: Path) -> Path:
    return pool_csv(tmp_path / "pool.csv", 30, seed=4)


def _read(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_suggest_command_cold_start_then_with_a_model(
    synthetic_csv: tuple[Path, Path], tiny_mpnet: Path, tiny_bert: Path, tmp_path: Path
) -> None:
    pool = _pool(tmp_path)
    pool_texts = [r["text"] for r in _read(pool)]
    out = tmp_path / "to_label.csv"
    argv = ["-q", "suggest", "--unlabeled", str(pool), "--n", "6", "--encoder", str(tiny_mpnet)]
    assert main([*argv, "--out", str(out)]) == 0
    rows = _read(out)
    assert len(rows) == 6 and len({r["text"] for r in rows}) == 6
    assert all(pool_texts[int(r["row"])] == r["text"] and r["label"] == "" for r in rows)
    again = tmp_path / "again.csv"
    assert main([*argv, "--out", str(again)]) == 0
    assert again.read_bytes() == out.read_bytes()  # deterministic

    # Label them (here: with the words that decide the synthetic label), train, ask again.
    train, _ = synthetic_csv
    labelled = tmp_path / "labels.csv"
    with labelled.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        w.writerows(_read(train)[i].values() for i in range(20))
    model = tmp_path / "model"
    train_argv = ["-q", "train", "--train", str(labelled), "--unlabeled", str(pool)]
    train_argv += ["--teacher", str(tiny_mpnet), "--students", str(tiny_bert), "--steps", "3"]
    assert main([*train_argv, "--threads", "1", "--out", str(model), "model.min_speedup=null"]) == 0
    second = tmp_path / "round2.csv"
    argv2 = ["-q", "suggest", "--unlabeled", str(pool), "--n", "4", "--model", str(model)]
    assert main([*argv2, "--labeled", str(out), "--out", str(second)]) == 0
    rows2 = _read(second)
    assert len(rows2) == 4
    assert not {r["text"] for r in rows2} & {r["text"] for r in rows}  # nothing asked twice
    assert all(0.0 <= float(r["score"]) <= 1.0 for r in rows2)


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (["--n", "0"], "--n must be at least 1"),
        (["--n", "500"], "ask for at most"),
        (["--text-column", "body"], "'body'"),
    ],
)
def test_suggest_user_errors_are_one_sentence(
    tiny_mpnet: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    words: str,
) -> None:
    pool = _pool(tmp_path)
    out = tmp_path / "x.csv"
    argv = ["-q", "suggest", "--unlabeled", str(pool), "--encoder", str(tiny_mpnet)]
    assert words in _user_error(capsys, main([*argv, "--out", str(out), *extra]))
    assert not out.exists() and list(tmp_path.iterdir()) == [pool]


def test_the_benchmarks_suggested_budget_is_the_same_size_with_true_labels(
    tiny_mpnet: Path,
) -> None:
    from nanonet.bench.methods.nanonet_method import suggested_labels
    from nanonet.data.builtin import builtin_task, load_builtin_splits

    task = builtin_task("rotten_tomatoes", labels_per_class=3, seed=0, max_unlabelled=60)
    picked = suggested_labels(task, seed=0, encoder=str(tiny_mpnet))
    assert len(picked.labelled_texts) == 6
    before = {*task.labelled_texts, *task.unlabelled_texts}
    assert {*picked.labelled_texts, *picked.unlabelled_texts} == before
    assert not set(picked.labelled_texts) & set(picked.unlabelled_texts)
    splits = load_builtin_splits("rotten_tomatoes")
    truth = dict(zip(splits.train_texts, splits.train_labels, strict=True))
    assert picked.labelled_labels == [truth[t] for t in picked.labelled_texts]
