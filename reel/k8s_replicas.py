"""A worker kind's replicas as Kubernetes has them: its StatefulSet's `spec.replicas` (what
the HPA or KEDA last asked for: where the fleet is heading) and `status.readyReplicas`,
read with the kubernetes client from inside the cluster (RBAC: `get` on that StatefulSet).

Not run against a real API server here (none runs on these machines): tests check the
request it makes and how it reads the answer, against a local HTTP server.
"""

from __future__ import annotations

from dataclasses import dataclass

from kubernetes import client, config


@dataclass(frozen=True)
class Replicas:
    desired: int
    ready: int


class StatefulSets:
    def __init__(self, namespace: str, api: client.ApiClient | None = None, timeout_s: float = 5.0) -> None:
        if api is None:
            config.load_incluster_config()  # the pod's service account token and CA
            api = client.ApiClient()
        self.apps = client.AppsV1Api(api)
        self.namespace = namespace
        self.timeout_s = timeout_s

    def replicas(self, name: str) -> Replicas:
        sts = self.apps.read_namespaced_stateful_set(name, self.namespace, _request_timeout=self.timeout_s)
        return Replicas(int(sts.spec.replicas or 0), int((sts.status and sts.status.ready_replicas) or 0))
