"""The review station's JSON API over real HTTP (urllib, a real uvicorn server on loopback): every line of the
store, pictures, marking and undoing, logins and roles, and the refusals, on SQLite and on PostgreSQL. The browser
is driven in test_station_browser.py, the attacks in test_attacks.py.
"""

from __future__ import annotations

import http.client
import json
import re
import select
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from daemon.cli.musc_online import app
from daemon.config import load_config
from daemon.review.accounts import StationRefused, hash_password
from daemon.review.app import station_app
from daemon.review.server import Listen, serving_in_thread
from daemon.review.station import ConfigLoader
from daemon.store import Store
from musc_online.transport import line_ports

from ..conftest import LINE, free_port_block
from .test_queue import decide
from .tls import needs_openssl, self_signed

OTHER = 4  # the second line of the plant
REPO = Path(__file__).resolve().parents[3]
runner = CliRunner()


def free_base(*lines: int) -> int:
    """A base port whose blocks for all ``lines`` are free now (nobody answers their control sockets)."""
    for _ in range(50):
        base = free_port_block(lines[0])
        try:
            for port in (p for line in lines[1:] for p in line_ports(line, base)):
                with socket.socket() as probe:
                    probe.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    raise OSError("no free port blocks")


@dataclass
class Plant:
    """A store two lines write into, each line's config, and the paths of its pictures."""

    store: Store
    configs: ConfigLoader
    env: dict[str, str]
    pictures: dict[str, Path]


def picture(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((32, 64, 3), 120, np.uint8)).save(path)
    return path


@pytest.fixture
def plant(store_url, tmp_path) -> Iterator[Plant]:
    """Line 3 (never reported: the station's own line) and line 4 (reported from another host), sharing a store.

    Line 3: an unsure frame with its picture, a defect without one, a defect whose picture path leads out of the
    artifact folder. Line 4: an unsure frame with its picture, a defect whose picture lies in line 3's folder.
    """
    env = {"MUSC_PATHS__DATA_DIR": str(tmp_path / "lines"), "MUSC_TRANSPORT__BASE_PORT": str(free_base(LINE, OTHER))}
    env["MUSC_STORE__URL"] = store_url
    configs = partial(load_config, env=env)
    mine, theirs = configs(LINE).artifacts_dir, configs(OTHER).artifacts_dir
    pictures = {
        "first": picture(mine / "2026-01-01" / "unsure" / "first.png"),
        "sneaky": picture(tmp_path / "secret.png"),
        "l4-a": picture(theirs / "2026-01-01" / "unsure" / "l4-a.png"),
    }
    now = time.time()
    store = Store.open(store_url)
    decide(store, "first", "unsure", 0.5, at=now - 1, artifact=str(pictures["first"]))
    decide(store, "second", "defect", 0.9, at=now - 5)
    decide(store, "sneaky", "defect", 0.95, artifact=str(mine / ".." / ".." / ".." / "secret.png"))
    decide(store, "l4-a", "unsure", 0.55, line=OTHER, at=now - 2, artifact=str(pictures["l4-a"]))
    decide(store, "l4-b", "defect", 0.7, line=OTHER, artifact=str(pictures["first"]))
    scorer = {"band": {"low": 0.4, "high": 0.6, "source": "calibrated"}, "window": 16, "window_capacity": 16}
    scorer |= {"judges": 8, "judge_parts": 2, "known_defects": 1, "corrections_moving_band": 0}  # 4 turns a part
    store.report_line(OTHER, "host-b", {"scorer": scorer, "paused": False, "uptime_s": 12.0})
    yield Plant(store, configs, env, pictures)
    store.close()


@contextmanager
def station(plant: Plant, host: str = "127.0.0.1", listen: Listen | None = None, **options: Any) -> Iterator[str]:
    """A review station (uvicorn) on a free port of ``host``, serving in a thread; its base URL on 127.0.0.1."""
    listen = listen or Listen(host)
    app = station_app(plant.store, plant.configs, LINE, "ana", host=host, behind_proxy=listen.behind_proxy, **options)
    with serving_in_thread(app, listen) as base:
        scheme, _, rest = base.partition("://")
        yield f"{scheme}://127.0.0.1:{rest.rsplit(':', 1)[1]}"


