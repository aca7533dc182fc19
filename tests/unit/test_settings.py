from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from streams.settings import Settings, mask_url
from streams.topics import ALL_TOPICS, DEADLETTERS, PROMPT_DECISIONS, TASKS, topic_specs


def test_defaults_point_at_the_embedded_stack(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL", "REDIS_URL", "AGENTSTREAM_KAFKA_PORT"):
        monkeypatch.delenv(var, raising=False)
    s = Settings()
    assert s.kafka_servers == "127.0.0.1:19092"
    assert s.postgres_dsn == "postgresql://postgres@127.0.0.1:15432/postgres"
    assert s.redis_dsn == "redis://127.0.0.1:16379/0"
    assert s.data_dir == Path(".agentstream")


def test_environment_overrides_and_urls_win_over_ports(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "broker-a:9092,broker-b:9092")
    monkeypatch.setenv("DATABASE_URL", "postgresql://app:s3cret@db:5432/app")
    monkeypatch.setenv("AGENTSTREAM_PARTITIONS", "8")
    s = Settings()
    assert s.kafka_servers == "broker-a:9092,broker-b:9092"
    assert s.postgres_dsn == "postgresql://app:s3cret@db:5432/app"
    assert s.partitions == 8


def test_bad_values_are_rejected_with_the_variable_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTSTREAM_PARTITIONS", "zero")
    with pytest.raises(ValidationError, match="AGENTSTREAM_PARTITIONS"):
        Settings()


def test_settings_are_frozen() -> None:
    with pytest.raises(ValidationError):
        Settings().partitions = 3  # type: ignore[misc]


def test_masked_view_never_shows_a_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://app:s3cret@db:5432/app")
    monkeypatch.setenv("REDIS_URL", "redis://:hunter2@cache:6379/0")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
    view = Settings().masked()
    text = repr(view) + repr(Settings())
    for secret in ("s3cret", "hunter2", "wJalrXUtnFEMI"):
        assert secret not in text
    assert view["database_url"] == "postgresql://app:***@db:5432/app"
    assert view["aws_secret_access_key"] == "***"


def test_as_env_round_trips_through_a_child_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    original = Settings(AGENTSTREAM_KAFKA_PORT=1234, AGENTSTREAM_TOPIC_PREFIX="x.", DATABASE_URL="postgresql://a:b@h/d")
    for key, value in original.as_env().items():
        monkeypatch.setenv(key, value)
    assert Settings() == original


def test_mask_url_leaves_passwordless_urls_alone() -> None:
    assert mask_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
    assert mask_url("redis://user:pw@h/0") == "redis://user:***@h/0"


def test_topic_specs_have_every_topic_once_with_the_prefix() -> None:
    specs = topic_specs(Settings(AGENTSTREAM_TOPIC_PREFIX="run1.", AGENTSTREAM_PARTITIONS=6))
    names = [s.name for s in specs]
    assert sorted(names) == sorted(f"run1.{t}" for t in ALL_TOPICS)
    parts = {s.name: s.partitions for s in specs}
    assert parts[f"run1.{TASKS}"] == 6
    assert parts[f"run1.{DEADLETTERS}"] == parts[f"run1.{PROMPT_DECISIONS}"] == 1


def test_kafka_cluster_ids_never_look_like_an_option() -> None:
    from streams.devstack.kafka import new_cluster_id

    ids = [new_cluster_id() for _ in range(2000)]  # about 31 of 2000 would start with "-" unguarded
    assert all(len(i) == 22 and not i.startswith("-") for i in ids)
