"""The fields reel's manifests use of each operator's custom resources, with their types,
enums and bounds, written from those projects' CRDs (Strimzi 0.48 kafka.strimzi.io/v1beta2,
CloudNativePG 1.27 postgresql.cnpg.io/v1, KEDA 2.17 keda.sh/v1alpha1, Prometheus Operator
monitoring.coreos.com/v1). Not the whole CRDs: a field used here and missing from them, of
the wrong type or outside its enum fails; so does a required one left out.

A spec is a dict of field -> Field; FREE is an object the CRD leaves open (Kafka's config,
a label map); a Field whose `of` is a dict is an object, a list `[spec]` an array of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Field:
    of: Any  # str, int, bool, "free", a nested spec dict, or [item]
    required: bool = False
    enum: tuple[Any, ...] = ()
    minimum: int | None = None
    maximum: int | None = None
    pattern: str | None = None


FREE = "free"  # an object whose keys the CRD does not list
RESOURCES = "resources"  # core ResourceRequirements: validated with the Kubernetes schema


def F(of: Any, **kw: Any) -> Field:  # noqa: N802 - reads as a type in the tables below
    return Field(of, **kw)


LABEL_SELECTOR = {"matchLabels": F(FREE), "matchExpressions": F([FREE])}

KAFKA_NODE_POOL = {
    "replicas": F(int, minimum=0),
    "roles": F([str], required=True, enum=("controller", "broker")),
    "storage": F(
        {
            "type": F(str, required=True, enum=("ephemeral", "persistent-claim", "jbod")),
            "volumes": F(
                [
                    {
                        "id": F(int, minimum=0),
                        "type": F(str, required=True, enum=("ephemeral", "persistent-claim")),
                        "size": F(str),
                        "class": F(str),
                        "deleteClaim": F(bool),
                        "kraftMetadata": F(str, enum=("shared",)),
                    }
                ]
            ),
        },
        required=True,
    ),
    "resources": F(RESOURCES),
}

KAFKA = {
    "kafka": F(
        {
            "version": F(str),
            "metadataVersion": F(str),
            "listeners": F(
                [
                    {
                        "name": F(str, required=True, pattern=r"^[a-z0-9]{1,11}$"),
                        "port": F(int, required=True, minimum=9092),
                        "type": F(
                            str,
                            required=True,
                            enum=("internal", "route", "loadbalancer", "nodeport", "ingress", "cluster-ip"),
                        ),
                        "tls": F(bool, required=True),
                        "authentication": F(
                            {"type": F(str, required=True, enum=("tls", "scram-sha-512", "oauth", "custom"))}
                        ),
                        "networkPolicyPeers": F(
                            [{"podSelector": F(LABEL_SELECTOR), "namespaceSelector": F(LABEL_SELECTOR)}]
                        ),
                    }
                ],
                required=True,
            ),
            "config": F(FREE),
        },
        required=True,
    ),
    "entityOperator": F({"topicOperator": F(FREE), "userOperator": F(FREE)}),
}

KAFKA_USER = {
    "authentication": F({"type": F(str, required=True, enum=("tls", "tls-external", "scram-sha-512"))}),
    "authorization": F(FREE),
}

KAFKA_TOPIC = {
    "topicName": F(str),
    "partitions": F(int, minimum=1),
    "replicas": F(int, minimum=1, maximum=32767),
    "config": F(FREE),
}

CNPG_CLUSTER = {
    "instances": F(int, required=True, minimum=1),
    "imageName": F(str),
    "primaryUpdateStrategy": F(str, enum=("unsupervised", "supervised")),
    "bootstrap": F({"initdb": F({"database": F(str), "owner": F(str), "secret": F({"name": F(str, required=True)})})}),
    "storage": F({"size": F(str), "storageClass": F(str)}),
    "resources": F(RESOURCES),
    "monitoring": F({"enablePodMonitor": F(bool)}),
}

SCALED_OBJECT = {
    "scaleTargetRef": F({"apiVersion": F(str), "kind": F(str), "name": F(str, required=True)}, required=True),
    "pollingInterval": F(int),
    "cooldownPeriod": F(int),
    "minReplicaCount": F(int),
    "maxReplicaCount": F(int),
    "advanced": F({"horizontalPodAutoscalerConfig": F({"name": F(str), "behavior": F("hpa-behavior")})}),
    "triggers": F(
        [
            {
                "type": F(str, required=True),
                "metricType": F(str, enum=("AverageValue", "Value", "Utilization")),
                "metadata": F(FREE, required=True),
                "name": F(str),
            }
        ],
        required=True,
    ),
}

SERVICE_MONITOR = {
    "selector": F(LABEL_SELECTOR, required=True),
    "namespaceSelector": F({"any": F(bool), "matchNames": F([str])}),
    "endpoints": F([{"port": F(str), "path": F(str), "interval": F(str, pattern=r"^(0|(([0-9]+)(ms|s|m|h))+)$")}]),
}

DURATION = r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"
PROMETHEUS_RULE = {
    "groups": F(
        [
            {
                "name": F(str, required=True),
                "interval": F(str, pattern=DURATION),
                "limit": F(int),
                "partial_response_strategy": F(str),
                "rules": F(
                    [
                        {
                            "alert": F(str),
                            "record": F(str),
                            "expr": F(str, required=True),
                            "for": F(str, pattern=DURATION),
                            "keep_firing_for": F(str, pattern=DURATION),
                            "labels": F(FREE),
                            "annotations": F(FREE),
                        }
                    ],
                    required=True,
                ),
            }
        ]
    ),
}

SPECS = {
    ("kafka.strimzi.io/v1beta2", "KafkaNodePool"): KAFKA_NODE_POOL,
    ("kafka.strimzi.io/v1beta2", "Kafka"): KAFKA,
    ("kafka.strimzi.io/v1beta2", "KafkaTopic"): KAFKA_TOPIC,
    ("kafka.strimzi.io/v1beta2", "KafkaUser"): KAFKA_USER,
    ("postgresql.cnpg.io/v1", "Cluster"): CNPG_CLUSTER,
    ("keda.sh/v1alpha1", "ScaledObject"): SCALED_OBJECT,
    ("monitoring.coreos.com/v1", "ServiceMonitor"): SERVICE_MONITOR,
    ("monitoring.coreos.com/v1", "PrometheusRule"): PROMETHEUS_RULE,
}


def problems(value: Any, spec: dict[str, Field], where: str, core: Any) -> list[str]:
    """What in `value` does not fit `spec`. `core(kind, value)` validates a core type
    (ResourceRequirements, an HPA's behavior) with the Kubernetes schemas."""
    if not isinstance(value, dict):
        return [f"{where}: an object expected, not {value!r}"]
    found = [f"{where}.{k}: not a field of the CRD" for k in value if k not in spec]
    found += [f"{where}.{k}: required" for k, f in spec.items() if f.required and k not in value]
    for key, field in spec.items():
        if key in value:
            found += _check(value[key], field, f"{where}.{key}", core)
    return found


def _check(value: Any, field: Field, where: str, core: Any) -> list[str]:
    import re

    of = field.of
    if of == FREE:
        return [] if isinstance(value, dict) else [f"{where}: an object expected"]
    if of in (RESOURCES, "hpa-behavior"):
        return core(of, value, where)
    if isinstance(of, dict):
        return problems(value, of, where, core)
    if isinstance(of, list):
        if not isinstance(value, list):
            return [f"{where}: an array expected"]
        item = Field(of[0], enum=field.enum, minimum=field.minimum, maximum=field.maximum, pattern=field.pattern)
        return [p for i, v in enumerate(value) for p in _check(v, item, f"{where}[{i}]", core)]
    if not isinstance(value, of) or (of is int and isinstance(value, bool)):
        return [f"{where}: {of.__name__} expected, not {value!r}"]
    out = []
    if field.enum and value not in field.enum:
        out.append(f"{where}: {value!r} not one of {field.enum}")
    if field.minimum is not None and value < field.minimum:
        out.append(f"{where}: below {field.minimum}")
    if field.maximum is not None and value > field.maximum:
        out.append(f"{where}: above {field.maximum}")
    if field.pattern and not re.match(field.pattern, value):
        out.append(f"{where}: {value!r} does not match {field.pattern}")
    return out
