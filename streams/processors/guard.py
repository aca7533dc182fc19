"""Dead-lettering for Faust processors: one call turns a failed event into a DeadLetter and logs it.

Every processor takes raw bytes and decodes inside a guard; all of them dead-letter through this.
"""

from __future__ import annotations

import faust

from schemas import Codec
from streams.deadletters import Origin, dead_letter
from streams.logs import get_logger

__all__ = ["DeadLetterSender"]

log = get_logger(__name__)


class DeadLetterSender:
    """Sends an event that failed at `stage` to the dead-letter topic, with where it came from and why."""

    def __init__(self, topic: faust.TopicT, codec: Codec) -> None:
        self.topic, self.codec = topic, codec

    async def __call__(self, stage: str, event: faust.EventT, error: BaseException | str) -> None:
        m = event.message
        origin = Origin(m.topic, m.partition, m.offset)
        log.warning("dead letter", stage=stage, topic=origin.topic, partition=origin.partition,
                    offset=origin.offset, error=str(error)[:300])
        record = dead_letter(stage, origin, error, event.value or b"", event.key)  # a tombstone: empty bytes
        await self.topic.send(key=event.key, value=self.codec.encode("DeadLetter", record))
