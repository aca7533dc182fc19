"""Every topic of the project, declared once. Others import the names from here."""

from __future__ import annotations

from dataclasses import dataclass

from streams.settings import Settings

__all__ = [
    "ALERTS",
    "ALL_TOPICS",
    "CODE_CHANGES",
    "CONTROL",
    "DEADLETTERS",
    "OUTPUTS",
    "PROMPT_DECISIONS",
    "PROMPT_OUTCOMES",
    "RESULTS",
    "SPEND_LEDGER",
    "TASKS",
    "TASKS_BY_TENANT",
    "TASK_LEDGER",
    "TOOLCALLS",
    "TopicSpec",
    "client_topics",
    "dedupe_expiry_s",
    "table_specs",
    "tenant_of_topic",
    "tenant_result_topic",
    "tenant_task_topic",
    "topic_specs",
]

TASKS = "agent.tasks"
OUTPUTS = "agent.outputs"
RESULTS = "agent.results"
PROMPT_OUTCOMES = "prompt.outcomes"
PROMPT_DECISIONS = "prompt.decisions"
CODE_CHANGES = "code.changes"
DEADLETTERS = "agent.deadletters"
# Every tool call an agent made over MCP (issue 15), keyed by task id.
TOOLCALLS = "agent.toolcalls"
# Tasks re-keyed by tenant, so one worker holds a tenant's budget ledger (agents/budget.py).
TASKS_BY_TENANT = "agent.tasks.by-tenant"
# The task stage's ledgers (streams/processors/ledger.py), partitioned like agent.tasks.by-tenant and
# written to the tenant's partition explicitly: tenant spend per day (compacted), and per task its
# attempts, finished model calls and "done" mark (compacted, deleted after the dedupe window).
SPEND_LEDGER = "agent.ledger.spend"
TASK_LEDGER = "agent.ledger.tasks"
# The risk manager (issue 14, docs/risk.md): commands every worker follows (compacted: the latest per
# command and scope is in force), and the alerts it raises.
CONTROL = "agent.control"
ALERTS = "agent.alerts"

# On a secured Kafka (`agentstream up --secure`) each tenant has a topic pair of its own, made by
# `agentstream tenant add`: only its principal may write the first and read the second.
TENANT_TASKS = "agent.tasks.tenant."
TENANT_RESULTS = "agent.results.tenant."

# Which Avro event type each topic carries (the contract in schemas/).
ALL_TOPICS: dict[str, str] = {
    TASKS: "TaskRequested",
    OUTPUTS: "AgentOutput",
    RESULTS: "TaskResult",
    PROMPT_OUTCOMES: "PromptOutcome",
    PROMPT_DECISIONS: "PromptDecision",
    CODE_CHANGES: "CodeChange",
    DEADLETTERS: "DeadLetter",
    TASKS_BY_TENANT: "TaskRequested",
    CONTROL: "ControlCommand",
    ALERTS: "RiskAlert",
    TOOLCALLS: "ToolCall",
}


@dataclass(frozen=True)
class TopicSpec:
    """A topic to create at start: full name, partition count, compaction."""

    name: str
    partitions: int
    compacted: bool = False
    retention_ms: int | None = None  # with compacted: compact,delete (records needed for a window only)


def topic_specs(settings: Settings) -> list[TopicSpec]:
    """The topics the project needs, with their full (prefixed) names and partition counts."""
    # Decisions and dead letters are low volume; one partition keeps them in order.
    single = {PROMPT_DECISIONS, DEADLETTERS, CONTROL, ALERTS}
    return [
        TopicSpec(settings.topic(name), 1 if name in single else settings.partitions, compacted=name == CONTROL)
        for name in ALL_TOPICS
    ]


def table_specs(settings: Settings) -> list[TopicSpec]:
    """The state topics: the task stage's ledgers, compacted, one partition per partition of the task
    topics; the task ledger also deletes what is older than the dedupe window can need (a task id is
    remembered for one window)."""
    return [TopicSpec(settings.topic(SPEND_LEDGER), settings.partitions, compacted=True),
            TopicSpec(settings.topic(TASK_LEDGER), settings.partitions, compacted=True,
                      retention_ms=int(dedupe_expiry_s(settings) * 1000))]


def dedupe_expiry_s(settings: Settings) -> float:
    """How long the task ledger keeps a record: twice the dedupe window, so every id is kept a full window."""
    return 2 * settings.task_dedupe_window_s


def tenant_task_topic(settings: Settings, tenant: str) -> str:
    """The one topic a tenant's principal may write its tasks to."""
    return settings.topic(f"{TENANT_TASKS}{tenant}")


def tenant_result_topic(settings: Settings, tenant: str) -> str:
    """The one topic a tenant's principal may read results from."""
    return settings.topic(f"{TENANT_RESULTS}{tenant}")


def tenant_of_topic(settings: Settings, topic: str) -> str | None:
    """The tenant whose own task topic `topic` is (None: a shared topic)."""
    head = settings.topic(TENANT_TASKS)
    return topic[len(head):] if topic.startswith(head) else None


def client_topics(settings: Settings) -> tuple[str, list[str]]:
    """Where a client submits tasks, and what it reads back (results, and dead letters where it may):
    a tenant client (AGENTSTREAM_TENANT) uses its own pair, anyone else the shared topics."""
    if tenant := settings.client_tenant:
        return tenant_task_topic(settings, tenant), [tenant_result_topic(settings, tenant)]
    return settings.topic(TASKS), [settings.topic(RESULTS), settings.topic(DEADLETTERS)]
