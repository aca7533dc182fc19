"""The embedded Weaviate's part without a server: what it says when Go is missing or too old, its
environment (every port a setting, loopback only), and which WEAVIATE_URL counts as external."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from streams.devstack import StackError
from streams.devstack.weaviate import WEAVIATE_VERSION, WeaviatePart, ensure_binary, installed_binary
from streams.settings import Settings


def _fake_go(folder: Path, version: str) -> None:
    """A `go` command that only answers `go env` (what the part asks before building anything)."""
    script = folder / "go"
    script.write_text(f"""#!/bin/sh
case "$2" in
  GOVERSION) echo {version} ;;
  GOBIN) echo ""; echo "{folder}/gopath" ;;
esac
""")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)


def test_no_go_on_path_says_what_to_install(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(StackError) as caught:
        ensure_binary(Settings())
    message = str(caught.value)
    assert "`go` is not on PATH" in message and "Go 1.25 or newer" in message and "WEAVIATE_URL" in message


def test_go_too_old_names_both_versions(monkeypatch, tmp_path) -> None:
    _fake_go(tmp_path, "go1.22.4")
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(StackError) as caught:
        ensure_binary(Settings())
    assert "is 1.22" in str(caught.value) and "Go 1.25 or newer" in str(caught.value)
    assert installed_binary(Settings()) == tmp_path / "gopath" / "bin" / f"weaviate-server-{WEAVIATE_VERSION}"


def test_a_configured_binary_is_used_as_it_is(tmp_path) -> None:
    settings = Settings(AGENTSTREAM_WEAVIATE_BINARY=tmp_path / "nothing-here")
    with pytest.raises(StackError, match="AGENTSTREAM_WEAVIATE_BINARY"):
        ensure_binary(settings)
    binary = tmp_path / "weaviate-server"
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    assert ensure_binary(Settings(AGENTSTREAM_WEAVIATE_BINARY=binary)) == binary


def test_every_port_is_a_setting_and_binds_loopback(tmp_path) -> None:
    ports = dict(zip(("PORT", "LOCAL_GRPC_PORT", "GOSSIP_PORT", "DATA_PORT", "RAFT_PORT", "RAFT_RPC_PORT",
                      "PROFILING_PORT"), range(30001, 30008), strict=True))
    part = WeaviatePart(Settings(**{f"AGENTSTREAM_WEAVIATE_{k}": v for k, v in ports.items()}), tmp_path)
    assert sorted(part.ports()) == list(range(30001, 30008))
    env = part.environment()
    assert env["CLUSTER_BIND_ADDR"] == env["CLUSTER_ADVERTISE_ADDR"] == "127.0.0.1"
    assert {env[k] for k in ("GRPC_PORT", "CLUSTER_GOSSIP_BIND_PORT", "CLUSTER_DATA_BIND_PORT", "RAFT_PORT",
                             "RAFT_INTERNAL_RPC_PORT", "GO_PROFILING_PORT")} == {str(p) for p in range(30002, 30008)}
    assert env["PERSISTENCE_DATA_PATH"] == str(tmp_path / "weaviate" / "data")


def test_only_another_servers_url_makes_it_external(tmp_path) -> None:
    own = Settings(AGENTSTREAM_WEAVIATE_PORT=30001, WEAVIATE_URL="http://127.0.0.1:30001")
    assert WeaviatePart(own, tmp_path).external is None
    other = Settings(WEAVIATE_URL="http://weaviate:8080")
    assert WeaviatePart(other, tmp_path).external == "http://weaviate:8080"
    assert WeaviatePart(other, tmp_path).status().state == "external"
