"""Where a run's tensors live: `--device auto|cpu|cuda[:N]` turned into a `torch.device`.

Every command (train, eval, predict, serve, bench) resolves its device here, so the rules are
the same everywhere: `auto` is CUDA when PyTorch sees a GPU and the CPU otherwise; `cuda`
without a GPU is an error, never a silent fallback. On CUDA the forward passes run under bf16
autocast (weights, optimiser state and gradients stay fp32); on the CPU everything stays fp32,
so CPU results are what they were before devices existed.
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator
from typing import Any

import torch

from nanonet.errors import NanoNetError

DEVICE_CHOICES = "auto, cpu, cuda or cuda:N"
AUTOCAST_DTYPE = torch.bfloat16  # same exponent range as fp32: no loss scaling needed
_CPU = torch.device("cpu")


def cuda_available() -> bool:
    """A seam for the tests (and the one place that asks)."""
    return torch.cuda.is_available()


def resolve_device(
    spec: str | torch.device | None = "auto", what: str = "--device"
) -> torch.device:
    """`spec` as a torch.device, or one NanoNetError sentence naming `what` (the setting)."""
    if isinstance(spec, torch.device):
        spec = str(spec)
    text = (spec or "auto").strip().lower()
    if text == "auto":
        return torch.device("cuda", torch.cuda.current_device()) if cuda_available() else _CPU
    if text == "cpu":
        return _CPU
    kind, _, index = text.partition(":")
    if kind != "cuda" or (index and not index.isdigit()):
        raise NanoNetError(f"{what} must be {DEVICE_CHOICES}, not '{spec}'.")
    if not cuda_available():
        raise NanoNetError(
            f"{what} is '{spec}' but this PyTorch ({torch.__version__}) sees no CUDA GPU; "
            "use cpu or auto, or install a CUDA build of PyTorch."
        )
    n = torch.cuda.device_count()
    if index and int(index) >= n:
        raise NanoNetError(
            f"{what} is '{spec}' but only {n} CUDA GPU(s) are visible "
            f"({', '.join(f'cuda:{i}' for i in range(n))}); choose one of those."
        )
    return torch.device("cuda", int(index) if index else torch.cuda.current_device())


def describe(device: torch.device) -> str:
    """'cpu' or 'cuda:0 (NVIDIA H100 80GB HBM3)': for logs, reports and /metadata."""
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return str(device)


def device_of(model: Any) -> torch.device:
    """Where `model` wants its inputs: its own `device` attribute (the packed and ONNX
    backends), else the device of its first parameter, else the CPU."""
    own = getattr(model, "device", None)
    if isinstance(own, torch.device):
        return own
    params = getattr(model, "parameters", None)
    if callable(params):
        first = next(iter(params()), None)
        if first is not None:
            return first.device
    return _CPU


def autocast(device: torch.device, enabled: bool = True) -> contextlib.AbstractContextManager:
    """bf16 autocast for forward passes on CUDA; nothing at all on the CPU (fp32 as before)."""
    if device.type != "cuda" or not enabled:
        return contextlib.nullcontext()
    return torch.autocast("cuda", dtype=AUTOCAST_DTYPE)


@contextlib.contextmanager
def full_precision(device: torch.device) -> Iterator[None]:
    """Autocast off, for the backward pass and the optimiser step inside an autocast region
    (PyTorch's advice: autocast should wrap the forward pass and the loss only)."""
    if device.type != "cuda":
        yield
        return
    with torch.autocast("cuda", enabled=False):
        yield


def add_device_argument(parser: argparse.ArgumentParser, default: str | None = "auto") -> None:
    """`--device`, the same words on every command."""
    parser.add_argument(
        "--device",
        default=default,
        help="auto (CUDA when PyTorch sees a GPU, else the CPU), cpu, cuda or cuda:N "
        f"(default: {default or 'the config file, else auto'})",
    )
