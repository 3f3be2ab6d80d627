"""Building the run's models: the teacher, the students made from it, and their optimisers.

The trainer (`trainer.py`) only drives them; what a member is made of lives here.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from nanonet.errors import NanoNetError
from nanonet.models.assets import encoder_dir, max_input_tokens
from nanonet.models.classifier import NanoNetClassifier
from nanonet.models.encoder import Backbone, EncoderClassifier, load_hf_encoder
from nanonet.models.peft import (
    apply_lora,
    count_parameters,
    inject_missing_biases,
    set_trainable,
)
from nanonet.models.speed import (
    CpuShare,
    best_docs_per_second_in_turn,
    class_ids,
    untrained_classifier,
)
from nanonet.models.students import StudentSpec, parse_student_spec, select_layers, subset_layers
from nanonet.train.config import ModelConfig, TrainConfig

log = logging.getLogger("nanonet")

Ids = list[np.ndarray]  # token ids per text (int32)


@dataclass
class Member:
    """One model of the run (teacher or student) with its own tokenization of the data."""

    name: str
    model: EncoderClassifier
    tokenizer: Any
    ids: dict[str, Ids]  # "labelled" / "unlabelled" / "holdout" -> token ids per text
    view: str = "none"
    # Training-only map from the student's sentence vector to the teacher's (embedding
    # distillation); dropped at the end, never part of the saved model.
    projection: nn.Linear | None = None
    optimizer: torch.optim.Optimizer | None = None
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None
    # Weights a stage trained and then froze (the teacher's stage 1 at full depth, folded into
    # its weights): trained all the same, so they count in `params`.
    trained_before: int = 0

    @property
    def pad_id(self) -> int:
        return self.tokenizer.pad_token_id

    def params(self) -> tuple[int, int]:
        """(weights trained in this run, all weights)."""
        trainable, total = count_parameters(self.model)
        return trainable + self.trained_before, total

    def projection_params(self) -> int:
        return sum(p.numel() for p in self.projection.parameters()) if self.projection else 0


# Texts tokenized at a time: the tokenizer's Python lists of ints (about 36 bytes per token)
# exist for one chunk only; what is kept is an int32 array per text (4 bytes per token), so a
# pool of 500,000 texts costs tens of megabytes per member, not gigabytes.
TOKENIZE_CHUNK = 10_000


def tokenize(tokenizer: Any, texts: list[str], max_length: int) -> Ids:
    ids: Ids = []
    for start in range(0, len(texts), TOKENIZE_CHUNK):
        chunk = texts[start : start + TOKENIZE_CHUNK]
        encoded = tokenizer(chunk, truncation=True, max_length=max_length)["input_ids"]
        ids.extend(np.asarray(x, dtype=np.int32) for x in encoded)
    return ids


def member(
    name: str,
    model: EncoderClassifier,
    tokenizer: Any,
    texts: dict[str, list[str]],
    max_length: int,
    view: str = "none",
    shared: dict[int, dict[str, Ids]] | None = None,
) -> Member:
    """A member with its texts tokenized. Members with the same tokenizer object (the teacher
    and the students cut from it) share the token ids through `shared`: one copy of a large
    pool instead of one per member. Each member gets its own dict of splits."""
    shared = {} if shared is None else shared
    key = id(tokenizer)
    if key not in shared:
        shared[key] = {split: tokenize(tokenizer, t, max_length) for split, t in texts.items()}
    return Member(name, model, tokenizer, dict(shared[key]), view)


def check_read_lengths(
    mc: ModelConfig, max_length: int, train_length: int, student_length: int, cap: int | None
) -> None:
    """Refuse a length beyond an encoder's position table before anything loads, not as an
    index error later. The teacher reads `max_length`; the students train on `train_length`
    (the data's length capped at `cap`) and predict on `student_length`."""
    teacher_dir = encoder_dir(mc.teacher)
    checks = [(mc.teacher, teacher_dir, max_length, "data.max_length")]
    if student_length > train_length:
        student_reads, setting = student_length, "train.student_max_length"
    elif cap and cap < max_length:
        student_reads, setting = train_length, "train.max_train_length"
    else:
        student_reads, setting = train_length, "data.max_length"
    for spec_text in mc.students:
        source = parse_student_spec(spec_text).source
        folder = teacher_dir if source == "teacher" else encoder_dir(source)
        checks.append((spec_text, folder, student_reads, setting))
    for name, folder, length, key in checks:
        limit = max_input_tokens(folder)
        if length > limit:
            raise NanoNetError(
                f"{key}={length} is longer than encoder '{name}' can read ({limit} tokens); "
                f"set {key} to {limit} or less."
            )


def build_teacher(mc: ModelConfig, num_labels: int) -> tuple[EncoderClassifier, Any, Any, int]:
    """The teacher classifier, its HF encoder and tokenizer (students copy from them), and the
    first trainable layer (everything below it is frozen, so its output can be cached)."""
    hf, tok = load_hf_encoder(encoder_dir(mc.teacher))
    inject_missing_biases(hf)
    # No dropout in the teacher: its predictions on unlabelled text are the students' targets.
    model = EncoderClassifier(Backbone(hf), num_labels, dropout=0.0)
    cut = max(0, model.backbone.num_layers - mc.teacher_trainable_layers)
    if mc.teacher_peft == "lora":
        apply_lora(model.backbone, mc.lora_rank)
    set_trainable(model, mc.teacher_peft, cut)
    return model, hf, tok, cut


def student_encoder(spec: StudentSpec, teacher_hf: Any, teacher_tok: Any) -> tuple[Any, Any]:
    """The student's encoder (its chosen layers, weights copied) and tokenizer."""
    if spec.source == "teacher":
        base, tok = teacher_hf, teacher_tok
    else:
        base, tok = load_hf_encoder(encoder_dir(spec.source))
    return subset_layers(base, select_layers(spec.layers, base.config.num_hidden_layers)), tok


def build_student(
    spec_text: str, mc: ModelConfig, num_labels: int, teacher_hf: Any, teacher_tok: Any
) -> tuple[EncoderClassifier, Any, str]:
    spec = parse_student_spec(spec_text)
    hf, tok = student_encoder(spec, teacher_hf, teacher_tok)
    inject_missing_biases(hf)
    model = EncoderClassifier(Backbone(hf), num_labels, dropout=mc.dropout)
    set_dropout(model, mc.dropout)
    if mc.peft == "lora":
        apply_lora(model.backbone, mc.lora_rank)
    set_trainable(model, mc.peft, 0)
    return model, tok, str(spec)


def set_dropout(model: nn.Module, p: float) -> None:
    """Every dropout in `model` at rate `p`. BERT's SDPA attention reads its rate from its
    dropout module, so attention follows too."""
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = p


def projection(student_width: int, teacher_width: int, generator: torch.Generator) -> nn.Linear:
    """Student sentence vector -> teacher's. Identity at the start when the widths match
    (students cut from the teacher share its residual stream), random otherwise, drawn from
    its own generator so that switching it on leaves dropout's random stream unchanged."""
    proj = nn.Linear(student_width, teacher_width)
    with torch.no_grad():
        if student_width == teacher_width:
            proj.weight.copy_(torch.eye(teacher_width))
        else:
            bound = 1.0 / student_width**0.5
            proj.weight.uniform_(-bound, bound, generator=generator)
        proj.bias.zero_()
    return proj


def make_optimizer(
    m: Member,
    total_steps: int,
    lr_bias: float,
    lr_head: float,
    peft: str,
    tc: TrainConfig,
) -> None:
    """AdamW with one rate per kind of weight, and a linear decay to 10% over `total_steps`."""
    groups: dict[str, list[nn.Parameter]] = {"head": [], "bias": [], "other": []}
    for name, p in m.model.named_parameters():
        if not p.requires_grad:
            continue
        key = "head" if name.startswith("head.") else "bias" if name.endswith("bias") else "other"
        groups[key].append(p)
    if m.projection is not None:
        groups["head"].extend(m.projection.parameters())
    lrs = {"head": lr_head, "bias": lr_bias, "other": tc.lr_lora if peft == "lora" else tc.lr_full}
    if peft == "full":
        # Full fine-tuning moves every weight: biases then take the small full-FT rate too.
        lrs["bias"] = min(lr_bias, tc.lr_full * 10)
    param_groups = [
        {"params": ps, "lr": lrs[k], "weight_decay": 0.0 if k == "bias" else tc.weight_decay}
        for k, ps in groups.items()
        if ps
    ]
    m.optimizer = torch.optim.AdamW(param_groups)
    # Linear decay to 10%: a gentle finish without a tuned schedule.
    m.scheduler = torch.optim.lr_scheduler.LambdaLR(
        m.optimizer, lambda s: max(0.1, 1.0 - 0.9 * s / max(1, total_steps))
    )


# Under this share of the CPU its threads asked for, the screen's run shared the machine
# (about 0.5 beside another 2-thread job on 2 cores; 0.97-1.0 alone, EXPERIMENTS.md).
BUSY_CPU_SHARE = 0.8


def fast_enough_students(
    specs: list[str],
    floor: float | None,
    teacher: Member,
    teacher_length: int,
    student_length: int,
    label_names: list[str],
    sample: list[str],
    batch_size: int,
    teacher_hf: Any,
    teacher_tok: Any,
) -> tuple[list[str], list[dict[str, Any]]]:
    """The student specs worth training: those that read this data at least `floor` times as
    fast as the teacher, and the screen's measurements.

    A student exists to replace the teacher at inference, and the speed of a width-384
    encoder against MPNet depends on text length (MiniLM-L6: 7.5x on short reviews, 14.6x
    on long posts), so it is measured on this run's texts rather than assumed. Timed like
    the benchmark's docs/s (tokenization included, batch 64; the fastest of three passes,
    the teacher and the students taking turns so that other work on the machine slows them
    alike) on up to 64 held-out texts, before the student costs any training time. If none
    is fast enough, the fastest is trained. The RNG state is restored afterwards: a run whose
    cohort is not cut trains exactly as it would without the screen.
    """
    if floor is None or len(specs) < 2:
        return specs, []
    with torch.random.fork_rng(), torch.no_grad():
        clfs = [NanoNetClassifier(teacher.model, teacher.tokenizer, label_names, teacher_length)]
        for spec_text in specs:
            hf, tok = student_encoder(parse_student_spec(spec_text), teacher_hf, teacher_tok)
            clfs.append(untrained_classifier(hf, tok, len(label_names), student_length))
        # Over the timing alone: loading the students waits on the disk and runs one thread.
        load = CpuShare(torch.get_num_threads())
        teacher_speed, *student_speeds = _docs_per_second(clfs, sample, batch_size)
        cpu_share = round(load.share(), 2)
        speedups = [x / teacher_speed for x in student_speeds]
    kept = [s for s, x in zip(specs, speedups, strict=True) if x >= floor]
    if not kept:
        kept = [specs[int(np.argmax(speedups))]]
        log.warning(
            "no student reads this data %.0fx faster than the teacher "
            "(model.min_speedup); training the fastest, %s (%.1fx)",
            floor,
            kept[0],
            max(speedups),
        )
    screen = []
    for spec_text, x in zip(specs, speedups, strict=True):
        screen.append(
            {
                "student": spec_text,
                "speedup": round(x, 2),
                "trained": spec_text in kept,
                "cpu_share": cpu_share,
            }
        )
        if spec_text not in kept:
            log.info(
                "%s left out of the cohort: %.1fx the teacher's speed on these texts, "
                "under model.min_speedup=%g",
                spec_text,
                x,
                floor,
            )
    if len(kept) < len(specs) and cpu_share < BUSY_CPU_SHARE:
        log.warning(
            "the machine was busy while the students were timed (this run got %.0f%% of the "
            "CPU its threads asked for): small models read slower beside other work, so the "
            "screen may have left out a student that is fast enough on a quiet machine; to "
            "keep the cohort whatever the load, name it in model.students and set "
            "model.min_speedup=null",
            100 * cpu_share,
        )
    return kept, screen


def flops_per_token(config: Any) -> int:
    """Multiply-adds per token in the encoder's linear layers: a proxy for inference cost."""
    h, i = config.hidden_size, config.intermediate_size
    return config.num_hidden_layers * (4 * h * h + 2 * h * i)


def _docs_per_second(
    clfs: list[NanoNetClassifier], texts: list[str], batch_size: int
) -> list[float]:
    return best_docs_per_second_in_turn([class_ids(c, batch_size) for c in clfs], texts)
