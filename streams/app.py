"""The Faust application: built from settings, with every project topic and the processors that use Faust
(prompt scoring, code changes). The task stage is a plain consumer group (streams/processors/tasks.py)."""

from __future__ import annotations

import faust

from agents.runner import TaskRunner
from schemas import Codec
from streams.kafka import faust_broker_settings
from streams.processors.code_changes import register_code_change_processor
from streams.processors.scoring import register_prompt_processors
from streams.settings import Settings
from streams.topics import ALL_TOPICS, topic_specs

__all__ = ["build_app"]


def build_app(settings: Settings, runner: TaskRunner, codec: Codec) -> faust.App:
    """A Faust app for the settings' broker and topic prefix, with its processors registered."""
    datadir = settings.data_dir / "faust" / settings.app_id
    datadir.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        settings.app_id,
        **faust_broker_settings(settings),
        store="memory://",
        datadir=str(datadir),
        web_enabled=False,
        topic_replication_factor=settings.replication_factor,
        topic_partitions=settings.partitions,
        topic_disable_leader=True,
        consumer_auto_offset_reset="earliest",
        key_serializer="raw",
        value_serializer="raw",
    )
    specs = {spec.name: spec for spec in topic_specs(settings)}
    topics = {}
    for name in ALL_TOPICS:
        spec = specs[settings.topic(name)]
        topics[name] = app.topic(spec.name, partitions=spec.partitions, key_serializer="raw", value_serializer="raw")
    register_code_change_processor(app, topics, codec, settings)
    if runner.prompts is not None:  # prompt experiments (issue 4)
        register_prompt_processors(app, topics, runner.prompts, codec, settings)
    return app
