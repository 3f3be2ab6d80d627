"""Peak memory and time per step of `nanonet train` as the unlabelled pool grows.

    python benchmarks/scale.py [--pools 1000 5000 50000 500000] [--steps 30]
        [--out benchmarks/results/scale.json] [--markdown benchmarks/SCALE.md]

For each pool size, a CSV of that many distinct texts (rotten_tomatoes' training texts,
repeated with a numbered suffix once they run out) and a labelled CSV of 10 per class go
through `nanonet train --train --unlabeled` in a child process, with the real packaged teacher
and students [teacher:bottom1, minilm-l3], a short run (`--steps` joint steps, 10 contrastive
and 10 warm-up steps, and about 20 distillation steps whatever the pool). Measured per run:
the child's peak RSS (`wait4`), its wall time, and the median seconds per step of the joint
and the distillation stages (from the run's step log). The run's shape is the same at every
size, so what changes with the pool is what the pool costs: reading, tokenizing, caches.
Target (issue 26): the 500k pool within 1.2x the 5k pool's peak RSS.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import itertools
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from nanonet.bench.environment import git_commit, machine

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from nanonet.data.builtin import load_builtin_splits

    splits = load_builtin_splits("rotten_tomatoes")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        args.models = tiny_models(folder) if args.tiny else None
        train = _labelled_csv(folder / "train.csv", splits.train_texts, splits.train_labels)
        for size in args.pools:
            pool = _pool_csv(folder / f"pool{size}.csv", splits.train_texts, size)
            print(f"scale: pool of {size:,} texts ...", flush=True)
            row = measure(train, pool, size, folder / f"run{size}", args)
            print(f"  {_row(row)}", flush=True)
            rows.append(row)
            pool.unlink()
    results = {
        "command": shlex.join(["python", *sys.argv]),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "git_commit": git_commit(),
        "steps": args.steps,
        "models": "tiny" if args.tiny else "real",
        "note": args.note,
        "rows": rows,
    }
    out = Path(args.out or (TINY_JSON if args.tiny else REAL_JSON))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    write_markdown(Path(args.markdown))
    return 0


REAL_JSON = ROOT / "benchmarks/results/scale.json"
TINY_JSON = ROOT / "benchmarks/results/scale_tiny.json"


def write_markdown(path: Path) -> None:
    """SCALE.md from the stored results: the real models' table, then the tiny models'."""
    parts = [markdown(json.loads(f.read_text())) for f in (REAL_JSON, TINY_JSON) if f.is_file()]
    path.write_text("\n\n".join(parts) + "\n", encoding="utf-8")
    print("\n\n".join(parts))


def tiny_models(folder: Path) -> tuple[Path, Path]:
    """A 2-layer, 32-wide MPNet teacher and BERT student, randomly initialised, with the real
    packaged tokenizers: the models cost next to nothing, so what grows is the pool's own cost."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel, MPNetConfig, MPNetModel

    from nanonet.models.assets import encoder_dir

    torch.manual_seed(0)
    small = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)
    made = []
    for name, config_cls, model_cls, source in (
        ("teacher", MPNetConfig, MPNetModel, "all-mpnet-base-v2"),
        ("student", BertConfig, BertModel, "minilm-l3"),
    ):
        tok = AutoTokenizer.from_pretrained(encoder_dir(source), local_files_only=True)
        config = config_cls(vocab_size=len(tok), max_position_embeddings=514, **small)
        model_cls(config).save_pretrained(folder / name)
        tok.save_pretrained(folder / name)
        made.append(folder / name)
    return made[0], made[1]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--pools", type=int, nargs="+", default=[1000, 5000, 50000, 500000])
    p.add_argument("--steps", type=int, default=30, help="joint-stage steps per run")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--tiny", action="store_true", help="tiny random models, real tokenizers")
    p.add_argument("--note", help="a sentence printed under the table (e.g. what else ran)")
    p.add_argument("--out", help="results JSON (default: results/scale.json or scale_tiny.json)")
    p.add_argument("--markdown", default=str(ROOT / "benchmarks/SCALE.md"))
    return p


def _labelled_csv(path: Path, texts: list[str], labels: list[int]) -> Path:
    per_class: dict[int, list[str]] = {}
    for text, label in zip(texts, labels, strict=True):
        per_class.setdefault(label, [])
        if len(per_class[label]) < 10:
            per_class[label].append(text)
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        w.writerows([t, str(y)] for y, ts in per_class.items() for t in ts)
    return path


