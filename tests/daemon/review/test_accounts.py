"""Review station accounts: Argon2 hashing, sessions and their expiry, CSRF tokens, logins against the store,
and the ``musc-online accounts`` commands (on SQLite and on PostgreSQL)."""

from __future__ import annotations

import time

import pytest
from typer.testing import CliRunner

from daemon.cli.musc_online import app
from daemon.review.accounts import (
    Gate,
    Sessions,
    StationRefused,
    cookie_token,
    hash_password,
    is_loopback,
    session_cookie,
    verify_password,
)
from daemon.store import Store

from ..conftest import LINE

runner = CliRunner()


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_passwords_are_hashed_with_argon2id_and_only_the_right_one_verifies():
    hashed = hash_password("correct horse")
    assert hashed.startswith("$argon2id$") and "correct horse" not in hashed
    assert hash_password("correct horse") != hashed  # salted
    assert verify_password(hashed, "correct horse")
    assert not verify_password(hashed, "correct horse ")
    assert not verify_password(hashed, "")
    assert not verify_password("not a hash", "correct horse")
    with pytest.raises(ValueError, match="empty"):
        hash_password("")


def test_sessions_have_random_tokens_and_expire_when_idle():
    clock = Clock()
    sessions = Sessions(idle_s=60, clock=clock)
    first, second = sessions.create("ana", "operator"), sessions.create("ana", "operator")
    assert len({first.token, second.token, first.csrf, second.csrf}) == 4 and len(first.token) >= 40
    assert sessions.get(first.token) is first and sessions.get("forged") is None and sessions.get(None) is None
    clock.now += 50
    assert sessions.get(first.token) is first  # used: its idle time starts again
    clock.now += 50
    assert sessions.get(first.token) is first and sessions.get(second.token) is None  # second idled 100 s
    clock.now += 61
    assert sessions.get(first.token) is None and len(sessions) == 0
    third = sessions.create("bo", "viewer")
    sessions.end(third.token)
    assert sessions.get(third.token) is None


def test_a_write_needs_the_sessions_own_csrf_token():
    sessions = Sessions()
    mine, other = sessions.create("ana", "operator"), sessions.create("bo", "operator")
    assert mine.csrf_matches(mine.csrf)
    assert not mine.csrf_matches(None)
    assert not mine.csrf_matches("")
    assert not mine.csrf_matches(other.csrf)
    assert not mine.csrf_matches(mine.csrf[:-1])
    assert not mine.csrf_matches(mine.token)


def test_the_session_cookie_is_http_only_same_site_strict_and_read_back():
    cookie = session_cookie("abc")
    assert cookie.startswith("musc_session=abc;")
    assert {"HttpOnly", "SameSite=Strict", "Path=/"} <= {part.strip() for part in cookie.split(";")}
    assert "Max-Age=0" in session_cookie("", expire=True)
    assert cookie_token("theme=dark; musc_session=abc") == "abc"
    assert cookie_token(None) is None and cookie_token("theme=dark") is None


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("127.0.0.2", True), ("::1", True), ("localhost", True), ("0.0.0.0", False), ("", False)],
)
def test_only_loopback_addresses_count_as_local(host, loopback):
    assert is_loopback(host) is loopback
    assert not is_loopback("station.example")


