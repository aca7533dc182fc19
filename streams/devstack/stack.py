"""LocalStack: the embedded Kafka, PostgreSQL, Redis (and optionally S3) on 127.0.0.1, no Docker.

The stack keeps no state in memory: every call reads the pid files under `settings.data_dir`, so
`agentstream up`, `status` and `down` can each run in a different process.
"""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

from streams.devstack.kafka import KafkaPart
from streams.devstack.part import Part
from streams.devstack.postgres import PostgresPart
from streams.devstack.process import PartStatus, StackError
from streams.devstack.redis import RedisPart
from streams.devstack.s3 import S3Part
from streams.devstack.secure import SecureMaterial
from streams.settings import Settings

__all__ = ["LocalStack"]


class LocalStack:
    """Starts, reports on and stops the parts of the local stack that are not external."""

    def __init__(self, settings: Settings, *, with_s3: bool = False, secure: bool = False) -> None:
        root = settings.data_dir.expanduser().resolve()  # parts outlive us: never a relative path
        # A cluster started with more nodes (`up --brokers 3`) is still reported and stopped by a plain stack.
        running = [n for n in range(2, 10) if (root / f"kafka-{n}" / f"kafka-{n}.pid").exists()]
        if running and max(running) > settings.kafka_brokers:
            settings = settings.model_copy(update={"kafka_brokers": max(running)})
        self.settings = settings
        self.kafka: list[KafkaPart] = [KafkaPart(settings, root, node) for node in range(1, settings.kafka_brokers + 1)]
        self.parts: list[Part] = [
            *self.kafka,
            PostgresPart(settings, root),
            RedisPart(settings, root),
        ]
        s3 = S3Part(settings, root)
        # An S3 server started earlier (with_s3) is still reported and stopped by a plain stack.
        if with_s3 or s3.pid_file.exists():
            self.parts.append(s3)
        self.with_s3 = with_s3
        self.root = root
        self.secure = SecureMaterial(root)
        self.make_secure = secure

    @contextlib.contextmanager
    def _locked(self, parts: list[Part]) -> Iterator[None]:
        """One `up`/`down` at a time per data folder (two commands must not start a part twice)."""
        if all(part.external is not None for part in parts):
            yield  # nothing embedded: do not even create the data folder
            return
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / "stack.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def _each(self, action: str, parts: list[Part]) -> list[PartStatus]:
        """Run one action on every part at once (Kafka's JVM and initdb overlap); errors are joined."""
        with self._locked(parts), ThreadPoolExecutor(max(1, len(parts))) as pool:
            futures = [pool.submit(getattr(part, action)) for part in parts]
        results: list[PartStatus] = []
        errors: list[str] = []
        for future in futures:
            exc = future.exception()
            if exc is None:
                results.append(future.result())
            elif isinstance(exc, StackError):
                errors.append(str(exc))
            else:
                raise exc
        if errors:
            raise StackError("\n\n".join(errors))
        return results

    def up(self) -> list[PartStatus]:
        """Start what is not running and not external, and wait until each answers (idempotent)."""
        parts = [p for p in self.parts if self.with_s3 or not isinstance(p, S3Part)]
        if self.make_secure and not self.secure.enabled:
            self._secure_first()
        return self._each("up", parts)

    def _secure_first(self) -> None:
        """Make the certificates and logins of `up --secure`, for a Kafka not formatted without them."""
        if self.settings.kafka_bootstrap_servers:
            raise StackError("--secure secures the local Kafka; KAFKA_BOOTSTRAP_SERVERS points at another one "
                             "(set its KAFKA_SECURITY_PROTOCOL and KAFKA_SASL_* / KAFKA_SSL_* settings instead)")
        if len(self.kafka) > 1:
            raise StackError("--secure runs one Kafka node (a secured cluster of several is not built yet)")
        if (self.kafka[0].dir / "data" / "meta.properties").exists():
            raise StackError(f"the local Kafka in {self.kafka[0].dir} was first started without --secure and holds "
                             "data: use another AGENTSTREAM_DATA_DIR, or stop it and remove that folder to start "
                             "it afresh (its topics are lost)")
        self.secure.create()

    def down(self) -> list[PartStatus]:
        """Stop each part we started, by its pid; external servers are never touched."""
        return self._each("down", self.parts)

    def kafka_node(self, node: int) -> KafkaPart:
        """Kafka node `node` (1-based): `.down(signal.SIGKILL)` crashes it, `.up()` starts it again."""
        return self.kafka[node - 1]

    def status(self) -> list[PartStatus]:
        """One line per part: running, stopped, external or "stale pid cleaned"."""
        return [part.status() for part in self.parts]
