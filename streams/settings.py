"""All settings, read once from the environment at the entry point and passed down.

Every field is one environment variable (named in its alias). Service URLs left unset mean
"use the embedded local stack": the address is then derived from the data folder and ports.
Secrets are `SecretStr`; `masked()` is the only view that should reach a log or a terminal.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Settings", "mask_url"]


_SECRET_PARAM = r"[\w.\-]*(?:password|passwd|pwd|secret|token|api_?key|apikey|access_?key|sig|signature)"  # noqa: S105 - names of secret parameters
# to the last `@` before the query: a password may hold `@` or `/` unescaped (masking a path too is safe)
_USERINFO_PASSWORD = re.compile(r"^(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^:@/?#]*:)(?P<pw>[^?#]*)(?=@)")
_QUERY_SECRET = re.compile(rf"(?i)(?P<head>[?&;]{_SECRET_PARAM}=)(?P<pw>[^&#;]*)")
_DSN_SECRET = re.compile(rf"(?i)(?P<head>(?:^|\s){_SECRET_PARAM}\s*=\s*)(?P<pw>'(?:[^'\\]|\\.)*'|\S*)")


def mask_url(url: str) -> str:
    """`url` with every password hidden: `redis://:pw@h:1/0` -> `redis://:***@h:1/0`, `?password=x` ->
    `?password=***`, `host=h password=x` -> `host=h password=***`. Text only, so multi-host URLs
    (`postgresql://u:p@h1:5432,h2:5433/db`) and anything else odd are fine; a PostgreSQL DSN is checked
    with libpq's own parser (psycopg's conninfo) afterwards, and masked whole if a password survived."""
    try:
        masked = _USERINFO_PASSWORD.sub(r"\g<head>***", url, count=1)
        masked = _QUERY_SECRET.sub(r"\g<head>***", masked)
        if "://" not in masked:
            masked = _DSN_SECRET.sub(r"\g<head>***", masked)
        return masked if _libpq_password(masked) in (None, "***") else "***"
    except Exception:  # never let a view of the settings crash: say nothing rather than too much
        return "***"


def _libpq_password(dsn: str) -> str | None:
    """The password libpq reads in `dsn` (None: none, or not a PostgreSQL DSN)."""
    if "://" in dsn and not dsn.startswith(("postgres://", "postgresql://")):
        return None
    from psycopg.conninfo import conninfo_to_dict  # here: settings must load without the driver

    try:
        return conninfo_to_dict(dsn).get("password")
    except Exception:  # not a DSN libpq can read: the text masks above are all there is
        return None


class Settings(BaseSettings):
    """agentstream settings. Build it once (`Settings()`), then pass it down."""

    model_config = SettingsConfigDict(frozen=True, populate_by_name=True, extra="ignore")

    # Where the embedded stack keeps its data, pid files and logs.
    data_dir: Path = Field(Path(".agentstream"), alias="AGENTSTREAM_DATA_DIR")

    # External services: set one and the embedded part is not started.
    kafka_bootstrap_servers: str | None = Field(None, alias="KAFKA_BOOTSTRAP_SERVERS")
    database_url: SecretStr | None = Field(None, alias="DATABASE_URL")
    redis_url: SecretStr | None = Field(None, alias="REDIS_URL")
    s3_endpoint_url: str | None = Field(None, alias="S3_ENDPOINT_URL")
    s3_bucket: str = Field("agentstream-archive", alias="S3_BUCKET")
    aws_access_key_id: SecretStr | None = Field(None, alias="AWS_ACCESS_KEY_ID")
    aws_secret_access_key: SecretStr | None = Field(None, alias="AWS_SECRET_ACCESS_KEY")
    aws_region: str = Field("us-east-1", alias="AWS_DEFAULT_REGION")
    weaviate_url: str | None = Field(None, alias="WEAVIATE_URL")
    # L2's store: "auto" is Weaviate when WEAVIATE_URL is set (or the data folder's Weaviate runs), else
    # pgvector; "pgvector" keeps L2 in PostgreSQL whatever runs.
    vector_store: Literal["auto", "pgvector"] = Field("auto", alias="AGENTSTREAM_VECTOR_STORE")
    weaviate_api_key: SecretStr | None = Field(None, alias="WEAVIATE_API_KEY")
    # Signs the code-change processor's tasks, so the docs sink takes documentation from those only.
    # Unset: a key made in the data folder (streams/code/signing.py); set it when processes do not share one.
    task_signing_key: SecretStr | None = Field(None, alias="AGENTSTREAM_TASK_SIGNING_KEY")

    # How every Kafka client connects (streams/kafka.py): PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL; with
    # SASL a mechanism, user and password; with SSL the CA that signed the brokers' certificates (unset: the
    # system's) and, for mutual TLS, a client certificate and key. `agentstream up --secure` writes these
    # for each principal into env files under the data folder (docs/security.md).
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", alias="KAFKA_SECURITY_PROTOCOL")
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = Field(
        "SCRAM-SHA-512", alias="KAFKA_SASL_MECHANISM")
    kafka_sasl_username: str | None = Field(None, alias="KAFKA_SASL_USERNAME")
    kafka_sasl_password: SecretStr | None = Field(None, alias="KAFKA_SASL_PASSWORD")
    kafka_ssl_cafile: Path | None = Field(None, alias="KAFKA_SSL_CAFILE")
    kafka_ssl_certfile: Path | None = Field(None, alias="KAFKA_SSL_CERTFILE")
    kafka_ssl_keyfile: Path | None = Field(None, alias="KAFKA_SSL_KEYFILE")
    # The tenant this client acts for on a secured Kafka: `submit` then writes to that tenant's own task
    # topic (only its principal may) and reads its own result topic. Unset: the shared topics.
    client_tenant: str | None = Field(None, alias="AGENTSTREAM_TENANT")
    # Workers also follow every tenant's own task topic (`agent.tasks.tenant.NAME`), take the tenant from
    # the topic, never from the record, and copy each result to the tenant's result topic.
    tenant_topics: bool = Field(False, alias="AGENTSTREAM_TENANT_TOPICS")

    # Embedded stack ports (loopback only).
    kafka_port: int = Field(19092, alias="AGENTSTREAM_KAFKA_PORT")
    kafka_controller_port: int = Field(19093, alias="AGENTSTREAM_KAFKA_CONTROLLER_PORT")
    # Nodes of the embedded cluster (each a broker and a controller). Node i (0-based) listens on
    # kafka_port + 2i and kafka_controller_port + 2i: with the defaults 19092/19093, 19094/19095, ...
    kafka_brokers: int = Field(1, ge=1, le=9, alias="AGENTSTREAM_KAFKA_BROKERS")
    kafka_version: str = Field("4.1.1", alias="AGENTSTREAM_KAFKA_VERSION")
    kafka_heap: str = Field("512m", alias="AGENTSTREAM_KAFKA_HEAP")
    postgres_port: int = Field(15432, alias="AGENTSTREAM_POSTGRES_PORT")
    redis_port: int = Field(16379, alias="AGENTSTREAM_REDIS_PORT")
    s3_port: int = Field(19000, alias="AGENTSTREAM_S3_PORT")
    # The embedded Weaviate (`agentstream up --with-weaviate`, streams/devstack/weaviate.py): every port it binds.
    weaviate_port: int = Field(18080, alias="AGENTSTREAM_WEAVIATE_PORT")
    weaviate_local_grpc_port: int = Field(18051, alias="AGENTSTREAM_WEAVIATE_LOCAL_GRPC_PORT")
    weaviate_gossip_port: int = Field(18946, alias="AGENTSTREAM_WEAVIATE_GOSSIP_PORT")
    weaviate_data_port: int = Field(18947, alias="AGENTSTREAM_WEAVIATE_DATA_PORT")
    weaviate_raft_port: int = Field(18300, alias="AGENTSTREAM_WEAVIATE_RAFT_PORT")
    weaviate_raft_rpc_port: int = Field(18301, alias="AGENTSTREAM_WEAVIATE_RAFT_RPC_PORT")
    weaviate_profiling_port: int = Field(18060, alias="AGENTSTREAM_WEAVIATE_PROFILING_PORT")
    # Unset: built once with `go install` into the Go bin folder; set: this weaviate-server binary is run.
    weaviate_binary: Path | None = Field(None, alias="AGENTSTREAM_WEAVIATE_BINARY")

    # Topics and the stream processors.
    app_id: str = Field("agentstream", alias="AGENTSTREAM_APP_ID")
    topic_prefix: str = Field("", alias="AGENTSTREAM_TOPIC_PREFIX")
    partitions: int = Field(4, ge=1, alias="AGENTSTREAM_PARTITIONS")
    # Copies of every project topic and ledger; producers write with acks=all. Unset:
    # min(3, AGENTSTREAM_KAFKA_BROKERS), so a three-node embedded cluster gets 3 (min.insync.replicas 2).
    replication_factor: int = Field(1, ge=1, alias="AGENTSTREAM_REPLICATION_FACTOR")
    worker_concurrency: int = Field(16, ge=1, alias="AGENTSTREAM_WORKER_CONCURRENCY")
    # The largest record any producer of the project sends (the Faust app's and every aiokafka one): one
    # figure, so a record one of them took can be forwarded by another. The broker must accept as much.
    max_record_bytes: int = Field(1_048_576, ge=1024, alias="AGENTSTREAM_MAX_RECORD_BYTES")
    # How long a starting worker waits for Kafka (a node may be down) and PostgreSQL to answer.
    startup_timeout_s: float = Field(60.0, gt=0, alias="AGENTSTREAM_STARTUP_TIMEOUT_S")
    # How soon a dead worker's partitions move to the others (the broker's minimum is 6 s).
    session_timeout_s: float = Field(10.0, ge=6, alias="AGENTSTREAM_SESSION_TIMEOUT_S")
    # On a rebalance or a stop, how long tasks in flight may finish before they are abandoned
    # uncommitted (the next owner runs them again); the group waits this long at most.
    drain_timeout_s: float = Field(10.0, gt=0, alias="AGENTSTREAM_DRAIN_TIMEOUT_S")
    # How often the task stage commits what finished (each partition up to its lowest unfinished task).
    task_commit_interval_s: float = Field(1.0, gt=0, alias="AGENTSTREAM_TASK_COMMIT_INTERVAL_S")
    # Tests only: the process exits at once (as if SIGKILLed) when it reaches this named point, so a
    # crash test kills at the dangerous moment every time (streams/lifecycle.py `crash_point`). Off: "".
    fault_point: str = Field("", alias="AGENTSTREAM_FAULT_POINT")

    # The LLM side.
    # Unset: each step's model is routed by the task's optimization (issue 3); set: tried first by every step.
    model: str | None = Field(None, alias="AGENTSTREAM_MODEL")
    simulator_latency_ms: float = Field(0.0, ge=0, alias="AGENTSTREAM_SIMULATOR_LATENCY_MS")
    simulator_jitter_ms: float = Field(0.0, ge=0, alias="AGENTSTREAM_SIMULATOR_JITTER_MS")
    llm_timeout_s: float = Field(60.0, gt=0, alias="AGENTSTREAM_LLM_TIMEOUT_S")

    # Logging: "auto" is readable on a terminal and JSON otherwise.
    log_format: Literal["auto", "json", "console"] = Field("auto", alias="AGENTSTREAM_LOG_FORMAT")
    log_level: str = Field("info", alias="AGENTSTREAM_LOG_LEVEL")

    # Memory tiers and retrieval (issue 5): routing file, L1 limits, sink batching, context for agents.
    memory_routing: Path | None = Field(None, alias="AGENTSTREAM_MEMORY_ROUTING")
    memory_ttl_s: int = Field(24 * 3600, ge=1, alias="AGENTSTREAM_MEMORY_TTL_S")
    memory_max_value_bytes: int = Field(1024, ge=64, alias="AGENTSTREAM_MEMORY_MAX_VALUE_BYTES")
    memory_cache_ttl_s: int = Field(300, ge=1, alias="AGENTSTREAM_MEMORY_CACHE_TTL_S")
    memory_context_k: int = Field(3, ge=0, alias="AGENTSTREAM_MEMORY_CONTEXT_K")
    memory_min_score: float = Field(0.35, alias="AGENTSTREAM_MEMORY_MIN_SCORE")
    # Where the embedding model derived at first use is kept (unset: ~/.cache/agentstream), shared by processes.
    model_cache_dir: Path | None = Field(None, alias="AGENTSTREAM_MODEL_CACHE")
    # Whose memories a worker recalls: the tiers' scope of this topic prefix (unset: its own). An evaluation
    # run's worker recalls production's, by the ids production recalled (streams/replay/run.py).
    memory_scope: str | None = Field(None, alias="AGENTSTREAM_MEMORY_SCOPE")
    sink_batch_records: int = Field(500, ge=1, alias="AGENTSTREAM_SINK_BATCH_RECORDS")
    sink_batch_wait_s: float = Field(0.5, gt=0, alias="AGENTSTREAM_SINK_BATCH_WAIT_S")
    archive_batch_records: int = Field(5000, ge=1, alias="AGENTSTREAM_ARCHIVE_BATCH_RECORDS")
    archive_batch_bytes: int = Field(8 * 1024 * 1024, ge=1024, alias="AGENTSTREAM_ARCHIVE_BATCH_BYTES")
    archive_batch_wait_s: float = Field(5.0, gt=0, alias="AGENTSTREAM_ARCHIVE_BATCH_WAIT_S")
    sink_max_backoff_s: float = Field(10.0, gt=0, alias="AGENTSTREAM_SINK_MAX_BACKOFF_S")
    weaviate_grpc_port: int = Field(50051, alias="WEAVIATE_GRPC_PORT")

    # Agent swarms: agent/model config files, routing retries, budgets, concurrency (issue 3).
    agents_file: Path | None = Field(None, alias="AGENTSTREAM_AGENTS_FILE")
    models_file: Path | None = Field(None, alias="AGENTSTREAM_MODELS_FILE")
    llm_num_retries: int = Field(2, ge=0, alias="AGENTSTREAM_LLM_NUM_RETRIES")
    llm_retry_backoff_s: float = Field(0.5, ge=0, alias="AGENTSTREAM_LLM_RETRY_BACKOFF_S")
    llm_max_in_flight: int = Field(1024, ge=1, alias="AGENTSTREAM_LLM_MAX_IN_FLIGHT")
    quality_candidates: int = Field(3, ge=1, alias="AGENTSTREAM_QUALITY_CANDIDATES")
    # How long an answered task id is remembered, to skip it when redelivered (after a crash, before
    # its offset was committed): far longer than a commit interval, short enough to bound the table.
    task_dedupe_window_s: float = Field(3600.0, gt=0, alias="AGENTSTREAM_TASK_DEDUPE_WINDOW_S")
    tenant_daily_budget_usd: float | None = Field(None, ge=0, alias="AGENTSTREAM_TENANT_DAILY_BUDGET_USD")
    budget_degrade_share: float = Field(0.8, ge=0, le=1, alias="AGENTSTREAM_BUDGET_DEGRADE_SHARE")

    # Prompt registry and A/B experiments (issue 4).
    prompts_enabled: bool = Field(True, alias="AGENTSTREAM_PROMPTS_ENABLED")
    prompt_cache_ttl_s: float = Field(1.0, ge=0, alias="AGENTSTREAM_PROMPT_CACHE_TTL_S")
    # A rendered prompt (and any value made while rendering it) may have at most this many characters, and
    # rendering may take at most this long; `prompt add` refuses a template that breaks either with a sample task.
    prompt_max_chars: int = Field(1_048_576, ge=1024, alias="AGENTSTREAM_PROMPT_MAX_CHARS")
    prompt_render_timeout_s: float = Field(1.0, gt=0, alias="AGENTSTREAM_PROMPT_RENDER_TIMEOUT_S")
    judge_enabled: bool = Field(True, alias="AGENTSTREAM_JUDGE_ENABLED")

    # Observability (issue 13, docs/observability.md): Prometheus metrics and OpenTelemetry traces of every
    # worker and sink process. Off: no endpoint, no span, no trace header (the bench measures both).
    observability: bool = Field(True, alias="AGENTSTREAM_OBSERVABILITY")
    # Each process serves /metrics here; port 0 (or one already taken): a free one. Every URL is written
    # under the data folder (`agentstream status` lists them).
    metrics_host: str = Field("127.0.0.1", alias="AGENTSTREAM_METRICS_HOST")
    metrics_port: int = Field(0, ge=0, le=65535, alias="AGENTSTREAM_METRICS_PORT")
    # How often each process reads the lag of the consumer groups it consumes with.
    lag_interval_s: float = Field(5.0, gt=0, alias="AGENTSTREAM_LAG_INTERVAL_S")
    # Spans are always kept locally (`agentstream trace`): one JSON-lines file per process, rotated at this size.
    trace_file_mb: float = Field(64.0, gt=0, alias="AGENTSTREAM_TRACE_FILE_MB")
    # Also exported by OTLP/HTTP when set (the collector's base URL, e.g. http://127.0.0.1:4318).
    otlp_endpoint: str | None = Field(None, alias="OTEL_EXPORTER_OTLP_ENDPOINT")
    # `agentstream dashboard` (loopback).
    dashboard_port: int = Field(8790, ge=0, le=65535, alias="AGENTSTREAM_DASHBOARD_PORT")

    # The risk manager (issue 14, docs/risk.md). Windows are sliding, in seconds of wall-clock time.
    risk_enabled: bool = Field(True, alias="AGENTSTREAM_RISK_ENABLED")  # `agentstream worker` runs the risk stage
    risk_spike_window_s: float = Field(60.0, gt=0, alias="AGENTSTREAM_RISK_SPIKE_WINDOW_S")
    risk_baseline_window_s: float = Field(900.0, gt=0, alias="AGENTSTREAM_RISK_BASELINE_WINDOW_S")
    risk_spike_factor: float = Field(5.0, gt=1, alias="AGENTSTREAM_RISK_SPIKE_FACTOR")  # k x the baseline
    risk_spike_floor_usd: float = Field(0.05, ge=0, alias="AGENTSTREAM_RISK_SPIKE_FLOOR_USD")  # per spike window
    risk_lite_for_s: float = Field(3600.0, gt=0, alias="AGENTSTREAM_RISK_LITE_FOR_S")  # expiry of lite mode it issues
    risk_calm_s: float = Field(300.0, gt=0, alias="AGENTSTREAM_RISK_CALM_S")  # calm this long: lite mode released
    risk_deadletter_burst: int = Field(20, ge=1, alias="AGENTSTREAM_RISK_DEADLETTER_BURST")
    risk_deadletter_window_s: float = Field(60.0, gt=0, alias="AGENTSTREAM_RISK_DEADLETTER_WINDOW_S")
    risk_conflict_window_s: float = Field(3600.0, gt=0, alias="AGENTSTREAM_RISK_CONFLICT_WINDOW_S")
    risk_tick_s: float = Field(1.0, gt=0, alias="AGENTSTREAM_RISK_TICK_S")
    # Alerts of one kind and tenant within this window are one alert with a count.
    alert_fold_s: float = Field(10.0, gt=0, alias="AGENTSTREAM_ALERT_FOLD_S")
    # Each alert is also POSTed here as JSON (retried with backoff; never blocks the stream). Unset: none.
    alert_webhook_url: SecretStr | None = Field(None, alias="AGENTSTREAM_ALERT_WEBHOOK")
    alert_webhook_retries: int = Field(5, ge=0, alias="AGENTSTREAM_ALERT_WEBHOOK_RETRIES")
    # Tools over MCP (issue 15, docs/tools.md): the servers and plans file (unset: agents/data/mcp.yaml), whether
    # a worker starts the pool, the folder the filesystem tools are confined to (unset: <data dir>/workspace),
    # and how recorded calls are used: live (a call recorded in the tool-call ledger is reused, any other is
    # made) or recorded (a replay: only recorded results, no tool is called). tools_record=false: a run that
    # writes nothing to the ledger (a replay with --live-tools, against a copy of the workspace).
    tools_file: Path | None = Field(None, alias="AGENTSTREAM_TOOLS_FILE")
    tools_enabled: bool = Field(True, alias="AGENTSTREAM_TOOLS_ENABLED")
    tools_workspace: Path | None = Field(None, alias="AGENTSTREAM_TOOLS_WORKSPACE")
    tools_mode: Literal["live", "recorded"] = Field("live", alias="AGENTSTREAM_TOOLS_MODE")
    tools_record: bool = Field(True, alias="AGENTSTREAM_TOOLS_RECORD")
    # as long as the start-up wait: a server slow to import under load is not broken (a bad command fails at once)
    tools_start_timeout_s: float = Field(60.0, gt=0, alias="AGENTSTREAM_TOOLS_START_TIMEOUT_S")
    tools_sql_max_rows: int = Field(200, ge=1, alias="AGENTSTREAM_TOOLS_SQL_MAX_ROWS")
    tools_sql_timeout_ms: int = Field(2000, ge=1, alias="AGENTSTREAM_TOOLS_SQL_TIMEOUT_MS")

    @model_validator(mode="before")
    @classmethod
    def _replication_follows_brokers(cls, data: Any) -> Any:
        """Unset replication factor: min(3, brokers), so topics on a 3-node cluster survive a node."""
        if not isinstance(data, dict) or {"replication_factor", "AGENTSTREAM_REPLICATION_FACTOR"} & data.keys():
            return data
        brokers = data.get("AGENTSTREAM_KAFKA_BROKERS", data.get("kafka_brokers", 1))
        try:
            replicas = min(3, int(brokers))
        except (TypeError, ValueError):
            return data  # the field validation reports the bad value
        return {**data, "AGENTSTREAM_REPLICATION_FACTOR": replicas} if replicas > 1 else data

    @model_validator(mode="after")
    def _node_ports_distinct(self) -> Settings:
        ports = [port for node in self.kafka_nodes for port in node]
        if self.kafka_bootstrap_servers is None and len(set(ports)) != len(ports):
            raise ValueError(f"AGENTSTREAM_KAFKA_PORT and AGENTSTREAM_KAFKA_CONTROLLER_PORT give overlapping "
                             f"node ports {ports} (node i uses both + 2i): move one of them")
        return self

    @model_validator(mode="after")
    def _sasl_has_credentials(self) -> Settings:
        if self.kafka_security_protocol.startswith("SASL_") and not (
                self.kafka_sasl_username and self.kafka_sasl_password):
            raise ValueError(f"KAFKA_SECURITY_PROTOCOL={self.kafka_security_protocol} needs KAFKA_SASL_USERNAME "
                             "and KAFKA_SASL_PASSWORD")
        if (self.kafka_ssl_certfile is None) != (self.kafka_ssl_keyfile is None):
            raise ValueError("KAFKA_SSL_CERTFILE and KAFKA_SSL_KEYFILE go together (a client certificate and its key)")
        return self

    @property
    def kafka_nodes(self) -> list[tuple[int, int]]:
        """(client port, controller port) of each embedded Kafka node: node i uses both ports + 2i."""
        return [(self.kafka_port + 2 * i, self.kafka_controller_port + 2 * i) for i in range(self.kafka_brokers)]

    @property
    def kafka_servers(self) -> str:
        """The bootstrap list: KAFKA_BOOTSTRAP_SERVERS, else every embedded node (any one up is enough)."""
        if self.kafka_bootstrap_servers:
            return self.kafka_bootstrap_servers
        return ",".join(f"127.0.0.1:{client}" for client, _ in self.kafka_nodes)

    @property
    def postgres_dsn(self) -> str:
        if self.database_url is not None:
            return self.database_url.get_secret_value()
        return f"postgresql://postgres@127.0.0.1:{self.postgres_port}/postgres"

    @property
    def redis_dsn(self) -> str:
        if self.redis_url is not None:
            return self.redis_url.get_secret_value()
        return f"redis://127.0.0.1:{self.redis_port}/0"

    @property
    def tools_workspace_dir(self) -> Path:
        """The folder the filesystem and code tools work in."""
        return self.tools_workspace or self.data_dir / "workspace"

    @property
    def archive_dir(self) -> Path:
        """The L4 archive folder used when no S3 endpoint is configured."""
        return self.data_dir / "archive"

    def topic(self, name: str) -> str:
        """The full name of a project topic (the prefix isolates tests and evaluation runs)."""
        return f"{self.topic_prefix}{name}"

    def isolated(self, name: str, **overrides: Any) -> Settings:
        """A copy for a run of its own (a test, a bench, a replay): topics prefixed `<prefix><name>.` and
        consumer groups and tables under the app id `<app id>-<name>`, so it shares nothing with others."""
        return self.model_copy(update={"topic_prefix": f"{self.topic_prefix}{name}.",
                                       "app_id": f"{self.app_id}-{name}", **overrides})

    def as_env(self) -> dict[str, str]:
        """These settings as environment variables, to start a child process with the same ones.

        Holds secret values: pass it to a process, never print it.
        """
        env: dict[str, str] = {}
        for name, field in type(self).model_fields.items():
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            env[field.alias or name.upper()] = str(value)
        return env

    def masked(self) -> dict[str, Any]:
        """A view safe to print or log: no secret value, passwords in URLs and DSNs hidden."""
        view: dict[str, Any] = {}
        for name, value in self.model_dump().items():
            if isinstance(value, SecretStr):
                view[name] = mask_url(value.get_secret_value()) if name.endswith("_url") else "***"
            elif isinstance(value, str) and (name.endswith(("_url", "_servers")) or "://" in value):
                view[name] = mask_url(value)
            elif isinstance(value, Path):
                view[name] = str(value)
            else:
                view[name] = value
        return view
