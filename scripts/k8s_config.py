"""Each service's settings in Kubernetes, derived from the code: which Settings fields a
service reads is found by walking the modules `python -m services.NAME` imports (reel's
and its own) for attribute reads on a settings object. Each service then gets exactly
those: credentials from Secrets, per-pod values from the pod spec, the rest in its own
ConfigMap (k8s/base/config/NAME.env, written here; kustomize makes the ConfigMaps). The
topics are the code's too: one Strimzi KafkaTopic per topic (k8s/platform/topics.yaml).

    python scripts/k8s_config.py          # rewrite the .env files and topics.yaml
    python scripts/k8s_config.py --check  # fail if they are stale (the tests do this too)
"""

from __future__ import annotations

import ast
import sys
from dataclasses import fields
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from reel.contract import all_topics, topic_config  # noqa: E402
from reel.settings import Settings  # noqa: E402

SERVICES = ("splitter", "puller", "transcoder", "pusher", "tracker")
FIELDS = frozenset(f.name for f in fields(Settings))
# Properties stand for the fields they read. The embedded stack's ports (kafka_port,
# s3_port, pg_port) only fill an empty address, so they are not a cluster's settings.
PROPERTIES = {"embedded_postgres": {"database_url"}, "postgres_url": {"database_url", "pg_sslmode", "pg_ca"}}

# Credentials: env name -> (Secret, key). The database's comes from CloudNativePG's own
# Secret for the cluster's application user; the others are created by the operator
# (docs/operations.md) or, in overlays/dev, generated with throwaway values.
SECRETS = {
    "s3_access_key": ("reel-s3", "access-key"),
    "s3_secret_key": ("reel-s3", "secret-key"),
    "database_url": ("reel-postgres-app", "uri"),
    "playback_secret": ("reel-tracker-keys", "playback-secret"),
    "callback_secret": ("reel-tracker-keys", "callback-secret"),
    "tenant_tokens": ("reel-tracker-keys", "tenant-tokens"),
    "kafka_password": ("reel-services", "password"),  # Strimzi's User Operator, for KafkaUser reel-services
}
# Set in the pod spec: the ordinal, the namespace, the tracker's role per Deployment.
FROM_POD = frozenset({"slot", "kubernetes_namespace", "tracker_role"})

# The cluster's values. Those not named keep the code's defaults, written out so that a
# ConfigMap shows everything its service reads.
VALUES: dict[str, object] = {
    # Every link encrypted: Kafka's TLS listener with SCRAM-SHA-512 (the brokers checked
    # against Strimzi's cluster CA), Postgres with verify-full against CloudNativePG's CA.
    "kafka_bootstrap": "reel-kafka-bootstrap:9093",  # Strimzi's bootstrap Service of Kafka "reel"
    "kafka_security": "sasl_ssl",
    "kafka_username": "reel-services",
    "kafka_ca": "/etc/reel/kafka-ca/ca.crt",
    "pg_sslmode": "verify-full",
    "pg_ca": "/etc/reel/postgres-ca/ca.crt",
    "s3_endpoint": "reel-minio:9000",  # overlays/prod names your S3 endpoint instead
    "tracker_url": "https://reel.example.com",
    "home": "/scratch/home",
    "scratch_dir": "/scratch",
    "bind_address": "0.0.0.0",
    "metrics_port": 9100,
    "tracker_port": 8080,
    # The fleet autoscales: the splitter sizes each video for the transcoders the HPA heads
    # for, with the HPA's own target and max (components/hpa).
    "autoscale": True,
    # The longest a unit may take on the smallest node, on SIGTERM (scale-in) or when a
    # scale-out moves its partition; terminationGracePeriodSeconds is above it.
    "drain_timeout_s": 900.0,
}


def module_file(name: str) -> Path | None:
    p = ROOT.joinpath(*name.split("."))
    for f in (p / "__init__.py", p.with_suffix(".py")):
        if f.exists():
            return f
    return None


