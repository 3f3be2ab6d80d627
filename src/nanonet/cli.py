"""`nanonet` command line: train, predict, eval.

Every user mistake ends in one sentence on stderr and exit code 2; an interrupted `train`
leaves no half-written output folder.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nanonet.errors import NanoNetError
from nanonet.models.device import add_device_argument
from nanonet.models.model_folder import LOAD_BACKENDS

log = logging.getLogger("nanonet")


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    _setup_logging(args.quiet)
    try:
        return int(args.func(args) or 0)
    except NanoNetError as exc:
        print(f"nanonet: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("nanonet: interrupted; nothing was written.", file=sys.stderr)
        return 130
    except OSError as exc:
        # Permission denied, disk full, ...: the user's environment, not a bug of ours.
        print(f"nanonet: error: {_os_error(exc)}.", file=sys.stderr)
        return 2


def _os_error(exc: OSError) -> str:
    return f"{exc.strerror or exc} ({exc.filename or 'no file'})"


# ---------------------------------------------------------------------------- parser ---------
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="nanonet", description="Few labels + unlabelled text -> a small, fast classifier."
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars or info logs")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a teacher + student cohort and save the kept student")
    t.add_argument("--config", help="a YAML run config (e.g. the config.yaml of an earlier run)")
    t.add_argument("--dataset", help="built-in dataset: rotten_tomatoes, bbc_news, 20newsgroups")
    t.add_argument("--train", dest="train_file", help="labelled file (CSV, JSONL, Parquet)")
    t.add_argument("--unlabeled", "--unlabelled", dest="unlabeled_file", help="unlabelled file")
    t.add_argument("--test", dest="test_file", help="optional labelled test file, for scores")
    t.add_argument("--text-column", help="text column name (default: text)")
    t.add_argument("--label-column", help="label column name (default: label)")
    t.add_argument("--labels-per-class", type=int, help="sample this many labels per class")
    t.add_argument("--max-unlabeled", type=int, help="cap on unlabelled texts used")
    t.add_argument("--seed", type=int, help="seed for the label draw and training")
    t.add_argument("--teacher", help="teacher encoder (default: all-mpnet-base-v2)")
    t.add_argument("--students", nargs="+", help="student specs, e.g. teacher:bottom1 minilm-l3")
    t.add_argument("--peft", choices=["bitfit", "lora", "full"], help="what the students train")
    t.add_argument("--steps", type=int, help="training steps")
    t.add_argument("--threads", type=int, help="torch threads (default: all cores)")
    add_device_argument(t, default=None)  # None: train.device of --config, else auto
    t.add_argument(
        "--engine",
        choices=["local", "ray"],
        help="ray: the teacher reads the pool for its targets on a Ray actor pool",
    )
    t.add_argument("--ray-address", help="a Ray cluster (default: a local one, loopback only)")
    t.add_argument("--workers", type=int, help="Ray actors reading the pool (default 2)")
    t.add_argument("--out", required=True, help="output folder for the kept student")
    t.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    t.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted run of --out from its last checkpoint, same settings",
    )
    t.add_argument("overrides", nargs="*", help="config overrides like train.temperature=3")
    t.set_defaults(func=cmd_train)

    pr = sub.add_parser("predict", help="label texts with a saved model")
    pr.add_argument("--model", required=True, help="a folder written by `nanonet train`")
    pr.add_argument(
        "--input",
        required=True,
        help="CSV, TSV, JSON lines, Parquet or .txt (one text per line); read as a stream",
    )
    pr.add_argument(
        "--output",
        required=True,
        help="CSV or JSONL file: row, label, prob_<class>...; written as it goes",
    )
    pr.add_argument("--text-column", default="text")
    pr.add_argument("--batch-size", type=int, default=64)
    pr.add_argument(
        "--chunk-rows", type=int, default=4096, help="texts read, predicted and written at a time"
    )
    pr.add_argument("--overwrite", action="store_true", help="replace --output if it exists")
    pr.add_argument("--resume", action="store_true", help="continue an interrupted run's --output")
    pr.add_argument(
        "--backend",
        choices=LOAD_BACKENDS,
        default="torch",
        help="torch, packed, onnx or onnx-int8 (the ONNX ones after `nanonet export`)",
    )
    pr.add_argument(
        "--engine",
        choices=["local", "ray"],
        default="local",
        help="ray: score on a Ray actor pool; --output is then a folder of Parquet parts",
    )
    pr.add_argument("--ray-address", help="a Ray cluster (default: a local one, loopback only)")
    pr.add_argument(
        "--workers",
        type=int,
        help="Ray actors, one model each (default: one per CPU; on a cluster, its CPUs less one)",
    )
    add_device_argument(pr)
    pr.set_defaults(func=cmd_predict)

    e = sub.add_parser("eval", help="accuracy, macro-F1 and confusion matrix of a saved model")
    e.add_argument("--model", required=True)
    src = e.add_mutually_exclusive_group(required=True)
    src.add_argument("--dataset", help="a built-in dataset: its fixed test split is used")
    src.add_argument("--input", help="a labelled file")
    e.add_argument("--text-column", default="text")
    e.add_argument("--label-column", default="label")
    e.add_argument("--output", help="also write the metrics as JSON here")
    add_device_argument(e)
    e.set_defaults(func=cmd_eval)

    x = sub.add_parser("export", help="export a saved model to ONNX (optionally int8)")
    x.add_argument("--model", required=True, help="a folder written by `nanonet train`")
    x.add_argument("--format", default="onnx", help="export format (onnx)")
    x.add_argument("--quantize", help="also write a dynamically quantized model: int8")
    x.set_defaults(func=cmd_export)

    g = sub.add_parser("suggest", help="choose which texts of a pool to label next")
    g.add_argument("--unlabeled", "--unlabelled", dest="pool", required=True, help="the pool")
    g.add_argument("--n", type=int, default=40, help="how many texts to suggest (default 40)")
    g.add_argument(
        "--model",
        help="a trained model folder: suggest what it is least sure of (default: cover the pool)",
    )
    g.add_argument("--encoder", default="all-mpnet-base-v2", help="embeds the pool (no --model)")
    g.add_argument("--labeled", "--labelled", dest="labeled", help="texts already labelled: skip")
    g.add_argument("--text-column", default="text")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument(
        "--max-candidates", type=int, default=20_000, help="pool texts considered (a sample)"
    )
    g.add_argument("--out", required=True, help="CSV to write: row, text, label (empty), ...")
    g.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    g.set_defaults(func=cmd_suggest)

    lb = sub.add_parser("label", help="label suggested texts on a local web page")
    lb.add_argument("--unlabeled", "--unlabelled", dest="pool", required=True, help="the pool")
    lb.add_argument("--labels", required=True, help="CSV the answers go to (text,label)")
    lb.add_argument("--classes", help="class names, comma-separated (e.g. pos,neg)")
    lb.add_argument("--n", type=int, default=40, help="texts per round (default 40)")
    lb.add_argument("--model", help="a trained model: first round asks what it is least sure of")
    lb.add_argument("--encoder", default="all-mpnet-base-v2", help="embeds the pool (no --model)")
    lb.add_argument("--text-column", default="text")
    lb.add_argument("--seed", type=int, default=0)
    lb.add_argument("--host", default="127.0.0.1")
    lb.add_argument("--port", type=int, default=8765)
    lb.add_argument(
        "--train-arg",
        action="append",
        default=[],
        help="passed on to `nanonet train` by 'train now' (repeat it: --train-arg=--steps ...)",
    )
    lb.set_defaults(func=cmd_label)

    from nanonet.serve.server import add_serve_arguments, serve_from_args

    s = sub.add_parser("serve", help="serve a saved model over HTTP (FastAPI + uvicorn)")
    add_serve_arguments(s)
    s.set_defaults(func=serve_from_args)

    from nanonet.bench.harness import add_bench_arguments, bench_from_args

    b = sub.add_parser("bench", help="run the benchmark protocol (one JSON per run, resumable)")
    add_bench_arguments(b)
    b.set_defaults(func=bench_from_args)
    return p


def _setup_logging(quiet: bool) -> None:
    logging.basicConfig(
        level=logging.WARNING if quiet else logging.INFO,
        format="nanonet: %(message)s",
        stream=sys.stderr,
    )
    # transformers' load reports and per-file progress bars are noise to our users.
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


# ---------------------------------------------------------------------------- train ----------
def _train_config(args: argparse.Namespace) -> Any:
    from nanonet.models.device import resolve_device
    from nanonet.train.config import RunConfig
    from nanonet.train.device_defaults import apply_device_defaults

    cfg = RunConfig.from_yaml(args.config) if args.config else RunConfig()
    d, m, t = cfg.data, cfg.model, cfg.train
    if args.train_file:
        d.train_file, d.dataset = args.train_file, None
        if not args.config and args.labels_per_class is None:
            d.labels_per_class = None  # own data: use every labelled row unless asked
    if args.dataset:
        d.dataset, d.train_file = args.dataset, None
    for name in ("unlabeled_file", "test_file", "text_column", "label_column"):
        if getattr(args, name) is not None:
            setattr(d, name, getattr(args, name))
    if args.labels_per_class is not None:
        d.labels_per_class = args.labels_per_class
    if args.max_unlabeled is not None:
        d.max_unlabeled = args.max_unlabeled
    if args.teacher:
        m.teacher = args.teacher
    if args.students:
        m.students = list(args.students)
    if args.peft:
        m.peft = args.peft
    flags = {
        "seed": args.seed,
        "steps": args.steps,
        "threads": args.threads,
        "device": args.device,
        "engine": args.engine,
        "ray_address": args.ray_address,
        "ray_workers": args.workers,
    }
    for name, value in flags.items():
        if value is not None:
            setattr(t, name, value)
            cfg.mark_set(f"train.{name}")  # a flag is a choice: device defaults keep it
    for item in args.overrides:
        cfg.override(item)
    # Absolute paths, so that the saved config.yaml reproduces the run from any folder.
    for name in ("train_file", "unlabeled_file", "test_file"):
        if getattr(d, name) is not None:
            setattr(d, name, str(Path(getattr(d, name)).expanduser().resolve()))
    m.teacher = _absolute_if_folder(m.teacher)
    m.students = [_absolute_if_folder(s) for s in m.students]
    cfg.validate()
    # Before config.yaml is written, so that it states the values the run used.
    apply_device_defaults(cfg, resolve_device(t.device, "train.device"))
    return cfg


def _absolute_if_folder(spec: str) -> str:
    source, sep, layers = spec.partition(":")
    if Path(source).expanduser().is_dir():
        return str(Path(source).expanduser().resolve()) + sep + layers
    return spec


def _check_out(out: Path, overwrite: bool) -> None:
    if out.resolve() in (Path.cwd(), *Path.cwd().parents):
        raise NanoNetError(f"--out {out} is the current folder or one above it; name a new folder.")
    if out.exists() and not overwrite:
        raise NanoNetError(
            f"Output folder {out} already exists; choose another --out or pass --overwrite."
        )
    if out.exists() and not out.is_dir():
        raise NanoNetError(f"{out} exists and is not a folder; choose another --out.")
    parent = out.resolve().parent
    if not parent.is_dir():
        raise NanoNetError(
            f"The parent folder of --out ({parent}) does not exist; create it first."
        )


# Flags that choose a run's settings or data: a resumed run takes them from its saved config.
RUN_FLAGS = [
    "config",
    "dataset",
    "train_file",
    "unlabeled_file",
    "test_file",
    "text_column",
    "label_column",
    "labels_per_class",
    "max_unlabeled",
    "seed",
    "teacher",
    "students",
    "peft",
    "steps",
    "threads",
    "device",
    "engine",
    "ray_address",
    "workers",
    "overrides",
]


def run_state_folder(out: Path) -> Path:
    """Where a run of `--out` keeps its config, log and checkpoints until it is done; renamed
    to `out` at the end, so an interrupted run never leaves a half-written model folder."""
    return out.with_name(f".{out.name}.partial")


def cmd_train(args: argparse.Namespace) -> int:
    from nanonet.models.model_folder import RUN_CONFIG_FILE, SUMMARY_FILE, TRAIN_LOG_FILE
    from nanonet.train.checkpoint import Checkpoints
    from nanonet.train.config import RunConfig
    from nanonet.train.distributed import env_rank, finish
    from nanonet.train.run import fit, load_task

    out = Path(args.out).expanduser().resolve()
    state = run_state_folder(out)
    checkpoint_dir = state / "checkpoints"
    if env_rank() > 0:
        return _train_other_rank(args, state)
    if args.resume:
        _check_resume(args, out, state)
        cfg = RunConfig.from_yaml(state / RUN_CONFIG_FILE)
        saved = Checkpoints(checkpoint_dir, 0).latest()
    else:
        _check_out(out, args.overwrite)
        if state.exists() and not args.overwrite:
            raise NanoNetError(
                f"An interrupted run of --out {out} left its checkpoints in {state}; pass "
                "--resume to continue it, or --overwrite to start again."
            )
        cfg = _train_config(args)
        saved = None
    task = load_task(cfg.data, cfg.train.seed)
    if not args.quiet:
        log.info("task: %s", json.dumps(task.summary()))
    if saved is None:
        shutil.rmtree(state, ignore_errors=True)
        state.mkdir(parents=True)
        cfg.to_yaml(state / RUN_CONFIG_FILE)
    log_path = state / TRAIN_LOG_FILE
    # A resumed log continues after the steps its checkpoint had reported.
    kept_lines = _head_lines(log_path, saved["emitted"]) if saved else []
    try:
        with open(log_path, "w", encoding="utf-8") as steps_log:
            steps_log.writelines(kept_lines)

            def on_step(logs: dict[str, float]) -> None:
                # flushed per step: a killed run's log must hold every step its checkpoint has
                steps_log.write(json.dumps(logs) + "\n")
                steps_log.flush()

            result = fit(
                cfg,
                task,
                on_step=on_step,
                progress=not args.quiet,
                checkpoint_dir=checkpoint_dir,
                resume=saved is not None,
            )
        # Before the model: save_pretrained records the sha256 of the run files it finds.
        (state / SUMMARY_FILE).write_text(json.dumps(result.report, indent=2), encoding="utf-8")
        result.classifier.save_pretrained(state)
        shutil.rmtree(checkpoint_dir)  # only now: a failed save (disk full) can still resume
        _replace_folder(state, out)
    except BaseException as exc:
        if not Checkpoints(checkpoint_dir, 0).files():  # nothing to resume: leave nothing
            shutil.rmtree(state, ignore_errors=True)
            raise
        resume = f"`nanonet train --resume --out {args.out}`"
        if isinstance(exc, KeyboardInterrupt):
            print(
                f"nanonet: interrupted; {resume} continues from the last checkpoint (in {state}).",
                file=sys.stderr,
            )
            return 130
        if isinstance(exc, (NanoNetError, OSError)):
            # a full disk or a vanished file mid-run: the sentence also says how to continue
            what = str(exc) if isinstance(exc, NanoNetError) else _os_error(exc)
            raise NanoNetError(
                f"{what.rstrip('.')}; the run's last checkpoint is kept in {state}: once the "
                f"cause is fixed, {resume} continues it."
            ) from None
        print(
            f"nanonet: the run's last checkpoint is kept in {state}; once the cause below is "
            f"fixed, {resume} continues it.",
            file=sys.stderr,
        )
        raise
    finish()
    print(format_report(result.report))
    print(f"\nsaved the kept student ({result.kept}) to {out}/")
    return 0


def _train_other_rank(args: argparse.Namespace, state: Path) -> int:
    """A rank > 0 under torchrun: the same run on its share of each batch, writing nothing.
    Rank 0 checks --out, keeps the state folder and saves the model; if it fails, torchrun
    stops this rank too."""
    from nanonet.models.model_folder import RUN_CONFIG_FILE
    from nanonet.train.config import RunConfig
    from nanonet.train.distributed import finish
    from nanonet.train.run import fit, load_task

    logging.getLogger("nanonet").setLevel(logging.ERROR)  # rank 0 says it all once
    cfg = RunConfig.from_yaml(state / RUN_CONFIG_FILE) if args.resume else _train_config(args)
    task = load_task(cfg.data, cfg.train.seed)
    # Rank 0's checkpoints, read (never written) here when resuming.
    checkpoint_dir = state / "checkpoints" if args.resume else None
    fit(cfg, task, progress=False, checkpoint_dir=checkpoint_dir, resume=args.resume)
    finish()
    return 0


def _check_resume(args: argparse.Namespace, out: Path, state: Path) -> None:
    from nanonet.models.model_folder import RUN_CONFIG_FILE

    given = [name for name in RUN_FLAGS if getattr(args, name) not in (None, [])]
    if given:
        flags = ", ".join(
            "config overrides"
            if n == "overrides"
            else "--" + n.replace("_file", "").replace("_", "-")
            for n in given
        )
        raise NanoNetError(
            f"--resume continues the interrupted run with its saved settings; drop {flags}."
        )
    if args.overwrite:
        raise NanoNetError("--resume continues a run and --overwrite starts it again; pass one.")
    if not (state / RUN_CONFIG_FILE).is_file():
        hint = " (it finished: the model is there)" if out.is_dir() else ""
        raise NanoNetError(
            f"Nothing to resume for --out {out}{hint}: no interrupted run's state in {state}."
        )
    if out.exists():
        raise NanoNetError(f"{out} exists; move it away to resume the interrupted run into it.")


def _head_lines(path: Path, n: int) -> list[str]:
    if not path.is_file():
        return []
    with open(path, encoding="utf-8") as f:
        lines = [line for _, line in zip(range(n), f, strict=False)]
    return [line for line in lines if line.endswith("\n")]


def _replace_folder(src: Path, dst: Path) -> None:
    if dst.exists():
        old = dst.with_name(f".{dst.name}.old-{os.getpid()}")
        dst.rename(old)
        src.rename(dst)
        shutil.rmtree(old, ignore_errors=True)
    else:
        src.rename(dst)


def format_report(report: dict[str, Any]) -> str:
    """The end-of-run table: quality, size and speed of the teacher and each student."""
    members = report["members"]
    teacher_speed = members[0].get("test", {}).get("docs_per_s")
    head = (
        f"{'model':<36}{'acc':>7}{'macro-F1':>10}{'trainable / total params':>30}"
        f"{'docs/s':>9}{'speed-up':>9}"
    )
    lines = [head, "-" * len(head)]
    for m in members:
        test = m.get("test", {})
        acc = f"{test['accuracy']:.4f}" if test else "-"
        f1 = f"{test['macro_f1']:.4f}" if test else "-"
        speed = test.get("docs_per_s")
        ratio = f"{speed / teacher_speed:.1f}x" if speed and teacher_speed else "-"
        params = f"{m['trainable_params']:,} / {m['total_params']:,}"
        name = m["name"] + (" [kept]" if m.get("kept") else "")
        sp = f"{speed:.0f}" if speed else "-"
        lines.append(f"{name:<36}{acc:>7}{f1:>10}{params:>30}{sp:>9}{ratio:>9}")
    for left in report.get("speed_screen", []):
        if not left["trained"]:
            lines.append(
                f"{left['student'] + ' [not trained]':<36}{'-':>7}{'-':>10}{'-':>30}{'-':>9}"
                f"{left['speedup']:>8.1f}x"
            )
    s = report["summary"]
    lines.append(
        f"\ntraining wall time: {report['train_seconds']:.0f} s; "
        f"kept student chosen by {s['selection']}"
    )
    ckpt = report.get("checkpoints")
    if ckpt and ckpt["checkpoint_saves"]:
        lines.append(
            f"checkpoints: {ckpt['checkpoint_saves']} written, {ckpt['checkpoint_mb']:.1f} MB "
            f"each, {ckpt['checkpoint_mean_s']:.3f} s each"
        )
    return "\n".join(lines)


# ---------------------------------------------------------------------------- suggest --------
def cmd_suggest(args: argparse.Namespace) -> int:
    import csv

    from nanonet.data.stream_readers import iter_texts
    from nanonet.label.suggest import suggest

    out = Path(args.out)
    if out.suffix.lower() != ".csv":
        raise NanoNetError(f"--out must end in .csv, not '{out.suffix}'.")
    if out.exists() and not args.overwrite:
        raise NanoNetError(f"{out} already exists; choose another --out or pass --overwrite.")
    _check_parent(out, "--out")
    done: set[str] = set()
    if args.labeled:
        for chunk in iter_texts(args.labeled, args.text_column, 4096):
            done.update(chunk)
    picks = suggest(
        args.pool,
        args.n,
        model_dir=args.model,
        encoder=args.encoder,
        text_column=args.text_column,
        seed=args.seed,
        max_candidates=args.max_candidates,
        exclude=done,
        progress=not args.quiet,
    )
    tmp = out.with_name(f".{out.name}.partial-{os.getpid()}")
    try:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["row", "text", "label", "score", "reason"])
            w.writerows([p.row, p.text, "", p.score, p.reason] for p in picks)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    print(
        f"wrote {len(picks)} texts to label to {out}: fill in its 'label' column, then "
        f"`nanonet train --train {out} --unlabeled {args.pool} --out model/`."
    )
    return 0


def cmd_label(args: argparse.Namespace) -> int:
    from nanonet.label.page import LabelSession, serve_label_page

    labels = Path(args.labels)
    if labels.suffix.lower() != ".csv":
        raise NanoNetError(f"--labels must end in .csv, not '{labels.suffix}'.")
    _check_parent(labels, "--labels")
    classes = [c.strip() for c in (args.classes or "").split(",") if c.strip()]
    if len(set(classes)) != len(classes):
        raise NanoNetError(f"--classes names a class twice: {args.classes}.")
    session = LabelSession(
        pool=Path(args.pool),
        labels=labels,
        classes=classes,
        n=args.n,
        text_column=args.text_column,
        encoder=args.encoder,
        seed=args.seed,
        model=Path(args.model) if args.model else None,
        train_args=list(args.train_arg),
        progress=not args.quiet,
    )
    serve_label_page(session, args.host, args.port)
    return 0


# ---------------------------------------------------------------------------- predict --------
def cmd_predict(args: argparse.Namespace) -> int:
    from nanonet.data.stream_readers import iter_texts
    from nanonet.infer.stream import StreamInterrupted, predict_stream

    if args.engine == "ray":
        return _predict_on_ray(args)
    if args.ray_address or args.workers is not None:
        raise NanoNetError("--ray-address and --workers go with --engine ray.")
    output = Path(args.output)
    if output.suffix.lower() not in (".csv", ".jsonl"):
        raise NanoNetError(f"--output must end in .csv or .jsonl, not '{output.suffix}'.")
    if args.resume and args.overwrite:
        raise NanoNetError("--resume continues --output and --overwrite replaces it; pass one.")
    if output.exists() and not (args.overwrite or args.resume):
        raise NanoNetError(
            f"{output} already exists; pass --resume to continue it, --overwrite to replace it, "
            "or choose another --output."
        )
    _check_parent(output, "--output")
    if args.batch_size < 1:
        raise NanoNetError(f"--batch-size must be at least 1, not {args.batch_size}.")
    if args.chunk_rows < 1:
        raise NanoNetError(f"--chunk-rows must be at least 1, not {args.chunk_rows}.")
    # Check the input (file, format, column) before spending seconds on loading the model.
    iter_texts(args.input, args.text_column, args.chunk_rows).close()
    clf = _load_model(args.model, args.device, args.backend)
    start = time.perf_counter()
    try:
        stats = predict_stream(
            clf,
            args.input,
            output,
            text_column=args.text_column,
            batch_size=args.batch_size,
            chunk_rows=args.chunk_rows,
            resume=args.resume,
            progress=not args.quiet and sys.stderr.isatty(),
        )
    except OSError as exc:
        # Disk full, quota, a read-only or vanished disk: the output keeps its whole rows.
        raise NanoNetError(
            f"{exc.strerror or exc} while writing {output}; it keeps the rows written so far: "
            "fix the cause (e.g. free space), then re-run with --resume to continue."
        ) from None
    except StreamInterrupted as exc:
        # main's "nothing was written" is wrong here: the output holds a valid prefix.
        print(
            f"nanonet: interrupted after {exc.rows} rows; re-run with --resume to continue.",
            file=sys.stderr,
        )
        return 130
    seconds = time.perf_counter() - start
    already = f" ({stats['skipped']} were already there)" if stats["skipped"] else ""
    log.info(
        "labelled %d texts%s in %.1f s (%.0f docs/s) -> %s",
        stats["rows"],
        already,
        seconds,
        stats["rows"] / max(seconds, 1e-9),
        output,
    )
    return 0


def _predict_on_ray(args: argparse.Namespace) -> int:
    from nanonet.infer.ray_predict import (
        existing_parts,
        input_format,
        input_paths,
        predict_on_ray,
    )
    from nanonet.models.model_folder import read_model_meta
    from nanonet.ray_cluster import import_ray

    output = Path(args.output)
    if output.suffix.lower() in (".csv", ".jsonl", ".parquet"):
        raise NanoNetError(
            f"With --engine ray, --output is a folder for Parquet parts, not a file ({output})."
        )
    if args.resume:
        raise NanoNetError(
            "--resume is for the single-process engine; with --engine ray, run again with "
            "--overwrite."
        )
    if output.exists() and not output.is_dir():
        raise NanoNetError(f"--output {output} is a file; --engine ray writes a folder.")
    # Any file in the folder refuses it, not only parts: another program's files beside ours
    # would be read as one dataset by whoever reads the folder.
    if output.is_dir() and any(output.iterdir()) and not args.overwrite:
        raise NanoNetError(
            f"{output} already exists and is not empty; pass --overwrite to replace its "
            "Parquet parts, or choose another --output."
        )
    parts = existing_parts(output)
    _check_parent(output, "--output")
    if args.workers is not None and args.workers < 1:
        raise NanoNetError(f"--workers must be at least 1, not {args.workers}.")
    if args.batch_size < 1:
        raise NanoNetError(f"--batch-size must be at least 1, not {args.batch_size}.")
    input_format(args.input)
    input_paths(args.input)
    read_model_meta(args.model)  # a missing or foreign model folder: said before Ray starts
    import_ray()
    for part in parts:
        part.unlink()
    try:
        stats = predict_on_ray(
            args.model,
            args.input,
            output,
            text_column=args.text_column,
            backend=args.backend,
            device=args.device,
            workers=args.workers,
            address=args.ray_address,
            batch_size=args.batch_size,
            progress=not args.quiet and sys.stderr.isatty(),
        )
    except KeyboardInterrupt:
        # main's "nothing was written" is wrong here: the parts written so far are whole.
        done = len(existing_parts(output))
        print(
            f"nanonet: interrupted; {output} holds {done} complete Parquet parts; run again "
            "with --overwrite to score everything.",
            file=sys.stderr,
        )
        return 130
    log.info(
        "labelled %d texts on Ray in %.1f s (%.0f docs/s) -> %s (%d Parquet parts)",
        stats["rows"],
        stats["seconds"],
        stats["docs_per_s"],
        output,
        stats["parts"],
    )
    return 0


def _check_parent(path: Path, option: str) -> None:
    if not path.expanduser().resolve().parent.is_dir():
        raise NanoNetError(f"The folder of {option} {path} does not exist; create it first.")


def _load_model(path: str, device: str, backend: str = "torch") -> Any:
    from nanonet.models.classifier import load_classifier

    # from_pretrained itself refuses a missing folder or one without nanonet.json, and a
    # device this machine does not have.
    clf = load_classifier(path, backend, device)
    log.info("model on %s", clf.device)
    return clf


# ---------------------------------------------------------------------------- eval -----------
def cmd_eval(args: argparse.Namespace) -> int:
    from nanonet.data.builtin import load_builtin_splits
    from nanonet.data.readers import read_training_file
    from nanonet.train.metrics import evaluate

    if args.output:
        _check_parent(Path(args.output), "--output")
    clf = _load_model(args.model, args.device)
    if args.dataset:
        splits = load_builtin_splits(args.dataset)
        texts = list(splits.test_texts)
        names = [splits.label_names[i] for i in splits.test_labels]
    else:
        texts, names, unlabelled = read_training_file(
            args.input, args.text_column, args.label_column
        )
        if unlabelled:
            log.warning("%d rows without a label are ignored", len(unlabelled))
        if not texts:
            raise NanoNetError(f"{args.input} has no labelled rows to evaluate on.")
    unknown = sorted(set(names) - set(clf.label_names))
    if unknown:
        raise NanoNetError(
            "The evaluation data has labels the model does not know "
            f"({', '.join(map(repr, unknown[:5]))}); "
            f"the model's labels are {', '.join(map(repr, clf.label_names))}."
        )
    index = {n: i for i, n in enumerate(clf.label_names)}
    metrics = evaluate(clf, texts, [index[n] for n in names])
    print(f"accuracy  {metrics['accuracy']:.4f}")
    print(f"macro-F1  {metrics['macro_f1']:.4f}")
    print(f"n         {metrics['n']}   ({metrics['docs_per_s']:.0f} docs/s)")
    print("confusion matrix (rows = true, columns = predicted):")
    width = max(len(n) for n in clf.label_names) + 2
    print(" " * width + "".join(f"{n[:8]:>9}" for n in clf.label_names))
    for name, row in zip(clf.label_names, metrics["confusion_matrix"], strict=True):
        print(f"{name:<{width}}" + "".join(f"{v:>9}" for v in row))
    if args.output:
        Path(args.output).write_text(json.dumps(metrics, indent=2), encoding="utf-8")
    return 0


# ---------------------------------------------------------------------------- export ---------
def cmd_export(args: argparse.Namespace) -> int:
    from nanonet.infer.export import export_model

    for path in export_model(args.model, args.format, args.quantize):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
