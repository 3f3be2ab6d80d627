"""What every benchmarked method gets and gives back."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nanonet.errors import NanoNetError


class MethodUnavailable(NanoNetError):
    """The method cannot run on this machine (missing package); recorded, not a crash."""


@dataclass(frozen=True)
class RunContext:
    seed: int
    threads: int
    labels_per_class: int
    batch_size: int  # inference batch size (64 in the protocol)
    scratch: Path  # a private temporary folder, removed after the run
    device: str = "cpu"  # cpu or cuda:N, resolved by the harness (`nanonet bench --device`)


@dataclass
class Member:
    """A model trained alongside the scored one (a NanoNet cohort member), scored as well."""

    name: str
    role: str  # "teacher" | "student"
    predict: Callable[[list[str]], np.ndarray] | None  # None: not scored (too costly)
    trainable_params: int
    total_params: int
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class Trained:
    """A trained model as the harness measures it."""

    predict: Callable[[list[str]], np.ndarray]  # texts -> class ids, batches of ctx.batch_size
    save: Callable[[Path], None]  # writes what would be deployed (its size is reported)
    trainable_params: int
    total_params: int
    details: dict[str, Any] = field(default_factory=dict)
    members: list[Member] = field(default_factory=list)
