"""How each client reaches its server: the Kafka client configuration and the database URL
for plain and encrypted links (pure)."""

from __future__ import annotations

from pathlib import Path

import pytest

from reel.kafka import client_config
from reel.settings import load


def test_plaintext_kafka_names_only_the_broker() -> None:
    assert client_config(load({"REEL_KAFKA_PORT": "1234"})) == {"bootstrap.servers": "127.0.0.1:1234"}


def test_sasl_ssl_verifies_the_broker_and_authenticates_with_scram() -> None:
    conf = client_config(load({"REEL_KAFKA_SECURITY": "sasl_ssl", "REEL_KAFKA_PASSWORD": "p", "REEL_HOME": "/h"}))
    assert conf["security.protocol"] == "SASL_SSL" and conf["sasl.mechanisms"] == "SCRAM-SHA-512"
    assert conf["ssl.endpoint.identification.algorithm"] == "https"
    assert conf["ssl.ca.location"] == "/h/tls/ca.pem"  # the embedded broker: the stack's CA
    external = client_config(load({"REEL_KAFKA_SECURITY": "sasl_ssl", "REEL_KAFKA_BOOTSTRAP": "k:9093"}))
    assert "ssl.ca.location" not in external  # someone else's broker: the system's CAs


def test_an_unknown_kafka_security_is_an_error() -> None:
    with pytest.raises(ValueError, match="plaintext or sasl_ssl"):
        client_config(load({"REEL_KAFKA_SECURITY": "ssl"}))


@pytest.mark.parametrize(
    "env,url",
    [
        ({}, "postgresql://postgres@127.0.0.1:15432/postgres"),
        (
            {"REEL_PG_TLS": "1", "REEL_HOME": "/h", "REEL_PG_PASSWORD": "a b"},
            "postgresql://postgres:a%20b@127.0.0.1:15432/postgres?sslmode=verify-full&sslrootcert=/h/tls/ca.pem",
        ),
        (
            {"DATABASE_URL": "postgresql://u:p@db/app", "REEL_PG_SSLMODE": "verify-full", "REEL_PG_CA": "/c/ca.crt"},
            "postgresql://u:p@db/app?sslmode=verify-full&sslrootcert=/c/ca.crt",
        ),
        (
            {"DATABASE_URL": "postgresql://u:p@db/app?x=1", "REEL_PG_SSLMODE": "require"},
            "postgresql://u:p@db/app?x=1&sslmode=require",
        ),
    ],
)
def test_the_database_url_carries_the_tls_parameters(env: dict[str, str], url: str) -> None:
    assert load(env).postgres_url == url


def test_the_embedded_s3_over_tls_is_checked_against_the_stacks_ca() -> None:
    s = load({"REEL_S3_SECURE": "1", "REEL_HOME": "/h"})
    assert s.s3_ca == str(Path("/h/tls/ca.pem")) == str(s.stack_ca)
    assert load({"REEL_S3_SECURE": "1", "REEL_S3_ENDPOINT": "s3.example.com"}).s3_ca == ""
