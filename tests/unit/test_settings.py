from dataclasses import fields
from pathlib import Path

from reel.settings import Settings, load

DOC = Path(__file__).resolve().parents[2] / "docs" / "settings.md"


def test_every_setting_is_documented() -> None:
    doc = DOC.read_text()
    for field in fields(Settings):
        assert f"`REEL_{field.name.upper()}`" in doc, field.name


def test_environment_overrides_and_derived_addresses() -> None:
    s = load({"REEL_KAFKA_PORT": "1234", "REEL_S3_SECURE": "yes", "DATABASE_URL": "postgresql://x/y"})
    assert s.kafka_bootstrap == "127.0.0.1:1234" and s.s3_secure is True
    assert not s.embedded_postgres and s.postgres_url == "postgresql://x/y"
    assert load({"REEL_KAFKA_BOOTSTRAP": "kafka:9092"}).kafka_bootstrap == "kafka:9092"
    assert load({}).postgres_url.startswith("postgresql://postgres@127.0.0.1:15432/")
