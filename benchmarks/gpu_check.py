"""Issue 24's GPU check: CUDA tests, training and inference speed on one GPU, beside the CPU.

    PYTHONPATH=src python3 benchmarks/gpu_check.py             # on the GPU machine (<= 8 min)
    PYTHONPATH=src python3 benchmarks/gpu_check.py --cpu-only  # the project's 2-core CPU
    PYTHONPATH=src python3 benchmarks/gpu_check.py --quick --device cpu --out-dir /tmp/x  # smoke

Needs torch, transformers, numpy, pandas and scikit-learn; no network and none of NanoNet's
packaged weights. The encoders are built from their configs with random weights (speed depends
on the architecture, not on the weights): an MPNet teacher shaped like all-mpnet-base-v2, and
the default students teacher:bottom1 (cut from it), paraphrase-MiniLM-L3 and all-MiniLM-L6
(BERT shapes), with word-level tokenizers made here. The task has rotten_tomatoes' shape:
10 labelled texts per class, a pool of 5,000, 2,000 test texts, ~27 tokens on average.

On a GPU it (a) runs `pytest -m cuda`, (b) measures the full NanoNet step (the real trainer)
and inference docs/s at batch 1/64/512 on 32/128/256-token texts in bf16 and fp32, times one
whole default run, measures the same on this host's CPU with 2 torch threads, and (c) writes
benchmarks/GPU.md (with the numbers of `--cpu-only`, stored in benchmarks/gpu_check_cpu.json,
beside its own) and benchmarks/gpu_check_gpu.json. Every part records its failure instead of
stopping the script; a global time guard cuts what would run past `--budget-s`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import BertConfig, BertModel, MPNetConfig, MPNetModel, PreTrainedTokenizerFast

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))  # also without PYTHONPATH=src

from nanonet.data.task import Task  # noqa: E402
from nanonet.models.classifier import NanoNetClassifier  # noqa: E402
from nanonet.models.device import autocast, resolve_device  # noqa: E402
from nanonet.models.encoder import Backbone, EncoderClassifier, load_hf_encoder  # noqa: E402
from nanonet.models.students import subset_layers  # noqa: E402
from nanonet.train.config import RunConfig  # noqa: E402
from nanonet.train.trainer import NanoNetTrainer  # noqa: E402

# (family, hidden, layers, heads, intermediate, vocab, positions) of the real checkpoints.
ARCHS = {
    "teacher": ("mpnet", 768, 12, 12, 3072, 30527, 514),  # all-mpnet-base-v2
    "minilm-l3": ("bert", 384, 3, 12, 1536, 30522, 512),  # paraphrase-MiniLM-L3-v2
    "minilm-l6": ("bert", 384, 6, 12, 1536, 30522, 512),  # all-MiniLM-L6-v2
}
QUICK_ARCHS = {
    "teacher": ("mpnet", 32, 4, 4, 64, 600, 300),
    "minilm-l3": ("bert", 32, 2, 4, 64, 600, 300),
    "minilm-l6": ("bert", 32, 3, 4, 64, 600, 300),
}
BAR_STEP_RATIO, BAR_DOCS, BAR_RUN_S = 50.0, 20_000.0, 60.0
CPU_JSON = ROOT / "benchmarks" / "gpu_check_cpu.json"
CPU_THREADS = 2  # the project's CPU machine has 2 cores


class OutOfTime(Exception):
    """A part ran into its share of the time budget."""


# ----------------------------------------------------------------------------- inputs --------
def write_encoders(folder: Path, quick: bool) -> dict[str, Path]:
    """HF folders (config, random weights, word-level tokenizer) for the three architectures."""
    out = {}
    for name, (family, hidden, layers, heads, inter, vocab, positions) in (
        QUICK_ARCHS if quick else ARCHS
    ).items():
        path = folder / name
        shape = dict(
            vocab_size=vocab,
            hidden_size=hidden,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            intermediate_size=inter,
            max_position_embeddings=positions,
        )
        torch.manual_seed(0)
        if family == "mpnet":
            # <pad> must be id 1: MPNet's position ids skip its padding id, which is 1.
            tok = word_tokenizer(["<s>", "<pad>", "</s>", "<unk>", "<mask>"], vocab)
            model = MPNetModel(MPNetConfig(**shape), add_pooling_layer=False)
        else:
            tok = word_tokenizer(["[CLS]", "[PAD]", "[SEP]", "[UNK]", "[MASK]"], vocab)
            model = BertModel(BertConfig(pad_token_id=1, **shape), add_pooling_layer=False)
        model.save_pretrained(path)
        tok.save_pretrained(path)
        out[name] = path
    return out


def word_tokenizer(specials: list[str], size: int) -> PreTrainedTokenizerFast:
    """One token per word `w<i>`, with `specials` = (cls, pad, sep, unk, mask) around it. Built
    with the tokenizers library, whose API is the same in every transformers version."""
    cls, pad, sep, unk, mask = specials
    words = specials + [f"w{i}" for i in range(size - len(specials))]
    vocab = {w: i for i, w in enumerate(words)}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token=unk))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    core.post_processor = processors.TemplateProcessing(
        single=f"{cls} $A {sep}", special_tokens=[(cls, vocab[cls]), (sep, vocab[sep])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        cls_token=cls,
        pad_token=pad,
        sep_token=sep,
        unk_token=unk,
        mask_token=mask,
    )


def texts_of(lengths: np.ndarray, vocab: int, rng: np.random.Generator) -> list[str]:
    """One text per length, of `length` tokens once the two special tokens are added."""
    words = rng.integers(0, vocab - 10, size=int(lengths.sum()))
    out, start = [], 0
    for n in lengths:
        k = max(1, int(n) - 2)
        out.append(" ".join(f"w{i}" for i in words[start : start + k]))
        start += k
    return out


def synthetic_task(quick: bool, vocab: int, with_test: bool) -> Task:
    """rotten_tomatoes' shape: 2 classes x 10 labels, 5,000 pool, 2,000 test, ~27 tokens."""
    rng = np.random.default_rng(0)
    n_pool, n_test = (60, 20) if quick else (5000, 2000)

    def lengths(n: int) -> np.ndarray:
        return np.clip(np.rint(rng.normal(27, 11, n)), 5, 72).astype(int)

    test = texts_of(lengths(n_test), vocab, rng) if with_test else []
    return Task(
        name="synthetic-rotten_tomatoes",
        label_names=["neg", "pos"],
        labelled_texts=texts_of(lengths(20), vocab, rng),
        labelled_labels=[0] * 10 + [1] * 10,
        unlabelled_texts=texts_of(lengths(n_pool), vocab, rng),
        test_texts=test,
        test_labels=[i % 2 for i in range(len(test))],
        max_length=128,
    )


