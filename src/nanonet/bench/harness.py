"""The benchmark harness: every (dataset, method, seed) of a config, each in its own process.

A run whose result is stored is skipped, so the table accumulates over several sittings. A child
that crashes or outlives its time limit is recorded as such (with the tail of its log), never
silently dropped. Logs go to `<results_dir>/logs/`.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from nanonet.bench.config import BenchConfig, RunSpec, expand_runs, load_bench_config
from nanonet.bench.environment import COMMAND_ENV, COMMIT_ENV, git_commit, machine, thread_env
from nanonet.bench.results import (
    base_record,
    log_path,
    read_result,
    result_path,
    skip_reason,
    write_json_atomic,
)
from nanonet.errors import NanoNetError
from nanonet.models.device import add_device_argument, resolve_device

LOG_TAIL_CHARS = 4000


def child_command(config_path: Path, run: RunSpec, out: Path, device: str = "cpu") -> list[str]:
    return [
        sys.executable,
        "-m",
        "nanonet.bench.run_one",
        "--config",
        str(config_path),
        "--dataset",
        run.dataset,
        "--method",
        run.method.name,
        "--seed",
        str(run.seed),
        "--out",
        str(out),
        "--device",
        device,
    ]


def run_isolated(
    run: RunSpec,
    command: list[str],
    out: Path,
    log_file: Path,
    timeout_s: float,
    env: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run `command` (which must write `out`) and return the stored record.

    When the child fails, writes and returns a "crashed" or "timeout" record instead. The
    child gets its own process group, so a timeout ends it and anything it started.
    """
    out.unlink(missing_ok=True)  # a stale record must not pass for this run's result
    log_file.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with log_file.open("w", encoding="utf-8") as log:
        log.write(f"$ {shlex.join(command)}\n")
        log.flush()
        proc = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        try:
            returncode: int | None = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _end_group(proc)
            returncode = None
        except BaseException:  # Ctrl-C or the session ending: never leave the child behind
            _end_group(proc)
            raise
    elapsed = round(time.monotonic() - started, 1)
    stored = read_result(out)
    if returncode == 0 and stored is not None:
        return stored
    record = base_record(run, "timeout" if returncode is None else "crashed")
    record.update(extra or {})
    record.update(
        returncode=returncode,
        wall_seconds=elapsed,
        timeout_s=timeout_s,
        log=str(log_file),
        error=_tail(log_file)
        if returncode is not None
        else f"no result after {timeout_s / 60:g} minutes; the run was stopped",
        run_command=shlex.join(command),
    )
    write_json_atomic(out, record)
    return record


def _end_group(proc: subprocess.Popen[bytes]) -> None:
    """Terminate the child's process group (it is the group leader), then kill if it lingers."""
    for sig, grace in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=grace)
            break
        except subprocess.TimeoutExpired:
            continue


def _tail(log_file: Path) -> str:
    try:
        text = log_file.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return text[-LOG_TAIL_CHARS:]


