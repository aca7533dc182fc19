"""docker-compose.kafka.yml cannot run here (no Docker engine), so check what can be checked."""

from __future__ import annotations

import json
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


# --- observability (issue 13): Prometheus and Grafana in the compose stack ---------------------------

ROOT = Path(__file__).parents[2]
DASHBOARD = json.loads((ROOT / "deploy/grafana/dashboards/agentstream.json").read_text())
TARGET_LABELS = {"job", "instance"}  # added by Prometheus to every scraped series
_FUNCTIONS = {"sum", "max", "min", "avg", "count", "rate", "increase", "irate", "histogram_quantile", "by", "without"}


def _exported() -> dict[str, set[str]]:
    """Every series name the processes' registry exposes, with its label names (histograms: le too)."""
    from prometheus_client import generate_latest
    from prometheus_client.metrics import MetricWrapperBase

    from streams.observability.metrics import Metrics

    metrics = Metrics()
    names: dict[str, set[str]] = {}
    for wrapper in vars(metrics).values():
        if not isinstance(wrapper, MetricWrapperBase):
            continue
        labels = set(wrapper._labelnames)  # the label names it was declared with
        for family in wrapper.describe():
            if family.type == "counter":
                names[f"{family.name}_total"] = labels
            elif family.type == "histogram":
                for suffix in ("_bucket", "_count", "_sum"):
                    names[family.name + suffix] = labels | ({"le"} if suffix == "_bucket" else set())
            else:
                names[family.name] = labels
    for line in generate_latest(metrics.registry).decode().splitlines():  # the standard process/GC series
        if line and not line.startswith("#"):
            names.setdefault(re.split(r"[{ ]", line, maxsplit=1)[0], set())
    return names


