"""Students: small encoders made from a subset of the teacher's layers, or packaged ones.

A student spec is a short string:
  teacher:0,1,2      the teacher's embeddings + layers 0, 1 and 2 (its tokenizer too)
  teacher:bottom3    first three layers     teacher:top3   last three
  teacher:stride4    every 4th layer (0, 4, 8)
  minilm-l3          another packaged encoder, whole (own tokenizer)
  minilm-l6:0,2,4    a layer subset of another packaged encoder
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

from transformers import PreTrainedModel

from nanonet.errors import NanoNetError


@dataclass(frozen=True)
class StudentSpec:
    source: str  # "teacher" or a packaged encoder name
    layers: str | None  # layer selector as written, None = all layers

    def __str__(self) -> str:
        return self.source if self.layers is None else f"{self.source}:{self.layers}"


def parse_student_spec(text: str) -> StudentSpec:
    source, _, layers = text.strip().partition(":")
    if not source:
        raise NanoNetError(f"Student spec '{text}' is empty; write e.g. 'teacher:0,1,2'.")
    # Paths keep their case; the word "teacher" does not care.
    source = "teacher" if source.lower() == "teacher" else source
    return StudentSpec(source=source, layers=layers.strip() or None)


def select_layers(selector: str | None, num_layers: int) -> list[int]:
    """Turn 'bottomK', 'topK', 'strideK' or '0,1,2' into layer indices of a num_layers model."""
    if selector is None:
        return list(range(num_layers))
    sel = selector.lower()
    try:
        if sel.startswith("bottom"):
            layers = list(range(int(sel[6:])))
        elif sel.startswith("top"):
            k = int(sel[3:])
            layers = list(range(num_layers - k, num_layers))
        elif sel.startswith("stride"):
            layers = list(range(0, num_layers, int(sel[6:])))
        else:
            layers = [int(x) for x in sel.split(",") if x.strip()]
    except ValueError:
        raise NanoNetError(
            f"Cannot read layer selector '{selector}'; use e.g. '0,1,2', 'top3', 'bottom2' "
            "or 'stride4'."
        ) from None
    if (
        not layers
        or any(i < 0 or i >= num_layers for i in layers)
        or len(set(layers)) != len(layers)
    ):
        raise NanoNetError(
            f"Layer selector '{selector}' must pick distinct layers between 0 and "
            f"{num_layers - 1} (the encoder has {num_layers} layers)."
        )
    return layers


def subset_layers(model: PreTrainedModel, layers: list[int]) -> PreTrainedModel:
    """A new model of the same family made of `layers` of `model` (weights copied, in order).

    The result is an ordinary HF model with num_hidden_layers=len(layers), so it saves and
    loads with AutoModel like any checkpoint.
    """
    config = copy.deepcopy(model.config)
    config.num_hidden_layers = len(layers)
    student = type(model)(config, add_pooling_layer=False)
    state = {}
    for key, value in model.state_dict().items():
        if key.startswith("encoder.layer."):
            _, _, idx, rest = key.split(".", 3)
            if int(idx) not in layers:
                continue
            key = f"encoder.layer.{layers.index(int(idx))}.{rest}"
        state[key] = value.detach().clone()
    student.load_state_dict(state, strict=True)
    return student
