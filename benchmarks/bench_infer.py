"""Inference benchmark: teacher vs the kept student on every backend, batch 1 and 64.

    python benchmarks/bench_infer.py --model runs/rt-seed0 [--dataset rotten_tomatoes] [--n 2000]

Measures docs/s (one predict call over the texts, tokenization included, after warm-up) and
per-call latency (texts arriving 1 or 64 at a time, unsorted) on real test texts, and compares
each student backend with the FLOP ceiling of this machine: the measured fp32 GEMM rate
divided by the student's FLOPs per document at the real mean token count.
Writes benchmarks/results/infer.json and benchmarks/INFERENCE.md (command, date, machine, commit).
Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nanonet.bench.environment import git_commit, machine
from nanonet.data.builtin import load_builtin_splits
from nanonet.models.assets import encoder_dir
from nanonet.models.classifier import NanoNetClassifier
from nanonet.models.encoder import Backbone, EncoderClassifier, load_hf_encoder

ROOT = Path(__file__).resolve().parent


def gemm_rate(hidden: int, tokens: int = 4096, repeats: int = 20) -> float:
    """Measured fp32 GEMM FLOP/s at the student's shapes (tokens x H times H x 4H)."""
    a, b = torch.randn(tokens, hidden), torch.randn(hidden, 4 * hidden)
    for _ in range(3):
        a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * tokens * hidden * 4 * hidden * repeats / (time.perf_counter() - start)


def flops_per_doc(config: Any, tokens: float) -> float:
    """Forward FLOPs of the encoder for one document of `tokens` tokens (matmuls only)."""
    h, i, n = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    linear = 2 * tokens * (4 * h * h + 2 * h * i)
    attention = 2 * 2 * tokens * tokens * h
    return n * (linear + attention)


def throughput(clf: NanoNetClassifier, texts: list[str], batch: int) -> dict[str, float]:
    """docs/s as a user gets it (one predict call over all texts: sorted by length, then
    batched), and latency per call when texts arrive `batch` at a time in their own order."""
    clf.predict_logits(texts[:64], batch_size=batch)  # warm-up
    if batch == 1:
        texts = texts[:300]  # batch 1 is slow by nature: a fixed subset bounds the time
    start = time.perf_counter()
    clf.predict_logits(texts, batch_size=batch)
    seconds = time.perf_counter() - start
    latencies = []
    for i in range(0, min(len(texts), 50 * batch), batch):
        t0 = time.perf_counter()
        clf.predict_logits(texts[i : i + batch], batch_size=batch)
        latencies.append((time.perf_counter() - t0) * 1000)
    return {
        "docs_per_s": len(texts) / seconds,
        "latency_ms_p50": statistics.median(latencies),
        "latency_ms_p99": float(np.percentile(latencies, 99)),
        "n": len(texts),
    }


def teacher_classifier(name: str, labels: list[str], max_length: int) -> NanoNetClassifier:
    hf, tok = load_hf_encoder(encoder_dir(name))
    # The head's values do not change the speed: a fresh head stands in for the trained one.
    return NanoNetClassifier(EncoderClassifier(Backbone(hf), len(labels)), tok, labels, max_length)


def student_variants(model_dir: Path, skip_onnx: bool) -> dict[str, NanoNetClassifier]:
    # A CPU benchmark (this machine's FLOP ceiling) also on a GPU machine; benchmarks/gpu_check.py
    # measures the GPU.
    variants = {
        "student torch fp32": NanoNetClassifier.from_pretrained(model_dir, device="cpu"),
        "student packed fp32": NanoNetClassifier.from_pretrained(
            model_dir, backend="packed", device="cpu"
        ),
    }
    if not skip_onnx:
        from nanonet.infer.export import export_onnx

        if not (model_dir / "onnx" / "model.int8.onnx").is_file():
            export_onnx(model_dir, quantize="int8")
        variants["student onnx fp32"] = NanoNetClassifier.from_pretrained(model_dir, "onnx")
        variants["student onnx int8"] = NanoNetClassifier.from_pretrained(
            model_dir, "onnx", quantized=True
        )
    return variants


