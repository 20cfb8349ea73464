"""Review station accounts: Argon2 hashing, sessions in the store and their expiry, CSRF tokens, logins against
the store, throttling and lockouts, and the ``musc-online accounts`` commands (on SQLite and on PostgreSQL)."""

from __future__ import annotations

import hashlib

import pytest
from typer.testing import CliRunner

from daemon.cli.musc_online import app
from daemon.review.accounts import Gate, StationRefused, hash_password, verify_password
from daemon.review.sessions import Session, SessionBook, session_cookie
from daemon.review.throttle import Limits, Throttle, address_key
from daemon.store import Store

from ..conftest import LINE

runner = CliRunner()


class Clock:
    """A wall clock the test moves by hand."""

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


def test_sessions_live_in_the_store_hashed_have_random_tokens_and_expire_idle_and_absolute(store_url):
    clock = Clock()
    with Store.open(store_url) as store:
        store.add_account("ana", "operator", hash_password("s3cret"))
        store.add_account("bo", "viewer", hash_password("look"))
        sessions = SessionBook(store, idle_s=600, absolute_s=1000, clock=clock)
        first, second = sessions.create("ana", "operator"), sessions.create("ana", "operator")
        assert len({first.token, second.token, first.csrf, second.csrf}) == 4 and len(first.token) >= 40
        assert sessions.get(first.token) == first and sessions.get("forged") is None and sessions.get(None) is None
        assert store.live_session(first.token, 0, 0) is None  # the store knows the token's hash only
        assert store.live_session(hashlib.sha256(first.token.encode()).hexdigest(), 0, 0) is not None

        again = SessionBook(store, idle_s=600, absolute_s=1000, clock=clock)  # the station restarted
        assert again.get(first.token) == first
        clock.now += 500
        assert sessions.get(first.token) == first  # used: its idle time starts again
        clock.now += 500
        assert sessions.get(first.token) == first and sessions.get(second.token) is None  # second idled 1000 s
        clock.now += 1
        assert sessions.get(first.token) is None  # used a minute ago, but made over 1000 s ago
        third = sessions.create("bo", "viewer")
        assert store.sessions_of("ana") == 0  # the expired ones went when the new one came
        sessions.end(third.token)
        assert sessions.get(third.token) is None


def test_a_write_needs_the_sessions_own_csrf_token():
    mine, other = Session("t1" * 20, "ana", "operator"), Session("t2" * 20, "bo", "operator")
    assert mine.csrf_matches(mine.csrf)
    assert not mine.csrf_matches(None)
    assert not mine.csrf_matches("")
    assert not mine.csrf_matches(other.csrf)
    assert not mine.csrf_matches(mine.csrf[:-1])
    assert not mine.csrf_matches(mine.token)


def test_the_session_cookie_is_http_only_same_site_strict_and_secure_over_https():
    cookie = session_cookie("abc", secure=False)
    assert cookie.startswith("musc_session=abc;")
    parts = {part.strip() for part in cookie.split(";")}
    assert {"HttpOnly", "SameSite=Strict", "Path=/"} <= parts and "Secure" not in parts
    assert "Secure" in {part.strip() for part in session_cookie("abc", secure=True).split(";")}
    assert "Max-Age=0" in session_cookie("", secure=False, expire=True)


def test_logins_against_the_store_and_sessions_that_end_with_their_account(store_url):
    with Store.open(store_url) as store:
        gate = Gate(store, "127.0.0.1", "local")
        assert not gate.login_required()
        open_session = gate.open_session()
        assert open_session is gate.open_session()  # one local session, never one per request
        assert gate.session(open_session.token) is open_session and open_session.may_correct

        store.add_account("ana", "operator", hash_password("s3cret"))
        store.add_account("vic", "viewer", hash_password("look"))
        assert gate.login_required() and gate.open_session() is None
        assert gate.session(open_session.token) is None  # an account exists now: the open session is void

        for name, password in (("ana", "wrong"), ("nobody", "s3cret"), ("", "")):
            assert gate.login(name, password, "127.0.0.1").session is None
        ana = gate.login("ana", "s3cret", "127.0.0.1").session
        assert ana is not None and ana.name == "ana" and ana.may_correct
        vic = gate.login("vic", "look", "127.0.0.1").session
        assert vic is not None and not vic.may_correct
        assert gate.session(ana.token) == ana
        store.add_account("vic2", "viewer", hash_password("look"))

        store.set_password("ana", hash_password("new one"))
        assert gate.session(ana.token) is None  # a changed password ends the account's sessions
        assert gate.login("ana", "s3cret", "127.0.0.1").session is None
        assert gate.login("ana", "new one", "127.0.0.1").session is not None
        store.remove_account("vic")
        assert gate.session(vic.token) is None and store.sessions_of("vic") == 0  # so does removing the account


