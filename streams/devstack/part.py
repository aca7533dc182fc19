"""The base of every part of the local stack: status, up and down from the part's own folder."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import ClassVar, NoReturn

from pydantic import SecretStr

from streams.devstack.process import (
    HOST,
    PartStatus,
    StackError,
    pid_alive,
    port_in_use,
    read_pid,
    remove_pid,
    stop_pid,
    tail,
    write_pid,
)
from streams.settings import Settings, mask_url

__all__ = ["Part"]


class Part(ABC):
    """One server of the stack. State lives only in its folder (pid file, log), so any process can
    ask for status or stop what another process started."""

    name: ClassVar[str]
    url_env: ClassVar[str]  # the setting that points the project at an external server instead
    port_setting: ClassVar[str] = ""  # the settings field of the one port the part binds (if one)
    scheme: ClassVar[str] = ""  # how its address is written, e.g. "http://"
    ready_timeout: ClassVar[float] = 30.0
    stop_signal: ClassVar[int] = signal.SIGTERM

    def __init__(self, settings: Settings, root: Path) -> None:
        self.settings = settings
        self.dir = root / self.name
        self.pid_file = self.dir / f"{self.name}.pid"
        self.log_file = self.dir / f"{self.name}.log"

    @property
    def external(self) -> str | None:
        """The configured URL when this part runs elsewhere (then we never start it): the `url_env` setting."""
        value = getattr(self.settings, self.url_env.lower())
        return value.get_secret_value() if isinstance(value, SecretStr) else value

    @property
    def pid(self) -> int | None:
        """The process id of the server we started; None when it is external or not running."""
        return None if self.external is not None else read_pid(self.pid_file)

    @property
    def port(self) -> int:
        return int(getattr(self.settings, self.port_setting))

    @property
    def address(self) -> str:
        """Where the embedded part listens."""
        return f"{self.scheme}{HOST}:{self.port}"

    def ports(self) -> dict[int, str]:
        """Each port the part binds, with the environment variable that changes it."""
        return {self.port: Settings.model_fields[self.port_setting].alias or self.port_setting.upper()}

    @abstractmethod
    def launch(self) -> int:
        """Prepare the folder, start the server detached and return the pid to record."""

    @abstractmethod
    def ready(self) -> bool:
        """True once the server answers a real request."""

    def _status(self, state: str) -> PartStatus:
        address = mask_url(self.external) if self.external is not None else self.address
        return PartStatus(self.name, address, state)

    def status(self) -> PartStatus:
        """Current state; a pid file whose process is gone is removed here."""
        if self.external is not None:
            return self._status("external")
        if read_pid(self.pid_file) is not None:
            return self._status("running")
        if self.pid_file.exists():
            remove_pid(self.pid_file)
            return self._status("stale pid cleaned")
        return self._status("stopped")

    def up(self) -> PartStatus:
        """Start the part unless it runs already or is external; return once it answers."""
        current = self.status()
        if current.state in ("running", "external"):
            return current
        for port, env in self.ports().items():
            if port_in_use(port):
                raise StackError(
                    f"port {port} on {HOST} is already in use by another process (not agentstream's "
                    f"{self.name}). Stop that process, or set {env} to a free port, or set {self.url_env} "
                    "to use a server that is already running."
                )
        self.dir.mkdir(parents=True, exist_ok=True)
        try:
            pid = self.launch()
        except (OSError, subprocess.SubprocessError) as exc:
            raise StackError(f"{self.name} could not be started: {exc}") from exc
        write_pid(self.pid_file, pid)
        deadline = time.monotonic() + self.ready_timeout
        while True:
            if not pid_alive(pid):
                self._fail(pid, "exited while starting")
            with contextlib.suppress(Exception):
                if self.ready():
                    return self._status("running")
            if time.monotonic() > deadline:
                self._fail(pid, f"did not answer within {self.ready_timeout:.0f} s")
            time.sleep(0.1)

    def _fail(self, pid: int, why: str) -> NoReturn:
        stop_pid(pid, sig=self.stop_signal, timeout=5.0)
        remove_pid(self.pid_file)
        raise StackError(f"{self.name} {why}. Last lines of {self.log_file}:\n{tail(self.log_file)}")

    def down(self, sig: int | None = None) -> PartStatus:
        """Stop the part if we started it (by its pid); external parts are left alone.

        `sig` replaces the part's clean stop signal (SIGKILL: a crash, for the chaos suite).
        """
        pid = self.pid
        if pid is None:
            return self.status()
        stop_pid(pid, sig=sig or self.stop_signal)
        remove_pid(self.pid_file)
        return self._status("stopped")
