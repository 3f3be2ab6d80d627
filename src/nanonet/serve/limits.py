"""Request limits: settings, the per-request text checks, and a hard cap on body bytes."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from nanonet.errors import NanoNetError
from nanonet.serve.schemas import PredictRequest


@dataclass(frozen=True)
class ServeSettings:
    max_batch: int = 64
    max_wait_ms: float = 5.0
    max_texts: int = 256
    max_chars: int = 20_000

    def check(self) -> None:
        for name in ("max_batch", "max_texts", "max_chars"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise NanoNetError(f"{name} must be a whole number of at least 1, not {value!r}.")
        if not 0 <= self.max_wait_ms <= 1000:
            raise NanoNetError(f"max_wait_ms must be between 0 and 1000, not {self.max_wait_ms}.")

    @property
    def max_body_bytes(self) -> int:
        # Loose on purpose: it only stops absurd bodies before they are read into memory; the
        # precise limits are checked on the parsed texts. A JSON-escaped character takes at
        # most 6 bytes (\uXXXX), plus quotes and a comma per text and room for keys and spaces.
        return self.max_texts * (6 * self.max_chars + 8) + 4096


def request_texts(body: PredictRequest, settings: ServeSettings) -> list[str]:
    """The texts of a request, or an HTTPException naming the broken rule and the limit."""
    if (body.text is None) == (body.texts is None):
        raise HTTPException(
            422, "Send exactly one of 'text' (a string) or 'texts' (a list of strings)."
        )
    single = body.text is not None
    texts = [body.text] if body.text is not None else list(body.texts or [])
    if not texts:
        raise HTTPException(422, "'texts' is an empty list; send at least one text.")
    if len(texts) > settings.max_texts:
        raise HTTPException(
            413,
            f"Too many texts: {len(texts)} in one request, the limit is {settings.max_texts} "
            "(max_texts); split them over several requests.",
        )
    for i, text in enumerate(texts):
        name = "'text'" if single else f"texts[{i}]"
        if len(text) > settings.max_chars:
            raise HTTPException(
                413,
                f"{name} has {len(text):,} characters, the limit is {settings.max_chars:,} "
                "(max_chars); shorten or split it.",
            )
        # An empty text has nothing to classify: the model would still answer, meaninglessly.
        if not text.strip():
            raise HTTPException(422, f"{name} is empty; every text needs non-space characters.")
    return texts


class BodySizeLimit:
    """Pure ASGI middleware: 413 for bodies over `max_bytes`, declared or streamed."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await JSONResponse({"detail": self._message()}, status_code=413)(scope, receive, send)
            return
        received = 0

        async def counting_receive() -> Message:
            # Chunked bodies declare no length: count as they arrive. FastAPI re-raises an
            # HTTPException raised while it reads the body, and answers it as usual.
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise HTTPException(413, self._message())
            return message

        await self.app(scope, counting_receive, send)

    def _message(self) -> str:
        return (
            f"The request body is larger than {self.max_bytes:,} bytes, far over what "
            "max_texts x max_chars allows; send fewer or shorter texts."
        )