def _imports(module: str, tree: ast.Module, is_package: bool) -> list[str]:
    package = module if is_package else module.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            found += [base] + [f"{base}.{a.name}" for a in node.names]
    return [n for n in found if n.split(".")[0] in ("reel", "services")]


def modules_of(service: str) -> set[str]:
    """Every reel and services module `python -m services.NAME` may import."""
    seen: set[str] = set()
    todo = [f"services.{service}.__main__"]
    while todo:
        name = todo.pop()
        f = module_file(name)
        if name in seen or f is None:
            continue
        seen.add(name)
        for imported in _imports(name, ast.parse(f.read_text()), f.name == "__init__.py"):
            parts = imported.split(".")
            todo += [".".join(parts[:i]) for i in range(1, len(parts) + 1)]
    return seen


def _is_settings(node: ast.expr) -> bool:
    """`settings.x`, `s.x`, `self.settings.x`, `deps.settings.x`, `load().x`."""
    if isinstance(node, ast.Name):
        return node.id in ("settings", "s")
    if isinstance(node, ast.Attribute):
        return node.attr == "settings"
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "load"


def settings_read(service: str) -> set[str]:
    """The Settings fields the service's code reads."""
    read: set[str] = set()
    for name in modules_of(service) - {"reel.settings"}:
        f = module_file(name)
        assert f is not None
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load) and _is_settings(node.value):
                read |= PROPERTIES.get(node.attr, {node.attr} & FIELDS)
    return read


def env_name(field: str) -> str:
    return "REEL_" + field.upper()


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return f"{value:g}" if isinstance(value, float) else str(value)


def config_of(service: str) -> dict[str, str]:
    """The ConfigMap's data: every setting the service reads that is neither a credential
    nor the pod's own."""
    defaults = Settings()
    keys = sorted(settings_read(service) - set(SECRETS) - FROM_POD)
    return {env_name(k): _text(VALUES.get(k, getattr(defaults, k))) for k in keys}


def env_file(service: str) -> Path:
    return ROOT / "k8s" / "base" / "config" / f"{service}.env"


def render(service: str) -> str:
    head = f"# Written by scripts/k8s_config.py from what services/{service} reads; edit VALUES there.\n"
    return head + "".join(f"{k}={v}\n" for k, v in config_of(service).items())


TOPICS_FILE = ROOT / "k8s" / "platform" / "topics.yaml"


def render_topics() -> str:
    """A KafkaTopic per topic the code uses, each with the partitions the code expects
    (REEL_KAFKA_PARTITIONS: at least the largest maxReplicas), replicated three times and
    written to two (components/development lowers both for its one broker)."""
    partitions = Settings().kafka_partitions
    docs = []
    for topic in all_topics():
        config = {"min.insync.replicas": "2", **topic_config(topic)}
        lines = [
            "apiVersion: kafka.strimzi.io/v1beta2",
            "kind: KafkaTopic",
            "metadata:",
            f"  name: {topic.replace('.', '-')}",
            "  labels:",
            "    strimzi.io/cluster: reel",
            "spec:",
            f"  topicName: {topic}",
            f"  partitions: {partitions}",
            "  replicas: 3",
            "  config:",
            *(f'    {k}: "{v}"' for k, v in config.items()),
        ]
        docs.append("\n".join(lines) + "\n")
    head = "# Written by scripts/k8s_config.py from reel.contract: every topic reel uses. The Topic\n"
    head += "# Operator owns them in a cluster; the services never create topics.\n"
    return head + "---\n".join(docs)


def outputs() -> dict[Path, str]:
    return {**{env_file(s): render(s) for s in SERVICES}, TOPICS_FILE: render_topics()}


def main(argv: list[str]) -> int:
    stale = {f: text for f, text in outputs().items() if not f.exists() or f.read_text() != text}
    if "--check" in argv:
        for f in stale:
            print(f"{f.relative_to(ROOT)} is stale: run python scripts/k8s_config.py", file=sys.stderr)
        return 1 if stale else 0
    for f, text in stale.items():
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(text)
        print(f"wrote {f.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
