"""Every overlay, rendered as a cluster would receive it, checked offline: each built-in
object against the Kubernetes schemas of a stated version, each custom resource against
the fields of its operator's CRD (crds.py); then the project's own rules, each against
the code or a measurement: the settings each service's code reads, the topics and their
partitions, the security context, the requests from the image run, the probes, the
disruption budgets and spread, the scrape targets, the Secrets every pod names, and the
network policies against the connections the services made from the image. No cluster
runs here: nothing of this was applied."""

from __future__ import annotations

import json
from typing import Any

import kubernetes_validate
import pytest

from reel import PROJECT_ROOT
from reel.contract import all_topics, topic_config
from reel.ladder import load as load_profile
from reel.settings import Settings, load
from scripts import k8s_config
from tests.k8s import crds
from tests.k8s.render import KUBERNETES, OVERLAYS, Doc, build, of, service_of, workloads

IMAGE_RUN = json.loads((PROJECT_ROOT / "bench" / "results" / "image.json").read_text())


def run_of(workload: str) -> str:
    """The image run's name for a workload (tests/image runs each as k8s/ does)."""
    return workload.removeprefix("reel-")


MiB = 1 << 20


def quantity(q: str | int) -> float:
    """Bytes or cores of a Kubernetes quantity."""
    q = str(q)
    units = {"Ki": 1 << 10, "Mi": MiB, "Gi": 1 << 30, "Ti": 1 << 40, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9}
    for unit, factor in units.items():
        if q.endswith(unit):
            return float(q[: -len(unit)]) * factor
    return float(q)


def containers(w: Doc) -> list[Doc]:
    pod = w["spec"]["template"]["spec"]
    return [*pod.get("initContainers", []), *pod["containers"]]


