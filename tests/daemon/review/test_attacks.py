"""Attacks on the review station, each against a real uvicorn station on loopback (and, where a browser would be
the way in, through a real TLS proxy, nginx): CSRF from another origin, session fixation, path traversal in
picture URLs, slow heads and bodies, idle connections, and a login brute force. docs/security.md records them.

One station and one nginx serve the whole module; the station trusts 127.0.0.1 as its proxy, so a test stands
for clients at other addresses with X-Forwarded-For, and each test uses its own accounts and addresses.
"""

from __future__ import annotations

import http.client
import select
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial

import pytest
from typer.testing import CliRunner

from daemon.cli.musc_online import app
from daemon.config import load_config
from daemon.review.accounts import hash_password
from daemon.review.app import station_app
from daemon.review.server import MAX_CONNECTIONS, Listen, serving_in_thread
from daemon.review.throttle import Limits, Throttle
from daemon.store import Store

from ..conftest import LINE
from .test_queue import decide
from .test_web import Client, free_base, picture
from .tls import needs_nginx, nginx

pytestmark = needs_nginx
SECRET = b"TOP-SECRET-not-a-picture"
DEADLINE_S = 1.0  # the module's station: head and body deadlines
LIMITS = Limits(per_account=3, per_address=5)
runner = CliRunner()


@dataclass
class Target:
    """The module's station: its store, its plain base (loopback), nginx's https base and the CLI's environment."""

    store: Store
    plain: str
    https: str
    env: dict[str, str]

    def client(self, base: str | None = None, address: str | None = None) -> Client:
        """A client of the station through nginx; with ``address``, directly, standing for a client at that address
        (the station believes X-Forwarded-For from 127.0.0.1; nginx would replace it with the real one)."""
        client = Client(base or (self.plain if address else self.https))
        if address:
            client.extra = {"X-Forwarded-For": address}
        return client


@pytest.fixture(scope="module")
def target(tmp_path_factory) -> Iterator[Target]:
    folder = tmp_path_factory.mktemp("attacks")
    url = f"sqlite:///{folder / 'store.db'}"
    env = {"MUSC_PATHS__DATA_DIR": str(folder / "lines"), "MUSC_TRANSPORT__BASE_PORT": str(free_base(LINE))}
    env["MUSC_STORE__URL"] = url
    configs = partial(load_config, env=env)
    (folder / "secret.png").write_bytes(b"\x89PNG" + SECRET)
    store = Store.open(url)
    decide(store, "first", "unsure", 0.5, artifact=str(picture(configs(LINE).artifacts_dir / "first.png")))
    decide(store, "sneaky", "defect", 0.9, artifact=str(configs(LINE).artifacts_dir / ".." / ".." / "secret.png"))
    for name, role, password in [("olga", "operator", "s3cret"), ("vic", "viewer", "look")]:
        store.add_account(name, role, hash_password(password))
    for name in ("brute", "bo"):
        store.add_account(name, "operator", hash_password("right"))
    listen = Listen(forwarded_allow_ips="127.0.0.1", header_timeout_s=DEADLINE_S)
    throttle = Throttle(store, LIMITS)
    options = {"login_delay_s": 0.05, "throttle": throttle, "body_timeout_s": DEADLINE_S, "behind_proxy": True}
    station = station_app(store, configs, LINE, "nobody", **options)
    with serving_in_thread(station, listen) as plain, nginx(folder / "nginx", plain) as https:
        yield Target(store, plain, https, env)
    store.close()


MARK = {"line": LINE, "frame_id": "first", "verdict": "ok"}


def test_csrf_from_another_origin_is_refused_whatever_it_carries(target):
    olga = target.client()
    assert olga.login("olga", "s3cret") == 200
    evil = [
        {"Origin": "https://evil.example"},  # another site's page, even with the right token
        {"Origin": target.https.replace("https://", "http://")},  # the station's name, but not over HTTPS
        {"Origin": "null"},  # a sandboxed frame or a file
        {"Sec-Fetch-Site": "cross-site"},  # the browser says it came from another site
        {"Sec-Fetch-Site": "same-site"},  # a sibling host of the plant's domain
        {"X-CSRF-Token": ""},  # a form or a fetch that cannot read the token
        {"X-CSRF-Token": "guessed"},
    ]
    for headers in evil:
        assert olga.call("/api/mark", MARK, headers)[0] == 403, headers
    assert olga.call("/api/mark", MARK, {"Content-Type": "text/plain"})[0] == 415  # a cross-site form's body
    assert olga.call("/api/logout", {}, {"Origin": "https://evil.example"})[0] == 403  # no forced logout either
    assert target.store.corrections(LINE) == []
    assert olga.call("/api/me")[0] == 200


def test_a_planted_session_cookie_is_never_adopted_and_login_issues_a_new_one(target):
    victim = target.client()
    victim.token = "chosen-by-the-attacker"
    assert victim.call("/api/me")[0] == 401
    assert victim.login("olga", "s3cret") == 200 and victim.token != "chosen-by-the-attacker"

    attacker = target.client()
    assert attacker.login("vic", "look") == 200  # a real session of the attacker's own account...
    victim.token = attacker.token  # ...planted in the victim's browser
    assert victim.login("olga", "s3cret") == 200
    assert victim.token != attacker.token and victim.me()["name"] == "olga"
    assert attacker.call("/api/me")[0] == 401  # the planted session ended with the login: nothing to ride on