def test_logins_against_the_store_and_sessions_that_end_with_their_account(store_url):
    with Store.open(store_url) as store:
        gate = Gate(store, "127.0.0.1", "local", login_delay_s=0.2)
        assert not gate.login_required()
        open_session = gate.open_session()
        assert gate.session(open_session.token) is open_session and open_session.may_correct

        store.add_account("ana", "operator", hash_password("s3cret"))
        store.add_account("vic", "viewer", hash_password("look"))
        assert gate.login_required()
        assert gate.session(open_session.token) is None  # an account exists now: the open session is void

        started = time.monotonic()
        assert gate.login("ana", "wrong") is None
        assert gate.login("nobody", "s3cret") is None
        assert gate.login("", "") is None
        assert time.monotonic() - started >= 3 * 0.2  # every failure waits the fixed delay
        ana = gate.login("ana", "s3cret")
        assert ana is not None and ana.name == "ana" and ana.may_correct
        vic = gate.login("vic", "look")
        assert vic is not None and not vic.may_correct
        assert gate.session(ana.token) is ana

        store.set_password("ana", hash_password("new one"))
        assert gate.session(ana.token) is None  # a changed password ends the account's sessions
        assert gate.login("ana", "s3cret") is None
        assert gate.login("ana", "new one") is not None
        store.remove_account("vic")
        assert gate.session(vic.token) is None  # so does removing the account


def test_the_station_refuses_an_address_beyond_loopback_without_accounts(store_url):
    with Store.open(store_url) as store:
        with pytest.raises(StationRefused, match="musc-online accounts add NAME --role operator"):
            Gate(store, "0.0.0.0", "local")
        store.add_account("ana", "operator", hash_password("s3cret"))
        assert Gate(store, "0.0.0.0", "local").login_required()


@pytest.fixture
def line_store(store_url, tmp_path, monkeypatch) -> str:
    """The accounts commands' store: the ``store_url`` fixture's, through the line's config."""
    monkeypatch.setenv("MUSC_STORE__URL", store_url)
    monkeypatch.setenv("MUSC_PATHS__DATA_DIR", str(tmp_path / "lines"))
    return store_url


def accounts(*args: str, stdin: str | None = None):
    return runner.invoke(app, ["accounts", *args, "--line", str(LINE)], input=stdin)


def test_the_accounts_commands_add_list_change_and_remove(line_store):
    added = accounts("add", "ana", "--role", "operator", "--password-stdin", stdin="s3cret\n")
    assert added.exit_code == 0, added.output
    prompted = accounts("add", "vic", "--role", "viewer", stdin="look\nlook\n")  # typed twice, hidden
    assert prompted.exit_code == 0, prompted.output
    assert "look" not in prompted.output

    listed = accounts("list")
    assert listed.exit_code == 0
    rows = [line.split()[:2] for line in listed.output.splitlines()]
    assert rows == [["ana", "operator"], ["vic", "viewer"]]
    with Store.open(line_store) as store:
        assert verify_password(store.account("ana").password_hash, "s3cret")

    changed = accounts("password", "ana", "--password-stdin", stdin="n3w\n")
    assert changed.exit_code == 0, changed.output
    with Store.open(line_store) as store:
        assert verify_password(store.account("ana").password_hash, "n3w")

    removed = accounts("remove", "vic")
    assert removed.exit_code == 0, removed.output
    with Store.open(line_store) as store:
        assert [a.name for a in store.accounts()] == ["ana"]


@pytest.mark.parametrize(
    ("args", "stdin", "says"),
    [
        (["add", "ana", "--role", "operator", "--password-stdin"], "other\n", "exists"),
        (["add", "bo", "--role", "operator", "--password-stdin"], "\n", "the password is empty"),
        (["add", "bo", "--role", "admin", "--password-stdin"], "x\n", "--role must be one of viewer, operator"),
        (["remove", "nobody"], None, "no account 'nobody'"),
        (["password", "nobody", "--password-stdin"], "x\n", "no account 'nobody'"),
        (["password", "ana", "--password-stdin"], "\n", "the password is empty"),
    ],
)
def test_the_accounts_commands_refuse_clearly_and_change_nothing(line_store, args, stdin, says):
    assert accounts("add", "ana", "--role", "operator", "--password-stdin", stdin="s3cret\n").exit_code == 0
    refused = accounts(*args, stdin=stdin)
    assert refused.exit_code == 2, refused.output
    assert says in refused.output
    with Store.open(line_store) as store:
        assert [a.name for a in store.accounts()] == ["ana"]
        assert verify_password(store.account("ana").password_hash, "s3cret")