# ----------------------------------------------------------------------------- training ------
def train_run(
    folders: dict[str, Path],
    device: torch.device,
    quick: bool,
    deadline: float,
    steps: tuple[int, int, int] | None,
) -> dict[str, Any]:
    """The real trainer on the synthetic task. `steps` (contrastive, warm-up, NanoNet) pins a
    short run of the full default cohort for step rates; None is the whole default run (speed
    screen, device defaults, selection, test scoring), timed end to end."""
    cfg = RunConfig()
    cfg.model.teacher = str(folders["teacher"])
    cfg.model.students = ["teacher:bottom1", str(folders["minilm-l3"]), str(folders["minilm-l6"])]
    cfg.train.device = str(device)
    if steps is not None:
        contrastive, warmup, nanonet = steps
        cfg.model.min_speedup = None  # the full step: teacher + all three students
        for override in (
            f"train.teacher_contrastive_steps={contrastive}",
            f"train.teacher_warmup_steps={warmup}",
            f"train.steps={nanonet}",
            "train.selection_holdout=32",
        ):
            cfg.override(override)
    elif quick:
        cfg.override("train.steps=3")
        cfg.override("train.teacher_contrastive_steps=2")
        cfg.override("train.teacher_warmup_steps=2")
    vocab = (QUICK_ARCHS if quick else ARCHS)["minilm-l3"][5]
    task = synthetic_task(quick, vocab, with_test=steps is None)
    stamps: list[tuple[str, float]] = []

    def on_step(logs: dict[str, Any]) -> None:
        stamps.append((logs["phase"], time.perf_counter()))  # after .item(): synchronised
        if time.perf_counter() > deadline:
            raise OutOfTime("time guard")

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    out: dict[str, Any] = {"device": str(device), "threads": torch.get_num_threads()}
    start = time.perf_counter()
    try:
        trainer = NanoNetTrainer(task, cfg, on_step=on_step, progress=False)
        result = trainer.train()
        out["wall_s"] = time.perf_counter() - start
        out["train_seconds"] = result.report["train_seconds"]
        out["kept"] = result.kept
        out["cohort"] = [s.name for s in trainer.students]
        out["speed_screen"] = result.report.get("speed_screen", [])
        out["config"] = {k: getattr(cfg.train, k) for k in ("steps", "batch_reference_length")}
        if steps is None and task.test_texts:
            out["test_docs_per_s"] = {
                m["name"]: m["test"]["docs_per_s"] for m in result.report["members"] if "test" in m
            }
    except OutOfTime:
        out["cut_by_time_guard"] = True
    finally:
        out["phases"] = phase_rates(stamps)
        out["setup_s"] = stamps[0][1] - start if stamps else None
        if device.type == "cuda":
            out["peak_gpu_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    return out


def phase_rates(stamps: list[tuple[str, float]]) -> dict[str, dict[str, float]]:
    """Steps/s per phase over its steps after the first (the first pays one-off costs)."""
    rates = {}
    for phase in dict.fromkeys(p for p, _ in stamps):
        times = [t for p, t in stamps if p == phase]
        if len(times) >= 2:
            n = len(times) - 1
            rates[phase] = {"steps": n, "steps_per_s": n / (times[-1] - times[0])}
    return rates


# ----------------------------------------------------------------------------- inference -----
def inference_models(folders: dict[str, Path], device: torch.device) -> dict[str, Any]:
    """Teacher and the three default students, on `device` (MPNet gets SDPA there on CUDA)."""
    models: dict[str, Any] = {}
    for name in ("teacher", "minilm-l3", "minilm-l6"):
        hf, tok = load_hf_encoder(folders[name])
        models[name] = (EncoderClassifier(Backbone(hf), 2, dropout=0.0).eval(), tok)
        if name == "teacher":
            bottom1 = subset_layers(hf, [0])
            models["teacher:bottom1"] = (EncoderClassifier(Backbone(bottom1), 2).eval(), tok)
    if device.type == "cuda":  # transformers' own eager MPNet attention, for comparison
        hf, tok = load_hf_encoder(folders["teacher"])
        models["teacher, eager attention"] = (EncoderClassifier(Backbone(hf), 2).eval(), tok)
    for name, (model, _) in models.items():
        if "eager" in name:
            model.to(device)  # keeps transformers' eager attention
        else:
            model.to_device(device)
    return models


def inference_grid(
    folders: dict[str, Path],
    device: torch.device,
    precisions: list[str],
    lengths: list[int],
    batches: list[int],
    min_time: float,
    cell_cap: float,
    deadline: float,
) -> list[dict[str, Any]]:
    """docs/s of the model alone (random token ids of exactly `length` tokens, no padding)
    per model, precision, length and batch; cells whose one call would take over `cell_cap`
    seconds (predicted from the model's tokens/s so far) are skipped, not run."""
    rows = []
    for name, (model, tok) in inference_models(folders, device).items():
        eager = "eager" in name
        tokens_per_s = None
        for precision in precisions:
            for length in lengths:
                for batch in batches:
                    if eager and (precision != "bf16" or batch == 1):
                        continue
                    row = {"model": name, "precision": precision, "length": length, "batch": batch}
                    rows.append(row)
                    predicted = batch * length / tokens_per_s if tokens_per_s else 0.0
                    if predicted > cell_cap:
                        row["skipped"] = f"one batch would take ~{predicted:.0f} s"
                        continue
                    if time.perf_counter() + predicted > deadline:
                        row["skipped"] = "time guard"
                        continue
                    ids = torch.randint(10, len(tok) - 10, (batch, length))
                    mask = torch.ones_like(ids)
                    seconds, calls = time_calls(model, ids, mask, device, precision, min_time)
                    row["docs_per_s"] = batch * calls / seconds
                    tokens_per_s = batch * length * calls / seconds
    return rows


def time_calls(
    model: Any,
    ids: torch.Tensor,
    mask: torch.Tensor,
    device: torch.device,
    precision: str,
    min_time: float,
) -> tuple[float, int]:
    ids, mask = ids.to(device), mask.to(device)
    with torch.inference_mode(), autocast(device, precision == "bf16"):
        model(ids, mask)  # warm-up: kernels chosen, memory allocated
        _sync(device)
        calls, start = 0, time.perf_counter()
        while True:
            model(ids, mask)
            calls += 1
            _sync(device)
            seconds = time.perf_counter() - start
            if seconds >= min_time:
                return seconds, calls


def end_to_end(
    folders: dict[str, Path],
    device: torch.device,
    n: int,
    length: int,
    batch: int,
    cap: float,
    deadline: float,
) -> list[dict[str, Any]]:
    """docs/s through NanoNetClassifier.predict_logits (tokenization, length sorting, batches
    of `batch`, results back on the CPU) on `n` texts of `length` tokens, bf16 on CUDA."""
    rows = []
    rng = np.random.default_rng(1)
    for name, (model, tok) in inference_models(folders, device).items():
        if "eager" in name:
            continue
        texts = texts_of(np.full(n, length), len(tok), rng)
        clf = NanoNetClassifier(model, tok, ["neg", "pos"], max_length=length)
        row = {"model": name, "length": length, "batch": batch, "texts": n}
        rows.append(row)
        warm = min(batch, 64)
        start = time.perf_counter()
        clf.predict_logits(texts[:warm], batch_size=batch)  # warm-up, and a cost estimate
        predicted = (time.perf_counter() - start) * n / warm
        if predicted > cap or time.perf_counter() + predicted > deadline:
            row["skipped"] = f"would take ~{predicted:.0f} s"
            continue
        start = time.perf_counter()
        clf.predict_logits(texts, batch_size=batch)
        row["docs_per_s"] = n / (time.perf_counter() - start)
    return rows


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ----------------------------------------------------------------------------- parts ---------
def run_part(results: dict[str, Any], name: str, fn: Callable[[], Any]) -> Any:
    """Run one part; a failure is recorded (with its traceback's tail), never raised."""
    start = time.perf_counter()
    try:
        value = fn()
        results[name] = value
        return value
    except BaseException as exc:  # a part must not take the report down (OOM, CUDA errors...)
        if isinstance(exc, KeyboardInterrupt):
            raise
        tail = "".join(traceback.format_exception(exc))[-1500:]
        results.setdefault("failures", {})[name] = f"{type(exc).__name__}: {exc}\n{tail}"
        return None
    finally:
        results.setdefault("part_seconds", {})[name] = round(time.perf_counter() - start, 1)


def cuda_tests(timeout: float) -> dict[str, Any]:
    """`pytest -m cuda` in a child process (tiny random models; skipped without pytest)."""
    try:
        import pytest  # noqa: F401
    except ImportError:
        return {"skipped": "pytest is not installed here; the CUDA tests did not run"}
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    command = [sys.executable, "-m", "pytest", "-q", "-m", "cuda", "-p", "no:cacheprovider"]
    # A test module whose imports are missing here (the server tests need fastapi) must not
    # stop the CUDA tests of the others from running.
    command.append("--continue-on-collection-errors")
    try:
        proc = subprocess.run(
            [*command, "tests"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=max(10.0, timeout),
        )
    except subprocess.TimeoutExpired:
        return {"returncode": None, "summary": f"stopped after {timeout:.0f} s (time guard)"}
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    return {
        "returncode": proc.returncode,
        "summary": lines[-1] if lines else "",
        "tail": lines[-25:],
    }


def environment(device: torch.device) -> dict[str, Any]:
    import transformers

    env: dict[str, Any] = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "cpu": _cpu_name(),
        "cores": os.cpu_count(),
        "load_average": os.getloadavg(),
        "commit": _git("rev-parse", "--short", "HEAD"),
        "device": str(device),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env.update(
            gpu=props.name,
            gpu_memory_gb=round(props.total_memory / 2**30, 1),
            cuda=torch.version.cuda,
            cudnn=torch.backends.cudnn.version(),
            tf32_matmul=torch.backends.cuda.matmul.allow_tf32,
        )
    return env


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _git(*args: str) -> str:
    try:
        return subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def measure_device(
    results: dict[str, Any],
    prefix: str,
    folders: dict[str, Path],
    device: torch.device,
    args: argparse.Namespace,
    budget: dict[str, float],
) -> None:
    """The parts named in `budget` (steps, inference, e2e), each within its seconds: step
    rates, the inference grid and end-to-end docs/s on `device`."""
    cpu = device.type == "cpu"
    steps = (2, 2, 3) if args.quick else (3, 3, 4) if cpu else (10, 10, 60)
    precisions = ["fp32"] if cpu else ["bf16", "fp32"]
    lengths, batches = ([16, 32], [1, 8]) if args.quick else ([32, 128, 256], [1, 64, 512])
    min_time = 0.05 if args.quick else 0.5 if cpu else 0.3
    cap = 1.0 if args.quick else 4.0 if cpu else 30.0
    e2e_n = 16 if args.quick else 512 if cpu else 8192
    e2e_batch = 8 if args.quick else 512

    def until(part: str) -> float:
        return min(args.deadline, time.perf_counter() + budget[part])

    if "steps" in budget:
        run_part(
            results,
            f"{prefix}_steps",
            lambda: train_run(folders, device, args.quick, until("steps"), steps),
        )
    if "inference" in budget:
        run_part(
            results,
            f"{prefix}_inference",
            lambda: inference_grid(
                folders, device, precisions, lengths, batches, min_time, cap, until("inference")
            ),
        )
    if "e2e" in budget:
        length = 32 if args.quick else 128
        run_part(
            results,
            f"{prefix}_end_to_end",
            lambda: end_to_end(folders, device, e2e_n, length, e2e_batch, cap * 2, until("e2e")),
        )


@contextlib.contextmanager
def cpu_threads(n: int) -> Iterator[None]:
    """The host CPU measured like the project's 2-core machine: n torch threads."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# ----------------------------------------------------------------------------- report --------
def bar_checks(gpu: dict[str, Any], cpu: dict[str, Any], host: dict[str, Any]) -> list[str]:
    """Issue 24's bar, evaluated from the numbers (a missing number says so)."""
    lines = []
    g = _rate(gpu.get("gpu_steps"))
    # The verdict uses this host's CPU at 2 threads, measured idle in the same run; the
    # project machine's figure was taken while other experiments ran (a slower CPU makes the
    # ratio look better), so it is shown, and used only when the host figure is missing.
    host_rate, project_rate = _rate(host.get("cpu_steps")), _rate(cpu.get("cpu_steps"))
    for label, c, decides in (
        ("this host's CPU, 2 threads", host_rate, True),
        (f"the project's 2-core CPU (load {_load(cpu)})", project_rate, host_rate is None),
    ):
        if g and c:
            ratio = g / c
            verdict = "met" if ratio >= BAR_STEP_RATIO else "NOT met"
            verdict = verdict if decides else "not the verdict: measured under load"
            lines.append(
                f"- NanoNet step vs {label}: {g:.2f} / {c:.3f} steps/s = **{ratio:.0f}×** "
                f"(bar ≥ {BAR_STEP_RATIO:.0f}×: {verdict})"
            )
        else:
            lines.append(f"- NanoNet step vs {label}: not measured (see failures)")
    best = {}
    for row in gpu.get("gpu_inference") or []:
        student = row["model"] != "teacher" and "eager" not in row["model"]
        if student and row["length"] == 128 and row["batch"] == 512 and "docs_per_s" in row:
            best[row["model"]] = max(best.get(row["model"], 0.0), row["docs_per_s"])
    if best:
        parts = [f"{m} {d:,.0f}" for m, d in best.items()]
        met = [m for m, d in best.items() if d >= BAR_DOCS]
        verdict = f"met by {', '.join(met)}" if met else "NOT met"
        lines.append(
            f"- Student inference at 128 tokens, batch 512 (model alone, best of bf16/fp32): "
            f"{'; '.join(parts)} docs/s (bar ≥ {BAR_DOCS:,.0f}: {verdict})"
        )
    else:
        lines.append("- Student inference at 128 tokens, batch 512: not measured")
    full = gpu.get("gpu_full_run") or {}
    estimate = run_estimate(gpu)
    if "wall_s" in full:
        verdict = "met" if full["wall_s"] < BAR_RUN_S else "NOT met"
        lines.append(
            f"- Whole default run on the rotten_tomatoes-shaped task, measured end to end: "
            f"**{full['wall_s']:.0f} s** (bar < {BAR_RUN_S:.0f} s: {verdict}); estimated from "
            f"the step rates: {_fmt_s(estimate)}"
        )
    else:
        lines.append(
            f"- Whole default run: not measured end to end; estimated from the step rates: "
            f"{_fmt_s(estimate)} (bar < {BAR_RUN_S:.0f} s)"
        )
    return lines


def run_estimate(gpu: dict[str, Any]) -> float | None:
    """Set-up + 50 contrastive + 40 warm-up + 400 NanoNet steps at the measured rates + scoring
    2,000 test texts with the teacher and two students at the measured end-to-end rate."""
    run = gpu.get("gpu_steps") or {}
    phases = run.get("phases", {})
    cfg = RunConfig()
    needed = ("contrastive", "warmup", "train")
    if not all(p in phases for p in needed) or run.get("setup_s") is None:
        return None
    seconds = run["setup_s"]
    steps = (cfg.train.teacher_contrastive_steps, cfg.train.teacher_warmup_steps, 400)
    for phase, n in zip(needed, steps, strict=True):
        seconds += n / phases[phase]["steps_per_s"]
    for row in gpu.get("gpu_end_to_end") or []:
        if row["model"] in ("teacher", "teacher:bottom1", "minilm-l3") and "docs_per_s" in row:
            seconds += 2000 / row["docs_per_s"]
    return seconds


def _rate(run: dict[str, Any] | None) -> float | None:
    return (run or {}).get("phases", {}).get("train", {}).get("steps_per_s")


def _fmt_s(x: float | None) -> str:
    return "-" if x is None else f"{x:.0f} s"


def _fmt(x: float | None, digits: int = 0) -> str:
    return "-" if x is None else f"{x:,.{digits}f}"


def write_report(path: Path, gpu: dict[str, Any], cpu: dict[str, Any]) -> None:
    env, host = gpu.get("environment", {}), gpu.get("host_cpu", {})
    lines = [
        "# NanoNet on one GPU (issue 24)",
        "",
        f"Written by `benchmarks/gpu_check.py` on {env.get('date', '?')}: "
        f"{env.get('gpu', env.get('device', '?'))} ({env.get('gpu_memory_gb', '?')} GB), "
        f"CUDA {env.get('cuda', '-')}, cuDNN {env.get('cudnn', '-')}, torch {env.get('torch')}, "
        f"transformers {env.get('transformers')}, host CPU {env.get('cpu')} "
        f"({env.get('cores')} cores), commit {env.get('commit')}. Command: `{env.get('command')}`.",
        "",
        "Random-weight encoders of the real shapes (MPNet 768×12 teacher; teacher:bottom1; "
        "MiniLM-L3 and -L6, 384 wide) on a synthetic task of rotten_tomatoes' shape (20 labels, "
        "5,000 pool, 2,000 test, ~27 tokens): speed depends on the architecture, not the "
        "weights. CPU columns: *project CPU* is the project's 2-core machine "
        f"(`--cpu-only`, {cpu.get('environment', {}).get('date', 'not measured')}; other "
        "experiments were running on it, load average "
        f"{_load(cpu)}, so its figures are on the slow side and decide nothing), *host CPU* is "
        f"this GPU machine's CPU with {CPU_THREADS} torch threads, measured in the same run.",
        "",
        "## The bar",
        "",
        *bar_checks(gpu, cpu, host),
        "",
        "## Training: steps per second (the real trainer, full default cohort)",
        "",
        "| phase | GPU (bf16 autocast) | host CPU, 2 threads | project CPU, 2 cores |",
        "|---|---|---|---|",
    ]
    for phase in ("contrastive", "warmup", "train"):
        cells = [
            _fmt((run or {}).get("phases", {}).get(phase, {}).get("steps_per_s"), 3)
            for run in (gpu.get("gpu_steps"), host.get("cpu_steps"), cpu.get("cpu_steps"))
        ]
        lines.append(f"| {phase} | " + " | ".join(cells) + " |")
    full = gpu.get("gpu_full_run") or {}
    lines += [
        "",
        f"Whole default run on the GPU (speed screen on the CPU, GPU defaults "
        f"{full.get('config', '?')}, selection, scoring every member on 2,000 test texts): "
        f"{_fmt_s(full.get('wall_s'))} wall, of which training "
        f"{_fmt_s(full.get('train_seconds'))}; "
        f"cohort {full.get('cohort', '?')}, kept {full.get('kept', '?')}; peak GPU memory "
        f"{_fmt(full.get('peak_gpu_mb'))} MB. The committed CPU benchmark trains the real "
        f"rotten_tomatoes run in {_committed_cpu_seconds()} on 2 cores.",
        "",
        "## Inference: docs/s of the model alone (token ids of exactly that length, no padding)",
        "",
        "| model | length | batch | GPU bf16 | GPU fp32 | host CPU fp32 | project CPU fp32 |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += _inference_rows(gpu, host, cpu)
    lines += [
        "",
        "## Inference end to end (`predict_logits`: tokenization, sorting, results on the CPU)",
        "",
        "| model | length | batch | GPU | host CPU | project CPU |",
        "|---|---|---|---|---|---|",
    ]
    lines += _e2e_rows(gpu, host, cpu)
    tests = gpu.get("cuda_tests") or {}
    lines += ["", "## CUDA tests (`pytest -m cuda`)", ""]
    lines.append(f"`{tests.get('summary') or tests.get('skipped') or 'not run'}`")
    failures = {**cpu.get("failures", {}), **gpu.get("failures", {})}
    lines += ["", "## Failures", ""]
    if failures:
        for name, text in failures.items():
            lines += [f"**{name}**", "", "```", text.strip(), "```", ""]
    else:
        lines.append("None: every part ran.")
    seconds = dict(gpu.get("part_seconds", {}))
    seconds |= {f"host {k}": v for k, v in host.get("part_seconds", {}).items()}
    lines += ["", f"Seconds per part: {seconds}", ""]
    path.write_text("\n".join(lines), encoding="utf-8")


def _load(cpu: dict[str, Any]) -> str:
    load = cpu.get("environment", {}).get("load_average")
    return "-" if not load else f"{load[0]:.1f}"


def _committed_cpu_seconds() -> str:
    seconds = []
    for seed in (0, 1, 2):
        f = ROOT / "benchmarks" / "results" / f"rotten_tomatoes__nanonet__seed{seed}.json"
        try:
            seconds.append(float(json.loads(f.read_text())["train_seconds"]))
        except (OSError, KeyError, ValueError):
            continue
    if not seconds:
        return "(not found)"
    return f"{min(seconds):.0f}-{max(seconds):.0f} s (seeds 0-2, benchmarks/results/)"


def _cell(rows: list[dict[str, Any]] | None, **key: Any) -> str:
    for row in rows or []:
        if all(row.get(k) == v for k, v in key.items()):
            return _fmt(row.get("docs_per_s")) if "docs_per_s" in row else "skipped"
    return "-"


def _inference_rows(gpu: dict, host: dict, cpu: dict) -> list[str]:
    keys = []
    for row in gpu.get("gpu_inference") or cpu.get("cpu_inference") or []:
        key = (row["model"], row["length"], row["batch"])
        if key not in keys:
            keys.append(key)
    lines = []
    for model, length, batch in keys:
        k = {"model": model, "length": length, "batch": batch}
        cells = [
            _cell(gpu.get("gpu_inference"), precision="bf16", **k),
            _cell(gpu.get("gpu_inference"), precision="fp32", **k),
            _cell(host.get("cpu_inference"), precision="fp32", **k),
            _cell(cpu.get("cpu_inference"), precision="fp32", **k),
        ]
        lines.append(f"| {model} | {length} | {batch} | " + " | ".join(cells) + " |")
    return lines


def _e2e_rows(gpu: dict, host: dict, cpu: dict) -> list[str]:
    lines = []
    for row in gpu.get("gpu_end_to_end") or cpu.get("cpu_end_to_end") or []:
        k = {"model": row["model"]}
        cells = [
            _cell(gpu.get("gpu_end_to_end"), **k),
            _cell(host.get("cpu_end_to_end"), **k),
            _cell(cpu.get("cpu_end_to_end"), **k),
        ]
        head = f"| {row['model']} | {row['length']} | {row['batch']} | "
        lines.append(head + " | ".join(cells) + " |")
    return lines


# ----------------------------------------------------------------------------- main ----------
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--cpu-only", action="store_true", help="measure the CPU side only")
    p.add_argument("--device", default="cuda", help="the GPU side's device (cpu: a dry run)")
    p.add_argument("--quick", action="store_true", help="tiny models and sizes (smoke test)")
    p.add_argument("--out-dir", type=Path, default=ROOT / "benchmarks")
    p.add_argument("--cpu-json", type=Path, default=CPU_JSON, help="the --cpu-only results")
    p.add_argument("--budget-s", type=float, default=420.0, help="global time guard")
    p.add_argument("--no-tests", action="store_true", help="skip pytest -m cuda")
    args = p.parse_args(argv)
    args.deadline = time.perf_counter() + args.budget_s
    # A last resort if one call outlives the guard: the report is still written, and the
    # script ends within 8 minutes of the default budget.
    previous = signal.signal(signal.SIGALRM, _hard_limit)
    signal.alarm(int(args.budget_s + 30))
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")
    import logging

    logging.basicConfig(level=logging.WARNING)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    try:
        with tempfile.TemporaryDirectory(prefix="nanonet-gpu-check-") as scratch:
            if args.cpu_only:
                return cpu_only(args, Path(scratch))
            return gpu_side(args, Path(scratch))
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _hard_limit(signum: int, frame: Any) -> None:
    raise OutOfTime("hard time limit")


def cpu_only(args: argparse.Namespace, scratch: Path) -> int:
    torch.set_num_threads(CPU_THREADS)
    results: dict[str, Any] = {"environment": environment(torch.device("cpu"))}
    budget = {"steps": 240.0, "inference": 200.0, "e2e": 60.0}
    folders = run_part(results, "encoders", lambda: write_encoders(scratch, args.quick))
    try:
        if folders:
            measure_device(results, "cpu", folders, torch.device("cpu"), args, budget)
    finally:
        results["environment"]["load_average_end"] = os.getloadavg()
        results["environment"]["threads"] = torch.get_num_threads()
        args.cpu_json.write_text(json.dumps(results, indent=1, default=str), encoding="utf-8")
    print(f"wrote {args.cpu_json}")
    return 0


def gpu_side(args: argparse.Namespace, scratch: Path) -> int:
    results: dict[str, Any] = {}
    cpu: dict[str, Any] = {}
    try:
        device = run_part(results, "device", lambda: resolve_device(args.device))
        if device is None:
            return 1
        results["environment"] = environment(device)
        if args.cpu_json.is_file():
            cpu = json.loads(args.cpu_json.read_text(encoding="utf-8"))
        if not (args.quick or args.no_tests):
            run_part(results, "cuda_tests", lambda: cuda_tests(75.0))
        folders = run_part(results, "encoders", lambda: write_encoders(scratch, args.quick))
        if folders:
            # What the bar needs first (step rates on both sides, the whole run), then the
            # inference tables; the global guard cuts whatever comes last.
            cpu_device, host = torch.device("cpu"), results.setdefault("host_cpu", {})
            measure_device(results, "gpu", folders, device, args, {"steps": 50.0})
            with cpu_threads(CPU_THREADS):
                measure_device(host, "cpu", folders, cpu_device, args, {"steps": 60.0})
            deadline = min(args.deadline, time.perf_counter() + 90.0)
            run_part(
                results,
                "gpu_full_run",
                lambda: train_run(folders, device, args.quick, deadline, None),
            )
            budget = {"inference": 60.0, "e2e": 20.0}
            measure_device(results, "gpu", folders, device, args, budget)
            with cpu_threads(CPU_THREADS):
                budget = {"inference": 30.0, "e2e": 15.0}
                measure_device(host, "cpu", folders, cpu_device, args, budget)
    finally:
        host_failures = results.get("host_cpu", {}).get("failures", {})
        results.setdefault("failures", {}).update(
            {f"host {k}": v for k, v in host_failures.items()}
        )
        signal.alarm(0)  # the report must not be cut
        raw = args.out_dir / "gpu_check_gpu.json"
        raw.write_text(json.dumps(results, indent=1, default=str), encoding="utf-8")
        report = args.out_dir / "GPU.md"
        write_report(report, results, cpu)
        print(f"wrote {report} and {raw}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
