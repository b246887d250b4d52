"""Callbacks never reach inside: the addresses refused (by a resolver given here, so a name
can be made to answer anything), the allow-list, and the POST itself over real loopback
sockets: made to the address checked whatever the name resolves to later, and never
following a redirect."""

from __future__ import annotations

import ssl
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from reel.callback_target import Refused, Target, allow_list, check, post


def answering(*addresses: str):  # noqa: ANN201 - a resolver
    return lambda _host, _port: list(addresses)


@pytest.mark.parametrize(
    ("address", "why"),
    [
        ("127.0.0.1", "loopback"),
        ("127.8.9.10", "loopback"),
        ("::1", "loopback"),
        ("169.254.169.254", "link-local"),  # cloud metadata
        ("fe80::1", "link-local"),
        ("10.1.2.3", "private"),
        ("172.16.0.9", "private"),
        ("192.168.1.1", "private"),
        ("fd00::5", "private"),  # unique-local
        ("100.64.0.1", "not globally reachable"),  # shared address space (CGNAT)
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped
        ("224.0.0.1", "multicast"),
        ("240.0.0.1", "private|reserved"),  # Python counts 240/4 as private
    ],
)
def test_an_inside_address_is_refused_with_the_reason(address: str, why: str) -> None:
    with pytest.raises(Refused, match=why):
        check("https://hooks.example.com/done", resolver=answering(address))


def test_a_name_with_one_inside_address_among_public_ones_is_refused() -> None:
    with pytest.raises(Refused, match="10.0.0.7"):
        check("https://hooks.example.com/", resolver=answering("93.184.216.34", "10.0.0.7"))


def test_a_public_address_is_the_target() -> None:
    t = check("https://hooks.example.com:8443/a/b?x=1", resolver=answering("93.184.216.34"))
    assert t == Target("https", "hooks.example.com", 8443, "/a/b?x=1", "93.184.216.34")


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/",
        "file:///etc/passwd",
        "http://user:pw@example.com/",
        "http:///nohost",
        "http://e.com:99999/",
    ],
)
def test_what_is_not_a_plain_http_url_is_refused(url: str) -> None:
    with pytest.raises(Refused):
        check(url, resolver=answering("93.184.216.34"))


def test_a_name_that_does_not_resolve_is_refused() -> None:
    def fails(_host: str, _port: int) -> list[str]:
        raise OSError("Name or service not known")

    with pytest.raises(Refused, match="does not resolve"):
        check("https://nowhere.invalid/", resolver=fails)


def test_the_allow_list_names_a_host_or_a_host_and_port() -> None:
    assert allow_list(" 127.0.0.1, Receiver.Test:9000 ,") == {"127.0.0.1", "receiver.test:9000"}
    assert check("http://127.0.0.1:5000/", allow_list("127.0.0.1"), answering("127.0.0.1")).address == "127.0.0.1"
    assert check("http://receiver.test:9000/", allow_list("receiver.test:9000"), answering("10.0.0.1")).port == 9000
    with pytest.raises(Refused):
        check("http://receiver.test:9001/", allow_list("receiver.test:9000"), answering("10.0.0.1"))


class Receiver(BaseHTTPRequestHandler):
    redirect_to: str | None = None
    seen: list[tuple[str, str, bytes]]

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.seen.append((self.path, self.headers["Host"], body))
        if self.redirect_to:
            self.send_response(307)
            self.send_header("Location", self.redirect_to)
        else:
            self.send_response(204)
        self.end_headers()

    def log_message(self, *_args: object) -> None:
        pass


def serve(redirect_to: str | None = None) -> tuple[ThreadingHTTPServer, list[tuple[str, str, bytes]]]:
    seen: list[tuple[str, str, bytes]] = []
    handler = type("R", (Receiver,), {"redirect_to": redirect_to, "seen": seen})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, seen


@pytest.fixture
def servers() -> Iterator[list[ThreadingHTTPServer]]:
    started: list[ThreadingHTTPServer] = []
    yield started
    for s in started:
        s.shutdown()


def test_the_post_goes_to_the_checked_address_with_the_urls_host(servers: list[ThreadingHTTPServer]) -> None:
    server, seen = serve()
    servers.append(server)
    port = server.server_address[1]
    # The name "hooks.test" resolved to this listener when checked; the POST goes there
    # without asking again, and says the name in Host.
    target = check(f"http://hooks.test:{port}/done?id=1", allow_list("hooks.test"), answering("127.0.0.1"))
    assert post(target, b'{"ok": 1}', {"Content-Type": "application/json"}, 5) == 204
    assert seen == [("/done?id=1", f"hooks.test:{port}", b'{"ok": 1}')]


def test_a_redirect_is_an_answer_not_followed(servers: list[ThreadingHTTPServer]) -> None:
    inside, inside_seen = serve()
    outside, outside_seen = serve(redirect_to=f"http://127.0.0.1:{inside.server_address[1]}/metadata")
    servers += [inside, outside]
    target = check(f"http://127.0.0.1:{outside.server_address[1]}/", allow_list("127.0.0.1"), answering("127.0.0.1"))
    assert post(target, b"{}", {}, 5) == 307
    assert len(outside_seen) == 1 and inside_seen == []


def tls_listener(tmp_path: Path, name: str) -> ThreadingHTTPServer:
    """An HTTPS receiver on loopback with a certificate for `name` from a CA of its own,
    which the client is told to trust (SSL_CERT_FILE)."""
    key, cert = tmp_path / f"{name}.key", tmp_path / f"{name}.crt"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", f"/CN={name}"]
        + ["-addext", f"subjectAltName=DNS:{name}", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    server, _seen = serve()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    return server


def test_tls_is_verified_against_the_urls_name_not_the_address(
    servers: list[ThreadingHTTPServer], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    good = tls_listener(tmp_path, "hooks.test")
    servers.append(good)
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "hooks.test.crt"))
    port = good.server_address[1]
    target = check(f"https://hooks.test:{port}/done", allow_list("hooks.test"), answering("127.0.0.1"))
    assert post(target, b"{}", {}, 5) == 204  # connected to 127.0.0.1, verified as hooks.test
    other = check(f"https://other.test:{port}/done", allow_list("other.test"), answering("127.0.0.1"))
    with pytest.raises(ssl.SSLCertVerificationError):
        post(other, b"{}", {}, 5)
