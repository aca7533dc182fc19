"""docker-compose.kafka.yml cannot run here (no Docker engine), so check what can be checked."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from streams.settings import Settings

COMPOSE = yaml.safe_load((Path(__file__).parents[2] / "docker-compose.kafka.yml").read_text())
SERVICES = COMPOSE["services"]
WORKER_ENV: dict[str, str] = SERVICES["worker"]["environment"]
# Variables the worker reads that are not agentstream settings: litellm's provider keys.
PROVIDER_KEYS = {"OPENAI_API_KEY", "ANTHROPIC_API_KEY"}


def _published(service: str) -> set[int]:
    return {int(str(p).split(":")[-1]) for p in SERVICES[service].get("ports", [])}


def test_compose_has_every_part_of_the_production_stack() -> None:
    assert {"kafka", "valkey", "postgres", "weaviate", "minio", "worker"} <= set(SERVICES)


def test_every_worker_variable_is_a_setting() -> None:
    known = {field.alias for field in Settings.model_fields.values()}
    unknown = set(WORKER_ENV) - known - PROVIDER_KEYS
    assert not unknown, f"compose sets variables the settings do not know: {sorted(unknown)}"


def test_worker_environment_builds_valid_settings(monkeypatch) -> None:
    for key, value in WORKER_ENV.items():
        monkeypatch.setenv(key, re.sub(r"\$\{[^}]*\}", "x", str(value)))
    settings = Settings()
    assert settings.kafka_servers == "kafka:9092" and settings.weaviate_url == "http://weaviate:8080"


def test_urls_point_at_the_services_on_their_ports() -> None:
    targets = {
        "KAFKA_BOOTSTRAP_SERVERS": "kafka",
        "DATABASE_URL": "postgres",
        "REDIS_URL": "valkey",
        "WEAVIATE_URL": "weaviate",
        "S3_ENDPOINT_URL": "minio",
    }
    for variable, service in targets.items():
        value = WORKER_ENV[variable]
        parts = urlsplit(value if "://" in value else f"kafka://{value}")
        assert parts.hostname == service, variable
        assert parts.port in _published(service), f"{variable} port {parts.port} is not published by {service}"
    assert "PLAINTEXT://kafka:9092" in SERVICES["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]


def test_no_secret_is_written_in_the_file() -> None:
    for key, value in WORKER_ENV.items():
        if any(word in key for word in ("KEY", "SECRET", "PASSWORD")):
            assert str(value).startswith("${"), f"{key} must come from the environment"
    assert "${POSTGRES_PASSWORD}" in WORKER_ENV["DATABASE_URL"]


def test_the_worker_image_builds_from_the_repository() -> None:
    dockerfile = (Path(__file__).parents[2] / "Dockerfile").read_text()
    assert SERVICES["worker"]["build"] == "."
    for package in ("streams", "agents", "sinks", "schemas"):
        assert f"COPY {package} {package}" in dockerfile