def test_failed_logins_lock_out_the_account_and_the_address_until_the_lock_ends_or_is_lifted(store_url):
    clock = Clock()
    limits = Limits(per_account=3, per_address=5, window_s=60, lock_s=300)
    with Store.open(store_url) as store:
        store.add_account("ana", "operator", hash_password("s3cret"))
        store.add_account("bo", "operator", hash_password("b0"))
        gate = Gate(store, "127.0.0.1", "local", throttle=Throttle(store, limits, clock))
        for _ in range(2):
            assert gate.login("ana", "wrong", "10.0.0.1") == gate.login("ana", "wrong", "10.0.0.2") is not None
        refused = gate.login("ana", "s3cret", "10.0.0.3")  # the right password, but the account is locked
        assert refused.session is None and refused.locked == ("account ana", 300)
        assert gate.login("bo", "b0", "10.0.0.1").session is not None  # another account from those addresses

        for _ in range(3):  # 2 + 3 failures from 10.0.0.1: its fifth locks the address, for every account
            gate.login(f"nobody-{_}", "x", "10.0.0.1")
        assert gate.login("bo", "b0", "10.0.0.1").locked == ("address 10.0.0.1", 300)
        assert gate.login("bo", "b0", "10.0.0.9").session is not None
        assert {(r.kind, r.subject) for r in store.lockouts(clock.now)} == {("account", "ana"), ("address", "10.0.0.1")}
        assert store.lockout("account", "nobody-0").failures == 1  # unknown names count too: no oracle of names

        clock.now += 301
        assert store.lockouts(clock.now) == []
        assert gate.login("ana", "s3cret", "10.0.0.1").session is not None  # the locks ended
        gate.login("ana", "wrong", "10.0.0.4")
        assert store.lockout("account", "ana").failures == 1  # a right password forgot the earlier failures
        for _ in range(3):
            gate.login("ana", "wrong", "10.0.0.4")
        assert gate.login("ana", "s3cret", "10.0.0.5").locked is not None
        assert store.clear_failures("account", "ana")  # what `accounts unlock ana` does
        assert gate.login("ana", "s3cret", "10.0.0.5").session is not None


def test_ipv6_clients_count_by_their_64_network():
    assert address_key("2001:db8:1:2:aaaa::1") == address_key("2001:db8:1:2:bbbb::2") == "2001:db8:1:2::/64"
    assert address_key("::ffff:10.0.0.1") == "10.0.0.1" and address_key("10.0.0.1") == "10.0.0.1"


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


def test_the_accounts_commands_list_and_lift_lockouts(line_store):
    assert accounts("add", "ana", "--role", "operator", "--password-stdin", stdin="s3cret\n").exit_code == 0
    assert accounts("lockouts").output.strip() == "no lockouts"
    with Store.open(line_store) as store:
        Throttle(store, Limits(per_account=1, per_address=1)).failed("ana", "10.0.0.7")
    listed = accounts("lockouts")
    assert listed.exit_code == 0
    assert [line.split()[:3] for line in listed.output.splitlines()] == [
        ["account", "ana", "1"],
        ["address", "10.0.0.7", "1"],
    ]
    assert accounts("unlock", "ana").exit_code == 0
    assert [line.split()[1] for line in accounts("lockouts").output.splitlines()] == ["10.0.0.7"]
    unlocked = accounts("unlock", "10.0.0.7")
    assert unlocked.exit_code == 0 and "unlocked 10.0.0.7 (address)" in unlocked.output
    assert accounts("lockouts").output.strip() == "no lockouts"
    refused = accounts("unlock", "nobody")
    assert refused.exit_code == 2 and "nothing to unlock for 'nobody'" in refused.output
