"""Where a callback may go: never inside. A `callback_url` whose host resolves to a
loopback, link-local (cloud metadata), private, unique-local, shared, multicast, reserved
or unspecified address is refused, unless the allow-list (REEL_CALLBACK_ALLOW) names the
host. The name is resolved once and the connection made to the address that was checked
(a second lookup could answer otherwise: DNS rebinding), with the name kept for the Host
header and TLS; redirects are never followed."""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
from collections.abc import Callable, Collection
from dataclasses import dataclass
from urllib.parse import urlsplit

Resolver = Callable[[str, int], list[str]]
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class Refused(ValueError):
    """The URL may not be called; the message says why (shown to the client)."""


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str  # as the URL names it: the Host header and the TLS server name
    port: int
    path: str  # with the query
    address: str  # the checked address the connection goes to


def resolve(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({str(info[4][0]) for info in infos})


def inside(address: IPAddress) -> str | None:
    """Why an address is not a public one, or None."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return inside(address.ipv4_mapped)
    for what, hit in (
        ("unspecified", address.is_unspecified),
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("private", address.is_private),
        ("reserved", address.is_reserved),
        ("not globally reachable", not address.is_global),
    ):
        if hit:
            return what
    return None


def allow_list(setting: str) -> frozenset[str]:
    """REEL_CALLBACK_ALLOW: `host` or `host:port` entries, comma-separated."""
    return frozenset(e.strip().lower() for e in setting.split(",") if e.strip())


def allowed(host: str, port: int, allow: Collection[str]) -> bool:
    """The allow-list names `host` (any port) or `host:port`."""
    return host.lower() in allow or f"{host.lower()}:{port}" in allow


def check(url: str, allow: Collection[str] = (), resolver: Resolver = resolve) -> Target:
    """The target to connect to, or Refused with the reason."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise Refused("callback_url must be http or https")
    if not parts.hostname or parts.username is not None or parts.password is not None:
        raise Refused("callback_url must name a host, and no credentials")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise Refused(f"callback_url has a bad port: {exc}") from None
    host = parts.hostname
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        addresses = resolver(host, port)
    except OSError as exc:
        raise Refused(f"callback_url host {host} does not resolve: {exc}") from None
    if not addresses:
        raise Refused(f"callback_url host {host} does not resolve")
    if not allowed(host, port, allow):
        for a in addresses:
            why = inside(ipaddress.ip_address(a.split("%", 1)[0]))
            if why:
                raise Refused(f"callback_url {host} resolves to {a} ({why}): callbacks go to public addresses only")
    return Target(parts.scheme, host, port, path, addresses[0])


class _PinnedHTTPS(http.client.HTTPSConnection):
    """TLS to the checked address, verified against the URL's host name."""

    def __init__(self, target: Target, timeout: float) -> None:
        super().__init__(target.address, target.port, timeout=timeout)
        self.server_name = target.host
        self.tls = ssl.create_default_context()

    def connect(self) -> None:
        sock = socket.create_connection((self.host, self.port), self.timeout)
        self.sock = self.tls.wrap_socket(sock, server_hostname=self.server_name)


def post(target: Target, body: bytes, headers: dict[str, str], timeout: float) -> int:
    """POST to the checked address; the status as answered (a redirect is a failure)."""
    conn: http.client.HTTPConnection
    if target.scheme == "https":
        conn = _PinnedHTTPS(target, timeout)
    else:
        conn = http.client.HTTPConnection(target.address, target.port, timeout=timeout)
    name = f"[{target.host}]" if ":" in target.host else target.host
    if target.port != (443 if target.scheme == "https" else 80):
        name += f":{target.port}"
    try:
        conn.request("POST", target.path, body=body, headers={"Host": name, **headers})
        return conn.getresponse().status
    finally:
        conn.close()
