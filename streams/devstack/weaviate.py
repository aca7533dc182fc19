"""Weaviate (L2 vectors) on loopback: `weaviate-server` built once from its Go module, then run directly.

There is no Weaviate wheel, so the first start runs `go install github.com/weaviate/weaviate/cmd/
weaviate-server@<pinned version>` (Go 1.25+; about 3 minutes and 3 GB of module cache on a 2-core
machine, once). The binary is kept in the Go bin folder under a versioned name, so later starts, other
data folders and test sessions take seconds. Every port it binds is a setting; it never leaves 127.0.0.1.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import urllib.request
from pathlib import Path

from streams.devstack.part import Part
from streams.devstack.process import HOST, StackError, read_pid, spawn
from streams.settings import Settings

__all__ = ["GO_MINIMUM", "WEAVIATE_MODULE", "WEAVIATE_VERSION", "WeaviatePart", "ensure_binary", "go_command",
           "installed_binary", "prepare", "with_embedded_weaviate"]

WEAVIATE_MODULE = "github.com/weaviate/weaviate/cmd/weaviate-server"
WEAVIATE_VERSION = "v1.35.2"
GO_MINIMUM = (1, 25)
INSTALL_TIMEOUT_S = 30 * 60.0  # a cold module cache on a slow link; a warm one builds in about 3 minutes

_HOW = ("or set WEAVIATE_URL to a running Weaviate, or AGENTSTREAM_WEAVIATE_BINARY to a weaviate-server "
        f"{WEAVIATE_VERSION} binary")


def _go_version(go: str) -> tuple[int, int]:
    out = subprocess.run([go, "env", "GOVERSION"], capture_output=True, text=True, timeout=60, check=False)
    found = re.match(r"go(\d+)\.(\d+)", out.stdout.strip())
    if out.returncode != 0 or not found:
        raise StackError(f"`{go} env GOVERSION` failed ({(out.stdout + out.stderr).strip()[:200]}); "
                         f"install Go {GO_MINIMUM[0]}.{GO_MINIMUM[1]} or newer, {_HOW}.")
    return int(found[1]), int(found[2])


def go_command() -> str:
    """The `go` command, checked to be new enough to build the pinned Weaviate."""
    go = shutil.which("go")
    wanted = f"Go {GO_MINIMUM[0]}.{GO_MINIMUM[1]} or newer"
    if go is None:
        raise StackError(f"the local Weaviate is built from source the first time and `go` is not on PATH: "
                         f"install {wanted} (the `go` command), {_HOW}.")
    version = _go_version(go)
    if version < GO_MINIMUM:
        raise StackError(f"the local Weaviate {WEAVIATE_VERSION} needs {wanted} to build; `go` here is "
                         f"{version[0]}.{version[1]}: install {wanted}, {_HOW}.")
    return go


def _go_bin_folder() -> Path:
    """Where `go install` puts binaries (GOBIN, else GOPATH/bin); ~/go/bin when Go is not installed."""
    go = shutil.which("go")
    if go is not None:
        out = subprocess.run([go, "env", "GOBIN", "GOPATH"], capture_output=True, text=True, timeout=60, check=False)
        lines = out.stdout.splitlines()
        if out.returncode == 0 and len(lines) >= 2:
            if lines[0].strip():
                return Path(lines[0].strip())
            if lines[1].strip():
                return Path(lines[1].split(os.pathsep)[0].strip()) / "bin"
    return Path.home() / "go" / "bin"


def installed_binary(settings: Settings) -> Path:
    """The weaviate-server this stack runs: the configured one, else the versioned one in the Go bin folder."""
    if settings.weaviate_binary is not None:
        return settings.weaviate_binary.expanduser()
    return _go_bin_folder() / f"weaviate-server-{WEAVIATE_VERSION}"


def ensure_binary(settings: Settings, log_file: Path | None = None) -> Path:
    """The weaviate-server binary, built with `go install` when it is not there yet (the only slow start)."""
    binary = installed_binary(settings)
    if binary.is_file() and os.access(binary, os.X_OK):
        return binary
    if settings.weaviate_binary is not None:
        raise StackError(f"AGENTSTREAM_WEAVIATE_BINARY={binary} is not an executable file.")
    go = go_command()
    binary.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".weaviate-build-", dir=binary.parent) as gobin:
        env = {**os.environ, "GOBIN": gobin}
        try:
            out = subprocess.run([go, "install", f"{WEAVIATE_MODULE}@{WEAVIATE_VERSION}"], env=env,
                                 capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S, check=False)
        except subprocess.TimeoutExpired as exc:
            raise StackError(f"`go install {WEAVIATE_MODULE}@{WEAVIATE_VERSION}` took over "
                             f"{INSTALL_TIMEOUT_S / 60:.0f} min; run it by hand, {_HOW}.") from exc
        if log_file is not None:
            log_file.parent.mkdir(parents=True, exist_ok=True)
            log_file.write_text(out.stdout + out.stderr)
        built = Path(gobin) / "weaviate-server"
        if out.returncode != 0 or not built.is_file():
            raise StackError(f"`go install {WEAVIATE_MODULE}@{WEAVIATE_VERSION}` failed:\n"
                             f"{(out.stdout + out.stderr).strip()[-2000:]}")
        os.replace(built, binary)  # same folder: atomic, so a concurrent start never runs half a file
    return binary


class WeaviatePart(Part):
    """weaviate-server on loopback (`weaviate_port`, gRPC on `weaviate_local_grpc_port`), one node, no auth."""

    name = "weaviate"
    url_env = "WEAVIATE_URL"
    port_setting = "weaviate_port"
    scheme = "http://"
    ready_timeout = 60.0

    @property
    def external(self) -> str | None:
        """WEAVIATE_URL, unless it is this embedded server's own address (set for the workers by `up`)."""
        url = self.settings.weaviate_url
        return None if url is None or url.rstrip("/") == self.address else url

    def ports(self) -> dict[int, str]:
        fields = ("weaviate_port", "weaviate_local_grpc_port", "weaviate_gossip_port", "weaviate_data_port",
                  "weaviate_raft_port", "weaviate_raft_rpc_port", "weaviate_profiling_port")
        return {int(getattr(self.settings, f)): Settings.model_fields[f].alias or f.upper() for f in fields}

    def environment(self) -> dict[str, str]:
        """The server's settings: single node on loopback, our own vectors, no telemetry, fast Raft start."""
        s = self.settings
        return {
            "PERSISTENCE_DATA_PATH": str(self.dir / "data"),
            "AUTHENTICATION_ANONYMOUS_ACCESS_ENABLED": "true",
            "DEFAULT_VECTORIZER_MODULE": "none",
            "DISABLE_TELEMETRY": "true",
            "PROMETHEUS_MONITORING_ENABLED": "false",
            "CLUSTER_HOSTNAME": "node1",
            "CLUSTER_BIND_ADDR": HOST,
            "CLUSTER_ADVERTISE_ADDR": HOST,
            "CLUSTER_GOSSIP_BIND_PORT": str(s.weaviate_gossip_port),
            "CLUSTER_DATA_BIND_PORT": str(s.weaviate_data_port),
            "RAFT_PORT": str(s.weaviate_raft_port),
            "RAFT_INTERNAL_RPC_PORT": str(s.weaviate_raft_rpc_port),
            "RAFT_BOOTSTRAP_EXPECT": "1",
            "RAFT_TIMEOUTS_MULTIPLIER": "1",  # the default (5) makes a single node wait 8-10 s to elect itself
            "GRPC_PORT": str(s.weaviate_local_grpc_port),
            "GO_PROFILING_PORT": str(s.weaviate_profiling_port),
        }

    def launch(self) -> int:
        binary = ensure_binary(self.settings, self.dir / "install.log")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CLUSTER_", "RAFT_", "GRPC_"))}
        env.update(self.environment())
        cmd = [str(binary), "--host", HOST, "--port", str(self.port), "--scheme", "http"]
        return spawn(cmd, self.log_file, cwd=self.dir, env=env)

    def ready(self) -> bool:
        with urllib.request.urlopen(f"{self.address}/v1/.well-known/ready", timeout=2) as response:  # noqa: S310
            return response.status == 200