def core(kind: str, value: Any, where: str) -> list[str]:
    """A core type inside a custom resource, validated by embedding it where Kubernetes has it."""
    if kind == crds.RESOURCES:
        doc = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"}}
        doc["spec"] = {"containers": [{"name": "x", "image": "x", "resources": value}]}
    else:
        doc = {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "x"}}
        doc["spec"] = {"scaleTargetRef": {"kind": "x", "name": "x"}, "maxReplicas": 1, "behavior": value}
    try:
        kubernetes_validate.validate(doc, KUBERNETES, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return [f"{where}: {exc.message}"]
    return []


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_validates_against_its_schema(overlay: str) -> None:
    failures = []
    for doc in build(overlay):
        name = f"{doc['kind']}/{doc['metadata']['name']}"
        spec = crds.SPECS.get((doc["apiVersion"], doc["kind"]))
        if spec is not None:
            failures += crds.problems(doc["spec"], spec, name, core)
            continue
        try:
            kubernetes_validate.validate(doc, KUBERNETES, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            failures.append(f"{name}: neither a Kubernetes {KUBERNETES} kind nor a custom resource checked here")
        except kubernetes_validate.ValidationError as exc:
            failures.append(f"{name}: {exc.message} at {list(exc.path)}")
    assert not failures, "\n".join(failures)


def test_the_crd_checks_catch_what_they_should() -> None:
    """The field checks can fail: a misspelt field, a wrong type, a value outside its enum,
    a required field left out, a bad core type inside."""
    node_pool = {"replicas": "3", "roles": ["broker", "zookeeper"], "storage": {"type": "jbod", "volums": []}}
    found = crds.problems(node_pool, crds.KAFKA_NODE_POOL, "pool", core)
    assert any("replicas: int expected" in p for p in found)
    assert any("'zookeeper' not one of" in p for p in found)
    assert any("volums: not a field" in p for p in found)
    assert crds.problems({}, crds.CNPG_CLUSTER, "cluster", core) == ["cluster.instances: required"]
    assert crds.problems({"instances": 1, "resources": {"requests": {"cpu": []}}}, crds.CNPG_CLUSTER, "c", core)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_service_gets_exactly_the_settings_its_code_reads(overlay: str) -> None:
    """ConfigMap keys, Secret references and the pod's own values together name each
    setting the service's code reads once, and nothing else."""
    docs = build(overlay)
    for name, w in workloads(docs).items():
        service = service_of(w)
        wanted = {k8s_config.env_name(f) for f in k8s_config.settings_read(service)}
        container = w["spec"]["template"]["spec"]["containers"][0]
        (ref,) = container["envFrom"]
        from_config = set(of(docs, "ConfigMap")[ref["configMapRef"]["name"]]["data"])
        from_env = [e["name"] for e in container["env"]]
        assert len(from_env) == len(set(from_env)) and not from_config & set(from_env), name
        assert from_config | set(from_env) == wanted, name
        for e in container["env"]:
            secret = e.get("valueFrom", {}).get("secretKeyRef")
            field = e["name"].removeprefix("REEL_").lower()
            assert (secret is not None) == (field in k8s_config.SECRETS), e["name"]


def test_the_generated_settings_and_topics_are_current() -> None:
    assert k8s_config.main(["--check"]) == 0, "run python scripts/k8s_config.py"


def test_the_settings_analysis_finds_what_each_service_reads() -> None:
    """Spot checks by hand, both ways: what only one service reads is found there only."""
    reads = {s: k8s_config.settings_read(s) for s in k8s_config.SERVICES}
    assert "database_url" in reads["tracker"] and all("database_url" not in reads[s] for s in k8s_config.SERVICES[:4])
    assert {"kubernetes_namespace", "transcoder_statefulset", "max_duration_s"} <= reads["splitter"]
    assert "outputs_base_url" in reads["pusher"] and "outputs_base_url" not in reads["transcoder"]
    assert "scratch_dir" not in reads["tracker"]  # the tracker keeps nothing on disk
    assert not {"kafka_port", "s3_port", "pg_port", "node_cpu"} & set().union(*reads.values())  # the embedded stack's


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_topic_the_code_uses_is_a_kafka_topic_with_enough_partitions(overlay: str) -> None:
    docs = build(overlay)
    topics = {t["spec"]["topicName"]: t["spec"] for t in of(docs, "KafkaTopic").values()}
    assert sorted(topics) == sorted(all_topics())
    scalers = [*of(docs, "HorizontalPodAutoscaler").values(), *of(docs, "ScaledObject").values()]
    most = max(s["spec"].get("maxReplicas", s["spec"].get("maxReplicaCount", 0)) for s in scalers)
    splitter = of(docs, "StatefulSet")["reel-splitter"]["spec"]["template"]["spec"]["containers"][0]
    expected = int(
        of(docs, "ConfigMap")[splitter["envFrom"][0]["configMapRef"]["name"]]["data"]["REEL_KAFKA_PARTITIONS"]
    )
    kafka = of(docs, "Kafka")["reel"]["spec"]["kafka"]["config"]
    (pool,) = of(docs, "KafkaNodePool").values()
    replication = 1 if overlay == "dev" else 3
    for name, spec in topics.items():
        assert spec["partitions"] == expected >= most, name  # a member past the partitions idles
        assert spec["replicas"] == replication <= pool["spec"]["replicas"], name
        assert spec["config"] == {"min.insync.replicas": str(replication - (replication > 1)), **topic_config(name)}
    assert kafka["transaction.state.log.replication.factor"] == kafka["offsets.topic.replication.factor"] == replication
    assert kafka["transaction.state.log.min.isr"] == kafka["min.insync.replicas"] == (2 if replication == 3 else 1)
    assert kafka["auto.create.topics.enable"] is False  # the services never create topics
    assert kafka["transaction.max.timeout.ms"] >= Settings().transaction_timeout_ms
    assert all(t["metadata"]["labels"]["strimzi.io/cluster"] == "reel" for t in of(docs, "KafkaTopic").values())


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_pod_is_restricted(overlay: str) -> None:
    """The restricted Pod Security Standard, and a read-only root with a scratch volume."""
    docs = build(overlay)
    assert of(docs, "Namespace")["reel"]["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for name, w in {**workloads(docs), **of(docs, "StatefulSet")}.items():
        pod = w["spec"]["template"]["spec"]
        sc = pod["securityContext"]
        assert (
            sc["runAsNonRoot"] is True and sc["runAsUser"] >= 10000 and sc["seccompProfile"]["type"] == "RuntimeDefault"
        )
        for c in containers(w):
            csc = c["securityContext"]
            assert csc == {
                "allowPrivilegeEscalation": False,
                "readOnlyRootFilesystem": True,
                "capabilities": {"drop": ["ALL"]},
            }, (name, c["name"])
        if name in workloads(docs):
            (scratch,) = [v for v in pod["volumes"] if v["name"] == "scratch"]
            mounts = {m["mountPath"] for c in pod["containers"] for m in c["volumeMounts"]}
            assert "/scratch" in mounts and scratch["emptyDir"]["sizeLimit"]


def test_requests_and_limits_cover_what_the_image_run_measured() -> None:
    """Memory limits at least twice each service's peak RSS in the image run; requests at
    least that peak; the busiest asks most CPU; the pusher's disk holds three times the
    longest video's output."""
    docs = build("prod")
    for name, w in workloads(docs).items():
        res = w["spec"]["template"]["spec"]["containers"][0]["resources"]
        peak = IMAGE_RUN["peak_rss_bytes"][run_of(name)]
        assert quantity(res["requests"]["memory"]) >= peak, name
        assert quantity(res["limits"]["memory"]) >= 2 * peak, name
        assert "cpu" not in res["limits"], f"{name}: a CPU limit only throttles"
        assert quantity(res["limits"]["ephemeral-storage"]) >= 2 * IMAGE_RUN["peak_scratch_bytes"][run_of(name)], name
    # CPU: the one that burned most in the image run (the transcoder, by far) asks most.
    cpu = {
        name: quantity(w["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"])
        for name, w in workloads(docs).items()
    }
    burned = IMAGE_RUN["cpu_seconds"]
    assert max(cpu, key=cpu.__getitem__) == "reel-" + max(burned, key=burned.__getitem__)
    s = Settings()
    profile = load_profile("default")
    bits_per_s = sum(r.bitrate for r in profile.rungs) + profile.audio.bitrate
    longest_output = s.max_duration_s * bits_per_s / 8
    pusher = of(docs, "StatefulSet")["reel-pusher"]["spec"]["template"]["spec"]
    assert quantity(pusher["containers"][0]["resources"]["limits"]["ephemeral-storage"]) >= 3 * longest_output
    (scratch,) = [v for v in pusher["volumes"] if v["name"] == "scratch"]
    assert quantity(scratch["emptyDir"]["sizeLimit"]) >= 3 * longest_output


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probes_ask_the_routes_that_mean_something_on_the_ports_the_settings_give(overlay: str) -> None:
    """Liveness on /healthz (a stopped loop), readiness on /readyz (Kafka or S3 out of
    reach), on a named port whose number is the one the service binds (its settings).
    That these answer on the services run from the image: tests/image."""
    docs = build(overlay)
    for name, w in workloads(docs).items():
        c = w["spec"]["template"]["spec"]["containers"][0]
        config = of(docs, "ConfigMap")[c["envFrom"][0]["configMapRef"]["name"]]["data"]
        bound = {"metrics": int(config["REEL_METRICS_PORT"]), "http": int(config.get("REEL_TRACKER_PORT", 0))}
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        assert all(ports[n] == bound[n] for n in ports), name
        for probe, path in (("startupProbe", "/healthz"), ("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
            get = c[probe]["httpGet"]
            assert get["path"] == path and get["port"] in ports, (name, probe)
        role = {e["name"]: e.get("value") for e in c["env"]}.get("REEL_TRACKER_ROLE")
        assert c["livenessProbe"]["httpGet"]["port"] == ("http" if role == "api" else "metrics"), name
        # Liveness never gives up on a worker busy on a long unit: the loop turns meanwhile.
        live = c["livenessProbe"]
        assert live["periodSeconds"] * live["failureThreshold"] >= 60


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_workload_has_a_budget_a_spread_and_a_scrape_target(overlay: str) -> None:
    docs = build(overlay)
    budgets = [b["spec"]["selector"]["matchLabels"] for b in of(docs, "PodDisruptionBudget").values()]
    services = of(docs, "Service")
    monitors = [m["spec"] for m in of(docs, "ServiceMonitor").values()]
    for name, w in workloads(docs).items():
        labels = w["spec"]["template"]["metadata"]["labels"]
        assert sum(all(labels.get(k) == v for k, v in b.items()) for b in budgets) == 1, name
        spread = w["spec"]["template"]["spec"]["topologySpreadConstraints"]
        assert {s["topologyKey"] for s in spread} == {"kubernetes.io/hostname", "topology.kubernetes.io/zone"}
        assert all(s["labelSelector"]["matchLabels"] == {"app.kubernetes.io/name": name} for s in spread)
        scraped = [
            svc
            for svc in services.values()
            if all(labels.get(k) == v for k, v in svc["spec"]["selector"].items())
            and any(p["name"] == "metrics" for p in svc["spec"]["ports"])
            and any(
                all(svc["metadata"]["labels"].get(k) == v for k, v in m["selector"]["matchLabels"].items())
                and any(e["port"] == "metrics" and e["path"] == "/metrics" for e in m["endpoints"])
                for m in monitors
            )
        ]
        assert len(scraped) == 1, f"{name}: scraped by {len(scraped)} ServiceMonitor targets"
    api = of(docs, "Deployment")["reel-tracker-api"]["spec"]
    assert api["replicas"] == (1 if overlay == "dev" else 2)
    projector = of(docs, "Deployment")["reel-tracker-projector"]["spec"]
    assert projector["replicas"] == 1 and projector["strategy"]["type"] == "Recreate"  # never two consumers of it all
    for d in (api, projector):
        (init,) = d["template"]["spec"]["initContainers"]
        assert {"name": "REEL_TRACKER_ROLE", "value": "migrate"} in init["env"]  # schema and buckets first


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_secret_a_pod_names_exists_or_is_made_by_whom_the_docs_say(overlay: str) -> None:
    docs = build(overlay)
    made_here = set(of(docs, "Secret"))
    by_operator = {f"{c}-app" for c in of(docs, "Cluster")}  # CloudNativePG's application user
    by_operator |= set(of(docs, "KafkaUser"))  # Strimzi's User Operator: one Secret per KafkaUser
    yours = {"reel-s3", "reel-tracker-keys"}  # docs/operations.md: created before applying prod
    for name, w in {**workloads(docs), **of(docs, "StatefulSet")}.items():
        for c in containers(w):
            for e in c.get("env", []):
                ref = e.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    allowed = made_here | by_operator | (yours if overlay != "dev" else set())
                    assert ref["name"] in allowed, (name, e["name"], ref["name"])
    if overlay == "dev":
        assert {s.rsplit("-", 1)[0] for s in made_here} == yours


# The peers of the image run (bench/results/image.json), as pods of these manifests.
PEERS = {
    "kafka": ({"strimzi.io/cluster": "reel", "strimzi.io/broker-role": "true"}, 9093),
    "s3": ({"app.kubernetes.io/name": "reel-minio"}, 9000),
    "postgres": ({"cnpg.io/cluster": "reel-postgres"}, 5432),
}
# What only a cluster adds to the image run's connections, and why.
CLUSTER_ONLY = {
    "dns": "names resolve through kube-dns",
    "api-server": "the splitter reads the transcoders' StatefulSet (REEL_KUBERNETES_NAMESPACE)",
    "callbacks": "the projector POSTs callbacks to clients' public endpoints",
}


def egress_peers(rule: dict[str, Any]) -> list[str]:
    """What an egress rule admits, named as the image run's peers or CLUSTER_ONLY."""
    ports = {p["port"] for p in rule.get("ports", [])}
    if "to" not in rule:
        return ["api-server"] if ports <= {443, 6443} else ["anything"]
    found = []
    for to in rule["to"]:
        labels = to.get("podSelector", {}).get("matchLabels", {})
        if to.get("namespaceSelector", {}).get("matchLabels") == {"kubernetes.io/metadata.name": "kube-system"}:
            found.append("dns" if labels == {"k8s-app": "kube-dns"} and ports == {53} else "kube-system")
        elif "ipBlock" in to:
            private = {"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "127.0.0.0/8", "169.254.0.0/16"}
            if to["ipBlock"]["cidr"] == "0.0.0.0/0" and private <= set(to["ipBlock"].get("except", [])):
                found.append("callbacks")
            else:
                found.append("s3" if ports == {443} else "an address block")
        else:
            found += [p for p, (sel, port) in PEERS.items() if labels == sel and ports == {port}] or ["other pods"]
    return found


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policies_allow_the_connections_the_image_run_made_and_no_other(overlay: str) -> None:
    docs = build(overlay)
    policies = [p for p in of(docs, "NetworkPolicy").values() if p["metadata"]["name"] != "reel-minio"]
    for name, w in workloads(docs).items():
        service = service_of(w)
        labels = w["spec"]["template"]["metadata"]["labels"]
        mine = [
            p["spec"]
            for p in policies
            if all(labels.get(k) == v for k, v in p["spec"]["podSelector"]["matchLabels"].items())
        ]
        assert any("Egress" in p["policyTypes"] for p in mine) and any("Ingress" in p["policyTypes"] for p in mine), (
            name
        )
        allowed = [peer for p in mine for rule in p.get("egress", []) for peer in egress_peers(rule)]
        observed = set(IMAGE_RUN["connected_to"][run_of(name)])
        assert observed <= set(allowed), f"{name}: the image run reached {observed - set(allowed)}, not allowed here"
        extra = set(allowed) - observed
        expected_extra = {"dns"} | ({"api-server"} if service == "splitter" else set())
        role = {e["name"]: e.get("value") for e in w["spec"]["template"]["spec"]["containers"][0]["env"]}
        if role.get("REEL_TRACKER_ROLE") == "projector":
            expected_extra.add("callbacks")
        assert extra == expected_extra, f"{name}: allows {extra - expected_extra} beyond what it was seen to reach"
        # Ingress: exactly the ports it listens on (the image run's listeners, by setting).
        ingress = {p["port"] for s in mine for rule in s.get("ingress", []) for p in rule["ports"]}
        container_ports = {p["containerPort"] for p in w["spec"]["template"]["spec"]["containers"][0]["ports"]}
        assert ingress == container_ports, name
        assert len(container_ports) == len(IMAGE_RUN["listened_on"][run_of(name)]), name


def test_the_network_check_can_fail() -> None:
    assert egress_peers({"ports": [{"port": 80}]}) == ["anything"]
    assert egress_peers({"to": [{"podSelector": {"matchLabels": {"app": "x"}}}], "ports": [{"port": 9092}]}) == [
        "other pods"
    ]
    assert egress_peers({"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}], "ports": [{"port": 80}]}) == ["an address block"]


def test_the_dev_overlay_is_one_of_everything_and_small() -> None:
    docs = build("dev")
    assert of(docs, "KafkaNodePool")["dual"]["spec"]["replicas"] == 1
    assert of(docs, "Cluster")["reel-postgres"]["spec"]["instances"] == 1
    for name, w in workloads(docs).items():
        assert w["spec"]["replicas"] == 1, name
        requests = w["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]
        assert quantity(requests["cpu"]) <= 0.05 and quantity(requests["memory"]) <= 128 * MiB, name
    s3 = {e: load(c["data"]).s3_endpoint for e, c in of(docs, "ConfigMap").items() if "-settings" in e}
    assert set(s3.values()) == {"reel-minio:9000"} and "reel-minio" in of(docs, "Service")
    prod = build("prod")
    assert {load(c["data"]).s3_endpoint for n, c in of(prod, "ConfigMap").items() if "-settings" in n} != {
        "reel-minio:9000"
    }
    assert "reel-minio" not in of(prod, "Service")


def test_no_service_creates_topics() -> None:
    """In a cluster the Topic Operator owns the topics: nothing a service imports makes one
    (only the embedded stack, devstack/kafka.py, does)."""
    for service in k8s_config.SERVICES:
        for module in k8s_config.modules_of(service):
            path = k8s_config.module_file(module)
            assert path is not None
            source = path.read_text()
            assert "create_topics" not in source and "NewTopic" not in source, module


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_link_is_encrypted_and_checked_against_a_mounted_ca(overlay: str) -> None:
    """Kafka over TLS with SCRAM on every pod, Postgres with verify-full wherever a pod
    reads it; each CA path a setting names is a file of the operator's CA Secret, mounted
    in that container (the migrating init container too)."""
    docs = build(overlay)
    configs = of(docs, "ConfigMap")
    listener = of(docs, "Kafka")["reel"]["spec"]["kafka"]["listeners"]
    assert all(entry["tls"] and entry["authentication"]["type"] == "scram-sha-512" for entry in listener)
    cas = {"REEL_KAFKA_CA": "reel-cluster-ca-cert", "REEL_PG_CA": "reel-postgres-ca"}
    for name, w in workloads(docs).items():
        pod = w["spec"]["template"]["spec"]
        secrets = {v["name"]: v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
        config = configs[pod["containers"][0]["envFrom"][0]["configMapRef"]["name"]]["data"]
        assert config["REEL_KAFKA_SECURITY"] == "sasl_ssl", name
        assert config["REEL_KAFKA_BOOTSTRAP"].endswith(":9093"), name
        if "REEL_DATABASE_URL" in {e["name"] for e in pod["containers"][0]["env"]}:
            assert config["REEL_PG_SSLMODE"] == "verify-full", name
        for c in containers(w):
            mounted = {m["mountPath"]: secrets.get(m["name"]) for m in c.get("volumeMounts", [])}
            for setting, secret in cas.items():
                if setting in config and (c in pod["containers"] or setting == "REEL_PG_CA"):
                    folder, _, file = config[setting].rpartition("/")
                    assert mounted.get(folder) == secret and file == "ca.crt", (name, c["name"], setting)
