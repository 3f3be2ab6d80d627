"""A generated model card (README.md) for a saved NanoNet model folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nanonet.models.model_folder import CARD_FILE, HEAD_FILE, RUN_CONFIG_FILE


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def write_model_card(path: Path, meta: dict[str, Any]) -> None:
    s = meta.get("summary", {})
    labels = ", ".join(f"`{n}`" for n in meta["label_names"])
    rows = "\n".join(f"| {k} | {_fmt(v)} |" for k, v in s.items() if not isinstance(v, dict | list))
    text = f"""---
library_name: nanonet
pipeline_tag: text-classification
tags: [nanonet, knowledge-distillation, few-shot, {s.get("peft", "bitfit")}]
---

# NanoNet text classifier

A small student encoder distilled online from a contrastively bias-tuned teacher with NanoNet
(few labels + unlabelled text). Labels: {labels}. Input is truncated to
{meta["max_length"]} tokens; the sentence vector is the mean of the token states.

## Use

```python
from nanonet import NanoNetClassifier
model = NanoNetClassifier.from_pretrained("{path.name}")
model.predict(["some text"])        # label names
model.predict_proba(["some text"])  # probabilities, columns in label order
```

or `nanonet predict --model {path.name} --input texts.csv --output preds.csv`.
The encoder alone is a standard Hugging Face checkpoint (`AutoModel.from_pretrained`);
the head is `{HEAD_FILE}` (a linear layer over the mean-pooled states).

## Training summary

| key | value |
|---|---|
{rows}

The full run configuration is in `{RUN_CONFIG_FILE}`; `nanonet train --config {RUN_CONFIG_FILE}`
reproduces this model. Reported test scores, if any, come from a test split that was never
used for training or for choosing this student.
"""
    (path / CARD_FILE).write_text(text, encoding="utf-8")
