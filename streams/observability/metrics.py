"""Every Prometheus metric a worker or sink process exports, in one registry per process.

Names follow Prometheus conventions (`_total` counters, `_seconds` histograms, base units), the
consumer lag follows kafka_exporter (`kafka_consumergroup_lag`), and the model calls are also exported
as the OpenTelemetry GenAI client metrics (`gen_ai.client.token.usage`, `gen_ai.client.operation.duration`
in their Prometheus spelling). docs/observability.md says what each one means.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

__all__ = ["GENAI_DURATION_BUCKETS", "GENAI_TOKEN_BUCKETS", "STAGE_BUCKETS", "Metrics"]

disable_created_metrics()  # no `_created` series: half the exposition, nothing a dashboard reads

STAGE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                 120.0)
TASK_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)
# The bucket boundaries the GenAI semantic conventions advise.
GENAI_TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864)
GENAI_DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)

_GENAI = ("gen_ai_operation_name", "gen_ai_provider_name", "gen_ai_request_model")


class Metrics:
    """The metric families of one process, in a registry of its own (with the process and GC collectors)."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)
        self.tasks = Counter("agentstream_tasks_total", "Tasks answered, by result status and swarm pattern.",
                             ["status", "pattern"], registry=r)
        self.task_seconds = Histogram("agentstream_task_seconds",
                                      "From a task's created_at to its result confirmed by the broker.",
                                      buckets=TASK_BUCKETS, registry=r)
        self.stage_seconds = Histogram("agentstream_stage_seconds", "Time spent in each stage of the pipeline.",
                                       ["stage"], buckets=STAGE_BUCKETS, registry=r)
        self.llm_calls = Counter("agentstream_llm_calls_total", "Model calls, by model and outcome (ok or why not).",
                                 ["model", "outcome"], registry=r)
        self.llm_in_flight = Gauge("agentstream_llm_calls_in_flight", "Agent steps calling a model right now.",
                                   registry=r)
        self.llm_tokens = Counter("agentstream_llm_tokens_total", "Tokens, by model and direction (input, output).",
                                  ["model", "direction"], registry=r)
        self.llm_cost = Counter("agentstream_llm_cost_usd_total", "What the model calls cost, in US dollars.",
                                ["tenant", "model"], registry=r)
        self.budget_events = Counter("agentstream_budget_events_total",
                                     "Steps routed to the cheapest model (degraded) or ended unaffordable (exceeded).",
                                     ["tenant", "event"], registry=r)
        self.deadletters = Counter("agentstream_deadletters_total", "Records sent to agent.deadletters, by stage.",
                                   ["stage"], registry=r)
        self.memory_lookups = Counter("agentstream_memory_lookups_total",
                                      "Memory recall, per tier consulted: hit, miss, or error.",
                                      ["tier", "result"], registry=r)
        self.sink_records = Counter("agentstream_sink_records_total",
                                    "Records a sink wrote to a tier (written) or could not (rejected).",
                                    ["tier", "result"], registry=r)
        self.experiment_decisions = Counter("agentstream_experiment_decisions_total",
                                            "Prompt-experiment outcomes counted, by the decision each took.",
                                            ["decision"], registry=r)
        self.lag = Gauge("kafka_consumergroup_lag", "Records of a partition its consumer group has not committed.",
                         ["consumergroup", "topic", "partition"], registry=r)
        self.genai_tokens = Histogram("gen_ai_client_token_usage", "GenAI conventions: tokens per model call.",
                                      [*_GENAI, "gen_ai_token_type"], buckets=GENAI_TOKEN_BUCKETS, registry=r)
        self.genai_duration = Histogram("gen_ai_client_operation_duration_seconds",
                                        "GenAI conventions: duration of each model call.",
                                        [*_GENAI, "error_type"], buckets=GENAI_DURATION_BUCKETS, registry=r)
