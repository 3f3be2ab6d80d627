"""The benchmark config: which datasets, seeds and methods to run, read from one YAML file.

A method entry names a `kind` (the implementation: nanonet, setfit, setfit-distill, finetune,
probe, tfidf) and the settings that make it a distinct row of the table, e.g. `nanonet` with
`train.mutual_weight=0` is the no-mutual-learning ablation. `per_dataset` replaces settings on
one dataset (SetFit's smaller `num_iterations` on 20newsgroups). Relative paths are resolved
against the working directory: run the harness from the repository root.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nanonet.data.builtin import BUILTIN_DATASETS
from nanonet.errors import NanoNetError
from nanonet.train.config import read_yaml_mapping

KINDS = ("nanonet", "setfit", "setfit-distill", "finetune", "probe", "tfidf")

# Defaults for each kind; a setting not listed here is a typo and is refused.
METHOD_DEFAULTS: dict[str, dict[str, Any]] = {
    # `overrides` are RunConfig `section.key=value` strings (as on the `nanonet train` line).
    # `score_teacher`: also score the adapted teacher on the whole test set, which costs a full
    # MPNet pass over it (about 7 minutes on 20newsgroups on 2 cores, measured by probe-mpnet).
    # `label_selection`: "random" (the protocol's seeded draw) or "suggest" (the same number
    # of labels picked by `nanonet suggest`'s cold start from the draw + pool, labelled with
    # the dataset's labels as a simulated annotator).
    "nanonet": {"overrides": [], "score_teacher": False, "label_selection": "random"},
    "setfit": {
        "body": "mpnet",  # an encoder name or a student spec (teacher:bottom2, minilm-l3, ...)
        "num_iterations": 20,
        "batch_size": 16,
        "num_epochs": 1,
    },
    # SetFit's teacher (trained exactly as the setfit row on `teacher`) distilled with
    # setfit.DistillationTrainer into `student` on the unlabelled pool. distill_*: the
    # distillation's TrainingArguments, the library's defaults (max_steps -1 = every pair of
    # pool texts, 12.5M pairs for 5,000 texts: configs set a cap). fix_pair_targets: train on
    # the teacher's cosines instead of setfit 1.2.0's constant 1.0 (methods/setfit_distill.py).
    "setfit-distill": {
        "teacher": "mpnet",
        "student": "minilm-l3",  # a student spec; `teacher:bottom1` cuts the teacher's encoder
        "num_iterations": 20,
        "batch_size": 16,
        "num_epochs": 1,
        "distill_max_steps": -1,
        "distill_num_iterations": None,
        "distill_batch_size": 16,
        "distill_num_epochs": 1,
        "fix_pair_targets": True,
    },
    "finetune": {
        "student": "minilm-l3",  # a student spec, as in model.students
        "epochs": 20,
        "batch_size": 16,
        "lr": 5e-5,
        "lr_head": 1e-3,
        "weight_decay": 0.01,
        "warmup_fraction": 0.1,
        "dropout": 0.1,
        "head_init": "centroid",  # centroid | random
    },
    "probe": {"encoder": "mpnet", "C": 1.0, "max_iter": 1000, "normalize": True},
    "tfidf": {
        # The vocabulary and IDF weights may use the unlabelled pool (it is part of the task);
        # `labelled` restricts them to the labelled budget.
        "fit_on": "all",
        "ngram_max": 2,
        "min_df": 2,
        "sublinear_tf": True,
        "C": 1.0,
        "max_iter": 1000,
    },
}


@dataclass(frozen=True)
class MethodSpec:
    name: str  # the row of the table and the part of the result file name
    kind: str
    settings: dict[str, Any]
    per_dataset: dict[str, dict[str, Any]] = field(default_factory=dict)
    datasets: list[str] | None = None  # None: every dataset of the config
    seeds: list[int] | None = None  # None: every seed of the config
    # fewer seeds on some datasets, e.g. {20newsgroups: [0]} where one run takes over an hour
    seeds_per_dataset: dict[str, list[int]] = field(default_factory=dict)
    pareto_members: bool = False  # plot every cohort member (nanonet) on the Pareto view
    note: str = ""  # shown under the table, e.g. why a run set is reduced

    def runs_seed(self, dataset: str, seed: int) -> bool:
        seeds = self.seeds_per_dataset.get(dataset, self.seeds)
        return seeds is None or seed in seeds

    def settings_for(self, dataset: str) -> dict[str, Any]:
        merged = copy.deepcopy(METHOD_DEFAULTS[self.kind])
        merged.update(copy.deepcopy(self.settings))
        merged.update(copy.deepcopy(self.per_dataset.get(dataset, {})))
        return merged


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    # Test texts timed for docs/s (a fixed random sample). Accuracy always uses the whole test
    # set; the cap bounds the cost of timing the teacher in every run (MPNet reads about
    # 1-2 long documents per second on 2 cores).
    throughput_texts: int = 500


@dataclass(frozen=True)
class BenchConfig:
    name: str
    source: Path
    datasets: list[DatasetSpec]
    seeds: list[int]
    methods: list[MethodSpec]
    labels_per_class: int = 10
    threads: int = 2
    timeout_min: float = 120.0
    throughput_batch: int = 64
    teacher: str = "all-mpnet-base-v2"  # the reference of the "x teacher" throughput ratio
    results_dir: Path = Path("benchmarks/results")
    report: Path = Path("benchmarks/RESULTS.md")
    plots_dir: Path = Path("benchmarks/plots")

    def dataset(self, name: str) -> DatasetSpec:
        for d in self.datasets:
            if d.name == name:
                return d
        raise NanoNetError(f"Dataset '{name}' is not in {self.source}.")

    def method(self, name: str) -> MethodSpec:
        for m in self.methods:
            if m.name == name:
                return m
        known = ", ".join(m.name for m in self.methods)
        raise NanoNetError(f"Method '{name}' is not in {self.source}; it lists {known}.")


@dataclass(frozen=True)
class RunSpec:
    """One (dataset, method, seed): one subprocess, one result file."""

    dataset: str
    method: MethodSpec
    seed: int
    labels_per_class: int

    @property
    def stem(self) -> str:
        return f"{self.dataset}__{self.method.name}__seed{self.seed}"

    @property
    def settings(self) -> dict[str, Any]:
        return self.method.settings_for(self.dataset)

    def fingerprint(self) -> str:
        """What makes a stored result this run's result: the method's settings and the budget.

        Threads, timeouts and timing caps are left out on purpose: changing them does not make
        stored accuracies wrong.
        """
        key = {
            "kind": self.method.kind,
            "settings": self.settings,
            "labels_per_class": self.labels_per_class,
        }
        return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def load_bench_config(path: str | Path) -> BenchConfig:
    raw = read_yaml_mapping(
        path,
        "Benchmark config",
        "see benchmarks/configs/",
        "be a mapping (datasets, seeds, methods)",
    )
    return parse_bench_config(raw, Path(path))


def parse_bench_config(raw: dict[str, Any], source: Path) -> BenchConfig:
    known = {
        "name",
        "datasets",
        "seeds",
        "methods",
        "labels_per_class",
        "threads",
        "timeout_min",
        "throughput_batch",
        "teacher",
        "results_dir",
        "report",
        "plots_dir",
    }
    _refuse_unknown(raw, known, f"{source}")
    datasets = [_dataset(name, opts, source) for name, opts in _mapping(raw, "datasets").items()]
    methods = [_method(entry, source) for entry in raw.get("methods") or []]
    if not datasets or not methods:
        raise NanoNetError(f"{source} must list at least one dataset and one method.")
    names = [m.name for m in methods]
    if len(set(names)) != len(names):
        raise NanoNetError(f"{source}: method names must be unique, got {names}.")
    seeds = [int(s) for s in raw.get("seeds", [0])]
    cfg = BenchConfig(
        name=str(raw.get("name", source.stem)),
        source=source,
        datasets=datasets,
        seeds=seeds,
        methods=methods,
        labels_per_class=int(raw.get("labels_per_class", 10)),
        threads=int(raw.get("threads", 2)),
        timeout_min=float(raw.get("timeout_min", 120.0)),
        throughput_batch=int(raw.get("throughput_batch", 64)),
        teacher=str(raw.get("teacher", "all-mpnet-base-v2")),
        results_dir=Path(raw.get("results_dir", "benchmarks/results")),
        report=Path(raw.get("report", "benchmarks/RESULTS.md")),
        plots_dir=Path(raw.get("plots_dir", "benchmarks/plots")),
    )
    if cfg.threads < 1 or cfg.labels_per_class < 1 or cfg.timeout_min <= 0:
        raise NanoNetError(f"{source}: threads, labels_per_class and timeout_min must be > 0.")
    return cfg


def expand_runs(
    cfg: BenchConfig,
    only_dataset: str | None = None,
    only_method: str | None = None,
    only_seed: int | None = None,
) -> list[RunSpec]:
    """Every run of the config (dataset-major, then seed, then method), optionally filtered."""
    if only_dataset is not None:
        cfg.dataset(only_dataset)
    if only_method is not None:
        cfg.method(only_method)
    runs = []
    for d in cfg.datasets:
        for seed in cfg.seeds:
            for m in cfg.methods:
                if m.datasets is not None and d.name not in m.datasets:
                    continue
                if not m.runs_seed(d.name, seed):
                    continue
                if only_dataset not in (None, d.name) or only_method not in (None, m.name):
                    continue
                if only_seed is not None and seed != only_seed:
                    continue
                runs.append(RunSpec(d.name, m, seed, cfg.labels_per_class))
    return runs


def _mapping(raw: dict[str, Any], key: str) -> dict[str, Any]:
    value = raw.get(key)
    if isinstance(value, list):  # a plain list of names is fine too
        return {str(v): {} for v in value}
    if not isinstance(value, dict):
        raise NanoNetError(f"'{key}' must be a list or a mapping of names.")
    return value


def _dataset(name: str, opts: Any, source: Path) -> DatasetSpec:
    if name not in BUILTIN_DATASETS:
        raise NanoNetError(
            f"{source}: unknown dataset '{name}'; use {', '.join(BUILTIN_DATASETS)}."
        )
    opts = opts or {}
    _refuse_unknown(opts, {"throughput_texts"}, f"{source}: dataset {name}")
    return DatasetSpec(name, int(opts.get("throughput_texts", 500)))


def _method(entry: Any, source: Path) -> MethodSpec:
    if not isinstance(entry, dict) or "name" not in entry or "kind" not in entry:
        raise NanoNetError(f"{source}: each method needs at least 'name' and 'kind'.")
    where = f"{source}: method {entry['name']}"
    _refuse_unknown(
        entry,
        {"name", "kind", "settings", "per_dataset", "datasets", "seeds", "pareto_members", "note"},
        where,
    )
    kind = str(entry["kind"])
    if kind not in KINDS:
        raise NanoNetError(f"{where}: unknown kind '{kind}'; use one of {', '.join(KINDS)}.")
    settings = dict(entry.get("settings") or {})
    per_dataset = {str(k): dict(v or {}) for k, v in (entry.get("per_dataset") or {}).items()}
    for block in [settings, *per_dataset.values()]:
        _refuse_unknown(block, set(METHOD_DEFAULTS[kind]), f"{where} ({kind} settings)")
        if block.get("label_selection", "random") not in ("random", "suggest"):
            raise NanoNetError(
                f"{where}: label_selection must be random or suggest, not "
                f"'{block['label_selection']}'."
            )
    seeds, seeds_per_dataset = _method_seeds(entry.get("seeds"), where)
    name = str(entry["name"])
    if not name.replace("-", "").replace("_", "").isalnum():
        raise NanoNetError(f"{where}: use letters, digits, '-' and '_' in method names.")
    return MethodSpec(
        name=name,
        kind=kind,
        settings=settings,
        per_dataset=per_dataset,
        datasets=[str(d) for d in entry["datasets"]] if entry.get("datasets") else None,
        seeds=seeds,
        seeds_per_dataset=seeds_per_dataset,
        pareto_members=bool(entry.get("pareto_members", False)),
        note=str(entry.get("note", "")),
    )


def _method_seeds(raw: Any, where: str) -> tuple[list[int] | None, dict[str, list[int]]]:
    """`seeds: [0, 1]` for every dataset, or `seeds: {20newsgroups: [0]}` for some."""
    if raw is None:
        return None, {}
    if isinstance(raw, dict):
        for dataset in raw:
            if dataset not in BUILTIN_DATASETS:
                raise NanoNetError(f"{where}: seeds for unknown dataset '{dataset}'.")
        return None, {str(d): [int(s) for s in v] for d, v in raw.items()}
    if isinstance(raw, list):
        return [int(s) for s in raw], {}
    raise NanoNetError(f"{where}: 'seeds' must be a list, or a mapping of dataset to a list.")


def _refuse_unknown(raw: dict[str, Any], known: set[str], where: str) -> None:
    unknown = sorted(set(raw) - known)
    if unknown:
        raise NanoNetError(
            f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}."
        )
