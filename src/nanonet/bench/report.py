"""RESULTS.md and the plots, generated from the stored result JSONs only.

    python benchmarks/make_report.py [--config benchmarks/configs/protocol.yaml]

With a config, runs it lists but that have no result yet are shown as missing, rows follow its
order, and only its methods are shown. Mean ± std are over the seeds that finished ("ok"); std
is the sample standard deviation (n - 1). Failed runs are counted in every row they belong to.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import textwrap
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nanonet.bench.code_version import current_code
from nanonet.bench.config import BenchConfig, expand_runs, load_bench_config
from nanonet.bench.results import load_results, now_iso


@dataclass
class Row:
    """One (dataset, method) cell group of the table."""

    dataset: str
    method: str
    ok: list[dict[str, Any]] = field(default_factory=list)
    failed: list[dict[str, Any]] = field(default_factory=list)
    expected_seeds: list[int] = field(default_factory=list)
    note: str = ""

    @property
    def missing_seeds(self) -> list[int]:
        done = {r["seed"] for r in self.ok + self.failed}
        return [s for s in self.expected_seeds if s not in done]

    def values(self, key: str) -> list[float]:
        return [float(r[key]) for r in self.ok if r.get(key) is not None]


def mean_std(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean and sample std; std is None for a single value (it says nothing about spread)."""
    if not values:
        raise ValueError("no values")
    mean = statistics.fmean(values)
    return mean, statistics.stdev(values) if len(values) > 1 else None


def fmt_mean_std(values: Sequence[float], digits: int = 3) -> str:
    if not values:
        return "–"
    mean, std = mean_std(values)
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if std is not None else f"{mean:.{digits}f}"


def build_rows(results: list[dict[str, Any]], cfg: BenchConfig | None) -> list[Row]:
    rows: dict[tuple[str, str], Row] = {}
    if cfg is not None:
        for run in expand_runs(cfg):
            row = rows.setdefault(
                (run.dataset, run.method.name),
                Row(run.dataset, run.method.name, note=run.method.note),
            )
            row.expected_seeds.append(run.seed)
    allowed = None if cfg is None else {m.name for m in cfg.methods}
    for r in results:
        if allowed is not None and r["method"] not in allowed:
            continue
        key = (r["dataset"], r["method"])
        row = rows.setdefault(key, Row(r["dataset"], r["method"], note=r.get("note", "")))
        (row.ok if r["status"] == "ok" else row.failed).append(r)
    order = _order(cfg, results)
    return sorted(rows.values(), key=lambda row: order(row.dataset, row.method))


def _order(
    cfg: BenchConfig | None, results: list[dict[str, Any]]
) -> Callable[[str, str], tuple[int, int]]:
    datasets = [d.name for d in cfg.datasets] if cfg else []
    methods = [m.name for m in cfg.methods] if cfg else []
    for r in results:  # results not in the config go last, in first-seen order
        if r["dataset"] not in datasets:
            datasets.append(r["dataset"])
        if r["method"] not in methods:
            methods.append(r["method"])
    return lambda d, m: (datasets.index(d), methods.index(m))


def _params(n: float) -> str:
    if n >= 1e6:
        return f"{n / 1e6:.1f}M"
    if n >= 1e3:
        return f"{n / 1e3:.1f}k"
    return f"{int(n)}"


def _mean(values: Iterable[float]) -> float | None:
    values = list(values)
    return statistics.fmean(values) if values else None


def teacher_rate(results: Sequence[dict[str, Any]], dataset: str) -> float | None:
    """The dataset's teacher docs/s averaged over every finished run: the one reference both
    the table's "× teacher mean" column and the Pareto plot's teacher line use."""
    return _mean(
        r["teacher_docs_per_s"] for r in results if r["dataset"] == dataset and r["status"] == "ok"
    )


def _num(value: float | None, fmt: str) -> str:
    return "–" if value is None else format(value, fmt)


def _rate(value: float | None) -> str:
    """Throughputs and ratios span five orders of magnitude: keep about three digits."""
    if value is None:
        return "–"
    return f"{value:.2f}" if value < 10 else f"{value:.1f}" if value < 1000 else f"{value:,.0f}"