def with_embedded_weaviate(settings: Settings) -> Settings:
    """The settings with WEAVIATE_URL (and its gRPC port) of the data folder's running Weaviate, if one runs
    and no other Weaviate is configured: what `up --with-weaviate` means for every later command (unless
    AGENTSTREAM_VECTOR_STORE=pgvector)."""
    if settings.weaviate_url is not None or settings.vector_store == "pgvector":
        return settings
    part = WeaviatePart(settings, settings.data_dir.expanduser().resolve())
    if read_pid(part.pid_file) is None:
        return settings
    return settings.model_copy(update={"weaviate_url": part.address,
                                       "weaviate_grpc_port": settings.weaviate_local_grpc_port})


def prepare() -> None:
    """`make weaviate` (make test's set-up): build the binary once if Go 1.25+ is here;
    without Go it only says so (the Weaviate tests then skip with the same reason)."""
    import time

    settings = Settings()
    binary = installed_binary(settings)
    if binary.is_file():
        print(f"weaviate-server {WEAVIATE_VERSION}: {binary}")
        return
    try:
        go_command()
    except StackError as exc:
        print(f"weaviate-server not built, its tests will be skipped: {exc}")
        return
    print(f"building weaviate-server {WEAVIATE_VERSION} with `go install` (first time only, about 3 min)...",
          flush=True)
    started = time.monotonic()
    ensure_binary(settings)
    print(f"weaviate-server {WEAVIATE_VERSION}: {binary} (built in {time.monotonic() - started:.0f} s)")

