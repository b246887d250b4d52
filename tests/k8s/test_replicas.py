"""The splitter's read of the transcoders' StatefulSet, as from inside a pod (a service
account token and CA, the in-cluster environment), against a local HTTPS server standing in
for the API server: the request it makes and how it reads the answer. No real API server
runs here; this is what can be checked without one."""

from __future__ import annotations

import json
import ssl
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.config.incluster_config import InClusterConfigLoader

from reel.k8s_replicas import StatefulSets

TOKEN = "sa-token-of-the-splitter"
STATEFULSET = {
    "apiVersion": "apps/v1",
    "kind": "StatefulSet",
    "metadata": {"name": "reel-transcoder", "namespace": "reel"},
    "spec": {
        "replicas": 6,
        "serviceName": "reel-transcoder",
        "selector": {"matchLabels": {"app": "reel-transcoder"}},
        "template": {"metadata": {"labels": {"app": "reel-transcoder"}}, "spec": {"containers": []}},
    },
    "status": {"replicas": 4, "readyReplicas": 3},
}


@pytest.fixture
def api_server(tmp_path: Path) -> Iterator[tuple[int, Path, list[dict[str, Any]]]]:
    """HTTPS on loopback with a self-signed certificate for 127.0.0.1; yields (port, CA, requests)."""
    cert, key = tmp_path / "ca.crt", tmp_path / "ca.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1"]
        + ["-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    seen: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            seen.append({"path": self.path, "authorization": self.headers.get("Authorization")})
            found = self.path.split("?")[0] == "/apis/apps/v1/namespaces/reel/statefulsets/reel-transcoder"
            body = json.dumps(STATEFULSET if found else {"kind": "Status", "code": 404}).encode()
            self.send_response(200 if found else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    server.socket = tls.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1], cert, seen
    finally:
        server.shutdown()


def in_cluster(port: int, ca: Path, tmp_path: Path) -> client.ApiClient:
    """What load_incluster_config() does in a pod, from this test's token, CA and environment."""
    token = tmp_path / "token"
    token.write_text(TOKEN)
    config = client.Configuration()
    env = {"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": str(port)}
    InClusterConfigLoader(token_filename=str(token), cert_filename=str(ca), environ=env).load_and_set(config)
    return client.ApiClient(config)


def test_reads_the_statefulsets_desired_and_ready_replicas_with_its_service_account(
    api_server: tuple[int, Path, list[dict[str, Any]]], tmp_path: Path
) -> None:
    port, ca, seen = api_server
    sets = StatefulSets("reel", in_cluster(port, ca, tmp_path))
    got = sets.replicas("reel-transcoder")
    assert (got.desired, got.ready) == (6, 3)  # spec.replicas: what the HPA set; status.readyReplicas
    assert [r["path"] for r in seen] == ["/apis/apps/v1/namespaces/reel/statefulsets/reel-transcoder"]
    assert seen[0]["authorization"].lower() == f"bearer {TOKEN}"  # the client writes "bearer"; either is valid


def test_a_missing_statefulset_is_an_error_not_a_zero(
    api_server: tuple[int, Path, list[dict[str, Any]]], tmp_path: Path
) -> None:
    port, ca, _seen = api_server
    with pytest.raises(client.ApiException) as err:
        StatefulSets("reel", in_cluster(port, ca, tmp_path)).replicas("no-such-set")
    assert err.value.status == 404