def run(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    splits = load_builtin_splits(args.dataset)
    texts = list(splits.test_texts[: args.n])
    model_dir = Path(args.model)
    students = student_variants(model_dir, args.skip_onnx)
    plain = students["student torch fp32"]
    config = plain.model.backbone.hf.config
    mean_tokens = float(np.mean([len(x) for x in plain.tokenize(texts)]))
    rate = gemm_rate(config.hidden_size)
    ceiling = rate / flops_per_doc(config, mean_tokens)

    rows: dict[str, Any] = {}
    teacher = teacher_classifier(args.teacher, plain.label_names, plain.max_length)
    for name, clf in {f"teacher {args.teacher} torch fp32": teacher, **students}.items():
        rows[name] = {f"batch{b}": throughput(clf, texts, b) for b in (1, 64)}
        print(name, json.dumps(rows[name]), file=sys.stderr)
    base = rows[next(iter(rows))]["batch64"]["docs_per_s"]
    for name, row in rows.items():
        row["speedup_vs_teacher_b64"] = row["batch64"]["docs_per_s"] / base
        if name.startswith("student"):
            row["fraction_of_flop_ceiling_b64"] = row["batch64"]["docs_per_s"] / ceiling
    return {
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "threads": args.threads,
        "commit": git_commit(),
        "dataset": args.dataset,
        "texts": len(texts),
        "student": str(model_dir),
        "student_summary": plain.summary,
        "student_mean_tokens": mean_tokens,
        "gemm_gflops": rate / 1e9,
        "student_flops_per_doc": flops_per_doc(config, mean_tokens),
        "flop_ceiling_docs_per_s": ceiling,
        "results": rows,
    }


def markdown(res: dict[str, Any]) -> str:
    m = res["machine"]
    lines = [
        "# Inference benchmark",
        "",
        f"- command: `python benchmarks/{res['command']}`",
        f"- date: {res['date']}; commit: `{res['commit']}`",
        f"- machine: {m['cpu']}, {m['cores']} cores, {m['ram_gb']} GB RAM; "
        f"torch {m['torch']}; {res['threads']} threads",
        f"- data: {res['texts']} `{res['dataset']}` test texts; student `{res['student']}` "
        f"({res['student_summary'].get('student', '?')}), "
        f"mean {res['student_mean_tokens']:.1f} tokens",
        f"- FLOP ceiling: measured GEMM {res['gemm_gflops']:.0f} GFLOP/s / "
        f"{res['student_flops_per_doc'] / 1e9:.3f} GFLOP per doc = "
        f"{res['flop_ceiling_docs_per_s']:.0f} docs/s",
        "",
        "| model | b64 docs/s | b64 p50 ms | b1 docs/s | b1 p50 ms | b1 p99 ms "
        "| × teacher (b64) | % of FLOP ceiling |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in res["results"].items():
        b64, b1 = r["batch64"], r["batch1"]
        frac = r.get("fraction_of_flop_ceiling_b64")
        lines.append(
            f"| {name} | {b64['docs_per_s']:.0f} | {b64['latency_ms_p50']:.1f} "
            f"| {b1['docs_per_s']:.0f} | {b1['latency_ms_p50']:.1f} | {b1['latency_ms_p99']:.1f} "
            f"| {r['speedup_vs_teacher_b64']:.1f} | {f'{100 * frac:.0f}%' if frac else '-'} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", required=True, help="a saved NanoNet model folder (the student)")
    p.add_argument("--teacher", default="all-mpnet-base-v2")
    p.add_argument("--dataset", default="rotten_tomatoes")
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--skip-onnx", action="store_true")
    p.add_argument("--out", default=str(ROOT / "results" / "infer.json"))
    args = p.parse_args()
    res = run(args)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2))
    (ROOT / "INFERENCE.md").write_text(markdown(res))
    print(markdown(res))


if __name__ == "__main__":
    main()