def status_text(row: Row) -> str:
    """'3/3' or '2/3, seed 2 timeout' or 'missing'."""
    expected = len(row.expected_seeds) or len(row.ok) + len(row.failed)
    parts = [f"{len(row.ok)}/{expected}"]
    for r in sorted(row.failed, key=lambda r: r["seed"]):
        parts.append(f"seed {r['seed']} {r['status']}")
    if row.missing_seeds:
        parts.append("seed " + ",".join(map(str, row.missing_seeds)) + " missing")
    return ", ".join(parts)


def notes_text(row: Row) -> str:
    notes = []
    kept = Counter(r.get("details", {}).get("kept") for r in row.ok)
    kept.pop(None, None)
    if kept:
        notes.append("kept: " + ", ".join(f"{k} ×{n}" for k, n in kept.most_common()))
    for r in row.failed:
        if r["status"] == "unavailable":
            notes.append(f"unavailable: {r.get('error', '')}".strip())
            break
    for verdict, what in ((False, "older code"), (None, "code unknown")):
        seeds = sorted(r["seed"] for r in row.ok if r.get("current_code", True) is verdict)
        if seeds:
            notes.append(f"{what}: seed {','.join(map(str, seeds))}")
    if row.note:
        notes.append(row.note)
    return "; ".join(notes).replace("|", "/")


def table(rows: list[Row], dataset: str, teacher: float | None = None) -> list[str]:
    """`teacher`: the dataset's teacher docs/s averaged over every run, for a ratio that does
    not depend on how fast one process happened to run the teacher."""
    head = (
        "| method | accuracy | macro-F1 | seeds | train s | peak RSS MB | trainable / total "
        "params | size MB | docs/s | × teacher | × teacher mean | notes |"
    )
    lines = [head, "|" + "---|" * 12]
    for row in (r for r in rows if r.dataset == dataset):
        if not row.ok:
            what = ", ".join(sorted({r["status"] for r in row.failed})) or "missing"
            cells = [row.method, f"**{what}**", "–", status_text(row), *["–"] * 7, notes_text(row)]
            lines.append("| " + " | ".join(cells) + " |")
            continue
        first = row.ok[0]
        docs = _mean(row.values("docs_per_s"))
        lines.append(
            "| "
            + " | ".join(
                [
                    row.method,
                    fmt_mean_std(row.values("accuracy")),
                    fmt_mean_std(row.values("macro_f1")),
                    status_text(row),
                    _num(_mean(row.values("train_seconds")), ".0f"),
                    _num(max(row.values("peak_rss_mb"), default=None), ".0f"),
                    f"{_params(first['trainable_params'])} / {_params(first['total_params'])}",
                    _num(_mean(row.values("model_size_mb")), ".1f"),
                    _rate(docs),
                    _rate(_mean(row.values("throughput_ratio"))),
                    _rate(docs / teacher if docs is not None and teacher else None),
                    notes_text(row),
                ]
            )
            + " |"
        )
    return lines


