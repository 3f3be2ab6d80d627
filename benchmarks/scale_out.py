"""Scaling out on this machine: training in 1 vs 2 processes (torchrun), scoring in one
process vs on Ray, and the teacher reading the pool locally vs on Ray.

    python benchmarks/scale_out.py [--texts 20000] [--steps 30]
        [--out benchmarks/results/scale_out.json]

Real packaged models throughout (all-mpnet-base-v2 teacher; students teacher:bottom1 and
MiniLM-L3, the cohort pinned so that both runs train the same models), rotten_tomatoes' texts:
1. `nanonet train` with 2 threads against `torchrun --nproc_per_node=2 -m nanonet train` with 1
   thread per process, the same global batches: median seconds per joint step from the step
   log, as steps/s;
2. `nanonet predict` (2 threads) against `nanonet predict --engine ray --workers 2` on `--texts`
   texts with the model of run 1: end-to-end docs/s (model loading and Ray's start included);
3. the teacher reading 2,000 pool texts in this process (2 threads) against on 2 Ray actors.
It rewrites the table between the `scaling-table` markers of README.md. Nothing else may run
on the machine meanwhile. The estimates at 8 and 64 workers multiply the measured rate per
worker by the measured efficiency of 2 workers; they are estimates, not measurements.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from scale import _labelled_csv, _median_step, _pool_csv

from nanonet.bench.environment import git_commit, machine

ROOT = Path(__file__).resolve().parents[1]
PINNED = [
    "model.students=[teacher:bottom1,minilm-l3]",
    "model.min_speedup=null",
    "train.teacher_contrastive_steps=10",
    "train.teacher_warmup_steps=10",
    "train.distill_epochs=0",
    "train.checkpoint_every=0",
    "train.selection_holdout=200",
]
START, END = "<!-- scaling-table:start -->", "<!-- scaling-table:end -->"


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.report_only:
        write_readme(json.loads(Path(args.out).read_text(encoding="utf-8")))
        return 0
    from nanonet.data.builtin import load_builtin_splits

    splits = load_builtin_splits("rotten_tomatoes")
    nanonet = [sys.executable, "-m", "nanonet", "-q"]
    results: dict[str, Any] = {
        "command": shlex.join(["python", *sys.argv]),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "git_commit": git_commit(),
    }
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        train = _labelled_csv(folder / "train.csv", splits.train_texts, splits.train_labels)
        pool = _pool_csv(folder / "pool.csv", splits.train_texts, 2000)
        common = ["train", "--train", str(train), "--unlabeled", str(pool)]
        common += ["--steps", str(args.steps), "--seed", "0"]
        one = folder / "one"
        print("scale-out: training, 1 process ...", flush=True)
        _run([*nanonet, *common, "--threads", "2", "--out", str(one), *PINNED])
        print("scale-out: training, 2 processes (torchrun) ...", flush=True)
        torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2"]
        torchrun += ["--master_addr=127.0.0.1", "--master_port=29531", "-m", "nanonet", "-q"]
        two = folder / "two"
        _run([*torchrun, *common, "--threads", "1", "--out", str(two), *PINNED])
        results["training"] = {
            "1 process x 2 threads": _steps_per_s(one),
            "2 processes x 1 thread": _steps_per_s(two),
        }

        texts = folder / "texts.csv"
        _pool_csv(texts, splits.train_texts + splits.test_texts, args.texts)
        print(f"scale-out: scoring {args.texts:,} texts, 1 process ...", flush=True)
        model = ["--model", str(one), "--input", str(texts)]
        local = _timed([*nanonet, "predict", *model, "--output", str(folder / "scored.csv")])
        print("scale-out: scoring on Ray, 2 workers ...", flush=True)
        ray = ["--engine", "ray", "--workers", "2", "--output", str(folder / "scored")]
        on_ray = _timed([*nanonet, "predict", *model, *ray])
        results["scoring"] = {
            "texts": args.texts,
            "1 process x 2 threads": round(args.texts / local, 1),
            "Ray, 2 workers x 1 thread": round(args.texts / on_ray, 1),
        }
        print("scale-out: the teacher reading 2,000 pool texts ...", flush=True)
        results["teacher_reading"] = teacher_reading(splits.train_texts[:2000])
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    write_readme(results)
    return 0


def write_readme(results: dict[str, Any]) -> None:
    table = markdown(results)
    readme = ROOT / "README.md"
    text = readme.read_text(encoding="utf-8")
    if START in text and END in text:
        head, rest = text.split(START, 1)
        readme.write_text(f"{head}{START}\n{table}\n{END}{rest.split(END, 1)[1]}", "utf-8")
    print(table)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--texts", type=int, default=20000, help="texts scored")
    p.add_argument("--steps", type=int, default=30, help="joint-stage steps per training run")
    p.add_argument("--out", default=str(ROOT / "benchmarks/results/scale_out.json"))
    p.add_argument("--report-only", action="store_true", help="rewrite README from --out")
    return p


def _run(cmd: list[str]) -> None:
    done = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        raise SystemExit(f"scale-out: {shlex.join(cmd)} failed:\n{done.stderr[-3000:]}")


def _timed(cmd: list[str]) -> float:
    started = time.perf_counter()
    _run(cmd)
    return time.perf_counter() - started


def _steps_per_s(model: Path) -> float:
    steps = [json.loads(x) for x in (model / "train_log.jsonl").read_text().splitlines()]
    median = _median_step(steps, "train")
    assert median is not None
    return round(1 / median, 3)


def teacher_reading(texts: list[str]) -> dict[str, float]:
    """docs/s of the frozen teacher (+ a head) over `texts`: here with 2 threads, on 2 Ray
    actors of 1 thread (the path `nanonet train --engine ray` takes)."""
    import numpy as np
    import torch
    from transformers.utils import logging as hf_logging

    from nanonet.data.batching import length_sorted_batches, pad_batch
    from nanonet.models.assets import encoder_dir
    from nanonet.models.encoder import Backbone, EncoderClassifier, load_hf_encoder
    from nanonet.train.ray_targets import teacher_outputs_on_ray

    hf_logging.set_verbosity_error()  # the sentence-transformers folder has no pooler weights
    hf, tok = load_hf_encoder(encoder_dir("all-mpnet-base-v2"))
    model = EncoderClassifier(Backbone(hf), 2, dropout=0.0).eval()
    ids = [
        np.asarray(x, dtype=np.int32)
        for x in tok(texts, truncation=True, max_length=128)["input_ids"]
    ]
    torch.set_num_threads(2)
    started = time.perf_counter()
    with torch.no_grad():
        for batch in length_sorted_batches([len(x) for x in ids], 64):
            input_ids, mask = pad_batch(
                [ids[i] for i in batch], tok.pad_token_id, torch.device("cpu")
            )
            model.classify(model.pooled_from(model.backbone.embed(input_ids), mask, 0))
    local = time.perf_counter() - started
    started = time.perf_counter()
    teacher_outputs_on_ray(model, ids, tok.pad_token_id, 64, False, 2, None)
    on_ray = time.perf_counter() - started
    return {
        "texts": len(texts),
        "1 process x 2 threads": round(len(texts) / local, 1),
        "Ray, 2 workers x 1 thread": round(len(texts) / on_ray, 1),
    }


def _num(x: float) -> str:
    return f"{x:,.2f}" if x < 10 else f"{x:,.0f}"


def markdown(r: dict[str, Any]) -> str:
    m = r["machine"]
    lines = [
        f"Measured {r['date'][:10]} on {m['cpu']}, {m['cores']} cores (commit "
        f"`{r['git_commit'][:12]}`) by `python benchmarks/scale_out.py`; real packaged models.",
        "",
        "| what | unit | 1 process, 2 threads | 2 workers, 1 thread each | 2-worker efficiency "
        "| est. 8 workers | est. 64 workers |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    rows = [
        ("training (torchrun, joint steps)", "steps/s", r["training"]),
        (f"scoring {r['scoring']['texts']:,} texts (Ray)", "docs/s", r["scoring"]),
        (
            f"teacher reading {r['teacher_reading']['texts']:,} pool texts (Ray)",
            "docs/s",
            r["teacher_reading"],
        ),
    ]
    for name, unit, row in rows:
        one, two = [v for k, v in row.items() if k != "texts"]
        # The same two cores either way: the efficiency is what splitting them costs.
        eff = two / one
        per_worker = two / 2
        lines.append(
            f"| {name} | {unit} | {_num(one)} | {_num(two)} | {eff:.2f} | "
            f"{_num(per_worker * 8)} | {_num(per_worker * 64)} |"
        )
    lines += [
        "",
        "Two cores cap the gain here: both columns use the same two cores, so the second shows "
        "what splitting them costs or gains (process start, Ray's start and model loads, which "
        "the scoring figures include; gradient all-reduce), not what more machines give. "
        "Training in 2 processes of 1 thread beat 1 process of 2 threads: torch's two threads "
        "on one small batch use the cores less well. The estimates assume one core per worker "
        "at the measured rate per worker, linear in workers; they are not measured (training "
        "keeps one global batch, so more ranks each get less of it and would gain less).",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
