"""Defaults that scale with the device: what a run can afford on a GPU but not on two cores.

The CPU defaults are the ones in `config.py`, and a CPU run never changes here. On CUDA a key
in `GPU_DEFAULTS` that the user did not set takes the GPU value. "Did not set" means: not in
the config file, not overridden, not given as a flag (`RunConfig.explicit`), and still at its
CPU default (so `cfg.train.steps = 300` in Python is kept too; to keep a CPU default itself
on a GPU, `cfg.override("train.steps=200")`). The resolved values are written into the run's
config.yaml, so `nanonet train --config` repeats the same run on any device, and a CPU run's
config.yaml repeated on a GPU keeps the CPU values.
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from nanonet.train.config import RunConfig

log = logging.getLogger("nanonet")

GPU_DEFAULTS: dict[str, Any] = {
    # Twice the steps gained 1-2 points on 20newsgroups for +45% time on 2 cores
    # (benchmarks/EXPERIMENTS.md, ninth sitting); on a GPU the 200 extra steps take seconds.
    "train.steps": 400,
    # Batches shrink for long texts only to bound a CPU step's cost (bbc_news: 6 + 12 texts);
    # a GPU reads news articles at the nominal 16 labelled + 32 unlabelled texts per step.
    "train.batch_reference_length": None,
}


def apply_device_defaults(cfg: RunConfig, device: torch.device) -> dict[str, tuple[Any, Any]]:
    """Fill in `device`'s defaults where the user did not set the key; return what changed as
    {key: (cpu_default, device_default)}. Idempotent; nothing changes on the CPU."""
    if device.type != "cuda":
        return {}
    cpu = RunConfig()
    changed: dict[str, tuple[Any, Any]] = {}
    for key, value in GPU_DEFAULTS.items():
        section, name = key.split(".")
        current = getattr(getattr(cfg, section), name)
        default = getattr(getattr(cpu, section), name)
        if key in cfg.explicit or current != default or current == value:
            continue
        setattr(getattr(cfg, section), name, value)
        changed[key] = (default, value)
    if changed:
        log.info(
            "on %s: %s (GPU defaults; set a key to keep its CPU value)",
            device,
            ", ".join(f"{k}={v} instead of {old}" for k, (old, v) in changed.items()),
        )
    return changed
