"""The Kubernetes scaling objects say what the local autoscaler does: both overlays build
(kustomize), each scales every worker kind once (HPAs or ScaledObjects, never both), on the
metric, target, bounds and behavior of reel/autoscale.py; the StatefulSets drain within
their grace period and take their slot from the ordinal; the splitter may read the
transcoders' StatefulSet. Checked offline: no cluster runs here (test_manifests.py
validates every object against the API schemas)."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from reel.autoscale import Behavior, scalings
from reel.pipeline import WORKER_KINDS
from reel.settings import Settings, load
from tests.k8s.render import K8S, build, of


def settings_of(docs: tuple[dict[str, Any], ...]) -> Settings:
    """The settings the splitter's pods read (its ConfigMap: it sizes videos for the scaling)."""
    (ref,) = of(docs, "StatefulSet")["reel-splitter"]["spec"]["template"]["spec"]["containers"][0]["envFrom"]
    return load(of(docs, "ConfigMap")[ref["configMapRef"]["name"]]["data"])


def behavior_yaml(b: Behavior) -> dict[str, Any]:
    def rules(policies: tuple[Any, ...], window: float) -> dict[str, Any]:
        return {
            "stabilizationWindowSeconds": int(window),
            "selectPolicy": "Max",
            "policies": [{"type": p.type, "value": p.value, "periodSeconds": int(p.period_s)} for p in policies],
        }

    return {"scaleUp": rules(b.up, b.up_window_s), "scaleDown": rules(b.down, b.down_window_s)}


@pytest.mark.parametrize("overlay", ["prod", "keda"])
def test_each_worker_kind_scales_once_by_the_local_rule(overlay: str) -> None:
    docs = build(overlay)
    s = settings_of(docs)
    hpas, scaled = of(docs, "HorizontalPodAutoscaler"), of(docs, "ScaledObject")
    assert not (hpas and scaled), "KEDA makes its own HPA: never both on one workload"
    objects = hpas or scaled
    expected = {x.kind: x for x in scalings(s)}
    sets = of(docs, "StatefulSet")
    assert sorted(objects) == sorted(f"reel-{k}" for k in WORKER_KINDS) == sorted(sets)
    for kind, x in expected.items():
        obj = objects[f"reel-{kind}"]["spec"]
        assert obj["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": f"reel-{kind}"}
        if hpas:
            (metric,) = obj["metrics"]
            ext = metric["external"]
            assert ext["metric"] == {"name": x.metric, "selector": {"matchLabels": {"group": x.group}}}
            assert ext["target"] == {"type": "AverageValue", "averageValue": f"{x.rule.target:g}"}
            assert obj["minReplicas"] >= 1  # HPA scale-to-zero is an alpha gate
            bounds, behavior = (obj["minReplicas"], obj["maxReplicas"]), obj["behavior"]
        else:
            (trigger,) = obj["triggers"]
            assert trigger["type"] == "prometheus" and trigger["metricType"] == "AverageValue"
            assert trigger["metadata"]["query"] == f'max({x.metric}{{group="{x.group}"}})'
            assert float(trigger["metadata"]["threshold"]) == x.rule.target
            bounds = (obj["minReplicaCount"], obj["maxReplicaCount"])
            behavior = obj["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
        assert bounds[1] == s.autoscale_max <= s.kafka_partitions  # a member past the partitions idles
        assert behavior == behavior_yaml(Behavior())  # the HPA's defaults, as the local rule has them


def test_workers_drain_within_their_grace_and_take_their_slot_from_the_ordinal() -> None:
    docs = build("prod")
    s = settings_of(docs)
    headless = {n for n, svc in of(docs, "Service").items() if svc["spec"].get("clusterIP") == "None"}
    for name, sts in of(docs, "StatefulSet").items():
        pod = sts["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        assert container["command"] == ["python", "-m", f"services.{name.removeprefix('reel-')}"]
        assert pod["terminationGracePeriodSeconds"] > s.drain_timeout_s  # the drain ends inside the grace
        assert "kill -TERM 1" in " ".join(container["lifecycle"]["preStop"]["exec"]["command"])
        env = {e["name"]: e for e in container["env"]}
        slot = env["REEL_SLOT"]["valueFrom"]["fieldRef"]["fieldPath"]
        assert slot == "metadata.labels['apps.kubernetes.io/pod-index']"
        (ref,) = container["envFrom"]
        config = of(docs, "ConfigMap")[ref["configMapRef"]["name"]]["data"]
        assert config["REEL_BIND_ADDRESS"] == "0.0.0.0"  # Prometheus scrapes the pod's address
        assert sts["spec"]["serviceName"] in headless
        assert sts["spec"]["podManagementPolicy"] == "Parallel"  # scale-in drains side by side


def test_only_the_splitter_may_read_the_transcoders_statefulset() -> None:
    docs = build("prod")
    s = settings_of(docs)
    sets = of(docs, "StatefulSet")
    splitter = sets["reel-splitter"]["spec"]["template"]["spec"]
    assert splitter["serviceAccountName"] == "reel-splitter"
    env = {e["name"] for e in splitter["containers"][0]["env"]}
    assert "REEL_KUBERNETES_NAMESPACE" in env and s.transcoder_statefulset in sets
    (role,) = of(docs, "Role").values()
    assert role["rules"] == [
        {
            "apiGroups": ["apps"],
            "resources": ["statefulsets", "statefulsets/scale"],
            "resourceNames": [s.transcoder_statefulset],
            "verbs": ["get"],
        }
    ]
    (binding,) = of(docs, "RoleBinding").values()
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "reel-splitter", "namespace": "reel"}]
    others = {n for n, x in sets.items() if n != "reel-splitter"}
    assert all(sets[n]["spec"]["template"]["spec"]["serviceAccountName"] == "reel-worker" for n in others)


def test_the_kafka_lag_example_is_kept_out_of_the_component() -> None:
    example = yaml.safe_load((K8S / "components" / "keda" / "kafka-lag.example.yaml").read_text())
    assert example["spec"]["triggers"][0]["type"] == "kafka"
    listed = yaml.safe_load((K8S / "components" / "keda" / "kustomization.yaml").read_text())["resources"]
    assert listed == ["scaledobjects.yaml"]
    assert "ScaledObject" not in {d["kind"] for d in build("prod")}
