"""Login throttling: failed logins are counted per account and per client address, in the store, and too many
within a window lock that account or address out for a while; ``musc-online accounts lockouts`` shows them and
``accounts unlock`` lifts one.

Every name tried is counted, an account or not, so a lockout does not tell a guesser which names exist (names
are cut to 64 characters, an account name's longest, and records leave once their window and lock are over); an
IPv6 client counts by its /64 network, the block one host can hop within. A lockout refuses the right password
too, so a guesser learns nothing while it lasts.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from daemon.store import Store

UNLOCK_HINT = "musc-online accounts unlock"
MAX_NAME = 64  # the longest account name (``daemon.store``): longer names are counted by their first 64 characters


@dataclass(frozen=True)
class Limits:
    """How many failures within ``window_s`` lock an account or an address out, and for how long."""

    per_account: int = 5
    per_address: int = 20
    window_s: float = 15 * 60.0
    lock_s: float = 15 * 60.0


def address_key(address: str) -> str:
    """The subject a client address counts under: the address itself, or its /64 network for IPv6."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.ip_network(f"{parsed}/64", strict=False))
    return str(parsed)


class Throttle:
    """Counts failed logins into the store and says whether a login may be tried now."""

    def __init__(self, store: Store, limits: Limits | None = None, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.limits = limits or Limits()
        self.clock = clock

    def locked(self, name: str, address: str) -> tuple[str, int] | None:
        """What is locked out (``account NAME`` or ``address A``) and for how many more seconds; None when free."""
        now = self.clock()
        for kind, subject in (("account", name[:MAX_NAME]), ("address", address_key(address))):
            record = self.store.lockout(kind, subject)
            if record is not None and record.locked_until is not None and record.locked_until > now:
                return f"{kind} {subject}", math.ceil(record.locked_until - now)
        return None

    def failed(self, name: str, address: str) -> None:
        """Count a failed login against the name tried and against the address."""
        now, limits = self.clock(), self.limits
        counted = [
            ("account", name[:MAX_NAME], limits.per_account),
            ("address", address_key(address), limits.per_address),
        ]
        for kind, subject, limit in counted:
            self.store.count_failure(kind, subject, now, limits.window_s, limit, limits.lock_s)

    def succeeded(self, account: str) -> None:
        """A right password (while not locked): the account's failures are forgotten (its address's are not)."""
        self.store.clear_failures("account", account)
