"""Tenants' bearer tokens (pure): only their SHA-256 is configured, and a presented token
is compared against every configured digest in constant time.

REEL_TENANT_TOKENS holds `tenant:sha256-hex` pairs, comma-separated; a tenant may have
several (rotation: add the new one, move clients over, remove the old one). A token is 32
random bytes (`reel token new`), so a plain digest is enough: there is nothing to guess
that a slow hash would protect. Failed attempts are limited per client (FailureLimiter).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections import OrderedDict, deque
from dataclasses import dataclass, field

from reel import tenancy

DEV_TOKEN = "reel-dev-token"  # the embedded stack's default tenant; set your own
_HEX = re.compile(r"[0-9a-f]{64}")


class BadTokens(ValueError):
    """REEL_TENANT_TOKENS is not a list of tenant:sha256 pairs; says which entry."""


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return "reel_" + secrets.token_urlsafe(32)


DEV_TOKENS = f"default:{digest(DEV_TOKEN)}"


@dataclass(frozen=True)
class Tokens:
    entries: tuple[tuple[str, bytes], ...]  # (tenant, sha256 digest)

    @classmethod
    def parse(cls, text: str) -> Tokens:
        entries = []
        for n, item in enumerate((i.strip() for i in text.split(",")), 1):
            if not item:
                continue
            tenant, sep, hexdigest = item.partition(":")
            if not sep or not _HEX.fullmatch(hexdigest.strip().lower()):
                raise BadTokens(f"entry {n} of REEL_TENANT_TOKENS is not tenant:<64 hex digits of sha256>")
            try:
                tenancy.check_tenant(tenant.strip())
            except tenancy.Refused as exc:
                raise BadTokens(f"entry {n} of REEL_TENANT_TOKENS: {exc}") from exc
            entries.append((tenant.strip(), bytes.fromhex(hexdigest.strip().lower())))
        return cls(tuple(entries))

    @property
    def tenants(self) -> set[str]:
        return {t for t, _ in self.entries}

    def tenant_of(self, token: str) -> str | None:
        """The tenant whose token this is, or None. Every entry is compared, whichever
        matches: the time taken does not say how close a guess came."""
        presented = hashlib.sha256(token.encode()).digest()
        found = None
        for tenant, known in self.entries:
            if hmac.compare_digest(presented, known):
                found = tenant
        return found


def bearer(header: str | None) -> str | None:
    """The token of an `Authorization: Bearer …` header, or None."""
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


@dataclass
class FailureLimiter:
    """At most `limit` failed authentications per client in `window_s`; past that the
    client is refused until its oldest failure leaves the window. Remembers at most
    `clients` clients (the least recently failing are forgotten first)."""

    limit: int
    window_s: float
    clients: int = 10_000
    failures: OrderedDict[str, deque[float]] = field(default_factory=OrderedDict)

    def _recent(self, client: str, now: float) -> deque[float]:
        times = self.failures.get(client, deque())
        while times and times[0] <= now - self.window_s:
            times.popleft()
        return times

    def retry_after(self, client: str, now: float) -> float:
        """Seconds until the client may try again; 0 if it may now."""
        times = self._recent(client, now)
        if len(times) < self.limit:
            return 0.0
        return times[-self.limit] + self.window_s - now

    def failed(self, client: str, now: float) -> None:
        times = self._recent(client, now)
        times.append(now)
        self.failures[client] = times
        self.failures.move_to_end(client)
        while len(self.failures) > self.clients:
            self.failures.popitem(last=False)
