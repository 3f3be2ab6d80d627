"""Run configuration: plain dataclasses, loaded from and written to YAML.

Every run writes its full config into the output folder; `nanonet train --config that.yaml`
reproduces it. Unknown keys are errors, not silently ignored.
"""

from __future__ import annotations

import dataclasses
import types
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, get_type_hints

import yaml

from nanonet.errors import NanoNetError
from nanonet.models.device import resolve_device
from nanonet.models.peft import PEFT_MODES
from nanonet.ray_cluster import import_ray
from nanonet.train.views import VIEWS

KD_LOSSES = ("kl", "mse")
ENGINES = ("local", "ray")
EMBED_KD_LOSSES = ("cosine", "mse", "similarity")
CONTRASTIVE_PEFT = ("lora-all", "top")  # what stage 1 trains in the teacher


@dataclass
class DataConfig:
    dataset: str | None = "rotten_tomatoes"  # a built-in dataset, or None to use the files
    train_file: str | None = None
    unlabeled_file: str | None = None
    test_file: str | None = None
    text_column: str = "text"
    label_column: str = "label"
    labels_per_class: int | None = 10  # None: use every labelled row of train_file
    max_unlabeled: int | None = 5000
    max_length: int | None = None  # tokens; None: the dataset's default (128 or 256)


@dataclass
class ModelConfig:
    teacher: str = "all-mpnet-base-v2"
    # bottom1 reads as well as bottom2 (frozen-probe ceilings 0.770 vs 0.778 on rotten_tomatoes)
    # at about twice the speed: the ≥ 10x-the-teacher target needs one layer of width 768.
    students: list[str] = field(
        default_factory=lambda: ["teacher:bottom1", "minilm-l3", "minilm-l6"]
    )
    # Students that read this data less than min_speedup times as fast as the teacher are left
    # out before training (timed on unlabelled texts, as the benchmark times docs/s). MiniLM-L6
    # reads long posts 14.6x faster than MPNet but short reviews only 7.5x: it joins the cohort
    # where it is fast enough. None: train every student listed.
    min_speedup: float | None = 10.0
    peft: str = "lora"  # students: lora (adapters + biases) | bitfit | full
    teacher_peft: str = "bitfit"
    # Stage 1 (the pair loss on the labels) trains LoRA adapters on the query/value projections
    # and the bias terms of *every* teacher layer; they are folded into the weights before the
    # frozen bottom is cached, and the later stages train the top layers as above. "top": stage
    # 1 trains only what the later stages train. On the rotten_tomatoes dev split lora-all gave
    # the teacher's probe +1.9 points over three label draws, and a whole run's teacher +2.6
    # (0.819 -> 0.845, seed 0) and its kept student +1.6 (benchmarks/EXPERIMENTS.md).
    teacher_contrastive_peft: str = "lora-all"
    # Only the top layers of the teacher adapt; the frozen bottom runs once per text (cached).
    teacher_trainable_layers: int = 4
    lora_rank: int = 8
    # Dropout in every student: its encoder layers (hidden states and attention probabilities)
    # and its head. The packaged encoders were trained with 0.1 in their layers.
    dropout: float = 0.1


