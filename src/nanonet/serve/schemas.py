"""Request and response bodies of the HTTP API; they are also what /openapi.json documents."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictStr


class PredictRequest(BaseModel):
    """Exactly one of `text` or `texts`. Every text must hold some non-space characters."""

    # Unknown keys are an error, so that a typo such as {"txt": ...} is reported, not ignored.
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"text": "a gripping, beautifully shot film"},
                {"texts": ["a gripping, beautifully shot film", "two hours I will never get back"]},
            ]
        },
    )

    text: StrictStr | None = Field(default=None, description="One text to classify.")
    texts: list[StrictStr] | None = Field(
        default=None,
        description="Several texts to classify; answered in the same order. At most `max_texts` "
        "(see GET /metadata) per request, each at most `max_chars` characters.",
    )


class Prediction(BaseModel):
    label: str = Field(description="The most probable label.")
    probabilities: dict[str, float] = Field(
        description="Probability of every label, in the model's label order; they sum to 1."
    )


class ModelInfo(BaseModel):
    name: str = Field(description="The model folder's name.")
    backend: str = Field(description="Inference backend: torch or onnx.")


class PredictResponse(BaseModel):
    predictions: list[Prediction] = Field(description="One per input text, in input order.")
    model: ModelInfo


class ErrorResponse(BaseModel):
    detail: str = Field(description="What is wrong with the request, in one sentence.")
    errors: list[dict[str, Any]] | None = Field(
        default=None, description="For 422 errors: every problem pydantic found, with its location."
    )


class Health(BaseModel):
    status: str = Field(description='"ok" while the prediction worker runs.')


class Batching(BaseModel):
    max_batch: int = Field(description="Most texts run through the model in one call.")
    max_wait_ms: float = Field(
        description="How long the oldest queued request may wait for others to share its "
        "model call; only while traffic is concurrent (the previous call served several)."
    )


class Limits(BaseModel):
    max_texts: int = Field(description="Most texts in one request (more: 413).")
    max_chars: int = Field(description="Most characters in one text (more: 413).")


class Stats(BaseModel):
    requests: int = Field(description="Requests answered by the model since start.")
    texts: int = Field(description="Texts classified since start.")
    batches: int = Field(description="Model calls since start (requests share calls).")
    failed_batches: int = Field(description="Model calls that raised.")


class Metadata(BaseModel):
    name: str
    backend: str
    device: str = Field(description="Where the model runs: cpu or cuda:N.")
    labels: list[str] = Field(description="Label names, in the order of `probabilities`.")
    max_length: int = Field(description="Texts are truncated to this many tokens.")
    summary: dict[str, Any] = Field(description="Training summary stored in nanonet.json.")
    batching: Batching
    limits: Limits
    stats: Stats