def bench_main(
    config_path: str,
    only_dataset: str | None = None,
    only_method: str | None = None,
    only_seed: int | None = None,
    timeout_min: float | None = None,
    retry_failed: bool = False,
    dry_run: bool = False,
    report: bool = True,
    device: str = "auto",
    results_dir: str | None = None,
) -> int:
    """Run a benchmark config; the entry point behind `nanonet bench` and `make bench`.

    `results_dir` replaces the config's results folder, and the report and plots go inside
    it (`RESULTS.md`, `plots/`): a trial sitting that leaves the stored table alone.

    Returns 0 when every run of this invocation is "ok" (or was already stored), 1 when one
    crashed, timed out or was unavailable, 2 for a bad config or filter.
    """
    try:
        cfg = load_bench_config(config_path)
        if results_dir is not None:
            where = Path(results_dir)
            if where.exists() and not where.is_dir():
                raise NanoNetError(f"--results-dir {where} is a file, not a folder.")
            cfg = dataclasses.replace(
                cfg, results_dir=where, report=where / "RESULTS.md", plots_dir=where / "plots"
            )
        runs = expand_runs(cfg, only_dataset, only_method, only_seed)
        target = str(resolve_device(device))
    except NanoNetError as exc:
        print(f"nanonet bench: {exc}", file=sys.stderr)
        return 2
    if not runs:
        print("nanonet bench: no run matches the filters.", file=sys.stderr)
        return 2
    timeout_s = 60.0 * (timeout_min if timeout_min is not None else cfg.timeout_min)
    command = _command()
    commit = git_commit()
    env = thread_env(cfg.threads)
    env[COMMAND_ENV], env[COMMIT_ENV] = command, commit
    if target == "cpu":
        # Hidden GPUs keep every method on the CPU, also those whose libraries pick CUDA by
        # themselves (SetFit trains through the transformers Trainer).
        env["CUDA_VISIBLE_DEVICES"] = ""
    extra = {"command": command, "commit": commit, "threads": cfg.threads, "machine": machine()}
    print(
        f"{cfg.name}: {len(runs)} runs on {target}, {cfg.threads} threads, limit "
        f"{timeout_s / 60:g} min per run, results in {cfg.results_dir}/"
    )
    failed = 0
    for i, run in enumerate(runs, 1):
        out = result_path(cfg.results_dir, run)
        head = f"[{i}/{len(runs)}] {run.dataset} / {run.method.name} / seed {run.seed}"
        reason = skip_reason(read_result(out), run, retry_failed)
        if reason is not None:
            print(f"{head}: skipped, {reason}")
            continue
        if dry_run:
            print(f"{head}: would run")
            continue
        print(f"{head}: running ...", flush=True)
        record = run_isolated(
            run,
            child_command(Path(config_path), run, out, target),
            out,
            log_path(cfg.results_dir, run),
            timeout_s,
            env,
            extra,
        )
        print(f"{head}: {_describe(record)}", flush=True)
        failed += record["status"] != "ok"
    if report and not dry_run:
        _write_report(cfg)
    return 1 if failed else 0


def add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `nanonet bench` / `python -m nanonet.bench`."""
    parser.add_argument("--config", default="benchmarks/configs/protocol.yaml")
    parser.add_argument("--dataset", help="run only this dataset")
    parser.add_argument("--method", help="run only this method (a name from the config)")
    parser.add_argument("--seed", type=int, help="run only this seed")
    parser.add_argument("--timeout-min", type=float, help="per-run limit (default: the config's)")
    parser.add_argument(
        "--retry-failed", action="store_true", help="run crashed and timed-out runs again"
    )
    parser.add_argument("--dry-run", action="store_true", help="list what would run")
    parser.add_argument("--no-report", action="store_true", help="do not regenerate the report")
    parser.add_argument(
        "--results-dir",
        help="store results (and the report, plots) in this folder instead of the config's",
    )
    add_device_argument(parser)


def bench_from_args(args: argparse.Namespace) -> int:
    return bench_main(
        args.config,
        args.dataset,
        args.method,
        args.seed,
        args.timeout_min,
        retry_failed=args.retry_failed,
        dry_run=args.dry_run,
        report=not args.no_report,
        device=args.device,
        results_dir=args.results_dir,
    )


def _describe(record: dict[str, Any]) -> str:
    if record["status"] != "ok":
        last = (record.get("error") or "").strip().splitlines()[-1:] or [""]
        return f"{record['status'].upper()} ({last[0][:160]})"
    return (
        f"ok, accuracy {record['accuracy']:.3f}, trained in {record['train_seconds']:.0f} s, "
        f"{record['docs_per_s']:.1f} docs/s ({record['throughput_ratio']:.1f}x teacher), "
        f"peak {record['peak_rss_mb']:.0f} MB"
    )


def _write_report(cfg: BenchConfig) -> None:
    from nanonet.bench.report import write_report

    written = write_report(cfg.results_dir, cfg.report, cfg.plots_dir, cfg)
    print("report: " + ", ".join(str(p) for p in written))


def _command() -> str:
    """This invocation as typed: `nanonet bench ...` or `python -m nanonet.bench ...`."""
    prog = Path(sys.argv[0]).name
    head = ["python", "-m", "nanonet.bench"] if prog == "__main__.py" else [prog]
    return shlex.join([*head, *sys.argv[1:]])