@dataclass
class TrainConfig:
    seed: int = 0
    steps: int = 200
    # Stage 1, teacher only: SetFit-style pair loss on the labelled texts (bias terms of its top
    # layers), so that its embeddings separate the classes before anything is distilled.
    teacher_contrastive_steps: int = 50
    teacher_contrastive_lr: float = 1e-3
    # Stage 1 at full depth this many times (fresh adapters and dropout masks, the same labels)
    # and the draws' weights averaged. One draw's own noise moved the teacher's probe by up to
    # 6 points on the rotten_tomatoes dev split; two averaged draws gained 0.7 points on the
    # mean of three label draws, with less spread within each (benchmarks/EXPERIMENTS.md).
    # Costs k x stage 1. With model.teacher_contrastive_peft=top, stage 1 takes one draw.
    teacher_contrastive_draws: int = 2
    contrastive_batch_size: int = 32  # labelled texts per pair-loss step (all pairs among them)
    # Stage 1 reads the first tokens of each labelled text only. At full depth a step back-props
    # through all 12 teacher layers for the whole batch: bbc_news read at 128 tokens held 6.6 GB
    # and stage 1 had not finished after 5 minutes. A short review is unaffected; the opening
    # of a long text (a headline, a lede) carries its topic. None: the run's length.
    contrastive_max_length: int | None = 64
    # Whether stage 1 runs when the labelled texts are longer than it reads (their median, in
    # the teacher's tokens, above contrastive_max_length): it then learns from the openings of
    # texts the teacher classifies whole. On long topic texts it lost to the frozen MPNet on
    # the dev split: bbc_news 0.927 against 0.936 (three label draws), 20newsgroups 0.663
    # against 0.729 (label draw 0); on short reviews it gains 5 points (benchmarks/
    # EXPERIMENTS.md). False: skip it there, which also saves its minutes.
    contrastive_long_texts: bool = False
    teacher_warmup_steps: int = 40  # teacher-only steps on the labels before students start
    labeled_batch_size: int = 16
    unlabeled_batch_size: int = 32
    # Cost grows with tokens, so long documents would make a run many times slower than short
    # reviews (bbc_news: 63 min instead of 5). Training reads at most max_train_length tokens
    # of a text, and the batch sizes above hold for texts of batch_reference_length tokens on
    # average: longer texts get proportionally smaller batches, so that a step costs about the
    # same. None: off.
    max_train_length: int | None = 128
    # Tokens the kept student reads at prediction. None: what it was trained on (the dataset's
    # max_length capped at max_train_length), so training and serving see the same window; on
    # bbc_news that is 3.3x faster than reading 256 and no less accurate (EXPERIMENTS.md).
    # The teacher always reads the dataset's max_length.
    student_max_length: int | None = None
    batch_reference_length: int | None = 48
    # Students learn from thousands of distillation targets; the teacher only from the labels
    # (and its own confident pseudo-labels), so it moves more carefully.
    lr_bias: float = 1e-3
    lr_head: float = 1e-2
    teacher_lr_bias: float = 1e-4
    teacher_lr_head: float = 1e-3
    lr_full: float = 5e-5  # weights under peft=full
    lr_lora: float = 1e-3  # LoRA adapters (peft=lora): small matrices, a larger rate
    weight_decay: float = 0.0
    temperature: float = 2.0
    kd_loss: str = "kl"  # kl | mse
    kd_weight: float = 1.0
    # Embedding distillation: each student's sentence vector, through a training-only linear
    # map, regresses the adapted teacher's (hundreds of numbers per text, where the logits of
    # a binary task carry one). cosine | mse (on unit vectors) | similarity (the batch's
    # cosine-similarity matrix, no map: what SetFit's DistillationTrainer fits). 0: off.
    # Off by default: on the rotten_tomatoes dev split (seed 0) cosine at weight 1 changed the
    # students by under a point, with or without stage 4 (benchmarks/EXPERIMENTS.md).
    embed_kd_weight: float = 0.0
    embed_kd_loss: str = "cosine"
    # After the joint stage the teacher is done adapting: its vectors and logits for the whole
    # pool are computed once, and the students take this many more passes over the pool from
    # that cache (a student step costs 10-20x less than a teacher step). 0: off.
    # 3: +1.9 points for teacher:bottom1 and +1.9 for MiniLM-L3 on the rotten_tomatoes dev
    # split (seed 0), the largest gain any lever gave (benchmarks/EXPERIMENTS.md).
    distill_epochs: float = 3.0
    # Stage 4 stops once each student has read this many tokens of the pool (at the training
    # read length), however many passes that is. On the 20newsgroups dev split (seed 0) the
    # students gained nothing past 360,000 tokens of a 518,000-token stage 4; the protocol's
    # three passes read 1.36 M there, 0.51 M on bbc_news and 0.32 M on rotten_tomatoes (left
    # whole). None: all distill_epochs passes.
    distill_max_tokens: int | None = 400_000
    use_teacher: bool = True  # False: students learn from labels and each other only
    mutual_weight: float = 1.0  # 0 disables mutual learning
    rampup_fraction: float = 0.2
    views: list[str] = field(default_factory=lambda: ["cutoff", "shuffle"])
    view_rate: float = 0.1
    # None: the teacher learns from the labels only. Pseudo-labels (e.g. 0.9: confident and the
    # cohort agrees) made the contrastively adapted teacher drift by 5-8 points on 3 of 4
    # rotten_tomatoes runs (benchmarks/EXPERIMENTS.md), so they are off by default.
    teacher_pseudo_label_threshold: float | None = None
    # Self-training before the students start: the warmed-up teacher labels the pool, keeps its
    # most confident texts per class (the same number for every class, not a global threshold,
    # which let one class take over), repeats stages 1-2 on the labels plus these and keeps
    # learning from both through stage 3. 0: off.
    teacher_pseudo_per_class: int = 0
    # With self-training on, first ask the labels whether it helps: a leave-one-per-class-out
    # cross-validation of a linear head on the pretrained teacher's vectors, without and with
    # its surest pool texts per class; self-training runs unless the pseudo-labels lose. For a
    # frozen probe on the dev splits (five label draws) it kept all of self-training's +3.2
    # points on bbc_news and cut its loss on 20newsgroups from 0.8 to 0.2 points.
    teacher_pseudo_check: bool = False
    # Supervised losses weight each class by n / (k * n_c) when the labelled classes are not
    # equally represented. Labels picked by `nanonet suggest` (coverage, not frequency) come
    # out uneven (15/5 on rotten_tomatoes): unweighted, that cost a logistic probe 7 points
    # on the rotten_tomatoes dev split, weighted it gained 1.6 over a stratified random draw
    # (benchmarks/EXPERIMENTS.md). Balanced labels train exactly as without it. False: keep
    # the labels' own class frequencies (when they are a random sample of the data).
    balance_classes: bool = True
    # Unlabelled texts held out to choose the kept student (at most a fifth of the pool). 300
    # gave scores with a standard error of about 0.02, twice the tolerance below.
    selection_holdout: int = 1000
    selection_tolerance: float = 0.01  # prefer a cheaper student within this agreement
    eval_batch_size: int = 64
    threads: int | None = None
    # auto | cpu | cuda | cuda:N. auto: CUDA when PyTorch sees a GPU. On CUDA, settings left at
    # their defaults take the GPU's (train/device_defaults.py); the saved config.yaml says which.
    device: str = "auto"
    # Memory for the teacher's frozen-bottom states (fp16, per token of the texts drawn). Past
    # it, the states of further texts are recomputed per batch instead of kept, so memory does
    # not grow with the pool: 5,000 e-mails at 128 tokens take about 1 GB.
    cache_mb: int = 2048
    # local | ray. ray: the adapted teacher reads the pool for the distillation targets on a
    # Ray actor pool of ray_workers actors, on the cluster at ray_address (e.g. ray://head:10001)
    # or, without one, on a local instance (loopback only). Needs `pip install 'nanonet[ray]'`.
    engine: str = "local"
    ray_address: str | None = None
    ray_workers: int = 2
    # Steps between checkpoints of a run given a checkpoint folder (`nanonet train` always
    # gives one); they are also written at each stage boundary. 0: at stage boundaries only.
    checkpoint_every: int = 100


