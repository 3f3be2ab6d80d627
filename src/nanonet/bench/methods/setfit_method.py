"""SetFit 1.x (the real `setfit` package): contrastive fine-tuning of a sentence encoder on pairs
of labelled examples, then a logistic-regression head on its embeddings.

The body is a packaged encoder folder (opened offline by sentence-transformers; the packaged
MPNet folder carries its own mean pooling + normalisation, a plain HF folder gets mean pooling)
or a NanoNet student spec such as `teacher:bottom2`, written to a scratch folder first.

The helpers below are shared with `setfit_distill`, whose teacher is this method's model.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from nanonet.bench.methods.base import MethodUnavailable, RunContext, Trained
from nanonet.bench.methods.encoders import build_encoder, plain_encoder_dir
from nanonet.data.task import Task


def fit(task: Task, settings: dict[str, Any], ctx: RunContext) -> Trained:
    require_setfit()
    model = train_setfit(task, settings["body"], settings, ctx)
    return as_trained(model, ctx, {"body": settings["body"], "pooling": pooling(model)})


def require_setfit() -> None:
    """Raise MethodUnavailable when setfit (or its `datasets` dependency) is missing."""
    try:
        import datasets  # noqa: F401
        import setfit  # noqa: F401
    except ImportError as exc:
        raise MethodUnavailable(
            f"the setfit package is not installed ({exc}); run `pip install -e '.[bench]'`"
        ) from None
    # Their per-step logging would fill the run log; warnings still come through.
    for name in ("setfit", "sentence_transformers", "transformers"):
        logging.getLogger(name).setLevel(logging.WARNING)


def load_setfit_model(
    spec: str,
    scratch: Path,
    max_length: int,
    teacher: str = "all-mpnet-base-v2",
    device: str | None = None,
) -> Any:
    """An untrained SetFitModel on the body `spec`, truncating like every other method.

    On a CPU run the harness also hides the GPUs from this process, so that the
    sentence-transformers trainer (which picks CUDA by itself) stays on the CPU too."""
    from setfit import SetFitModel

    model = SetFitModel.from_pretrained(str(body_folder(spec, scratch, teacher)), device=device)
    model.model_body.max_seq_length = max_length
    return model


def train_setfit(
    task: Task, body: str, settings: dict[str, Any], ctx: RunContext, name: str = "body"
) -> Any:
    """The `setfit` row's model: SetFit training on the labelled budget, seeded by ctx.seed.

    `settings` gives batch_size, num_epochs and num_iterations; `name` is the scratch
    subfolder for a body that has to be written first.
    """
    from datasets import Dataset
    from setfit import Trainer, TrainingArguments

    model = load_setfit_model(body, ctx.scratch / name, task.max_length, device=ctx.device)
    args = TrainingArguments(
        output_dir=str(ctx.scratch / "checkpoints"),
        batch_size=settings["batch_size"],
        num_epochs=settings["num_epochs"],
        num_iterations=settings["num_iterations"],
        max_length=task.max_length,
        seed=ctx.seed,
        report_to="none",
        save_strategy="no",
        show_progress_bar=False,
    )
    train = Dataset.from_dict({"text": task.labelled_texts, "label": task.labelled_labels})
    Trainer(model=model, args=args, train_dataset=train).train()
    return model


def as_trained(model: Any, ctx: RunContext, details: dict[str, Any]) -> Trained:
    """A trained SetFitModel as the harness measures it (every weight counts as trainable:
    SetFit fine-tunes the whole body, then fits the head)."""

    def predict(texts: list[str]) -> np.ndarray:
        out = model.predict(texts, batch_size=ctx.batch_size, as_numpy=True, use_labels=False)
        return np.asarray(out).astype(int)

    def save(folder: Path) -> None:
        model.save_pretrained(str(folder))

    params = setfit_params(model)
    return Trained(
        predict=predict, save=save, trainable_params=params, total_params=params, details=details
    )


def setfit_params(model: Any) -> int:
    body_params = sum(p.numel() for p in model.model_body.parameters())
    head = model.model_head
    head_params = int(head.coef_.size + head.intercept_.size) if hasattr(head, "coef_") else 0
    return body_params + head_params


def body_folder(spec: str, scratch: Path, teacher: str = "all-mpnet-base-v2") -> Path:
    """The folder of a packaged encoder, or a student spec (`teacher:bottom1`, whose `teacher`
    is `teacher`) written to `scratch`."""
    folder = plain_encoder_dir(spec)
    if folder is not None:
        return folder
    hf, tok = build_encoder(spec, teacher)
    hf.save_pretrained(scratch, safe_serialization=True)
    tok.save_pretrained(scratch)
    return scratch


def pooling(model: Any) -> str:
    """How the body pools token states, as sentence-transformers reports it."""
    for module in model.model_body:
        if type(module).__name__ == "Pooling":
            conf = module.get_config_dict()
            if isinstance(conf.get("pooling_mode"), str):  # sentence-transformers >= 5
                return conf["pooling_mode"]
            modes = [k[len("pooling_mode_") :] for k, v in conf.items() if v is True]
            return ",".join(m for m in modes if m) or "unknown"
    return "unknown"
