"""The benchmarked methods, by kind. Each is `fit(task, settings, ctx) -> Trained`.

The task a method receives has no test texts: no method can look at the test set.
Imports are lazy so that a missing optional package (setfit) only affects its own runs.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from nanonet.bench.methods.base import Member, MethodUnavailable, RunContext, Trained
from nanonet.data.task import Task

Fit = Callable[[Task, dict[str, Any], RunContext], Trained]

_MODULES = {
    "nanonet": "nanonet.bench.methods.nanonet_method",
    "setfit": "nanonet.bench.methods.setfit_method",
    "setfit-distill": "nanonet.bench.methods.setfit_distill",
    "finetune": "nanonet.bench.methods.finetune",
    "probe": "nanonet.bench.methods.probe",
    "tfidf": "nanonet.bench.methods.tfidf",
}


def get_method(kind: str) -> Fit:
    return importlib.import_module(_MODULES[kind]).fit


__all__ = ["Fit", "Member", "MethodUnavailable", "RunContext", "Trained", "get_method"]