@dataclass
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        # Keys set in a config file, by an override or a command-line flag: defaults that
        # scale with the device never replace them. Not a field: it is not part of the YAML.
        self.explicit: set[str] = set()

    def mark_set(self, key: str) -> None:
        """Record that the user chose `key` (section.name), e.g. from a command-line flag."""
        self.explicit.add(key)

    def validate(self) -> None:
        """Every check a type check cannot do, before any data or model loads; one clear
        sentence per problem."""
        d, t = self.data, self.train
        choices = [
            ("train.kd_loss", t.kd_loss, KD_LOSSES),
            ("train.embed_kd_loss", t.embed_kd_loss, EMBED_KD_LOSSES),
            ("model.peft", self.model.peft, PEFT_MODES),
            ("model.teacher_peft", self.model.teacher_peft, PEFT_MODES),
            (
                "model.teacher_contrastive_peft",
                self.model.teacher_contrastive_peft,
                CONTRASTIVE_PEFT,
            ),
            ("train.engine", t.engine, ENGINES),
        ]
        for key, value, allowed in choices:
            if value not in allowed:
                raise NanoNetError(f"{key} must be one of {', '.join(allowed)}, not '{value}'.")
        for view in t.views:
            if view not in VIEWS:
                raise NanoNetError(f"Unknown view '{view}'; choose from {', '.join(VIEWS)}.")
        if not self.model.students:
            raise NanoNetError("model.students is empty; give at least one student spec.")
        rules = [
            ("data.labels_per_class", d.labels_per_class, 1),
            ("data.max_unlabeled", d.max_unlabeled, 0),
            ("data.max_length", d.max_length, 8),
            ("model.teacher_trainable_layers", self.model.teacher_trainable_layers, 0),
            ("model.lora_rank", self.model.lora_rank, 1),
            ("model.min_speedup", self.model.min_speedup, 1.0),
            ("train.seed", t.seed, 0),
            ("train.steps", t.steps, 1),
            ("train.teacher_warmup_steps", t.teacher_warmup_steps, 0),
            ("train.teacher_contrastive_steps", t.teacher_contrastive_steps, 0),
            ("train.teacher_contrastive_lr", t.teacher_contrastive_lr, 0.0),
            ("train.teacher_contrastive_draws", t.teacher_contrastive_draws, 1),
            ("train.contrastive_batch_size", t.contrastive_batch_size, 2),
            ("train.contrastive_max_length", t.contrastive_max_length, 8),
            ("train.labeled_batch_size", t.labeled_batch_size, 1),
            ("train.unlabeled_batch_size", t.unlabeled_batch_size, 1),
            ("train.eval_batch_size", t.eval_batch_size, 1),
            ("train.max_train_length", t.max_train_length, 8),
            ("train.student_max_length", t.student_max_length, 8),
            ("train.batch_reference_length", t.batch_reference_length, 1),
            ("train.selection_holdout", t.selection_holdout, 0),
            ("train.threads", t.threads, 1),
            ("train.temperature", t.temperature, 1e-6),
            ("train.kd_weight", t.kd_weight, 0.0),
            ("train.embed_kd_weight", t.embed_kd_weight, 0.0),
            ("train.mutual_weight", t.mutual_weight, 0.0),
            ("train.distill_epochs", t.distill_epochs, 0.0),
            ("train.distill_max_tokens", t.distill_max_tokens, 1),
            ("train.view_rate", t.view_rate, 0.0),
            ("train.teacher_pseudo_per_class", t.teacher_pseudo_per_class, 0),
            ("train.selection_tolerance", t.selection_tolerance, 0.0),
            ("train.checkpoint_every", t.checkpoint_every, 0),
            ("train.cache_mb", t.cache_mb, 0),
            ("train.ray_workers", t.ray_workers, 1),
        ]
        for key, value, low in rules:
            if value is not None and value < low:
                raise NanoNetError(f"{key} must be at least {low}, not {value}.")
        if t.teacher_pseudo_check and not t.teacher_pseudo_per_class:
            raise NanoNetError(
                "train.teacher_pseudo_check checks self-training, which is off: "
                "set train.teacher_pseudo_per_class (e.g. 200) as well."
            )
        if not 0.0 <= self.model.dropout < 1.0:
            raise NanoNetError(f"model.dropout must be in [0, 1), not {self.model.dropout}.")
        resolve_device(t.device, "train.device")
        if t.engine == "ray":
            import_ray()  # not installed: say how, before the run rather than at its end

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_yaml(self, path: str | Path) -> None:
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False), encoding="utf-8")

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> RunConfig:
        cfg: RunConfig = _build(cls, raw or {}, "")
        for section, values in (raw or {}).items():
            cfg.explicit.update(f"{section}.{name}" for name in values)
        return cfg

    @classmethod
    def from_yaml(cls, path: str | Path) -> RunConfig:
        raw = read_yaml_mapping(
            path,
            "Config file",
            "check the path given to --config",
            "hold a mapping with data/model/train keys",
            allow_empty=True,
        )
        return cls.from_dict(raw)

    def override(self, dotted: str) -> None:
        """Apply one `section.key=value` override (value parsed as YAML)."""
        key, sep, value = dotted.partition("=")
        section, _, name = key.partition(".")
        if not sep or not name:
            raise NanoNetError(f"Override '{dotted}' must look like train.steps=100.")
        target = getattr(self, section, None)
        if target is None or not dataclasses.is_dataclass(target):
            raise NanoNetError(f"Override '{dotted}': unknown section '{section}'.")
        merged = asdict(target)
        merged[name] = yaml.safe_load(value)
        setattr(self, section, _build(type(target), merged, section + "."))
        self.mark_set(f"{section}.{name}")


