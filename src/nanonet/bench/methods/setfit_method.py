"""SetFit 1.x (the real `setfit` package): contrastive fine-tuning of a sentence encoder on pairs
of labelled examples, then a logistic-regression head on its embeddings.

The body is a packaged encoder folder (opened offline by sentence-transformers; the packaged
MPNet folder carries its own mean pooling + normalisation, a plain HF folder gets mean pooling)
or a NanoNet student spec such as `teacher:bottom2`, written to a scratch folder first.
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
    try:
        from datasets import Dataset
        from setfit import SetFitModel, Trainer, TrainingArguments
    except ImportError as exc:
        raise MethodUnavailable(
            f"the setfit package is not installed ({exc}); run `pip install -e '.[bench]'`"
        ) from None
    # Their per-step logging would fill the run log; warnings still come through.
    for name in ("setfit", "sentence_transformers", "transformers"):
        logging.getLogger(name).setLevel(logging.WARNING)

    body = _body_folder(settings["body"], ctx.scratch / "body")
    # On a CPU run the harness also hides the GPUs from this process, so that the
    # sentence-transformers trainer (which picks CUDA by itself) stays on the CPU too.
    model = SetFitModel.from_pretrained(str(body), device=ctx.device)
    # Same truncation as every other method on this dataset.
    model.model_body.max_seq_length = task.max_length
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

    def predict(texts: list[str]) -> np.ndarray:
        out = model.predict(texts, batch_size=ctx.batch_size, as_numpy=True, use_labels=False)
        return np.asarray(out).astype(int)

    def save(folder: Path) -> None:
        model.save_pretrained(str(folder))

    body_params = sum(p.numel() for p in model.model_body.parameters())
    head = model.model_head
    head_params = int(head.coef_.size + head.intercept_.size) if hasattr(head, "coef_") else 0
    # SetFit fine-tunes every weight of the body, then fits the head.
    return Trained(
        predict=predict,
        save=save,
        trainable_params=body_params + head_params,
        total_params=body_params + head_params,
        details={"body": settings["body"], "pooling": _pooling(model)},
    )


def _body_folder(spec: str, scratch: Path) -> Path:
    folder = plain_encoder_dir(spec)
    if folder is not None:
        return folder
    hf, tok = build_encoder(spec)
    hf.save_pretrained(scratch, safe_serialization=True)
    tok.save_pretrained(scratch)
    return scratch


def _pooling(model: Any) -> str:
    """How the body pools token states, as sentence-transformers reports it."""
    for module in model.model_body:
        if type(module).__name__ == "Pooling":
            conf = module.get_config_dict()
            if isinstance(conf.get("pooling_mode"), str):  # sentence-transformers >= 5
                return conf["pooling_mode"]
            modes = [k[len("pooling_mode_") :] for k, v in conf.items() if v is True]
            return ",".join(m for m in modes if m) or "unknown"
    return "unknown"
