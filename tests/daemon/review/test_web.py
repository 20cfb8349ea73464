"""The review page: its JSON API and refusals, and the page itself in Debian's headless Chromium."""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from daemon.review.queue import review_queue
from daemon.review.web import ReviewServer, make_server
from daemon.store import Store
from musc_online.transport import TransportSettings

from ..conftest import LINE, free_port_block
from .test_review import decide

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WEBDRIVER_KEYS = {"ArrowLeft": "\ue012", "ArrowRight": "\ue014"}  # the code points WebDriver uses for these keys


@pytest.fixture
def served(tmp_path) -> Iterator[tuple[ReviewServer, Store, str]]:
    """A review server on a free loopback port over a store with a pictured unsure frame and a defect."""
    store = Store.open(f"sqlite:///{tmp_path}/store.db")
    artifacts = tmp_path / "artifacts"
    picture = artifacts / "2026-01-01" / "unsure" / "first.png"
    picture.parent.mkdir(parents=True)
    Image.fromarray(np.full((32, 64, 3), 120, np.uint8)).save(picture)
    (tmp_path / "secret.png").write_bytes(picture.read_bytes())
    decide(store, "first", "unsure", 0.5, artifact=str(picture))
    decide(store, "second", "defect", 0.9, at=time.time() - 5)
    decide(store, "sneaky", "defect", 0.95, artifact=str(picture.parent / ".." / ".." / ".." / "secret.png"))
    settings = TransportSettings.for_line(LINE, free_port_block(LINE))  # no daemon: corrections stay pending
    server = make_server(store, settings, LINE, "ana", partial(review_queue, store, LINE), artifacts)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, store, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()
    store.close()


def request(url: str, body: Any = None, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """Status and body of a GET (or of a JSON POST when there is a body); HTTP errors are answers too."""
    data = None if body is None else json.dumps(body).encode()
    headers = headers or ({"Content-Type": "application/json"} if data is not None else {})
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data, headers=headers), timeout=30) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_api_serves_the_queue_the_pictures_and_takes_marks_and_undos(served):
    _, store, base = served
    status, body = request(f"{base}/api/queue")
    queue = json.loads(body)
    assert status == 200 and [i["frame_id"] for i in queue["items"]] == ["first", "second", "sneaky"]
    assert queue["moves"] is None and queue["line"] == LINE
    status, body = request(f"{base}/")
    assert status == 200 and b"/api/queue" in body

    status, body = request(f"{base}/api/image?frame=first")
    assert status == 200 and body.startswith(b"\x89PNG")
    for frame in ("sneaky", "second", "nothing", "../secret"):  # outside the artifact folder, none kept, unknown
        assert request(f"{base}/api/image?frame={frame}")[0] == 404

    status, body = request(f"{base}/api/mark", {"frame_id": "second", "verdict": "defect", "label": "dent"})
    result = json.loads(body)
    assert status == 200 and result["applied"] is False and "marked defect" in result["text"]
    assert request(f"{base}/api/mark", {"frame_id": "second", "verdict": "ok"})[0] == 409
    status, body = request(f"{base}/api/undo", {"correction": result["correction"]})
    assert status == 200 and json.loads(body)["undoes"] == result["correction"]
    assert [c.operator for c in store.corrections(LINE)] == ["ana", "ana"]


@pytest.mark.parametrize(
    ("path", "body", "headers", "status"),
    [
        ("/api/mark", {"frame_id": "nothing", "verdict": "ok"}, None, 404),
        ("/api/mark", {"frame_id": "first", "verdict": "perhaps"}, None, 400),
        ("/api/mark", {"verdict": "ok"}, None, 400),
        ("/api/mark", ["first", "ok"], None, 400),
        ("/api/undo", {"correction": 99}, None, 404),
        ("/api/undo", {"correction": "x"}, None, 400),
        ("/api/mark", {"frame_id": "first", "verdict": "ok"}, {"Content-Type": "text/plain"}, 415),
        (
            "/api/mark",
            {"frame_id": "first", "verdict": "ok"},
            {"Content-Type": "application/json", "Origin": "http://evil.example"},
            403,
        ),
        ("/api/other", {}, None, 404),
    ],
)
def test_api_refuses_bad_requests_and_changes_nothing(served, path, body, headers, status):
    _, store, base = served
    assert request(base + path, body, headers)[0] == status
    assert store.corrections(LINE) == []


