"""Peak memory of `nanonet predict` against input size: streaming must make it flat.

    python benchmarks/predict_memory.py [--sizes 1000 1000000] [--threads 1]

For each size it writes that many short texts to a temporary .txt file, runs
`nanonet -q predict` on it in a fresh subprocess and reads that process's peak RSS from
wait4(). The model is a tiny randomly initialised BERT built here: model size adds the same
constant to every run, while what is measured is whether memory grows with the input.
Writes benchmarks/predict_memory.json and benchmarks/PREDICT_MEMORY.md (command, date,
machine, commit, peak RSS per size).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shlex
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from nanonet.bench.environment import git_commit, machine

ROOT = Path(__file__).resolve().parent
REPO = ROOT.parent
# Sentiment-ish words and filler: every token is in the tiny model's vocabulary.
SENTIMENT = "good great fine superb lovely bad awful poor boring dull movie film plot actor story"
FILLER = "the a an is was it this that and or but very not quite"


def build_tiny_model(folder: Path) -> Path:
    """A 2-layer, 32-wide random BERT with a word-level tokenizer, saved as a NanoNet model."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    from nanonet.models.classifier import NanoNetClassifier
    from nanonet.models.encoder import Backbone, EncoderClassifier

    torch.manual_seed(0)
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab = {w: i for i, w in enumerate(specials + SENTIMENT.split() + FILLER.split())}
    tokenizer = BertTokenizerFast(vocab=vocab, do_lower_case=True)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=130,
    )
    model = EncoderClassifier(Backbone(BertModel(config)), num_labels=2)
    return NanoNetClassifier(model, tokenizer, ["neg", "pos"], max_length=64).save_pretrained(
        folder
    )


def write_texts(path: Path, n: int, seed: int = 0) -> Path:
    """``n`` short reviews (5-12 words), one per line, written in blocks to keep this lean."""
    rng = random.Random(seed)
    sentiment, filler = SENTIMENT.split(), FILLER.split()
    with path.open("w", encoding="utf-8") as f:
        for start in range(0, n, 10_000):
            lines = []
            for _ in range(min(10_000, n - start)):
                words = rng.choices(sentiment, k=3) + rng.choices(filler, k=rng.randint(2, 9))
                rng.shuffle(words)
                lines.append(" ".join(words) + "\n")
            f.writelines(lines)
    return path


def run_predict(
    model: Path, source: Path, output: Path, threads: int, chunk_rows: int
) -> dict[str, Any]:
    """Run `nanonet predict` in a child process; its own peak RSS comes from wait4()."""
    argv = [sys.executable, "-m", "nanonet.cli", "-q", "predict", "--model", str(model)]
    argv += ["--input", str(source), "--output", str(output), "--chunk-rows", str(chunk_rows)]
    # The usual thread variables; torch reads OMP_NUM_THREADS for its intra-op pool.
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    start = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stderr=subprocess.PIPE)
    # wait4 rather than RUSAGE_CHILDREN: the latter is a maximum over all children so far,
    # so the second run could never report less than the first.
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    stderr = proc.stderr.read().decode("utf-8", "replace") if proc.stderr else ""
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"nanonet predict failed ({code}):\n{stderr}")
    rows = sum(1 for _ in output.open(encoding="utf-8")) - 1  # minus the CSV header
    return {
        "command": shlex.join(["nanonet", *argv[3:]]),
        "rows": rows,
        "seconds": round(seconds, 2),
        "docs_per_s": round(rows / seconds),
        # ru_maxrss is in KiB on Linux.
        "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
    }


def write_report(report: dict[str, Any]) -> None:
    (ROOT / "predict_memory.json").write_text(json.dumps(report, indent=2) + "\n")
    m = report["machine"]
    lines = [
        "# `nanonet predict` peak memory vs input size",
        "",
        f"- command: `{report['command']}`",
        f"- date: {report['date']}",
        f"- machine: {m['cpu']}, {m['cores']} cores, {m['platform']}, Python {m['python']}",
        f"- commit: {report['commit']}",
        f"- model: {report['model']}; {report['threads']} torch thread(s), "
        f"--chunk-rows {report['chunk_rows']}",
        "",
        "| texts | peak RSS (MiB) | wall time (s) | docs/s (wall) |",
        "|---:|---:|---:|---:|",
    ]
    for r in report["results"]:
        lines.append(
            f"| {r['rows']:,} | {r['peak_rss_mib']} | {r['seconds']} | {r['docs_per_s']:,} |"
        )
    first, last = report["results"][0], report["results"][-1]
    growth = last["peak_rss_mib"] / first["peak_rss_mib"]
    lines += [
        "",
        "Wall time includes starting Python and loading the model (the whole of the smallest "
        "run, roughly). Peak RSS is the predict process's own maximum resident set (wait4).",
        "",
        f"Peak RSS with {last['rows']:,} texts is {growth:.2f}x that with {first['rows']:,} "
        f"({last['rows'] / first['rows']:,.0f}x the texts).",
        "",
    ]
    (ROOT / "PREDICT_MEMORY.md").write_text("\n".join(lines))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[1_000, 1_000_000])
    p.add_argument("--threads", type=int, default=1, help="torch threads of the predict run")
    p.add_argument("--chunk-rows", type=int, default=4096)
    args = p.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="nanonet-predict-memory-") as tmp:
        folder = Path(tmp)
        model = build_tiny_model(folder / "model")
        for n in args.sizes:
            source = write_texts(folder / f"texts-{n}.txt", n)
            result = run_predict(
                model, source, folder / f"preds-{n}.csv", args.threads, args.chunk_rows
            )
            assert result["rows"] == n, result
            results.append(result)
            print(json.dumps(result), flush=True)
            source.unlink()
    report = {
        "command": shlex.join(["python", "benchmarks/predict_memory.py", *sys.argv[1:]]),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "commit": git_commit(),
        "model": "random 2-layer, 32-wide BERT (word-level vocabulary)",
        "threads": args.threads,
        "chunk_rows": args.chunk_rows,
        "results": results,
    }
    write_report(report)
    print(f"wrote {ROOT / 'predict_memory.json'} and {ROOT / 'PREDICT_MEMORY.md'}")


if __name__ == "__main__":
    main()