def read_yaml_mapping(
    path: str | Path, what: str, missing_hint: str, shape: str, allow_empty: bool = False
) -> dict[str, Any]:
    """A YAML file holding a mapping, or one clear NanoNetError naming `what` it is."""
    p = Path(path)
    if not p.is_file():
        raise NanoNetError(f"{what} {p} does not exist; {missing_hint}.")
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise NanoNetError(f"{what} {p} is not valid YAML ({exc}).") from None
    if raw is None and allow_empty:
        return {}
    if not isinstance(raw, dict):
        raise NanoNetError(f"{what} {p} must {shape}.")
    return raw


def _build(cls: type, raw: dict[str, Any], prefix: str) -> Any:
    hints = get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise NanoNetError(
            f"Unknown config key(s) {', '.join(prefix + k for k in unknown)}; "
            f"known keys are {', '.join(prefix + k for k in sorted(known))}."
        )
    kwargs: dict[str, Any] = {}
    for name, value in raw.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            if not isinstance(value, dict):
                raise NanoNetError(f"Config key '{prefix}{name}' must be a mapping.")
            kwargs[name] = _build(hint, value, f"{prefix}{name}.")
        else:
            kwargs[name] = _check_type(f"{prefix}{name}", value, hint)
    return cls(**kwargs)


def _check_type(key: str, value: Any, hint: Any) -> Any:
    # A union (X | None) lists its members in __args__; a plain or generic type stands alone.
    allowed = hint.__args__ if isinstance(hint, types.UnionType) else (hint,)
    if value is None:
        if type(None) in allowed:
            return None
        raise NanoNetError(f"Config key '{key}' cannot be empty.")
    for typ in allowed:
        base = getattr(typ, "__origin__", typ)
        if base is float and isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if base is float and isinstance(value, str):
            # YAML 1.1 reads "1e-3" (no dot) as a string; users write it that way all the time.
            try:
                return float(value)
            except ValueError:
                pass
        if base is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if base in (str, bool) and isinstance(value, base):
            return value
        if base is list and isinstance(value, list):
            return [str(v) for v in value]
    raise NanoNetError(f"Config key '{key}' has value {value!r} of the wrong type ({hint}).")
