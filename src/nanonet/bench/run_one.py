"""One benchmark run (dataset, method, seed) in its own process; writes one result JSON.

    python -m nanonet.bench.run_one --config benchmarks/configs/protocol.yaml \
        --dataset rotten_tomatoes --method tfidf --seed 0 --out benchmarks/results/x.json

The harness starts one of these per run, so that peak memory and time limits are per run and
a crash cannot take the harness down. The order inside is deliberate: train on a task without
its test split, score on the whole test set, time inference on a fixed sample, save the model
to measure its size, read the peak memory, and only then load the teacher to time it as the
reference (its memory must not count against a small model).
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import logging
import os
import shlex
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nanonet.bench.config import BenchConfig, RunSpec, expand_runs, load_bench_config
from nanonet.bench.environment import (
    COMMAND_ENV,
    COMMIT_ENV,
    git_commit,
    machine,
    peak_rss_mb,
    pin_threads,
)
from nanonet.bench.measure import (
    folder_size_mb,
    score,
    teacher_docs_per_second,
    throughput_sample,
)
from nanonet.bench.methods import MethodUnavailable, RunContext, get_method
from nanonet.bench.results import base_record, write_json_atomic
from nanonet.models.device import describe, resolve_device
from nanonet.models.speed import docs_per_second
from nanonet.train.config import DataConfig
from nanonet.train.run import load_task

log = logging.getLogger("nanonet.bench")


def find_run(cfg: BenchConfig, dataset: str, method: str, seed: int) -> RunSpec:
    runs = expand_runs(cfg, dataset, method, seed)
    if runs:
        return runs[0]
    # Allowed on purpose: a method restricted to some seeds can still be run by hand.
    return RunSpec(dataset, cfg.method(method), seed, cfg.labels_per_class)


def execute(cfg: BenchConfig, run: RunSpec, device: str = "cpu") -> dict[str, Any]:
    """Run, score and time one method on `device` (cpu or cuda:N); return its result record."""
    pin_threads(cfg.threads)
    started = time.perf_counter()
    baseline_rss = peak_rss_mb()
    full = load_task(
        DataConfig(dataset=run.dataset, labels_per_class=run.labels_per_class), run.seed
    )
    test_texts, test_labels = full.test_texts, full.test_labels
    task = dataclasses.replace(full, test_texts=[], test_labels=[])
    num_labels = len(task.label_names)
    cap = cfg.dataset(run.dataset).throughput_texts
    sample = [test_texts[i] for i in throughput_sample(len(test_texts), cap)]
    record = base_record(run, "ok")
    record.update(_provenance(cfg))
    record["device"] = describe(resolve_device(device))

    with tempfile.TemporaryDirectory(prefix="nanonet-bench-") as scratch:
        ctx = RunContext(
            seed=run.seed,
            threads=cfg.threads,
            labels_per_class=run.labels_per_class,
            batch_size=cfg.throughput_batch,
            scratch=Path(scratch),
            device=device,
        )
        log.info("%s: training on %s", run.stem, task.summary())
        fit_start = time.perf_counter()
        try:
            trained = get_method(run.method.kind)(task, run.settings, ctx)
        except MethodUnavailable as exc:
            record.update(status="unavailable", error=str(exc))
            return record
        train_seconds = time.perf_counter() - fit_start
        train_rss = peak_rss_mb()

        log.info("%s: scoring on %d test texts", run.stem, len(test_texts))
        t0 = time.perf_counter()
        metrics = score(trained.predict, test_texts, test_labels, num_labels)
        predict_seconds = time.perf_counter() - t0
        docs = docs_per_second(trained.predict, sample)
        members = _score_members(
            trained, metrics, docs, test_texts, test_labels, sample, num_labels
        )
        trained.save(Path(scratch) / "model")
        size = folder_size_mb(Path(scratch) / "model")
        peak = peak_rss_mb()
        record["details"] = trained.details
        trainable, total = trained.trainable_params, trained.total_params
        del trained
        gc.collect()

    log.info("%s: timing the teacher (%s) on %d texts", run.stem, cfg.teacher, len(sample))
    teacher_docs = teacher_docs_per_second(
        cfg.teacher, num_labels, full.max_length, sample, cfg.throughput_batch, device
    )
    for m in members:
        if m["role"] == "teacher":
            m["docs_per_s"] = teacher_docs  # the same architecture as the reference, timed once
        if m.get("docs_per_s") is not None:
            m["throughput_ratio"] = m["docs_per_s"] / teacher_docs
    record.update(
        accuracy=metrics["accuracy"],
        macro_f1=metrics["macro_f1"],
        confusion_matrix=metrics["confusion_matrix"],
        test_size=len(test_texts),
        labelled_examples=len(task.labelled_texts),
        unlabelled_examples=len(task.unlabelled_texts),
        train_seconds=round(train_seconds, 2),
        predict_seconds=round(predict_seconds, 2),
        peak_rss_mb=peak,
        train_peak_rss_mb=train_rss,
        baseline_rss_mb=baseline_rss,
        trainable_params=trainable,
        total_params=total,
        model_size_mb=size,
        docs_per_s=docs,
        teacher_docs_per_s=teacher_docs,
        throughput_ratio=docs / teacher_docs,
        throughput_texts=len(sample),
        throughput_batch=cfg.throughput_batch,
        members=members,
        wall_seconds=round(time.perf_counter() - started, 1),
    )
    return record


def _score_members(
    trained: Any,
    kept_metrics: dict[str, Any],
    kept_docs: float,
    texts: list[str],
    labels: list[int],
    sample: list[str],
    num_labels: int,
) -> list[dict[str, Any]]:
    out = []
    for m in trained.members:
        entry: dict[str, Any] = {
            "name": m.name,
            "role": m.role,
            "trainable_params": m.trainable_params,
            "total_params": m.total_params,
            **m.info,
        }
        if m.info.get("kept"):  # already scored as the run's model
            entry.update(
                accuracy=kept_metrics["accuracy"],
                macro_f1=kept_metrics["macro_f1"],
                docs_per_s=kept_docs,
            )
        elif m.predict is not None:
            metrics = score(m.predict, texts, labels, num_labels)
            entry.update(accuracy=metrics["accuracy"], macro_f1=metrics["macro_f1"])
            if m.role != "teacher":
                entry["docs_per_s"] = docs_per_second(m.predict, sample)
        out.append(entry)
    return out


def _provenance(cfg: BenchConfig) -> dict[str, Any]:
    import torch

    return {
        "command": os.environ.get(COMMAND_ENV) or shlex.join(sys.argv),
        "run_command": shlex.join([sys.executable, "-m", "nanonet.bench.run_one", *sys.argv[1:]]),
        "config": str(cfg.source),
        "commit": os.environ.get(COMMIT_ENV) or git_commit(),
        "threads": cfg.threads,
        "torch_threads": torch.get_num_threads(),
        "machine": machine(),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nanonet.bench.run_one", description=__doc__)
    parser.add_argument("--config", required=True)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--method", required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--out", required=True, help="where to write the result JSON")
    parser.add_argument("--device", default="cpu", help="cpu or cuda:N (the harness resolves it)")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr
    )
    cfg = load_bench_config(args.config)
    run = find_run(cfg, args.dataset, args.method, args.seed)
    record = execute(cfg, run, args.device)
    write_json_atomic(Path(args.out), record)
    log.info("%s: %s", run.stem, record["status"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
