"""`nanonet label`: the labelling page's API, its answers file, and a real browser on it."""

from __future__ import annotations

import csv
import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from fastapi.testclient import TestClient

from conftest import pool_csv
from nanonet.cli import main
from nanonet.label.page import LabelSession, create_label_app
from test_cli import _user_error


def _pool(folder: Path) -> Path:
    return pool_csv(folder / "pool.csv", 20, seed=5)


def _rows(path: Path) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


def _session(tmp_path: Path, tiny_mpnet: Path, **kw: object) -> LabelSession:
    return LabelSession(
        pool=tmp_path / "pool.csv",
        labels=tmp_path / "labels.csv",
        classes=["pos", "neg"],
        n=5,
        encoder=str(tiny_mpnet),
        progress=False,
        **kw,  # type: ignore[arg-type]
    )


def test_answers_are_on_disk_at_once_and_a_restart_continues(
    tiny_mpnet: Path, tmp_path: Path
) -> None:
    _pool(tmp_path)
    client = TestClient(create_label_app(_session(tmp_path, tiny_mpnet)))
    state = client.get("/api/state").json()
    assert state["remaining"] == 5 and state["counts"] == {"pos": 0, "neg": 0}
    first, labels = state["current"], tmp_path / "labels.csv"
    state = client.post("/api/answer", json={"row": first["row"], "label": "pos"}).json()
    assert _rows(labels) == [["text", "label"], [first["text"], "pos"]]  # written at once
    second = state["current"]
    state = client.post("/api/answer", json={"row": second["row"], "label": None}).json()  # skip
    assert _rows(labels)[-1] == [second["text"], ""] and state["skipped"] == 1
    third = state["current"]
    client.post("/api/answer", json={"row": third["row"], "label": "neg"})
    state = client.post("/api/undo").json()  # back to the third text, gone from the file
    assert state["current"] == third and len(_rows(labels)) == 3
    # answering a text twice (a stale page) is refused
    assert client.post("/api/answer", json={"row": first["row"], "label": "neg"}).status_code == 409
    assert client.post("/api/answer", json={"row": third["row"], "label": "x"}).status_code == 422

    # A new page on the same file (after a crash or Ctrl-C): same answers, same next text.
    again = TestClient(create_label_app(_session(tmp_path, tiny_mpnet)))
    state = again.get("/api/state").json()
    assert state["current"] == third and state["counts"] == {"pos": 1, "neg": 0}
    assert state["remaining"] == 3 and state["skipped"] == 1


def test_train_now_trains_on_the_answers_and_asks_the_model_next(
    tiny_mpnet: Path, tiny_bert: Path, tmp_path: Path
) -> None:
    _pool(tmp_path)
    train_args = ["--teacher", str(tiny_mpnet), "--students", str(tiny_bert), "--steps", "3"]
    train_args += ["--threads", "1", "model.min_speedup=null", "train.selection_holdout=5"]
    session = _session(tmp_path, tiny_mpnet, train_args=train_args)
    client = TestClient(create_label_app(session))
    assert client.post("/api/train").status_code == 409  # no labels of two classes yet
    labels = iter(["pos", "neg"] * 3)
    for _ in range(4):
        row = client.get("/api/state").json()["current"]["row"]
        client.post("/api/answer", json={"row": row, "label": next(labels)})
    assert client.post("/api/train").json()["training"]["state"] == "running"
    deadline = time.monotonic() + 240
    while (state := client.get("/api/state").json())["training"]["state"] in (
        "running",
        "suggesting",
    ):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert state["training"]["state"] == "done", state["training"]
    assert state["round"] == 2 and state["remaining"] == 5
    assert (tmp_path / "labels-model-round1" / "nanonet.json").is_file()
    answered = {r[0] for r in _rows(tmp_path / "labels.csv")[1:]}
    assert state["current"]["text"] not in answered


def test_label_command_user_errors(
    tiny_mpnet: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pool = _pool(tmp_path)
    base = ["-q", "label", "--unlabeled", str(pool), "--encoder", str(tiny_mpnet)]
    code = main([*base, "--labels", str(tmp_path / "l.csv"), "--classes", "pos"])
    assert "at least two classes" in _user_error(capsys, code)
    code = main([*base, "--labels", str(tmp_path / "l.txt"), "--classes", "a,b"])
    assert "--labels must end in .csv" in _user_error(capsys, code)
    code = main([*base, "--labels", str(tmp_path / "l.csv"), "--classes", "a,a"])
    assert "names a class twice" in _user_error(capsys, code)


# ---------------------------------------------------------------------------- browser --------
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")


class PageServer:
    """The page on a free loopback port, in a thread; stopped and restarted by the test."""

    def __init__(self, folder: Path, encoder: Path) -> None:
        self.folder, self.encoder = folder, encoder
        self.running: tuple[uvicorn.Server, threading.Thread] | None = None

    def start(self) -> str:
        from nanonet.serve.server import bind_socket

        sock = bind_socket("127.0.0.1", 0)
        app = create_label_app(_session(self.folder, self.encoder))
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.05)
        self.running = (server, thread)
        return f"http://127.0.0.1:{sock.getsockname()[1]}"

    def stop(self) -> None:
        if self.running is not None:
            server, thread = self.running
            server.should_exit = True
            thread.join(timeout=10)
            self.running = None


@pytest.fixture
def page_server(tiny_mpnet: Path, tmp_path: Path) -> Iterator[PageServer]:
    _pool(tmp_path)
    server = PageServer(tmp_path, tiny_mpnet)
    yield server
    server.stop()


@pytest.mark.skipif(
    not (CHROMIUM and DRIVER), reason="needs chromium and chromium-driver (Debian packages)"
)
def test_a_real_browser_labels_with_the_keyboard_and_a_restart_loses_nothing(
    page_server: PageServer, tmp_path: Path
) -> None:
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url, folder = page_server.start(), page_server.folder
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=1280,800",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(DRIVER))
    try:
        wait = WebDriverWait(driver, 30)
        driver.get(url)
        text = lambda: driver.find_element(By.ID, "text").text  # noqa: E731
        wait.until(lambda d: text() not in ("", "loading..."))
        body = driver.find_element(By.TAG_NAME, "body")
        seen = []
        for key in ("1", "2", "s"):  # pos, neg, skip: keyboard only
            before = text()
            seen.append(before)
            body.send_keys(key)
            wait.until(lambda d, b=before: text() != b)
        body.send_keys("u")  # undo the skip: the third text comes back
        wait.until(lambda d: text() == seen[2])
        driver.find_element(By.CSS_SELECTOR, "button.cls[data-label='neg']").click()  # a click
        wait.until(lambda d: text() != seen[2])
        # NANONET_SCREENSHOT=docs/labelling-page.png refreshes the README's picture
        driver.save_screenshot(os.environ.get("NANONET_SCREENSHOT", str(tmp_path / "page.png")))
        expected = [["text", "label"], [seen[0], "pos"], [seen[1], "neg"], [seen[2], "neg"]]
        assert _rows(folder / "labels.csv") == expected

        page_server.stop()
        url = page_server.start()
        driver.get(url)
        wait.until(lambda d: "neg: 2" in d.find_element(By.ID, "progress").text)
        assert "pos: 1" in driver.find_element(By.ID, "progress").text
        assert text() not in seen  # continues with the next text, asks nothing twice
        assert _rows(folder / "labels.csv") == expected
    finally:
        driver.quit()
