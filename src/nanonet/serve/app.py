"""The HTTP app: POST /predict, GET /health, GET /metadata; OpenAPI at /docs and /openapi.json.

`create_app` takes an already loaded classifier (anything with `predict_proba`, `label_names`,
`max_length`, `summary`), so tests can pass a tiny model and other backends plug in unchanged.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import asdict
from typing import Any, Protocol

import numpy as np
from fastapi import FastAPI, HTTPException, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from nanonet import __version__
from nanonet.serve.batching import BatcherStopped, MicroBatcher, PredictionFailed
from nanonet.serve.limits import BodySizeLimit, ServeSettings, request_texts
from nanonet.serve.schemas import (
    ErrorResponse,
    Health,
    Metadata,
    PredictRequest,
    PredictResponse,
)


class Classifier(Protocol):
    label_names: list[str]
    max_length: int
    summary: dict[str, Any]

    def predict_proba(self, texts: Sequence[str], batch_size: int = ...) -> np.ndarray: ...


DESCRIPTION = """\
Classify texts with a NanoNet model.

* `POST /predict` with `{"text": "..."}` or `{"texts": ["...", ...]}`: the label and the
  probability of every label for each text, in input order.
* Requests from concurrent clients are **micro-batched**: queued texts share one model call
  (see `batching` in `GET /metadata`).
* Limits (see `limits` in `GET /metadata`): too many texts or a too long text: **413**;
  an empty list, an empty or blank text, a non-string, an unknown key: **422**. Every error
  body is `{"detail": "<one sentence>"}`.
"""

_ERRORS: dict[int | str, dict[str, Any]] = {
    413: {"model": ErrorResponse, "description": "Too many texts, or a text too long."},
    422: {"model": ErrorResponse, "description": "Malformed request."},
    500: {"model": ErrorResponse, "description": "The model failed on this batch."},
    503: {"model": ErrorResponse, "description": "Starting up or shutting down."},
}


def create_app(
    classifier: Classifier,
    *,
    max_batch: int = 64,
    max_wait_ms: float = 5.0,
    max_texts: int = 256,
    max_chars: int = 20_000,
    backend: str | None = None,
    name: str | None = None,
) -> FastAPI:
    """A FastAPI app serving `classifier`; its micro-batching worker runs with the lifespan."""
    settings = ServeSettings(max_batch, max_wait_ms, max_texts, max_chars)
    settings.check()
    batcher = MicroBatcher(
        lambda texts: classifier.predict_proba(texts, batch_size=max_batch),
        max_batch,
        max_wait_ms,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await batcher.start()
        try:
            yield
        finally:
            await batcher.stop()

    app = FastAPI(
        title="NanoNet",
        version=__version__,
        summary="A small, fast text classifier over HTTP.",
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.classifier = classifier
    app.state.settings = settings
    app.state.batcher = batcher  # tests and /metadata read batcher.stats
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    # Starlette's class: FastAPI raises that one, not its subclass, for an undecodable body.
    app.add_exception_handler(StarletteHTTPException, _http_error)  # type: ignore[arg-type]
    model = {
        "name": name or str(classifier.summary.get("student", "nanonet")),
        "backend": backend or str(getattr(classifier, "backend", "torch")),
    }
    _add_routes(app, classifier, batcher, settings, model)
    return app


def _add_routes(
    app: FastAPI,
    classifier: Classifier,
    batcher: MicroBatcher,
    settings: ServeSettings,
    model: dict[str, str],
) -> None:
    labels = list(classifier.label_names)

    @app.post(
        "/predict",
        response_model=PredictResponse,
        responses=_ERRORS,
        summary="Classify one text or a batch of texts",
        tags=["predict"],
    )
    async def predict(body: PredictRequest) -> dict[str, Any]:
        texts = request_texts(body, settings)
        try:
            proba = await batcher.predict(texts)
        except PredictionFailed as exc:
            raise HTTPException(500, f"Prediction failed: {exc}") from exc
        except BatcherStopped as exc:
            raise HTTPException(503, f"Not serving: {exc}.") from exc
        return {"predictions": to_predictions(proba, labels), "model": model}

    @app.get(
        "/health",
        response_model=Health,
        responses={503: _ERRORS[503]},
        summary="Liveness: ok while the prediction worker runs",
        tags=["service"],
    )
    async def health() -> dict[str, str]:
        if not batcher.running:
            raise HTTPException(503, "The prediction worker is not running.")
        return {"status": "ok"}

    @app.get(
        "/metadata",
        response_model=Metadata,
        summary="Labels, model summary, batching settings, limits and counters",
        tags=["service"],
    )
    async def metadata() -> dict[str, Any]:
        return {
            **model,
            "device": str(getattr(classifier, "device", "cpu")),
            "labels": labels,
            "max_length": classifier.max_length,
            "summary": classifier.summary,
            "batching": {"max_batch": settings.max_batch, "max_wait_ms": settings.max_wait_ms},
            "limits": {"max_texts": settings.max_texts, "max_chars": settings.max_chars},
            "stats": asdict(batcher.stats),
        }


def to_predictions(proba: np.ndarray, labels: list[str]) -> list[dict[str, Any]]:
    best = proba.argmax(axis=1).tolist()
    return [
        {"label": labels[b], "probabilities": dict(zip(labels, row, strict=True))}
        for b, row in zip(best, proba.tolist(), strict=True)
    ]


# FastAPI's answer to a body it cannot decode at all (e.g. bytes that are not UTF-8).
_UNPARSEABLE = "There was an error parsing the body"


async def _http_error(request: Request, exc: StarletteHTTPException) -> Any:
    if exc.status_code == 400 and exc.detail == _UNPARSEABLE:
        # The same status and sentence as any other body that is not JSON.
        detail = "The request body is not valid JSON (UTF-8 text is expected)."
        return JSONResponse({"detail": detail}, status_code=422)
    return await http_exception_handler(request, exc)


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    # FastAPI's default 422 body is a bare list; clients get one readable sentence first.
    # The offending input is not echoed back: it can be megabytes.
    errors = [{k: e[k] for k in ("type", "loc", "msg") if k in e} for e in exc.errors()]
    detail = _describe(errors, request.headers.get("content-type", ""))
    return JSONResponse({"detail": detail, "errors": jsonable_encoder(errors)}, status_code=422)


def _describe(errors: list[dict[str, Any]], content_type: str) -> str:
    if not errors:
        return "Malformed request."
    first = errors[0]
    path = [p for p in first.get("loc", ()) if p != "body"]
    if first.get("type") == "json_invalid":
        return "The request body is not valid JSON."
    if not path:
        if "json" not in content_type:
            return (
                'Send a JSON object such as {"text": "..."} with the header '
                "Content-Type: application/json."
            )
        return 'The body must be a JSON object: {"text": "..."} or {"texts": ["...", ...]}.'
    where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".")
    more = f" ({len(errors) - 1} more listed in 'errors')" if len(errors) > 1 else ""
    return f"{where}: {first['msg']}{more}."
