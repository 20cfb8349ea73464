"""The plant's review station end to end: headless Chromium (driven by selenium) on the station's page served over
HTTPS by a real TLS proxy (nginx on loopback, self-signed), two real line daemons (lines 3 and 4) sharing one
store, and a correction that reaches line 4 through the store alone.

The station's config for the lines points at ports nobody listens on, as for lines on other hosts: the store is
the only link between the station and the daemons. On PostgreSQL (TEST_POSTGRES_URL) both daemons share one
database; on SQLite they share one file (WAL mode lets several processes write it in turn).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from daemon.config import load_config
from daemon.review.accounts import hash_password
from daemon.review.app import station_app
from daemon.review.queue import review_queue
from daemon.review.server import Listen, serving_in_thread
from daemon.store import CorrectionRecord, Store
from musc_online.client import ControlClient, FrameSender
from musc_online.synthetic import synthetic_product
from musc_online.transport import TransportSettings

from ..conftest import _STARTED, DaemonProcess
from .test_web import free_base
from .tls import needs_nginx, nginx

webdriver = pytest.importorskip("selenium.webdriver", reason="needs selenium (pip install selenium)")
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402 - only once selenium is there
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select  # noqa: E402

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
    "--window-size=1280,900",
    "--ignore-certificate-errors",  # the TLS proxy's certificate is the test's own, self-signed
]
LINES = (3, 4)
FRAMES = 6  # per line: with no judges yet, every decision is unsure (provisional), so all wait for review
SHARED = {"MUSC_STORE__POLL_S": "0.2", "MUSC_STORE__REPORT_EVERY_S": "1"}

pytestmark = [
    pytest.mark.slow,
    needs_nginx,
    pytest.mark.skipif(
        not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
        reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)",
    ),
]


class LineProcess(DaemonProcess):
    """``musc-daemon start --line N`` for any line (conftest's DaemonProcess serves line 3), launched in the
    background so that several lines boot at once."""

    def __init__(self, data_dir: Path, line: int, base_port: int, extra_env: dict[str, str]) -> None:
        super().__init__(data_dir, {**extra_env, "MUSC_TRANSPORT__BASE_PORT": str(base_port)})
        self.line = line
        self.base_port = base_port
        self.settings = TransportSettings.for_line(line, base_port)
        self.log = data_dir / f"daemon-{line}.log"

    def launch(self) -> LineProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "daemon.cli.musc_daemon", "start", "--line", str(self.line), "--no-log-json"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=Path(__file__).resolve().parents[3],
            )
        _STARTED.append(self.process)  # killed after the test, whatever happens
        return self

    def wait_ready(self, timeout_s: float = 120) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout_s
        with ControlClient(self.settings) as control:
            while time.monotonic() < deadline:
                assert self.process.poll() is None, f"line {self.line} exited early:\n{self.log.read_text()}"
                try:
                    if control.call("status", timeout_ms=500)["ok"]:
                        return
                except TimeoutError:
                    pass
        raise AssertionError(f"line {self.line} did not answer within {timeout_s} s:\n{self.log.read_text()}")

    def judges(self) -> int:
        return self.call("status")["result"]["scorer"]["judges"]


def wait_for(condition: Callable[[], Any], what: str, timeout_s: float = 30) -> Any:
    """Poll until the condition holds; its value."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


@pytest.fixture
def lines(store_url, tmp_path) -> Iterator[tuple[Store, dict[int, LineProcess]]]:
    """Lines 3 and 4 running against one store, each with FRAMES unsure frames (and their pictures) to review."""
    store = Store.open(store_url)  # the schema first, so the two daemons do not race to create it
    store.add_account("olga", "operator", hash_password("s3cret"))
    base = free_base(*LINES)
    env = {**SHARED, "MUSC_STORE__URL": store_url}
    daemons = {line: LineProcess(tmp_path / "lines", line, base, env).launch() for line in LINES}
    try:
        for daemon in daemons.values():
            daemon.wait_ready()
        rng = np.random.default_rng(0)
        for line, daemon in daemons.items():
            with FrameSender(daemon.settings, line=line) as sender:
                for i in range(FRAMES):
                    sender.send(synthetic_product(rng, 160), camera="cam-1", frame_id=f"l{line}-{i}", encoding="png")

        def pictured(line: int) -> bool:
            items = review_queue(store, line)
            return len(items) == FRAMES and all(i.artifact_path and Path(i.artifact_path).is_file() for i in items)

        for line in LINES:
            wait_for(lambda line=line: pictured(line), f"line {line}'s frames in the review queue", timeout_s=60)
        wait_for(lambda: {r.line for r in store.lines()} == set(LINES), "both lines' reports in the store")
        yield store, daemons
    finally:
        for daemon in daemons.values():
            if daemon.process is not None and daemon.process.poll() is None:
                daemon.stop()
        store.close()


@pytest.fixture
def station(lines, tmp_path) -> Iterator[str]:
    """The review station on a loopback port behind nginx (TLS), which it trusts for X-Forwarded-Proto/-For; its
    line configs point at ports nobody listens on (other hosts). The proxy's ``https://`` base."""
    store, daemons = lines
    env = {"MUSC_PATHS__DATA_DIR": str(daemons[3].data_dir), "MUSC_TRANSPORT__BASE_PORT": str(free_base(*LINES))}
    app = station_app(store, partial(load_config, env=env), 3, "nobody", login_delay_s=0.2, behind_proxy=True)
    with (
        serving_in_thread(app, Listen(forwarded_allow_ips="127.0.0.1")) as plain,
        nginx(tmp_path / "nginx", plain) as base,
    ):
        yield base


EVIL_PAGE = """<!doctype html><title>waiting</title><script>
const station = location.hash.slice(1);
const mark = JSON.stringify({ line: 3, frame_id: "l3-0", verdict: "ok" });
Promise.allSettled([
  fetch(station + "/api/mark", { method: "POST", mode: "no-cors", credentials: "include",
    headers: { "Content-Type": "text/plain" }, body: mark }),
  fetch(station + "/api/mark", { method: "POST", credentials: "include",
    headers: { "Content-Type": "application/json", "X-CSRF-Token": "guessed" }, body: mark }),
]).then((results) => { document.title = "sent: " + results.map((r) => r.status).join(", "); });
</script>"""


@pytest.fixture
def evil_site(tmp_path) -> Iterator[str]:
    """Another origin (plain HTTP on another loopback port) whose page tries to mark a frame on the station."""
    folder = tmp_path / "evil"
    folder.mkdir()
    (folder / "index.html").write_text(EVIL_PAGE)
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(SimpleHTTPRequestHandler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/index.html"
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture
def browser(tmp_path, monkeypatch) -> Iterator[Any]:
    """Headless Chromium through Debian's chromedriver (given by path: Selenium Manager is never asked)."""
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    monkeypatch.setenv("SE_OFFLINE", "true")  # and should it be asked anyway, it must not download
    options = Options()
    options.binary_location = str(CHROMIUM)
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}"]:
        options.add_argument(flag)
    service = Service(executable_path=str(CHROMEDRIVER), log_output=os.devnull)
    driver = webdriver.Chrome(service=service, options=options)
    driver.implicitly_wait(0)
    yield driver
    driver.quit()


def correction_of(store: Store, line: int, frame_id: str, undoes: bool = False) -> CorrectionRecord | None:
    found = [c for c in store.corrections(line) if c.frame_id == frame_id and (c.undoes is not None) == undoes]
    return found[-1] if found else None


class Page:
    """What the browser shows, read in one go inside the page (it redraws its lists every few seconds), and keys."""

    def __init__(self, driver: Any) -> None:
        self.driver = driver

    def text(self, element_id: str) -> str:
        return self.driver.execute_script("return document.getElementById(arguments[0]).textContent", element_id)

    def all(self, selector: str, key: str) -> list[str]:
        """A property (``textContent``, ``value``) or a ``data-`` attribute of each element ``selector`` finds."""
        script = "return [...document.querySelectorAll(arguments[0])].map(e => arguments[1].startsWith('data-') ? "
        script += "e.dataset[arguments[1].slice(5)] : e[arguments[1]])"
        return self.driver.execute_script(script, selector, key)

    def visible(self, element_id: str) -> bool:
        return self.driver.find_element(By.ID, element_id).is_displayed()

    def press(self, key: str) -> None:
        """A real key press through the browser's input pipeline, to whatever has the focus."""
        ActionChains(self.driver).send_keys(key).perform()


def test_an_operator_logs_in_picks_line_4_marks_a_frame_and_line_4_applies_it_then_the_undo(
    lines, station, browser, evil_site
):
    store, daemons = lines
    page = Page(browser)
    browser.get(station + "/")
    wait_for(lambda: page.visible("login"), "the login form")
    browser.find_element(By.ID, "login-name").send_keys("olga")
    browser.find_element(By.ID, "login-password").send_keys("s3cret")
    browser.find_element(By.ID, "login-submit").click()
    wait_for(lambda: page.visible("main"), "the station after the login")
    assert page.text("who") == "olga (operator)"
    assert station.startswith("https://") and browser.current_url.startswith("https://")
    cookie = browser.get_cookie("musc_session")
    assert cookie["secure"] and cookie["httpOnly"] and cookie["sameSite"] == "Strict", cookie

    wait_for(lambda: sorted(set(page.all("#queue li", "data-line"))) == ["3", "4"], "both lines' frames in the queue")
    wait_for(lambda: "4" in page.all("#line-filter option", "value"), "line 4 in the filter")
    Select(browser.find_element(By.ID, "line-filter")).select_by_value("4")
    wait_for(lambda: page.all("#queue li", "data-line") == ["4"] * FRAMES, "only line 4's frames")
    assert page.text("item-line") == "4" and page.text("label").startswith("unsure")
    judges_shown = lambda: page.all("#lines tr[data-line='4'] .judges", "textContent")  # noqa: E731
    judges = daemons[4].judges()
    assert judges_shown() == [str(judges)]

    frame_id = page.text("frame")
    page.press("o")
    correction = wait_for(lambda: correction_of(store, 4, frame_id), "the correction in the store", timeout_s=10)
    assert (correction.verdict, correction.operator) == ("ok", "olga")
    applied = wait_for(
        lambda: (c := correction_of(store, 4, frame_id)) and c.applied_at and c, "line 4 to apply it", timeout_s=5
    )
    assert "error" not in applied.audit and applied.audit["changes"].get("judge_added"), applied.audit
    wait_for(lambda: daemons[4].judges() == judges + 1, "line 4's judge count to grow", timeout_s=5)
    wait_for(lambda: "applied by line 4" in page.text("status"), "the page to say line 4 applied it", timeout_s=5)
    wait_for(lambda: judges_shown() == [str(judges + 1)], "the page to show line 4's new judge", timeout_s=10)
    assert frame_id not in page.all("#queue li", "data-frame")  # it left the queue
    assert store.corrections(3) == [] and daemons[3].judges() == 0

    page.press("u")
    undo = wait_for(lambda: correction_of(store, 4, frame_id, undoes=True), "the undo in the store", timeout_s=10)
    assert (undo.undoes, undo.operator) == (correction.id, "olga")
    wait_for(lambda: (c := correction_of(store, 4, frame_id, undoes=True)) and c.applied_at, "line 4 to undo it", 5)
    wait_for(lambda: daemons[4].judges() == judges, "line 4's judge count back", timeout_s=5)
    status = page.text
    wait_for(lambda: "undone" in status("status") and "applied by line 4" in status("status"), "the page to say so", 5)
    assert page.text("frame") == frame_id  # the frame is back in the queue, selected

    # The same logged-in browser opens another site's page, which posts a mark to the station: nothing lands.
    browser.get(f"{evil_site}#{station}")
    wait_for(lambda: browser.title.startswith("sent"), "the other site's page to send its requests", timeout_s=10)
    assert browser.title == "sent: fulfilled, rejected"  # the simple post reached the station; the JSON one not
    browser.get(station + "/")
    wait_for(lambda: page.visible("main") and page.text("who") == "olga (operator)", "the station, still logged in")
    assert correction_of(store, 3, "l3-0") is None and store.corrections(3) == []
