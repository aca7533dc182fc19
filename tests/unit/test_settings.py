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


@pytest.mark.parametrize(("dsn", "masked"), [
    ("postgresql://u:p4ss@h1:5432,h2:5433/db", "postgresql://u:***@h1:5432,h2:5433/db"),
    ("postgresql://u:p@ss/w0rd@h/db?sslmode=require", "postgresql://u:***@h/db?sslmode=require"),
    ("host=db port=5432 user=app password=s3cr3t dbname=app", "host=db port=5432 user=app password=*** dbname=app"),
    ("host=db password = 'two words\\' here' dbname=app", "host=db password = *** dbname=app"),
    ("host=db sslpassword=k3y user=app", "host=db sslpassword=*** user=app"),
    ("postgresql://db/app?user=app&password=s3cr3t&sslmode=require",
     "postgresql://db/app?user=app&password=***&sslmode=require"),
    ("redis://cache:6379/0?password=s3cr3t", "redis://cache:6379/0?password=***"),
    ("https://user:s3cr3t@weaviate.internal:8080", "https://user:***@weaviate.internal:8080"),
    ("postgresql://app@h1,h2/db", "postgresql://app@h1,h2/db"),
])
def test_mask_url_hides_every_password_form(dsn: str, masked: str) -> None:
    assert mask_url(dsn) == masked


def test_settings_command_prints_odd_urls_masked_without_a_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from streams.cli.main import cli

    monkeypatch.setenv("DATABASE_URL", "postgresql://app:pg-s3cret@h1:5432,h2:5433/app")
    monkeypatch.setenv("REDIS_URL", "redis://cache:6379/0?password=redis-s3cret")
    monkeypatch.setenv("WEAVIATE_URL", "https://reader:wv-s3cret@weaviate:8080")
    result = CliRunner().invoke(cli, ["settings"])
    assert result.exit_code == 0, result.output
    assert result.exception is None
    for secret in ("pg-s3cret", "redis-s3cret", "wv-s3cret"):
        assert secret not in result.output
    assert "postgresql://app:***@h1:5432,h2:5433/app" in result.output


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


def test_kafka_nodes_follow_the_port_rule_and_all_are_bootstrap_servers(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("KAFKA_BOOTSTRAP_SERVERS", "AGENTSTREAM_REPLICATION_FACTOR", "AGENTSTREAM_KAFKA_BROKERS"):
        monkeypatch.delenv(var, raising=False)
    s = Settings(AGENTSTREAM_KAFKA_PORT=30000, AGENTSTREAM_KAFKA_CONTROLLER_PORT=30001, AGENTSTREAM_KAFKA_BROKERS=3)
    assert s.kafka_nodes == [(30000, 30001), (30002, 30003), (30004, 30005)]
    assert s.kafka_servers == "127.0.0.1:30000,127.0.0.1:30002,127.0.0.1:30004"
    assert s.replication_factor == 3  # unset: min(3, brokers)
    assert Settings(AGENTSTREAM_KAFKA_BROKERS=2).replication_factor == 2
    assert Settings().replication_factor == 1
    monkeypatch.setenv("AGENTSTREAM_KAFKA_BROKERS", "5")
    assert Settings().replication_factor == 3
    monkeypatch.setenv("AGENTSTREAM_REPLICATION_FACTOR", "2")  # set: it wins
    assert Settings().replication_factor == 2


def test_overlapping_node_ports_are_rejected() -> None:
    with pytest.raises(ValidationError, match="overlapping"):
        Settings(AGENTSTREAM_KAFKA_PORT=30000, AGENTSTREAM_KAFKA_CONTROLLER_PORT=30002, AGENTSTREAM_KAFKA_BROKERS=2)
    external = Settings(KAFKA_BOOTSTRAP_SERVERS="b:9092", AGENTSTREAM_KAFKA_CONTROLLER_PORT=19094,
                        AGENTSTREAM_KAFKA_BROKERS=2)
    assert external.kafka_servers == "b:9092"  # no embedded node: the ports do not matter


def test_broker_replication_settings_by_node_count() -> None:
    from streams.devstack.kafka import replication_props

    three = replication_props(3)
    assert three["default.replication.factor"] == three["offsets.topic.replication.factor"] == "3"
    assert three["min.insync.replicas"] == three["transaction.state.log.min.isr"] == "2"
    one = replication_props(1)
    assert one["min.insync.replicas"] == one["offsets.topic.replication.factor"] == "1"


def test_isolated_settings_have_topics_and_groups_of_their_own() -> None:
    base = Settings(AGENTSTREAM_TOPIC_PREFIX="staging.", AGENTSTREAM_APP_ID="shop")
    run = base.isolated("bench-1", worker_concurrency=3)
    assert (run.topic_prefix, run.app_id, run.worker_concurrency) == ("staging.bench-1.", "shop-bench-1", 3)
    assert run.topic(TASKS) == "staging.bench-1.agent.tasks" and base.topic(TASKS) == "staging.agent.tasks"
    assert {s.name for s in topic_specs(run)}.isdisjoint(s.name for s in topic_specs(base))


def test_env_files_are_ignored_by_git() -> None:
    """Secrets kept in `.env` never get committed by accident."""
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    ignored = subprocess.run(["git", "-C", str(root), "check-ignore", "--no-index", ".env", "deploy/.env.prod"],
                             capture_output=True, text=True)
    if ignored.returncode == 128:
        pytest.skip(f"not a git checkout: {ignored.stderr}")
    assert ignored.stdout.split() == [".env", "deploy/.env.prod"]
    assert subprocess.run(["git", "-C", str(root), "check-ignore", "--no-index", "-q", ".env.example"]).returncode == 1
