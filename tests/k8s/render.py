"""The manifests as a cluster would receive them: each overlay rendered by kustomize v5
(scripts/setup.sh test builds it into .reel-cache/bin)."""

from __future__ import annotations

import functools
import shutil
import subprocess
from typing import Any

import pytest
import yaml

from reel import PROJECT_ROOT

K8S = PROJECT_ROOT / "k8s"
OVERLAYS = ("dev", "prod", "keda")
# The Kubernetes version the manifests are validated against (pod-index needs 1.28+).
KUBERNETES = "1.33.0"

Doc = dict[str, Any]


def kustomize() -> str:
    found = PROJECT_ROOT / ".reel-cache" / "bin" / "kustomize"
    path = str(found) if found.exists() else shutil.which("kustomize")
    if path is None:
        pytest.fail("kustomize v5 is missing: run scripts/setup.sh test")
    return path


@functools.cache
def build(overlay: str) -> tuple[Doc, ...]:
    out = subprocess.run([kustomize(), "build", str(K8S / "overlays" / overlay)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return tuple(d for d in yaml.safe_load_all(out.stdout) if d)


def of(docs: tuple[Doc, ...], kind: str) -> dict[str, Doc]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def workloads(docs: tuple[Doc, ...]) -> dict[str, Doc]:
    """reel's own StatefulSets and Deployments (MinIO's is not reel's)."""
    return {
        n: d
        for kind in ("StatefulSet", "Deployment")
        for n, d in of(docs, kind).items()
        if d["metadata"]["labels"].get("app.kubernetes.io/part-of") == "reel"
    }


def service_of(workload: Doc) -> str:
    """The reel service a workload runs: services.NAME in its command."""
    (container,) = workload["spec"]["template"]["spec"]["containers"]
    return container["command"][-1].removeprefix("services.")


def config_map(docs: tuple[Doc, ...], ref: str) -> Doc:
    """A ConfigMap by the name a pod refers to (kustomize adds a hash to the name)."""
    return of(docs, "ConfigMap")[ref]