def _query_parts(expr: str) -> tuple[dict[str, set[str]], set[str]]:
    """The metrics a PromQL expression reads (with the labels it matches on) and the labels it groups by."""
    expr = re.sub(r'"[^"]*"', '""', expr)
    grouped = {label.strip() for group in re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", expr)
               for label in group.split(",") if label.strip()}
    expr = re.sub(r"\b(?:by|without)\s*\([^)]*\)", " ", expr)
    expr = re.sub(r"\[[^\]]*\]", " ", expr)
    metrics: dict[str, set[str]] = {}
    for name, matchers in re.findall(r"([a-zA-Z_:][\w:]*)\s*\{([^}]*)\}", expr):
        metrics.setdefault(name, set()).update(re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", matchers))
    expr = re.sub(r"\{[^}]*\}", " ", expr)
    for name in re.findall(r"\b([a-zA-Z_:][\w:]*)\b(?!\s*\()", expr):
        if name not in _FUNCTIONS:
            metrics.setdefault(name, set())
    return metrics, grouped


def test_every_metric_the_grafana_dashboard_queries_is_one_the_processes_export() -> None:
    exported = _exported()
    queried = 0
    for panel in DASHBOARD["panels"]:
        for target in panel["targets"]:
            metrics, grouped = _query_parts(target["expr"])
            assert metrics, f"{panel['title']}: no metric in {target['expr']!r}"
            for name, matched in metrics.items():
                assert name in exported, f"{panel['title']}: {name} is not exported by the processes"
                assert matched <= exported[name] | TARGET_LABELS, f"{panel['title']}: {name} has no {matched}"
                queried += 1
            available = set().union(*(exported[n] for n in metrics)) | TARGET_LABELS
            assert grouped <= available, f"{panel['title']}: grouped by {grouped - available}, not a label of those"
            legend = set(re.findall(r"\{\{\s*(\w+)\s*\}\}", target.get("legendFormat", "")))
            shown = grouped or available
            assert legend <= shown, f"{panel['title']}: the legend shows {legend - shown}, which the query drops"
    assert queried >= 16
    wanted = {"agentstream_tasks_total", "agentstream_stage_seconds_bucket", "kafka_consumergroup_lag",
              "agentstream_llm_calls_in_flight", "agentstream_llm_cost_usd_total", "agentstream_deadletters_total"}
    used = {n for p in DASHBOARD["panels"] for t in p["targets"] for n in _query_parts(t["expr"])[0]}
    assert wanted <= used, f"the dashboard does not show {wanted - used}"


def test_a_query_naming_an_unknown_metric_or_label_is_caught() -> None:
    metrics, grouped = _query_parts('sum by (tenant) (rate(agentstream_tasks_totl{status="ok"}[1m]))')
    assert metrics == {"agentstream_tasks_totl": {"status"}} and grouped == {"tenant"}
    exported = _exported()
    assert "agentstream_tasks_totl" not in exported and "tenant" not in exported["agentstream_tasks_total"]


def test_prometheus_scrapes_every_worker_and_sink_replica_on_the_metrics_port() -> None:
    config = yaml.safe_load((ROOT / "deploy/prometheus.yml").read_text())
    port = int(WORKER_ENV["AGENTSTREAM_METRICS_PORT"])
    assert WORKER_ENV["AGENTSTREAM_METRICS_HOST"] == "0.0.0.0"  # reachable from the Prometheus container
    scraped = {}
    for job in config["scrape_configs"]:
        for sd in job["dns_sd_configs"]:
            for name in sd["names"]:
                scraped[name] = sd["port"]
    assert scraped == {"worker": port, "sinks": port}
    assert SERVICES["sinks"]["environment"] == WORKER_ENV  # the sinks run with the same settings
    assert SERVICES["sinks"]["command"] == ["agentstream", "sinks"]
    mounted = {v.split(":")[1]: v.split(":")[0] for v in SERVICES["prometheus"]["volumes"]}
    assert mounted["/etc/prometheus/prometheus.yml"] == "./deploy/prometheus.yml"


def test_grafana_is_provisioned_with_prometheus_and_the_dashboard() -> None:
    datasource = yaml.safe_load((ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text())
    (source,) = datasource["datasources"]
    url = urlsplit(source["url"])
    assert url.hostname == "prometheus" and url.port in _published("prometheus")
    uids = {t["datasource"]["uid"] for p in DASHBOARD["panels"] for t in p["targets"]}
    assert uids == {source["uid"]}
    provider = yaml.safe_load((ROOT / "deploy/grafana/provisioning/dashboards/agentstream.yml").read_text())
    mounts = {v.split(":")[1]: v.split(":")[0] for v in SERVICES["grafana"]["volumes"]}
    assert mounts[provider["providers"][0]["options"]["path"]] == "./deploy/grafana/dashboards"
    assert mounts["/etc/grafana/provisioning"] == "./deploy/grafana/provisioning"
    assert str(SERVICES["grafana"]["environment"]["GF_SECURITY_ADMIN_PASSWORD"]).startswith("${")


def test_weaviate_is_the_version_and_settings_the_local_stack_runs() -> None:
    from streams.devstack.weaviate import WEAVIATE_VERSION, WeaviatePart

    service = SERVICES["weaviate"]
    assert service["image"].rsplit(":", 1)[1] == WEAVIATE_VERSION.lstrip("v")
    local = WeaviatePart(Settings(), Path("/nonexistent")).environment()
    for key in ("AUTHENTICATION_ANONYMOUS_ACCESS_ENABLED", "DEFAULT_VECTORIZER_MODULE", "DISABLE_TELEMETRY",
                "CLUSTER_HOSTNAME", "RAFT_BOOTSTRAP_EXPECT", "RAFT_TIMEOUTS_MULTIPLIER"):
        assert str(service["environment"][key]) == local[key], key
    grpc = int(service["environment"]["GRPC_PORT"])
    assert int(WORKER_ENV["WEAVIATE_GRPC_PORT"]) == grpc and grpc in _published("weaviate")
