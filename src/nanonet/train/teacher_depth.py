"""Stage 1 at full depth (`model.teacher_contrastive_peft=lora-all`): LoRA adapters and the
bias terms of every teacher layer train on the pair loss, in several draws whose mean is folded
into the teacher's weights when the stage closes. The later stages train the top layers only,
above a bottom that is frozen (and cached) again.

The trainer (`trainer.py`) runs stage 1's steps; what the teacher carries during it, and how a
resumed run gets it back, lives here.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

from nanonet.models.device import device_of
from nanonet.models.encoder import EncoderClassifier
from nanonet.models.peft import LoRALinear, apply_lora, drop_lora, set_trainable
from nanonet.train.checkpoint import load_trainable_state
from nanonet.train.cohort import Member
from nanonet.train.config import ModelConfig, TrainConfig


def open_teacher_depth(
    model: EncoderClassifier, rank: int, generator: torch.Generator | None = None
) -> list[torch.nn.Parameter]:
    """LoRA adapters on every layer's query/value projections, and the bias terms of every
    layer, train. Returns those weights (not the head, which stage 1 does not use)."""
    # The adapters are created on the CPU; a model on a GPU must get them there before the
    # fold (`close_teacher_depth`) adds them to its weights.
    device = device_of(model)
    apply_lora(model.backbone, rank, generator=generator)
    model.to(device)
    set_trainable(model, "lora", 0)
    return [p for n, p in model.named_parameters() if p.requires_grad and not n.startswith("head.")]


def restart_teacher_depth(
    model: EncoderClassifier, start: dict[str, torch.Tensor], generator: torch.Generator
) -> None:
    """The next draw of stage 1: adapters drawn anew, the biases back to `start` (stage 1's
    starting values), so every draw trains from the same teacher."""
    for module in model.modules():
        if isinstance(module, LoRALinear):
            module.reset(generator)
    with torch.no_grad():
        load_trainable_state(model, start)


def close_teacher_depth(
    model: EncoderClassifier, mc: ModelConfig, cut: int, draws: list[dict[str, torch.Tensor]]
) -> int:
    """Fold the mean of stage 1's draws (each one's adapters and biases, as `stage1_weights`
    returned them) into the teacher's weights, and go back to training what
    `model.teacher_peft` trains above `cut`, so the frozen bottom can be cached again.

    Every draw starts from the same weights, so their mean is a uniform soup: on the
    rotten_tomatoes dev split it took the spread between draws out (benchmarks/EXPERIMENTS.md).
    Returns how many weights stage 1 trained that no later stage trains (the report's count).
    """
    k = len(draws)
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, module in list(model.named_modules()):
            if isinstance(module, LoRALinear):
                # Each draw's low-rank update, then their mean: the mean of the B @ A products,
                # not the product of the means (the draws' A and B are not aligned).
                delta = sum(
                    d[f"{name}.lora_b"].to(module.lora_b) @ d[f"{name}.lora_a"].to(module.lora_a)
                    for d in draws
                )
                module.base.weight += (delta / k) * module.scale
        for name in draws[0]:
            if not name.endswith((".lora_a", ".lora_b")):
                params[name].copy_(sum(d[name] for d in draws).to(params[name]) / k)
    drop_lora(model.backbone)  # their mean update is in the weights now
    set_trainable(model, mc.teacher_peft, cut)
    still = {n for n, p in model.named_parameters() if p.requires_grad}
    return sum(v.numel() for n, v in draws[0].items() if n not in still)


def stage1_weights(model: EncoderClassifier) -> dict[str, torch.Tensor]:
    """What stage 1 trains (adapters and biases, not the head), copied to the CPU: one draw,
    as a checkpoint keeps it to redo the fold on resume."""
    return {
        n: p.detach().cpu().clone()
        for n, p in model.named_parameters()
        if p.requires_grad and not n.startswith("head.")
    }


def redo_teacher_depth(
    model: EncoderClassifier, mc: ModelConfig, cut: int, draws: list[dict[str, torch.Tensor]]
) -> int:
    """A resumed run past stage 1: fold the checkpoint's stage-1 draws in again."""
    open_teacher_depth(model, mc.lora_rank)
    return close_teacher_depth(model, mc, cut, draws)


def pair_optimizer(
    model: EncoderClassifier, tc: TrainConfig, steps: int
) -> torch.optim.Optimizer | None:
    """Stage 1's optimiser: the teacher's trainable weights below its head (None when stage 1
    takes no `steps`)."""
    params = [
        p for n, p in model.named_parameters() if p.requires_grad and not n.startswith("head.")
    ]
    if steps == 0 or not params:
        return None
    return torch.optim.AdamW(params, lr=tc.teacher_contrastive_lr, weight_decay=0.0)


class TeacherDepth:
    """The teacher's state across stage 1: whether it carries the adapters now (`is_open`),
    the finished draws' weights (kept for checkpoints) and where each draw starts."""

    def __init__(
        self,
        teacher: Member,
        mc: ModelConfig,
        cut: int,
        steps: int,
        adapter_seed: int,
        dropout_seed: int,
        device: torch.device,
    ) -> None:
        """`steps`: stage 1's steps per draw in this run (0: no stage 1)."""
        self.teacher, self.mc, self.cut, self.steps = teacher, mc, cut, steps
        self.adapter_seed, self.dropout_seed, self.device = adapter_seed, dropout_seed, device
        self.draws: list[dict[str, torch.Tensor]] = []
        self.start: dict[str, torch.Tensor] = {}
        self.is_open = False

    @property
    def wanted(self) -> bool:
        return self.mc.teacher_contrastive_peft == "lora-all" and self.steps > 0

    def open(self, saved: list[dict[str, torch.Tensor]] | None) -> None:
        """Before stage 1: adapters in every teacher layer (`saved`: the draws a run resumed
        within stage 1 had finished)."""
        if not self.wanted:
            return
        model = self.teacher.model
        open_teacher_depth(
            model, self.mc.lora_rank, torch.Generator().manual_seed(self.adapter_seed)
        )
        self.start = {n: v for n, v in stage1_weights(model).items() if ".lora_" not in n}
        self.draws = list(saved or [])
        self.is_open = True

    def reopen_folded(self, saved: list[dict[str, torch.Tensor]]) -> None:
        """A run resumed past stage 1 folds the checkpoint's stage-1 weights in again (they
        are frozen afterwards, so no later checkpoint holds them)."""
        if not self.wanted or not saved:
            return
        self.teacher.trained_before = redo_teacher_depth(
            self.teacher.model, self.mc, self.cut, saved
        )
        self.draws = saved

    def next_draw(self, k: int) -> None:
        """Draw `k`: the last draw's weights kept, then fresh adapters (their own seed), the
        biases back to the start and fresh dropout masks (the caller makes a fresh optimiser)."""
        self.draws.append(stage1_weights(self.teacher.model))
        adapters = torch.Generator().manual_seed(self.adapter_seed + k)
        restart_teacher_depth(self.teacher.model, self.start, adapters)
        torch.manual_seed(self.dropout_seed + k)  # inside `dropout`'s forked stream

    @contextmanager
    def dropout(self, saved_rng: dict[str, Any] | None) -> Iterator[None]:
        """Stage 1 with the teacher's dropout on, as SetFit trains: without it the adapters
        fit the twenty labelled texts' pairs and the gain on the dev split went (0.847 -> 0.824
        for the probe, seed 0). Its masks come from their own seed, so the teacher stays the
        same whatever the students draw before it (ablations stay paired). `saved_rng`: where
        the stream stood in a run resumed within stage 1."""
        cuda = [self.device.index or 0] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda):
            torch.manual_seed(self.dropout_seed)
            if saved_rng is not None:
                torch.set_rng_state(saved_rng["cpu"])
                if cuda and saved_rng["cuda"] is not None:
                    torch.cuda.set_rng_state(saved_rng["cuda"], cuda[0])
            self.teacher.model.train()
            try:
                yield
            finally:
                self.teacher.model.eval()  # its outputs are targets from here on

    def rng_state(self) -> dict[str, torch.Tensor | None]:
        """Where stage 1's dropout stream stands (for a checkpoint within stage 1)."""
        cuda = self.device.type == "cuda"
        return {
            "cpu": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state(self.device) if cuda else None,
        }

    def close(self) -> None:
        """After stage 1: fold the draws' mean into the weights."""
        if not self.is_open:
            return
        t = self.teacher
        self.draws.append(stage1_weights(t.model))
        t.trained_before = close_teacher_depth(t.model, self.mc, self.cut, self.draws)
        self.is_open = False