def _pool_csv(path: Path, texts: list[str], size: int) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text"])
        for i in range(size):
            base = texts[i % len(texts)]
            w.writerow([base if i < len(texts) else f"{base} ({i // len(texts)})"])
    return path


def measure(train: Path, pool: Path, size: int, out: Path, args: argparse.Namespace) -> dict:
    distill_epochs = 20 * 32 / size  # about 20 distillation steps whatever the pool
    cmd = [sys.executable, "-m", "nanonet", "-q", "train", "--train", str(train)]
    cmd += ["--unlabeled", str(pool), "--out", str(out), "--steps", str(args.steps)]
    cmd += ["--threads", str(args.threads)]
    students = "teacher:bottom1,minilm-l3"
    if args.models is not None:
        teacher, student = args.models
        cmd += ["--teacher", str(teacher)]
        students = f"teacher:bottom1,{student}"
    cmd += [
        f"model.students=[{students}]",
        "model.min_speedup=null",
        "data.max_unlabeled=null",  # the whole pool (the default caps it at 5,000)
        "train.teacher_contrastive_steps=10",
        "train.teacher_warmup_steps=10",
        f"train.distill_epochs={distill_epochs:.6f}",
        "train.checkpoint_every=0",
    ]
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    err = proc.stderr.read() if proc.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"scale: the run on {size} texts failed:\n{err[-2000:]}")
    steps = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    return {
        "pool": size,
        "peak_rss_mb": round(usage.ru_maxrss / 1024),
        "wall_s": round(wall, 1),
        "s_per_step": {
            phase: _median_step(steps, phase) for phase in ("contrastive", "train", "distill")
        },
    }


def _median_step(steps: list[dict[str, Any]], phase: str) -> float | None:
    times = [s["seconds"] for s in steps if s["phase"] == phase]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    return round(statistics.median(gaps), 3) if gaps else None


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def _row(r: dict[str, Any]) -> str:
    s = r["s_per_step"]
    return (
        f"| {r['pool']:,} | {r['peak_rss_mb']:,} | {r['wall_s']:.0f} | {_fmt(s['train'])} | "
        f"{_fmt(s['distill'])} |"
    )


def markdown(r: dict[str, Any]) -> str:
    m = r["machine"]
    rows = r["rows"]
    by_pool = {x["pool"]: x["peak_rss_mb"] for x in rows}
    bar = "not measured (needs pools 5000 and 500000)"
    if 5000 in by_pool and 500000 in by_pool:
        ratio = by_pool[500000] / by_pool[5000]
        bar = f"{'met' if ratio <= 1.2 else 'NOT met'} ({ratio:.2f}x)"
        per_text = (by_pool[500000] - by_pool[5000]) * 1024 / (500000 - 5000)
        bar += (
            f". Between them memory grows by {per_text:.2f} KB per extra pool text: the text "
            "itself and its int32 token ids (one copy per tokenizer), which stay in memory"
        )
    tiny = r.get("models") == "tiny"
    models = (
        "tiny randomly initialised models (a 2-layer, 32-wide MPNet teacher and BERT student) "
        "with the real packaged tokenizers, so that the pool's own cost is most of the memory"
        if tiny
        else "real packaged models (all-mpnet-base-v2 teacher; students teacher:bottom1 and "
        "MiniLM-L3)"
    )
    return "\n".join(
        [
            "## Tiny models" if tiny else "# Training as the pool grows\n\n## Real models",
            "",
            f"{r['date']} · commit `{r['git_commit'][:12]}` · {m['cpu']}, {m['cores']} cores · "
            "generated by `benchmarks/scale.py" + (" --tiny`" if tiny else "`"),
            "",
            "`nanonet train --train (10 per class) --unlabeled POOL` in a child process, "
            f"{models}, {r['steps']} joint steps, 10 contrastive, 10 warm-up and about 20 "
            "distillation steps at every size, the whole pool used (`data.max_unlabeled=null`); "
            "the pool is rotten_tomatoes' training texts, repeated with a numbered suffix past "
            "8,530.",
            "",
            "| pool texts | peak RSS MB | wall s | s / joint step | s / distillation step |",
            "|---:|---:|---:|---:|---:|",
            *(_row(x) for x in rows),
            "",
            f"Bar: the 500k pool within 1.2x the 5k pool's peak RSS: {bar}.",
            *(["", r["note"]] if r.get("note") else []),
            "",
            f"Command: `{r['command']}`",
        ]
    )


if __name__ == "__main__":
    sys.exit(main())
