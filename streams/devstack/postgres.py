"""PostgreSQL 16 + pgvector from the `pgserver` wheel, listening on loopback TCP.

pgserver's own `get_server` listens on a unix socket only and stops the server at interpreter
exit, so we run initdb and pg_ctl ourselves. PostgreSQL refuses to run as root: as root, the
server runs as the system user `pgserver` (pgserver's helpers create it and open the folders).
"""

from __future__ import annotations

import os
import signal
import subprocess
import warnings
from pathlib import Path
from typing import Any

from streams.devstack.part import Part
from streams.devstack.process import HOST, StackError

__all__ = ["PostgresPart"]

RUN_AS = "pgserver"
SOCKET_PATH_MAX = 100  # unix socket paths are limited to 107 bytes on Linux


def _bin() -> Path:
    with warnings.catch_warnings():  # importing pgserver warns when XDG_RUNTIME_DIR is unset
        warnings.simplefilter("ignore")
        from pgserver._commands import POSTGRES_BIN_PATH

    return Path(POSTGRES_BIN_PATH)


class PostgresPart(Part):
    """The PostgreSQL server of the local stack (L3 facts and L2 vectors through pgvector)."""

    name = "postgres"
    url_env = "DATABASE_URL"
    port_setting = "postgres_port"
    ready_timeout = 30.0
    stop_signal = signal.SIGINT  # "fast" shutdown: SIGTERM would wait for every client to leave

    @property
    def pgdata(self) -> Path:
        return self.dir / "data"

    def _run_as(self) -> dict[str, Any]:
        """subprocess arguments that run a PostgreSQL tool as a non-root user when we are root."""
        if os.geteuid() != 0:
            return {}
        import pwd

        binaries = _bin()  # imports pgserver quietly first
        from pgserver.utils import (
            ensure_folder_permissions,
            ensure_prefix_permissions,
            ensure_user_exists,
        )

        ensure_user_exists(RUN_AS)
        entry = pwd.getpwnam(RUN_AS)
        ensure_prefix_permissions(self.dir)  # the user must traverse every parent folder
        ensure_prefix_permissions(binaries)
        ensure_folder_permissions(binaries, 0o055)
        ensure_folder_permissions(binaries.parent / "lib", 0o044)
        for path in (self.dir, self.pgdata, self.dir / "run", self.log_file):
            if path.exists():
                os.chown(path, entry.pw_uid, entry.pw_gid)
        return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}

    def _tool(self, name: str, args: list[str], run_as: dict[str, Any], timeout: float) -> str:
        cmd = [str(_bin() / name), *args]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, start_new_session=True, **run_as)
        if out.returncode != 0:
            raise StackError(f"{name} failed for {self.pgdata}:\n{(out.stdout + out.stderr).strip()}")
        return out.stdout

    def launch(self) -> int:
        self.pgdata.mkdir(mode=0o700, exist_ok=True)
        socket_dir = self.dir / "run"
        socket_dir.mkdir(exist_ok=True)
        self.log_file.touch()
        run_as = self._run_as()
        if not (self.pgdata / "PG_VERSION").exists():
            init = ["-D", str(self.pgdata), "--auth=trust", "-U", "postgres", "-E", "UTF8"]
            self._tool("initdb", init, run_as, timeout=120)
        sockets = str(socket_dir) if len(str(socket_dir)) < SOCKET_PATH_MAX else "''"
        options = f"-h {HOST} -p {self.settings.postgres_port} -k {sockets}"
        args = ["-D", str(self.pgdata), "-l", str(self.log_file), "-w", "-t", "60", "-o", options, "start"]
        try:
            self._tool("pg_ctl", args, run_as, timeout=90)
        except StackError as exc:
            raise StackError(f"{exc}\nlog {self.log_file}:\n{self.log_file.read_text()[-3000:]}") from None
        return int((self.pgdata / "postmaster.pid").read_text().split()[0])

    def ready(self) -> bool:
        from sinks.pg import connect

        with connect(self.settings.postgres_dsn) as conn:
            return conn.execute("select 1").fetchone() == (1,)
