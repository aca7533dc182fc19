"""The embedded Weaviate in tests: free ports for it, and why it cannot run here (if it cannot)."""

from __future__ import annotations

from streams.settings import Settings


def weaviate_ports() -> dict[str, int]:
    """Free ports for every port the embedded Weaviate binds (never the defaults)."""
    from streams.devstack import free_ports

    names = ("PORT", "LOCAL_GRPC_PORT", "GOSSIP_PORT", "DATA_PORT", "RAFT_PORT", "RAFT_RPC_PORT", "PROFILING_PORT")
    return {f"AGENTSTREAM_WEAVIATE_{name}": port for name, port in zip(names, free_ports(len(names)), strict=True)}


def weaviate_missing() -> str | None:
    """Why the embedded Weaviate cannot run here (no binary and no Go 1.25+ to build it), or None."""
    from streams.devstack import StackError
    from streams.devstack.weaviate import go_command, installed_binary

    if installed_binary(Settings()).is_file():
        return None
    try:
        go_command()
    except StackError as exc:
        return f"no Weaviate for the L2 tests: {exc}"
    return None