UNVERIFIED = ssl._create_unverified_context()  # the tests' self-signed certificates


def strict(constant: str) -> None:
    raise AssertionError(f"{constant} is no JSON: a browser cannot parse the answer")


class Client:
    """A browser's part over urllib: the session cookie and the CSRF token, and answers as (status, value, headers)."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.token: str | None = None
        self.csrf: str | None = None
        self.extra: dict[str, str] = {}  # headers on every call

    def call(self, path: str, body: Any = None, headers: dict[str, str] | None = None) -> tuple[int, Any, Any]:
        sent = {"Content-Type": "application/json"} if body is not None else {}
        if body is not None and self.csrf:
            sent["X-CSRF-Token"] = self.csrf
        if self.token:
            sent["Cookie"] = f"musc_session={self.token}"
        sent.update({**self.extra, **(headers or {})})
        data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
        try:
            request = urllib.request.Request(self.base + path, data, sent)
            with urllib.request.urlopen(request, timeout=30, context=UNVERIFIED) as reply:
                status, payload, answer = reply.status, reply.read(), reply.headers
        except urllib.error.HTTPError as error:
            status, payload, answer = error.code, error.read(), error.headers
        cookie = answer.get("Set-Cookie")
        if cookie and cookie.startswith("musc_session="):
            self.token = cookie.split(";")[0].removeprefix("musc_session=") or None
        value = (
            json.loads(payload, parse_constant=strict) if answer.get_content_type() == "application/json" else payload
        )
        return status, value, answer

    def me(self) -> dict[str, Any]:
        status, me, _ = self.call("/api/me")
        assert status == 200, me
        self.csrf = me["csrf"]
        return me

    def login(self, name: str, password: str) -> int:
        status, me, _ = self.call("/api/login", {"name": name, "password": password})
        if status == 200:
            self.csrf = me["csrf"]
        return status


def test_the_open_station_shows_every_line_of_the_store_and_only_their_own_pictures(plant):
    with station(plant) as base:
        client = Client(base)
        status, page, headers = client.call("/")
        assert status == 200 and b"/api/queue" in page and b'id="login"' in page
        assert (
            "frame-ancestors 'none'" in headers["Content-Security-Policy"]
            and "'sha256-" in headers["Content-Security-Policy"]
        )
        assert headers["Cache-Control"] == "no-store"

        status, lines, headers = client.call("/api/lines")
        assert status == 200 and headers["Cache-Control"] == "no-store"
        mine, theirs = lines["lines"]
        assert (mine["line"], mine["host"], mine["reported_s_ago"], mine["stale"]) == (LINE, None, None, True)
        assert mine["counts"]["received"] == 3 and mine["judges"] is None
        assert (theirs["line"], theirs["host"], theirs["stale"], theirs["paused"]) == (OTHER, "host-b", False, False)
        assert theirs["reported_s_ago"] < 30 and theirs["band"]["low"] == 0.4
        assert (theirs["judges"], theirs["judge_parts"], theirs["known_defects"], theirs["window"]) == (8, 2, 1, 16)
        assert theirs["counts"]["received"] == 2 and theirs["counts"]["unsure"] == 1

        status, queue, _ = client.call("/api/queue")
        order = [(item["line"], item["frame_id"]) for item in queue["items"]]
        assert status == 200 and queue["lines"] == [LINE, OTHER]
        assert order == [(LINE, "first"), (OTHER, "l4-a"), (OTHER, "l4-b"), (LINE, "second"), (LINE, "sneaky")]
        assert all("artifact_path" not in item for item in queue["items"])  # no server paths to the browser
        assert queue["items"][0]["picture"] == f"/api/image?line={LINE}&frame=first"
        status, queue, _ = client.call(f"/api/queue?line={OTHER}")
        assert status == 200 and [i["frame_id"] for i in queue["items"]] == ["l4-a", "l4-b"]
        assert client.call("/api/queue?line=7")[0] == 404
        assert client.call("/api/queue?line=x")[0] == 400

        for line, frame in ((LINE, "first"), (OTHER, "l4-a")):
            status, png, headers = client.call(f"/api/image?line={line}&frame={frame}")
            assert status == 200 and png.startswith(b"\x89PNG") and headers["Content-Type"] == "image/png"
        for query in (
            f"line={LINE}&frame=sneaky",  # its path leads out of the artifact folder
            f"line={LINE}&frame=second",  # no picture kept
            f"line={OTHER}&frame=l4-b",  # a picture, but in line 3's folder
            f"line={LINE}&frame=l4-a",  # line 4's frame asked as line 3's
            f"line={LINE}&frame=../secret",
            "line=7&frame=first",
        ):
            assert client.call(f"/api/image?{query}")[0] == 404, query
        assert client.call("/api/image?frame=first")[0] == 400

        unset = {"band": {"low": float("nan"), "high": float("nan"), "source": "unset"}, "judges": 0}
        plant.store.report_line(LINE, "host-a", {"scorer": unset, "paused": True})  # a line still warming up
        status, lines, _ = client.call("/api/lines")
        mine = lines["lines"][0]
        assert mine["band"] == {"low": None, "high": None, "source": "unset"} and not mine["stale"] and mine["paused"]


def test_the_open_station_marks_and_undoes_as_its_operator_and_says_when_the_line_applied_it(plant):
    store = plant.store
    with station(plant) as base:
        client = Client(base)
        status, refused, _ = client.call("/api/mark", {"line": OTHER, "frame_id": "l4-a", "verdict": "ok"})
        assert status == 401 and refused["login_required"] is False  # a session first, from /api/me
        me = client.me()
        assert (me["name"], me["role"], me["login_required"]) == ("ana", "operator", False)

        status, marked, _ = client.call("/api/mark", {"line": OTHER, "frame_id": "l4-a", "verdict": "ok"})
        assert status == 200 and marked["line"] == OTHER and marked["applied"] is False, marked
        assert "marked ok" in marked["text"]
        correction = marked["correction"]
        status, seen, _ = client.call(f"/api/correction?line={OTHER}&id={correction}")
        assert status == 200 and seen["applied"] is False and seen["operator"] == "ana"
        store.mark_applied(correction, {"changes": ["judge added"]})  # what line 4's daemon does when it finds it
        status, seen, _ = client.call(f"/api/correction?line={OTHER}&id={correction}")
        assert seen["applied"] is True and seen["audit"] == {"changes": ["judge added"]}
        assert client.call(f"/api/correction?line={LINE}&id={correction}")[0] == 404

        status, queue, _ = client.call(f"/api/queue?line={OTHER}")
        assert [i["frame_id"] for i in queue["items"]] == ["l4-b"]  # the marked frame left the queue
        assert client.call("/api/mark", {"line": OTHER, "frame_id": "l4-a", "verdict": "defect"})[0] == 409
        status, undone, _ = client.call("/api/undo", {"line": OTHER, "correction": correction})
        assert status == 200 and undone["undoes"] == correction and undone["line"] == OTHER
        assert [(c.operator, c.undoes) for c in store.corrections(OTHER)] == [("ana", None), ("ana", correction)]
        assert store.corrections(LINE) == []


MARK = {"line": LINE, "frame_id": "first", "verdict": "ok"}


@pytest.mark.parametrize(
    ("path", "body", "headers", "status"),
    [
        ("/api/mark", {**MARK, "frame_id": "nothing"}, None, 404),
        ("/api/mark", {**MARK, "verdict": "perhaps"}, None, 400),
        ("/api/mark", {**MARK, "frame_id": 7}, None, 400),
        ("/api/mark", {**MARK, "label": ["dent"]}, None, 400),
        ("/api/mark", {"frame_id": "first", "verdict": "ok"}, None, 400),  # no line
        ("/api/mark", {**MARK, "line": 7}, None, 404),
        ("/api/mark", {**MARK, "frame_id": "l4-a"}, None, 404),  # line 4's frame as line 3's
        ("/api/mark", ["first", "ok"], None, 400),
        ("/api/undo", {"line": LINE, "correction": 99}, None, 404),
        ("/api/undo", {"line": LINE, "correction": "x"}, None, 400),
        ("/api/mark", MARK, {"Content-Type": "text/plain"}, 415),
        ("/api/mark", MARK, {"Origin": "http://evil.example"}, 403),
        ("/api/mark", MARK, {"X-CSRF-Token": ""}, 403),
        ("/api/mark", MARK, {"X-CSRF-Token": "guessed"}, 403),
        ("/api/mark", MARK, {"Cookie": "musc_session=forged"}, 401),
        ("/api/mark", MARK, {"Host": "evil.example"}, 403),  # a rebinding site's page
        ("/api/mark", {**MARK, "note": "x" * 70_000}, None, 413),
        ("/api/other", {}, None, 404),
    ],
)
def test_the_api_refuses_bad_requests_and_changes_nothing(plant, path, body, headers, status):
    with station(plant) as base:
        client = Client(base)
        client.me()
        answer, value, _ = client.call(path, body, headers)
        assert answer == status, value
    assert plant.store.corrections(LINE) == [] and plant.store.corrections(OTHER) == []


def test_with_accounts_every_call_needs_a_login_and_viewers_cannot_correct(plant):
    store = plant.store
    store.add_account("olga", "operator", hash_password("s3cret"))
    store.add_account("vic", "viewer", hash_password("look"))
    with station(plant, login_delay_s=0.3) as base:
        anonymous = Client(base)
        assert anonymous.call("/")[0] == 200  # the page with its login form
        status, me, _ = anonymous.call("/api/me")
        assert status == 401 and me["login_required"] is True
        for path in ("/api/lines", "/api/queue", f"/api/image?line={LINE}&frame=first", "/api/correction?line=3&id=1"):
            assert anonymous.call(path)[0] == 401, path
        assert anonymous.call("/api/mark", MARK)[0] == 401

        started = time.monotonic()
        assert anonymous.login("olga", "wrong") == 401
        assert anonymous.login("nobody", "s3cret") == 401
        assert time.monotonic() - started >= 0.6  # each failure is answered after the fixed delay
        assert anonymous.call("/api/login", {"name": "olga"})[0] == 400
        assert anonymous.call("/api/login", {"name": "olga", "password": "s3cret"}, {"Origin": "http://x.y"})[0] == 403

        olga = Client(base)
        status, _, headers = olga.call("/api/login", {"name": "olga", "password": "s3cret"})
        cookie = {part.strip() for part in headers["Set-Cookie"].split(";")}
        assert status == 200 and {"HttpOnly", "SameSite=Strict", "Path=/"} <= cookie
        me = olga.me()
        assert (me["name"], me["role"], me["login_required"]) == ("olga", "operator", True)
        assert olga.call("/api/queue")[0] == 200
        status, marked, _ = olga.call("/api/mark", MARK)
        assert status == 200, marked

        vic = Client(base)
        assert vic.login("vic", "look") == 200
        assert vic.call("/api/queue")[0] == 200 and vic.call("/api/lines")[0] == 200
        assert vic.call(f"/api/image?line={OTHER}&frame=l4-a")[0] == 200
        assert vic.call("/api/mark", {**MARK, "frame_id": "second"})[0] == 403
        assert vic.call("/api/undo", {"line": LINE, "correction": marked["correction"]})[0] == 403
        assert olga.call("/api/mark", {**MARK, "frame_id": "second"}, {"X-CSRF-Token": vic.csrf})[0] == 403

        assert olga.call("/api/logout", {})[0] == 200
        assert olga.call("/api/me")[0] == 401
        assert olga.call("/api/queue")[0] == 401
    assert [(c.frame_id, c.operator) for c in store.corrections(LINE)] == [("first", "olga")]


def test_the_open_station_asks_for_a_login_once_an_account_exists(plant):
    with station(plant) as base:
        client = Client(base)
        assert client.me()["login_required"] is False
        plant.store.add_account("olga", "operator", hash_password("s3cret"))
        assert client.call("/api/me")[0] == 401
        assert client.call("/api/mark", MARK)[0] == 401
        assert client.login("olga", "s3cret") == 200 and client.call("/api/mark", MARK)[0] == 200
    assert [c.operator for c in plant.store.corrections(LINE)] == ["olga"]


def test_beyond_loopback_the_station_starts_only_with_accounts(plant, monkeypatch):
    with pytest.raises(StationRefused, match="musc-online accounts add NAME --role operator"):
        station_app(plant.store, plant.configs, LINE, "ana", host="0.0.0.0")
    for key, value in plant.env.items():
        monkeypatch.setenv(key, value)
    refused = runner.invoke(app, ["review", "--web", "--host", "0.0.0.0", "--line", str(LINE)])
    assert refused.exit_code == 2, refused.output
    assert "musc-online accounts add NAME --role operator" in refused.output

    plant.store.add_account("olga", "operator", hash_password("s3cret"))
    with station(plant, host="0.0.0.0") as base:
        client = Client(base)
        assert client.call("/api/queue")[0] == 401
        assert client.login("olga", "s3cret") == 200 and client.call("/api/queue")[0] == 200


def test_the_open_station_keeps_one_local_session_and_mints_none_per_request(plant):
    with station(plant) as base:
        cookies = {Client(base).call("/api/me")[2]["Set-Cookie"].split(";")[0] for _ in range(5)}
        assert len(cookies) == 1  # five anonymous browsers, one session: nothing grows per request
        plant.store.add_account("olga", "operator", hash_password("s3cret"))
        assert Client(base).call("/api/lines")[0] == 401  # and none at all once a login is needed
        assert plant.store.sessions_of("olga") == 0


def test_sessions_survive_a_station_restart_and_end_with_their_account(plant):
    plant.store.add_account("olga", "operator", hash_password("s3cret"))
    olga = None
    with station(plant) as base:
        olga = Client(base)
        assert olga.login("olga", "s3cret") == 200
    with station(plant) as base:  # a new station process on the same store
        olga.base = base
        assert olga.me()["name"] == "olga" and olga.call("/api/mark", MARK)[0] == 200
        plant.store.set_password("olga", hash_password("n3w"))  # `accounts password olga` from anywhere
        assert olga.call("/api/me")[0] == 401 and plant.store.sessions_of("olga") == 0


def test_forwarded_headers_are_believed_only_from_the_trusted_proxy(plant):
    plant.store.add_account("olga", "operator", hash_password("s3cret"))
    spoofed = {"X-Forwarded-For": "10.1.2.3", "X-Forwarded-Proto": "https"}
    with station(plant, login_delay_s=0) as base:  # no --forwarded-allow-ips: nobody is a proxy
        client = Client(base)
        client.extra = spoofed
        assert client.login("olga", "wrong") == 401
        assert plant.store.lockout("address", "127.0.0.1").failures == 1  # the real address counted
        assert plant.store.lockout("address", "10.1.2.3") is None
        status, _, headers = client.call("/api/login", {"name": "olga", "password": "s3cret"})
        assert status == 200 and "Secure" not in headers["Set-Cookie"]  # plain HTTP, whatever the header says
    with station(plant, login_delay_s=0, listen=Listen(forwarded_allow_ips="127.0.0.1")) as base:
        client = Client(base)
        client.extra = spoofed | {"Origin": "https://" + base.removeprefix("http://")}
        status, me, headers = client.call("/api/login", {"name": "olga", "password": "s3cret"})
        assert status == 200 and "Secure" in headers["Set-Cookie"]  # the proxy says the page is HTTPS
        client.csrf = me["csrf"]
        assert client.call("/api/mark", MARK)[0] == 200
        assert client.call("/api/me", headers={"Host": "review.plant"})[0] == 200  # the proxy's public name
    plant.store.remove_account("olga")
    with pytest.raises(StationRefused, match=r"127\.0\.0\.1 behind a proxy needs accounts"):
        station_app(plant.store, plant.configs, LINE, "ana", behind_proxy=True)  # a proxy serves it to others


def test_errors_answer_json_with_their_status(plant):
    with station(plant) as base:
        client = Client(base)
        client.me()
        plant.pictures["first"].unlink()  # the picture was removed after the decision
        for path, body, headers, status in [
            (f"/api/image?line={LINE}&frame=first", None, None, 404),
            ("/api/mark", b'{"line": 3, "frame', None, 400),
            ("/api/mark", None, None, 405),
            ("/api/nothing", None, None, 404),
            ("/api/mark", b"{}", {"Content-Length": "x"}, 400),
        ]:
            answer, value, headers_back = client.call(path, body, headers)
            assert answer == status and headers_back.get_content_type() == "application/json", (path, value)
            assert isinstance(value["error"], str) and headers_back["Cache-Control"] == "no-store"


def test_a_fault_inside_the_station_is_a_json_500_not_a_dropped_connection(plant):
    def broken(line: int) -> list:
        raise RuntimeError("a bug")

    with station(plant, queue=broken) as base:
        status, value, headers = Client(base).call("/api/queue")
        assert status == 500 and "RuntimeError" in value["error"] and headers["X-Frame-Options"] == "DENY"
        assert Client(base).call("/api/lines")[0] == 200  # and it goes on serving


@pytest.mark.parametrize("store_url", ["postgresql"], indirect=True)
def test_a_store_that_goes_down_is_a_503_with_json_and_the_station_recovers(plant, store_url):
    import os

    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    database = make_url(store_url).database
    admin = create_engine(os.environ["TEST_POSTGRES_URL"], isolation_level="AUTOCOMMIT")
    with station(plant) as base, admin.connect() as conn:
        client = Client(base)
        assert client.call("/api/lines")[0] == 200
        conn.execute(text(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false'))
        others = "SELECT pid FROM pg_stat_activity WHERE datname = :name AND pid <> pg_backend_pid()"
        conn.execute(text(f"SELECT pg_terminate_backend(pid) FROM ({others}) AS s"), {"name": database})
        try:
            for path in ("/api/lines", "/api/queue", "/api/me"):
                status, value, _ = client.call(path)
                assert status == 503 and "the store did not answer" in value["error"], (path, value)
        finally:
            conn.execute(text(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true'))
        assert any(client.call("/api/lines")[0] == 200 for _ in range(3))  # a dead pooled connection may go first
    admin.dispose()


@needs_openssl
def test_direct_tls_with_certfile_and_keyfile_serves_https_and_secure_cookies(plant, tmp_path, monkeypatch):
    cert, key = self_signed(tmp_path / "tls")
    plant.store.add_account("olga", "operator", hash_password("s3cret"))
    for key_name, value in plant.env.items():
        monkeypatch.setenv(key_name, value)
    half = runner.invoke(app, ["review", "--web", "--line", str(LINE), "--certfile", str(cert)])
    assert half.exit_code == 2 and "needs both --certfile and --keyfile" in half.output

    command = [sys.executable, "-m", "daemon.cli.musc_online", "review", "--web", "--line", str(LINE), "--port", "0"]
    command += ["--certfile", str(cert), "--keyfile", str(key)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO)
    try:
        assert select.select([process.stdout], [], [], 60)[0], "the station printed nothing within 60 s"
        started = process.stdout.readline()
        found = re.search(r"(https://127\.0\.0\.1:\d+)/", started)
        assert found, started
        client = Client(found.group(1))
        status, me, headers = client.call("/api/login", {"name": "olga", "password": "s3cret"})
        assert status == 200 and "Secure" in {part.strip() for part in headers["Set-Cookie"].split(";")}
        client.csrf = me["csrf"]
        assert client.call("/api/mark", MARK, {"Origin": found.group(1)})[0] == 200
        with pytest.raises((OSError, http.client.HTTPException)):  # no plain HTTP on the TLS port
            urllib.request.urlopen(found.group(1).replace("https://", "http://") + "/api/me", timeout=10)
    finally:
        process.terminate()
        process.wait(timeout=30)
        process.stdout.close()