@pytest.mark.parametrize(
    "path",
    [
        f"/api/image?line={LINE}&frame=sneaky",  # a decision whose picture path leads out of the artifact folder
        f"/api/image?line={LINE}&frame=../../secret.png",
        f"/api/image?line={LINE}&frame=..%2F..%2Fsecret.png",
        f"/api/image?line={LINE}&frame=%2e%2e%2f%2e%2e%2fsecret.png",
        f"/api/image?line={LINE}&frame=%252e%252e%252fsecret.png",
        f"/api/image?line={LINE}&frame=first%00../../secret.png",
        f"/api/image?line={LINE}&frame=/etc/passwd",
        "/api/image/../../secret.png",
        "/%2e%2e/%2e%2e/secret.png",
        "/..%2f..%2fsecret.png",
        "/static/../../secret.png",
        "/review.html/../../../../etc/passwd",
    ],
)
def test_path_traversal_in_picture_urls_reaches_no_file(target, path):
    olga = target.client(target.plain)
    assert olga.login("olga", "s3cret") == 200
    connection = http.client.HTTPConnection("127.0.0.1", int(target.plain.rsplit(":", 1)[1]), timeout=10)
    connection.putrequest("GET", path, skip_host=True)  # the path as written, not normalised by a client
    connection.putheader("Host", "127.0.0.1")
    connection.putheader("Cookie", f"musc_session={olga.token}")
    connection.endheaders()
    reply = connection.getresponse()
    body = reply.read()
    connection.close()
    assert reply.status in (400, 404), (reply.status, body)
    assert reply.getheader("Content-Type") == "application/json" and SECRET not in body and b"root:" not in body


def closed_by_server(sock: socket.socket, timeout_s: float) -> bytes | None:
    """What the server sent before closing ``sock`` within ``timeout_s``; None when it stayed open."""
    received, deadline = b"", time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        readable, _, _ = select.select([sock], [], [], 0.2)
        if readable:
            chunk = sock.recv(65536)
            if not chunk:
                return received
            received += chunk
    return None


def test_a_slow_body_is_answered_408_and_closed_while_others_are_served(target):
    port = int(target.plain.rsplit(":", 1)[1])
    slow = socket.create_connection(("127.0.0.1", port))
    head = "POST /api/login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 60\r\n\r\n"
    slow.sendall(head.encode() + b'{"name": "ol')  # and nothing more
    assert target.client(target.plain).call("/api/me")[0] == 401  # another client is answered meanwhile
    answer = closed_by_server(slow, timeout_s=10 * DEADLINE_S)
    slow.close()
    assert answer is not None, "the slow body's connection stayed open"
    assert answer.startswith(b"HTTP/1.1 408") and b"did not arrive within" in answer


def test_a_trickling_head_is_cut_off_at_its_deadline(target):
    port = int(target.plain.rsplit(":", 1)[1])
    slow = socket.create_connection(("127.0.0.1", port))
    slow.sendall(b"GET /api/me HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    closed = False
    for line in range(100):  # slowloris: a header line every 0.1 s would keep it open for ever; bounded to 10 s
        try:
            slow.sendall(f"X-Slow-{line}: 1\r\n".encode())
        except OSError:
            closed = True
            break
        if closed_by_server(slow, timeout_s=0.1) is not None:
            closed = True
            break
    slow.close()
    assert closed, "a head trickling in for 10 s kept its connection"
    assert target.client(target.plain).call("/api/me")[0] == 401


def test_idle_connections_get_a_503_at_the_limit_and_are_closed_so_the_station_serves_again(target):
    port = int(target.plain.rsplit(":", 1)[1])
    idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(MAX_CONNECTIONS)]
    try:
        status, busy, _ = target.client(target.plain).call("/api/me")
        assert status == 503 and "busy" in busy["error"]  # bounded: refused at once, not queued
        assert all(closed_by_server(sock, timeout_s=10 * DEADLINE_S) is not None for sock in idle)
    finally:
        for sock in idle:
            sock.close()
    assert target.client(target.plain).call("/api/me")[0] == 401  # served again


def lockouts() -> list[list[str]]:
    listed = runner.invoke(app, ["accounts", "lockouts", "--line", str(LINE)])
    assert listed.exit_code == 0, listed.output
    return [line.split()[:2] for line in listed.output.splitlines() if line != "no lockouts"]


def unlock(subject: str) -> None:
    unlocked = runner.invoke(app, ["accounts", "unlock", subject, "--line", str(LINE)])
    assert unlocked.exit_code == 0, unlocked.output


def test_a_login_brute_force_locks_the_account_and_the_address_visibly_and_clearably(target, monkeypatch):
    for key, value in target.env.items():
        monkeypatch.setenv(key, value)
    guesses = [target.client(address=f"10.0.0.{n}").login("brute", f"guess-{n}") for n in range(LIMITS.per_account)]
    assert guesses == [401] * (LIMITS.per_account - 1) + [429]  # from several addresses: the account counts
    right = target.client(address="10.0.0.99")
    status, refused, headers = right.call("/api/login", {"name": "brute", "password": "right"})
    assert status == 429 and "account brute is locked" in refused["error"] and int(headers["Retry-After"]) > 0
    assert ["account", "brute"] in lockouts()
    unlock("brute")
    assert right.login("brute", "right") == 200

    spray = target.client(address="10.6.6.6")  # one address trying many names
    tries = [spray.login(f"name-{n}", "password") for n in range(LIMITS.per_address)]
    assert tries == [401] * (LIMITS.per_address - 1) + [429]
    assert spray.login("bo", "right") == 429  # from that address, even the right password of another account
    assert target.client(address="10.6.6.7").login("bo", "right") == 200  # other addresses are not affected
    assert ["address", "10.6.6.6"] in lockouts()
    unlock("10.6.6.6")
    assert spray.login("bo", "right") == 200
    assert ["address", "10.6.6.6"] not in lockouts()
