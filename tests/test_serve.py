"""HTTP serving: API contract, limits, micro-batching, failure handling, the real server."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import torch
import uvicorn
from fastapi.testclient import TestClient

from nanonet.errors import NanoNetError
from nanonet.models.classifier import NanoNetClassifier
from nanonet.models.encoder import Backbone, EncoderClassifier, load_hf_encoder
from nanonet.serve import create_app, load_classifier, run_server
from nanonet.serve.__main__ import main as serve_main
from nanonet.serve.batching import MicroBatcher
from nanonet.serve.server import bind_socket

LABELS = ["neg", "pos"]


@pytest.fixture(scope="module")
def tiny_clf(tiny_bert: Path) -> NanoNetClassifier:
    hf, tok = load_hf_encoder(tiny_bert)
    torch.manual_seed(0)
    model = EncoderClassifier(Backbone(hf), num_labels=2)
    return NanoNetClassifier(model, tok, LABELS, max_length=16, summary={"student": "tiny"})


class Recording:
    """Wraps a classifier: records the size of every model call; raises on a chosen text."""

    def __init__(self, clf: NanoNetClassifier, fail_on: str | None = None) -> None:
        self.clf = clf
        self.label_names = clf.label_names
        self.max_length = clf.max_length
        self.summary = clf.summary
        self.fail_on = fail_on
        self.calls: list[int] = []

    def predict_proba(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        self.calls.append(len(texts))
        if self.fail_on is not None and self.fail_on in texts:
            raise RuntimeError(f"cannot classify {self.fail_on!r}")
        return self.clf.predict_proba(texts, batch_size)


@pytest.fixture(scope="module")
def client(tiny_clf: NanoNetClassifier) -> Iterator[TestClient]:
    with TestClient(create_app(tiny_clf, max_texts=4, max_chars=50)) as c:
        yield c


def _proba(response: httpx.Response) -> np.ndarray:
    return np.array([list(p["probabilities"].values()) for p in response.json()["predictions"]])


def test_single_text(client: TestClient, tiny_clf: NanoNetClassifier) -> None:
    r = client.post("/predict", json={"text": "a good movie"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == {"name": "tiny", "backend": "torch"}
    (pred,) = body["predictions"]
    assert list(pred["probabilities"]) == LABELS
    assert sum(pred["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    expected = tiny_clf.predict_proba(["a good movie"])
    np.testing.assert_allclose(_proba(r), expected, atol=1e-5)
    assert pred["label"] == LABELS[int(expected.argmax())]


def test_batch_answers_in_input_order(client: TestClient, tiny_clf: NanoNetClassifier) -> None:
    texts = ["a good movie", "the plot was dull and boring", "superb", "not quite"]
    r = client.post("/predict", json={"texts": texts})
    assert r.status_code == 200, r.text
    expected = tiny_clf.predict_proba(texts)
    np.testing.assert_allclose(_proba(r), expected, atol=1e-5)
    assert [p["label"] for p in r.json()["predictions"]] == [LABELS[i] for i in expected.argmax(1)]


@pytest.mark.parametrize(
    ("body", "status", "fragments"),
    [
        ({"texts": []}, 422, ["empty list"]),
        ({"texts": ["good"] * 5}, 413, ["5 in one request", "limit is 4", "max_texts"]),
        ({"text": "good " * 20}, 413, ["'text' has 100 characters", "limit is 50", "max_chars"]),
        ({"texts": ["good", "x" * 51]}, 413, ["texts[1] has 51", "limit is 50"]),
        ({"texts": ["good", 3]}, 422, ["texts[1]", "valid string"]),
        ({"text": 3}, 422, ["text", "valid string"]),
        ({"texts": ["good", "  "]}, 422, ["texts[1] is empty"]),
        ({"text": ""}, 422, ["'text' is empty"]),
        ({}, 422, ["exactly one of 'text'"]),
        ({"text": "good", "texts": ["bad"]}, 422, ["exactly one of 'text'"]),
        ({"txt": "good"}, 422, ["txt", "Extra inputs"]),
        (["good"], 422, ["JSON object"]),
    ],
)
def test_bad_requests_get_4xx_with_a_clear_message(
    client: TestClient, body: Any, status: int, fragments: list[str]
) -> None:
    r = client.post("/predict", json=body)
    assert r.status_code == status, r.text
    for fragment in fragments:
        assert fragment in r.json()["detail"]


def test_body_that_is_not_json(client: TestClient) -> None:
    r = client.post("/predict", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422 and "not valid JSON" in r.json()["detail"]
    r = client.post("/predict", content=b"\xff\xfe{", headers={"content-type": "application/json"})
    assert r.status_code == 422 and "not valid JSON" in r.json()["detail"]  # not UTF-8
    r = client.post("/predict", data={"text": "good"})  # a form post, as `curl -d` sends
    assert r.status_code == 422 and "Content-Type: application/json" in r.json()["detail"]


def test_oversized_body_is_refused_before_parsing(client: TestClient) -> None:
    huge = b'{"text": "' + b"a" * 1_000_000 + b'"}'
    r = client.post("/predict", content=huge, headers={"content-type": "application/json"})
    assert r.status_code == 413 and "larger than" in r.json()["detail"]
    # Streamed without a Content-Length: counted while read.
    chunks = iter([huge[:500_000], huge[500_000:]])
    r = client.post("/predict", content=chunks, headers={"content-type": "application/json"})
    assert r.status_code == 413 and "larger than" in r.json()["detail"]


def test_health_metadata_and_openapi(client: TestClient) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    meta = client.get("/metadata").json()
    assert meta["labels"] == LABELS and meta["max_length"] == 16
    assert meta["summary"] == {"student": "tiny"} and meta["backend"] == "torch"
    assert meta["batching"] == {"max_batch": 64, "max_wait_ms": 5.0}
    assert meta["limits"] == {"max_texts": 4, "max_chars": 50}
    assert meta["stats"]["requests"] >= 0
    schema = client.get("/openapi.json").json()
    assert {"/predict", "/health", "/metadata"} <= set(schema["paths"])
    assert schema["info"]["title"] == "NanoNet"
    assert "413" in schema["paths"]["/predict"]["post"]["responses"]
    assert client.get("/docs").status_code == 200


def test_concurrent_requests_are_batched_and_each_gets_its_own_rows(
    tiny_clf: NanoNetClassifier,
) -> None:
    recording = Recording(tiny_clf)
    app = create_app(recording, max_batch=4, max_wait_ms=50)
    words = ["good", "bad", "dull", "superb", "movie", "plot", "actor", "lovely"]
    # 1 to 3 texts per request (forces carry-over into the next batch), one larger than a batch.
    requests = [
        [f"{words[i % 8]} {words[(i + j) % 8]}" for j in range(1 + i % 3)] for i in range(19)
    ]
    requests.append(["good"] * 6)

    async def run() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://test") as client,
        ):
            return await asyncio.gather(
                *(client.post("/predict", json={"texts": t}) for t in requests)
            )

    responses = asyncio.run(run())
    for texts, r in zip(requests, responses, strict=True):
        assert r.status_code == 200, r.text
        np.testing.assert_allclose(_proba(r), tiny_clf.predict_proba(texts), atol=1e-4)
    stats = app.state.batcher.stats
    assert stats.requests == 20 and stats.texts == sum(map(len, requests))
    assert stats.batches == len(recording.calls) < 20
    # Batches never exceed max_batch, except the one request that alone is larger.
    assert sorted(recording.calls)[-2] <= 4 and max(recording.calls) == 6


def test_a_lone_sequential_client_does_not_wait_for_company(
    tiny_clf: NanoNetClassifier,
) -> None:
    # With a 1 s max_wait, 5 sequential requests would take 5 s if each waited for company.
    with TestClient(create_app(tiny_clf, max_wait_ms=1000)) as client:
        start = time.perf_counter()
        for _ in range(5):
            assert client.post("/predict", json={"text": "good"}).status_code == 200
        assert time.perf_counter() - start < 2.5


def test_after_concurrent_traffic_the_batcher_waits_for_company() -> None:
    calls: list[list[str]] = []

    def predict(texts: list[str]) -> np.ndarray:
        calls.append(list(texts))
        return np.full((len(texts), 2), 0.5)

    async def run() -> None:
        batcher = MicroBatcher(predict, max_batch=8, max_wait_ms=300)
        await batcher.start()
        try:
            await asyncio.gather(batcher.predict(["a"]), batcher.predict(["b"]))
            # The last batch served two requests: the next one waits up to 300 ms for company.
            first = asyncio.ensure_future(batcher.predict(["c"]))
            await asyncio.sleep(0.05)
            await asyncio.gather(first, batcher.predict(["d"]))
        finally:
            await batcher.stop()

    asyncio.run(run())
    assert calls == [["a", "b"], ["c", "d"]]


def test_model_failure_answers_500_and_the_worker_keeps_serving(
    tiny_clf: NanoNetClassifier,
) -> None:
    app = create_app(Recording(tiny_clf, fail_on="boom"))
    with TestClient(app) as client:
        r = client.post("/predict", json={"texts": ["good", "boom"]})
        assert r.status_code == 500
        assert r.json()["detail"] == "Prediction failed: RuntimeError: cannot classify 'boom'"
        assert client.post("/predict", json={"text": "good"}).status_code == 200
        assert client.get("/health").json() == {"status": "ok"}
        assert app.state.batcher.stats.failed_batches == 1


def test_without_a_running_worker_requests_get_503(tiny_clf: NanoNetClassifier) -> None:
    client = TestClient(create_app(tiny_clf))  # no `with`: the lifespan never starts
    assert client.get("/health").status_code == 503
    r = client.post("/predict", json={"text": "good"})
    assert r.status_code == 503 and "not running" in r.json()["detail"]


def test_settings_and_loading_errors_are_user_errors(
    tiny_clf: NanoNetClassifier, tmp_path: Path
) -> None:
    with pytest.raises(NanoNetError, match="max_batch"):
        create_app(tiny_clf, max_batch=0)
    with pytest.raises(NanoNetError, match="max_wait_ms"):
        create_app(tiny_clf, max_wait_ms=-1)
    with pytest.raises(NanoNetError, match="does not exist"):
        load_classifier(tmp_path / "missing")
    with pytest.raises(NanoNetError, match="Unknown backend"):
        load_classifier(tmp_path, backend="tensorflow")
    taken = bind_socket("127.0.0.1", 0)
    assert taken.proto == socket.IPPROTO_TCP  # else asyncio leaves TCP_NODELAY off
    taken.listen()
    try:
        with pytest.raises(NanoNetError, match="Cannot listen"):
            bind_socket("127.0.0.1", taken.getsockname()[1])
    finally:
        taken.close()


def test_run_server_serves_over_loopback(
    tiny_clf: NanoNetClassifier,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # In a thread, not a subprocess: a fresh interpreter spends seconds importing torch.
    # The uvicorn.Server that run_server builds is captured so the test can stop it.
    servers: list[uvicorn.Server] = []
    original_init = uvicorn.Server.__init__

    def capture(self: uvicorn.Server, config: uvicorn.Config) -> None:
        original_init(self, config)
        servers.append(self)

    monkeypatch.setattr(uvicorn.Server, "__init__", capture)
    model_dir = tiny_clf.save_pretrained(tmp_path / "model")
    thread = threading.Thread(target=run_server, args=(str(model_dir),), kwargs={"port": 0})
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not (servers and servers[0].started) and thread.is_alive():
            assert time.monotonic() < deadline, "the server did not start within 30 s"
            time.sleep(0.05)
        line = capsys.readouterr().out.strip()
        assert line.startswith(f"nanonet: serving {model_dir} on http://127.0.0.1:"), line
        url = line.split(" on ")[1].split()[0]
        with httpx.Client(base_url=url, timeout=10) as http:
            assert http.get("/health").json() == {"status": "ok"}
            r = http.post("/predict", json={"text": "good"})
            assert r.status_code == 200 and r.json()["model"]["name"] == "model"
            # Over a kept-alive connection a request must not stall on Nagle + delayed ACK
            # (~40 ms each, seen when the listening socket lacked TCP_NODELAY); loose bound.
            seconds = []
            for _ in range(15):
                start = time.perf_counter()
                http.get("/health")
                seconds.append(time.perf_counter() - start)
            assert sorted(seconds)[7] < 0.025, seconds
    finally:
        if servers:
            servers[0].should_exit = True
        thread.join(timeout=20)
    assert not thread.is_alive()


def test_module_entry_point_reports_user_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert serve_main(["--model", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
