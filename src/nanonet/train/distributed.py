"""Data-parallel training under `torchrun`: every rank runs the same trainer on its share of
each batch and the gradients of every member are averaged before each optimiser step.

    torchrun --nproc_per_node=2 -m nanonet train --dataset rotten_tomatoes --out m/

All ranks draw the same batches from the same seeded generators and keep identical weights, so
nothing but gradients (and the speed screen's verdict, which is timed and could differ) crosses
between them. Each rank keeps the part of a batch at its own stride; with shares of equal size
the averaged gradient is the one-process gradient of the whole batch. The teacher's
contrastive stage is not split: its pair loss couples every text of a batch, so every rank
computes the whole (small) stage. Only rank 0 writes checkpoints, logs and the model.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as torch_dist

T = TypeVar("T")


def env_rank() -> int:
    """This process's rank as torchrun sets it (0 outside torchrun)."""
    return int(os.environ.get("RANK", "0"))


def env_world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


@dataclass
class Distributed:
    """The process group of a run; a world of one does nothing at all."""

    rank: int = 0
    world: int = 1

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, idx: list[int]) -> list[int]:
        """This rank's part of a batch. A batch smaller than the world stays whole on every
        rank (identical gradients, so their average is still the whole batch's)."""
        if not self.enabled or len(idx) < self.world:
            return idx
        return idx[self.rank :: self.world]

    def average_gradients(self, params: Iterable[torch.nn.Parameter]) -> None:
        """All-reduce the gradients of `params` in one flat buffer and divide by the world."""
        if not self.enabled:
            return
        params = [p for p in params if p.requires_grad]
        if not params:
            return
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = torch.cat([g.reshape(-1).float() for g in grads])
        torch_dist.all_reduce(flat, op=torch_dist.ReduceOp.SUM)
        flat /= self.world
        offset = 0
        for p in params:
            n = p.numel()
            p.grad = flat[offset : offset + n].view_as(p).to(p.dtype)
            offset += n

    def from_main(self, value: T) -> T:
        """Rank 0's `value` on every rank."""
        if not self.enabled:
            return value
        box: list[Any] = [value]
        torch_dist.broadcast_object_list(box, src=0)
        return box[0]


def setup(device: torch.device) -> tuple[Distributed, torch.device]:
    """The run's process group from torchrun's environment (joined once per process), and the
    device this rank trains on: `cuda:LOCAL_RANK` on a GPU machine."""
    world = env_world_size()
    if world <= 1:
        return Distributed(), device
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if not torch_dist.is_initialized():
        torch_dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Distributed(torch_dist.get_rank(), torch_dist.get_world_size()), device


def finish() -> None:
    """Leave the process group (torch warns at exit about one left open)."""
    if torch_dist.is_initialized():
        torch_dist.destroy_process_group()