class WebDriver:
    """Just enough of the W3C WebDriver protocol, over plain HTTP, to drive Debian's chromedriver (no selenium)."""

    def __init__(self, profile: Path) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self.driver = subprocess.Popen(
            [str(CHROMEDRIVER), f"--port={port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        self.base = f"http://127.0.0.1:{port}"
        wait_for(lambda: self._ready(), "chromedriver to start")
        options = {"binary": str(CHROMIUM), "args": [*CHROMIUM_FLAGS, f"--user-data-dir={profile}"]}
        capabilities = {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": options}}
        self.session = self.call("POST", "/session", {"capabilities": capabilities})["sessionId"]

    def _ready(self) -> bool:
        try:
            return bool(self.call("GET", "/status")["ready"])
        except OSError:
            return False

    def call(self, method: str, path: str, body: Any = None) -> Any:
        """One WebDriver command; its value."""
        data = None if body is None else json.dumps(body).encode()
        command = urllib.request.Request(self.base + path, data=data, method=method)
        command.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(command, timeout=60) as reply:
                return json.loads(reply.read())["value"]
        except urllib.error.HTTPError as error:
            raise AssertionError(f"WebDriver {method} {path}: {error.read().decode()[:2000]}") from None

    def open(self, url: str) -> None:
        self.call("POST", f"/session/{self.session}/url", {"url": url})

    def script(self, code: str) -> Any:
        return self.call("POST", f"/session/{self.session}/execute/sync", {"script": code, "args": []})

    def press(self, key: str) -> None:
        """A real key press (a character, or a WebDriver key name), sent through the browser's input pipeline."""
        key = WEBDRIVER_KEYS.get(key, key)
        keys = [{"type": "keyDown", "value": key}, {"type": "keyUp", "value": key}]
        actions = [{"type": "key", "id": "keyboard", "actions": keys}]
        self.call("POST", f"/session/{self.session}/actions", {"actions": actions})

    def quit(self) -> None:
        try:
            self.call("DELETE", f"/session/{self.session}")
        finally:
            self.driver.terminate()
            self.driver.wait(timeout=30)


def wait_for(condition: Callable[[], Any], what: str, timeout_s: float = 30) -> Any:
    """Poll until the condition holds; its value."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow
@pytest.mark.skipif(
    not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
    reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)",
)
def test_the_page_loads_the_queue_and_marks_a_frame_with_a_key_press(served, tmp_path):
    _, store, base = served
    browser = WebDriver(tmp_path / "chromium-profile")
    try:
        browser.open(base + "/")
        text = "return document.getElementById({!r}).textContent"
        wait_for(lambda: browser.script(text.format("frame")) == "first", "the queue to show")
        assert browser.script(text.format("band")).startswith("0.4000 .. 0.6000")
        assert "daemon not running" in browser.script(text.format("moves"))
        assert wait_for(lambda: browser.script("return document.getElementById('picture').naturalWidth"), "picture")
        browser.press("ArrowRight")
        assert browser.script(text.format("frame")) == "second"
        browser.press("ArrowLeft")
        browser.press("o")
        wait_for(lambda: store.corrections(LINE), "the correction in the store")
        [correction] = store.corrections(LINE)
        assert (correction.frame_id, correction.verdict, correction.operator) == ("first", "ok", "ana")
        wait_for(lambda: "marked ok" in browser.script(text.format("status")), "the status line")
        assert browser.script(text.format("frame")) == "second"  # the marked frame left the queue
        browser.press("u")
        wait_for(lambda: "undone" in browser.script(text.format("status")), "the undo")
        assert store.corrections(LINE)[0].undone_at is not None
    finally:
        browser.quit()