def member_points(results: list[dict[str, Any]], dataset: str) -> list[dict[str, Any]]:
    """Cohort members of runs flagged `pareto_members`, averaged over seeds per
    (method, member): students of several sizes trained the NanoNet way."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in results:
        if r["dataset"] != dataset or r["status"] != "ok" or not r.get("pareto_members"):
            continue
        for m in r.get("members", []):
            if m.get("accuracy") is not None and m.get("docs_per_s") is not None:
                groups[(r["method"], m["name"])].append(m)
    points = []
    for (method, name), ms in groups.items():
        points.append(
            {
                "method": method,
                "name": name,
                "role": ms[0]["role"],
                "accuracy": [m["accuracy"] for m in ms],
                "docs_per_s": _mean(m["docs_per_s"] for m in ms),
                "ratio": _mean(m["throughput_ratio"] for m in ms if "throughput_ratio" in m),
                "total_params": ms[0]["total_params"],
                "trainable_params": ms[0]["trainable_params"],
            }
        )
    return points


def render_markdown(
    rows: list[Row], results: list[dict[str, Any]], cfg: BenchConfig | None, plots: list[Path]
) -> str:
    datasets = list(dict.fromkeys(r.dataset for r in rows))
    ok = [r for r in results if r["status"] == "ok"]
    lines = ["# Benchmark results", ""]
    lines += [
        f"Generated {now_iso()} by `python benchmarks/make_report.py` from "
        f"{len(results)} stored runs ({len(ok)} ok). Protocol: `../shared/docs/benchmark.md`.",
        "",
    ]
    lines += _provenance(results, cfg)
    lines += [
        "",
        "accuracy and macro-F1: mean ± sample std over the seeds that finished, on the whole "
        "fixed test split; **seeds** = finished / planned, and which failed or are missing. "
        "train s: wall time of training (model loading included, test scoring excluded). "
        "peak RSS: the run process's peak resident memory before the teacher is loaded for "
        "the throughput reference (it includes Python + torch, about "
        f"{_num(_mean(r['baseline_rss_mb'] for r in ok if 'baseline_rss_mb' in r), '.0f')} MB "
        "at start). size: what would be deployed, saved to disk. docs/s: inference on a fixed "
        "random sample of the test texts, batch 64, after a warm-up, tokenization included; "
        "× teacher: docs/s divided by the teacher's (mean-pooled MPNet + linear head) measured "
        "on the same texts in the same process, averaged over seeds; × teacher mean: the row's "
        "docs/s divided by the dataset's teacher docs/s averaged over all its runs (the same "
        "teacher runs at different speeds in different processes; where it ran slower, the "
        "first ratio flatters the row).",
        "",
    ]
    for dataset in datasets:
        lines += [f"## {dataset}", ""]
        teacher = teacher_rate(ok, dataset)
        test_sizes = sorted({r["test_size"] for r in ok if r["dataset"] == dataset})
        timed = sorted({r["throughput_texts"] for r in ok if r["dataset"] == dataset})
        if teacher is not None:
            lines += [
                f"Test texts: {', '.join(map(str, test_sizes))}; timed on "
                f"{', '.join(map(str, timed))} of them. Teacher throughput (mean over runs): "
                f"{teacher:.1f} docs/s.",
                "",
            ]
        lines += table(rows, dataset, teacher)
        points = member_points(results, dataset)
        if points:
            lines += [
                "",
                "Cohort members (students of other sizes; each trained within a NanoNet run):",
                "",
                "| run | member | accuracy | docs/s | × teacher | trainable / total params |",
                "|---|---|---|---|---|---|",
            ]
            for p in points:
                lines.append(
                    f"| {p['method']} | {p['name']} | {fmt_mean_std(p['accuracy'])} | "
                    f"{_rate(p['docs_per_s'])} | {_rate(p['ratio'])} | "
                    f"{_params(p['trainable_params'])} / {_params(p['total_params'])} |"
                )
        lines.append("")
    if plots:
        lines += ["## Plots", ""]
        lines += [f"![{p.stem}]({p.as_posix()})" for p in plots]
        lines.append("")
    return "\n".join(lines)


def _provenance(results: list[dict[str, Any]], cfg: BenchConfig | None) -> list[str]:
    commits = Counter(r.get("commit", "unknown") for r in results)
    dates = sorted(r["date"] for r in results if r.get("date"))
    machines = Counter(
        (
            f"{m.get('cpu')}, {m.get('cores')} cores, {m.get('ram_gb')} GB RAM"
            if (m := r.get("machine"))
            else "unknown"
        )
        for r in results
    )
    threads = sorted({r["threads"] for r in results if r.get("threads") is not None})
    versions = Counter(
        ", ".join(
            f"{k} {m[k]}"
            for k in ("python", "torch", "transformers", "scikit-learn", "setfit")
            if (m := r.get("machine")) and m.get(k)
        )
        for r in results
    )
    commands = Counter(_command_template(r["command"]) for r in results if r.get("command"))
    out = []
    if not results:
        out.append("- no results stored yet")
    if cfg is not None:
        out.append(
            f"- config: `{cfg.source}`: {cfg.labels_per_class} labels per class, seeds "
            f"{', '.join(map(str, cfg.seeds))}"
        )
    if not results:
        return out
    out += [
        "- commit(s): " + ", ".join(f"`{c}` ({n} runs)" for c, n in commits.most_common()),
        *_code_line(results),
        f"- dates: {dates[0]} … {dates[-1]}" if dates else "- dates: –",
        "- machine(s): " + "; ".join(f"{m} ({n} runs)" for m, n in machines.most_common()),
        f"- threads: {', '.join(map(str, threads)) or '–'} (torch.set_num_threads and BLAS)",
        "- versions: " + "; ".join(v for v, _ in versions.most_common() if v),
        "- command(s): "
        + "; ".join(
            [
                *(f"`{c}` ({n} runs)" for c, n in commands.most_common()),
                "`make bench` runs every missing one and regenerates this file",
            ]
        ),
    ]
    return out


# One run per (dataset, method, seed): naming the three by placeholder turns 120 commands into
# the one or two that were actually typed.
_RUN_ARG = re.compile(r"--(dataset|method|seed)(?:=|\s+)\S+")
_PLACEHOLDER = {"dataset": "D", "method": "M", "seed": "S"}


def _command_template(command: str) -> str:
    return _RUN_ARG.sub(lambda m: f"--{m[1]} {_PLACEHOLDER[m[1]]}", command)


def _code_line(results: list[dict[str, Any]]) -> list[str]:
    if not any("current_code" in r for r in results):
        return []  # not in a git checkout: nothing to compare against
    now = sum(r["current_code"] is True for r in results)
    return [
        f"- code: {now} of {len(results)} runs were made by the code checked out now "
        "(`src/` and `pyproject.toml` identical at the run's commit, report and server "
        'excepted); a row\'s notes name the seeds that were not ("older code") or cannot '
        'be told ("code unknown": run from a tree with uncommitted changes)'
    ]


# --- plots --------------------------------------------------------------------------------------


def plot_accuracy(rows: list[Row], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = list(dict.fromkeys(r.dataset for r in rows))
    methods = list(dict.fromkeys(r.method for r in rows))
    fig, axes = plt.subplots(
        1, len(datasets), figsize=(4.2 * len(datasets), 0.35 * len(methods) + 1.5), sharey=True
    )
    axes = [axes] if len(datasets) == 1 else list(axes)
    for ax, dataset in zip(axes, datasets, strict=True):
        by_method = {r.method: r for r in rows if r.dataset == dataset}
        means, errs, colors = [], [], []
        for m in methods:
            row = by_method.get(m)
            acc = row.values("accuracy") if row else []
            mean, std = mean_std(acc) if acc else (0.0, None)
            means.append(mean)
            errs.append(std or 0.0)
            colors.append(_color(m))
        y = list(range(len(methods)))
        ax.barh(y, means, xerr=errs, color=colors, capsize=2)
        for yi, m, mean in zip(y, methods, means, strict=True):
            if mean == 0.0:
                row = by_method.get(m)
                label = "missing" if row is None or not row.failed else row.failed[0]["status"]
                ax.text(0.01, yi, label, va="center", fontsize=7, color="crimson")
        ax.set_yticks(y, methods, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlim(0, 1)
        ax.set_title(dataset)
        ax.set_xlabel("test accuracy (mean ± std over seeds)")
        ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_pareto(rows: list[Row], results: list[dict[str, Any]], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = list(dict.fromkeys(r.dataset for r in rows))
    fig, axes = plt.subplots(1, len(datasets), figsize=(5.5 * len(datasets), 4.5))
    axes = [axes] if len(datasets) == 1 else list(axes)
    for ax, dataset in zip(axes, datasets, strict=True):
        points: list[tuple[float, float, str]] = []
        for row in (r for r in rows if r.dataset == dataset and r.ok):
            x, y = _mean(row.values("docs_per_s")), _mean(row.values("accuracy"))
            if x is None or y is None:
                continue
            ax.scatter(x, y, color=_color(row.method), s=40, zorder=3)
            ax.annotate(row.method, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
            points.append((x, y, row.method))
        for p in member_points(results, dataset):
            x, y = p["docs_per_s"], statistics.fmean(p["accuracy"])
            ax.scatter(x, y, facecolors="none", edgecolors="dimgray", s=40, zorder=3)
            ax.annotate(
                p["name"],
                (x, y),
                fontsize=6,
                color="dimgray",
                xytext=(3, -8),
                textcoords="offset points",
            )
            points.append((x, y, p["name"]))
        teacher = teacher_rate(results, dataset)
        if teacher:
            ax.axvline(teacher, color="gray", ls=":", lw=1)
            ax.text(teacher, ax.get_ylim()[0], " teacher", fontsize=7, color="gray", va="bottom")
        frontier = pareto_front([(x, y) for x, y, _ in points])
        if len(frontier) > 1:
            ax.step(*zip(*frontier, strict=True), where="post", color="k", lw=0.8, alpha=0.5)
        ax.set_xscale("log")
        ax.set_xlabel("inference throughput, docs/s (log; batch 64)")
        ax.set_ylabel("test accuracy (mean over seeds)")
        ax.set_title(dataset)
        ax.grid(alpha=0.3)
    caption = (
        "accuracy vs inference speed. Filled: each method's scored model; hollow: NanoNet "
        "cohort members; line: Pareto front; dotted: the teacher's speed."
    )
    fig.suptitle(textwrap.fill(caption, width=70 * len(datasets)), fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def pareto_front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Points no other point beats on both speed and accuracy, fastest first."""
    front = []
    for x, y in sorted(points, key=lambda p: (-p[0], -p[1])):
        if not front or y > front[-1][1]:
            front.append((x, y))
    return front


