"""``musc-online accounts``: the review station's accounts, kept in the store so every station of the plant knows them.

Operators mark and undo on the station, viewers only look. Passwords are prompted twice with hidden input (or
read from standard input with ``--password-stdin`` for scripts) and only their Argon2id hash is stored.
Every refusal (a name taken, an account missing, an empty password) exits 2 with one line saying why.
Failed logins lock an account or a client address out for a while: ``lockouts`` lists them, ``unlock`` lifts one.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from daemon.cli.common import ConfigFile, Line, load_or_exit
from daemon.review.accounts import hash_password
from daemon.review.throttle import address_key
from daemon.store import ROLES, Store, StoreError

accounts_app = typer.Typer(
    help="Review station accounts (in the store): operators mark frames, viewers only look.",
    no_args_is_help=True,
    add_completion=False,
)

Name = Annotated[str, typer.Argument(help="The account's name (what the station records as the operator).")]
PasswordStdin = Annotated[
    bool, typer.Option("--password-stdin", help="Read the password from the first line of standard input.")
]


def _fail(message: str) -> typer.Exit:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return typer.Exit(2)


@contextmanager
def _store(line: int, config_file: Path | None) -> Iterator[Store]:
    """The store of the line's config; a refused operation exits 2 with its reason, having changed nothing."""
    config = load_or_exit(line, config_file)
    try:
        with Store.open(config.store_url) as store:
            yield store
    except (StoreError, ValueError) as error:
        raise _fail(str(error)) from None


def _password(from_stdin: bool) -> str:
    """The new password: typed twice, hidden, or the first line of standard input; refused when empty."""
    if from_stdin:
        password = typer.get_text_stream("stdin").readline().rstrip("\r\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    if not password:
        raise _fail("the password is empty")
    return password


@accounts_app.command("add")
def add_command(
    name: Name,
    role: Annotated[str, typer.Option(help=f"What the account may do: {' or '.join(ROLES)}.")],
    line: Line = 3,
    password_stdin: PasswordStdin = False,
    config_file: ConfigFile = None,
) -> None:
    """Create an account (the password is asked twice, or read with --password-stdin)."""
    if role not in ROLES:
        raise _fail(f"--role must be one of {', '.join(ROLES)}, not {role!r}")
    with _store(line, config_file) as store:
        if store.account(name) is not None:
            raise _fail(f"account {name!r} exists: `accounts password {name}` changes its password")
        store.add_account(name, role, hash_password(_password(password_stdin)))
    typer.echo(f"account {name} ({role}) added")


@accounts_app.command("list")
def list_command(line: Line = 3, config_file: ConfigFile = None) -> None:
    """List the accounts: name, role and when each was created."""
    with _store(line, config_file) as store:
        accounts = store.accounts()
    if not accounts:
        typer.echo("no accounts: the review station runs without login on loopback only")
    for account in accounts:
        created = time.strftime("%Y-%m-%d %H:%M", time.localtime(account.created_at))
        typer.echo(f"{account.name:<24} {account.role:<9} created {created}")


@accounts_app.command("remove")
def remove_command(name: Name, line: Line = 3, config_file: ConfigFile = None) -> None:
    """Delete an account; its sessions end at once, its corrections keep its name."""
    with _store(line, config_file) as store:
        store.remove_account(name)
    typer.echo(f"account {name} removed")


@accounts_app.command("password")
def password_command(
    name: Name, line: Line = 3, password_stdin: PasswordStdin = False, config_file: ConfigFile = None
) -> None:
    """Set an account's password; its open sessions end at once."""
    with _store(line, config_file) as store:
        if store.account(name) is None:
            raise _fail(f"no account {name!r} (`accounts list` shows them)")
        store.set_password(name, hash_password(_password(password_stdin)))
    typer.echo(f"password of {name} changed")


@accounts_app.command("lockouts")
def lockouts_command(line: Line = 3, config_file: ConfigFile = None) -> None:
    """List the accounts and client addresses locked out by failed logins, and for how long yet."""
    with _store(line, config_file) as store:
        now = time.time()
        locked = store.lockouts(now)
    if not locked:
        typer.echo("no lockouts")
    for record in locked:
        left = round((record.locked_until or now) - now)
        last = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record.last_at))
        typer.echo(f"{record.kind:<8} {record.subject:<40} {record.failures} failures, last {last}, {left} s left")


@accounts_app.command("unlock")
def unlock_command(
    subject: Annotated[str, typer.Argument(help="An account's name or a client address, as `lockouts` shows it.")],
    line: Line = 3,
    config_file: ConfigFile = None,
) -> None:
    """Lift a lockout (and forget the failed logins) of an account or a client address."""
    with _store(line, config_file) as store:
        cleared = [
            kind
            for kind, key in (("account", subject), ("address", address_key(subject)))
            if store.clear_failures(kind, key)
        ]
    if not cleared:
        raise _fail(f"nothing to unlock for {subject!r} (`accounts lockouts` lists what is locked)")
    typer.echo(f"unlocked {subject} ({', '.join(cleared)})")
