"""The embedded Apache Kafka broker: KRaft, one combined broker+controller node.

A single node, so every replication factor and min ISR is 1; no topic
auto-creation, a low group.min.session.timeout.ms so workers can detect a dead
member in seconds, and fast cleanup of abandoned transactions.
"""

from __future__ import annotations

import base64
import shutil
import subprocess
import uuid
from pathlib import Path

from confluent_kafka.admin import NewTopic

from devstack import tls as devstack_tls
from devstack.procs import Component, StackError, spawn, wait_ready
from reel import PROJECT_ROOT
from reel.contract import all_topics, topic_config
from reel.kafka import admin_client
from reel.settings import Settings

POM = PROJECT_ROOT / "stack" / "kafka" / "pom.xml"


def ports(settings: Settings) -> list[int]:
    return [settings.kafka_port, settings.kafka_port + 1]


def ensure_jars(libs: Path) -> None:
    """Fetch the broker's jars from Maven Central once (Maven's cache makes repeats fast)."""
    if any(libs.glob("kafka_2.13-*.jar")):
        return
    if shutil.which("mvn") is None:
        raise StackError("Maven (mvn) is not installed; run: apt-get install -y maven")
    libs.mkdir(parents=True, exist_ok=True)
    cmd = ["mvn", "-q", "-f", str(POM), "dependency:copy-dependencies", f"-DoutputDirectory={libs}"]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        shutil.rmtree(libs, ignore_errors=True)
        raise StackError(f"fetching Kafka jars failed: {result.stdout[-300:]}{result.stderr[-300:]}")


def server_properties(settings: Settings, data: Path) -> str:
    port, controller = ports(settings)
    props = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@127.0.0.1:{controller}",
        "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}",
        # A fault test fronts the broker with a proxy: clients must come back through it.
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{settings.kafka_advertised_port or port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": str(data),
        "num.partitions": "1",
        "default.replication.factor": "1",
        "min.insync.replicas": "1",
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "8",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "8",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        "group.min.session.timeout.ms": "1000",
        "transaction.abort.timed.out.transaction.cleanup.interval.ms": "1000",
        "auto.create.topics.enable": "false",
    }
    if settings.kafka_security == "sasl_ssl":
        props |= secured(settings, port)
    return "".join(f"{k}={v}\n" for k, v in props.items())


def secured(settings: Settings, port: int) -> dict[str, str]:
    """The client listener over TLS with SCRAM-SHA-512, the broker's own connections too;
    the controller's stays on loopback in plain text (one process talking to itself)."""
    tls = devstack_tls.ensure(settings.home)
    login = "org.apache.kafka.common.security.scram.ScramLoginModule required"
    return {
        "listeners": f"SASL_SSL://127.0.0.1:{port},CONTROLLER://127.0.0.1:{port + 1}",
        "advertised.listeners": f"SASL_SSL://127.0.0.1:{settings.kafka_advertised_port or port}",
        "inter.broker.listener.name": "SASL_SSL",
        "listener.security.protocol.map": "SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT",
        "sasl.enabled.mechanisms": "SCRAM-SHA-512",
        "sasl.mechanism.inter.broker.protocol": "SCRAM-SHA-512",
        "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config": (
            f'{login} username="{settings.kafka_username}" password="{settings.kafka_password}";'
        ),
        "ssl.keystore.type": "PEM",
        "ssl.keystore.location": str(tls.keystore),
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": str(tls.ca),
    }


def scram_user(settings: Settings) -> list[str]:
    """The format step's argument that creates the SCRAM user (KRaft keeps it in the
    metadata log from the first record)."""
    if settings.kafka_security != "sasl_ssl":
        return []
    if any(c in settings.kafka_password for c in ',[]="\n'):
        raise StackError("the embedded broker's REEL_KAFKA_PASSWORD may not hold , [ ] = or quotes")
    return ["--add-scram", f"SCRAM-SHA-512=[name={settings.kafka_username},password={settings.kafka_password}]"]


LOG4J2 = """status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = {log}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = file
logger.kafka.name = kafka
logger.kafka.level = WARN
logger.apache.name = org.apache
logger.apache.level = WARN
"""


def start(settings: Settings) -> Component:
    if shutil.which("java") is None:
        raise StackError("Java is not installed; run: apt-get install -y default-jre-headless")
    ensure_jars(settings.kafka_libs)
    home = settings.home / "kafka"
    data = home / "data"
    home.mkdir(parents=True, exist_ok=True)
    props = home / "server.properties"
    props.touch(mode=0o600)  # it may hold the SCRAM password
    props.write_text(server_properties(settings, data))
    log4j = home / "log4j2.properties"
    log4j.write_text(LOG4J2.format(log=home / "server.log"))
    classpath = f"{settings.kafka_libs}/*"
    java = ["java", "-Xms256m", "-Xmx1g", f"-Dlog4j2.configurationFile={log4j}", "-cp", classpath]
    if not (data / "meta.properties").exists():
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        # "=": a base64 id may start with "-", which the tool would take for an option.
        fmt = java + ["kafka.tools.StorageTool", "format", f"--cluster-id={cluster_id}", "-c", str(props)]
        fmt += scram_user(settings)
        result = subprocess.run(fmt, capture_output=True, text=True)
        if result.returncode != 0:
            raise StackError(f"formatting Kafka storage failed: {result.stderr[-400:]}")
    console = home / "console.log"
    proc = spawn("kafka", java + ["kafka.Kafka", str(props)], console)
    admin = admin_client(settings, log_level=0)
    wait_ready(
        "kafka",
        proc.pid,
        lambda: bool(admin.list_topics(timeout=2).brokers),
        settings.ready_timeout_s,
        console,
    )
    create_topics(settings)
    return Component("kafka", proc.pid, ports(settings), str(console), settings.kafka_bootstrap)


def create_topics(settings: Settings) -> None:
    """Create every topic with its final partition count; auto-creation is off."""
    admin = admin_client(settings)
    existing = set(admin.list_topics(timeout=10).topics)
    wanted = []
    for topic in all_topics():
        if topic in existing:
            continue
        wanted.append(NewTopic(topic, num_partitions=settings.kafka_partitions, config=topic_config(topic)))
    if not wanted:
        return
    for topic, future in admin.create_topics(wanted, request_timeout=30).items():
        try:
            future.result()
        except Exception as exc:  # TOPIC_ALREADY_EXISTS after a race is fine
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise StackError(f"creating topic {topic} failed: {exc}") from exc


def healthy(settings: Settings) -> bool:
    try:
        admin = admin_client(settings, log_level=0)
        return bool(admin.list_topics(timeout=2).brokers)
    except Exception:  # noqa: BLE001
        return False