_PALETTE = {
    "nanonet": "tab:red",
    "setfit-distill": "tab:cyan",  # before "setfit": the first matching prefix wins
    "setfit": "tab:blue",
    "finetune": "tab:orange",
    "probe": "tab:green",
    "tfidf": "tab:gray",
}


def _color(method: str) -> str:
    for prefix, color in _PALETTE.items():
        if method.startswith(prefix):
            return color
    return "tab:purple"


# --- entry point ---------------------------------------------------------------------------------


def write_report(
    results_dir: Path, report: Path, plots_dir: Path, cfg: BenchConfig | None = None
) -> list[Path]:
    """Write the markdown report (and the plots when matplotlib is installed)."""
    results = load_results(results_dir)
    if cfg is not None:  # other configs' runs may share the folder; they have reports of their own
        shown = {m.name for m in cfg.methods}
        results = [r for r in results if r["method"] in shown]
    if results_dir.is_dir():
        verdicts = current_code((r.get("commit", "unknown") for r in results), results_dir)
        if any(v is not None for v in verdicts.values()):
            for r in results:
                r["current_code"] = verdicts[r.get("commit", "unknown")]
    rows = build_rows(results, cfg)
    plots: list[Path] = []
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print("report: matplotlib is not installed; no plots (pip install -e '.[bench]')")
    else:
        if any(r.ok for r in rows):
            plots = [
                plot_accuracy(rows, plots_dir / "accuracy.png"),
                plot_pareto(rows, results, plots_dir / "pareto.png"),
            ]
    relative = [_relative(p, report.parent) for p in plots]
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(render_markdown(rows, results, cfg, relative), encoding="utf-8")
    return [report, *plots]


def _relative(path: Path, start: Path) -> Path:
    try:
        return path.resolve().relative_to(start.resolve())
    except ValueError:
        return path.resolve()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Regenerate the benchmark report.")
    parser.add_argument("--config", help="the benchmark config (its paths and planned runs)")
    parser.add_argument("--results-dir", type=Path)
    parser.add_argument("--report", type=Path)
    parser.add_argument("--plots-dir", type=Path)
    args = parser.parse_args(argv)
    cfg = load_bench_config(args.config) if args.config else None
    results_dir = args.results_dir or (cfg.results_dir if cfg else Path("benchmarks/results"))
    report = args.report or (cfg.report if cfg else Path("benchmarks/RESULTS.md"))
    plots_dir = args.plots_dir or (cfg.plots_dir if cfg else Path("benchmarks/plots"))
    for path in write_report(results_dir, report, plots_dir, cfg):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
