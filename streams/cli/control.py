"""`agentstream control lite-mode|show`, `agentstream alerts` and `agentstream risk` (issue 14, docs/risk.md)."""

from __future__ import annotations

import asyncio
import getpass
import json
import re
from datetime import UTC, datetime

import click

from streams.settings import Settings

__all__ = ["alerts", "control", "parse_duration", "risk"]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """`90s`, `30m`, `2h`, `1d`, `1h30m` or plain seconds -> seconds."""
    text = text.strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    parts = re.findall(r"(\d+(?:\.\d+)?)([smhd])", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise click.BadParameter(f"{text!r}: a duration like 90s, 30m, 2h, 1d or 1h30m")
    return sum(float(n) * _UNITS[u] for n, u in parts)


def _when(ms: int | None) -> str:
    return "never" if ms is None else datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@click.group()
def control() -> None:
    """Commands every worker follows (the agent.control topic)."""


@control.command("lite-mode")
@click.argument("state", type=click.Choice(["on", "off"]))
@click.option("--tenant", default=None, help="Only this tenant (default: every tenant).")
@click.option("--for", "duration", default=None, help="Expire after this long (90s, 30m, 2h, 1d); default: never.")
@click.option("--reason", required=True, help="Why (recorded on the command).")
@click.pass_obj
def lite_mode(settings: Settings, state: str, tenant: str | None, duration: str | None, reason: str) -> None:
    """Switch lite mode on or off: the cheapest capable model for every step, `quality` runs as `fast`."""
    from schemas import default_codec
    from streams import kafka
    from streams.risk.control import ensure_control_topic, lite_mode_command, send_command

    for_s = parse_duration(duration) if duration else None

    async def issue() -> dict:
        await ensure_control_topic(settings)
        producer = kafka.producer(settings)
        await producer.start()
        try:  # issued (and its expiry counted) when it is sent, not when the command line began
            made = lite_mode_command(state == "on", reason, f"cli:{getpass.getuser()}", tenant, for_s)
            await send_command(settings, default_codec(), made, producer)
            return made
        finally:
            await producer.stop()

    command = asyncio.run(issue())
    who = f"tenant {tenant}" if tenant else "every tenant"
    until = f" until {_when(command['expires_at'])}" if command["expires_at"] else ""
    click.echo(f"lite mode {state} for {who}{until} ({command['command_id']})")


@control.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON object per command in force.")
@click.pass_obj
def show(settings: Settings, as_json: bool) -> None:
    """The commands on the control topic, latest per scope, and whether each is in force."""
    from schemas import default_codec
    from streams.risk.control import ControlState, ensure_control_topic, read_commands

    async def read() -> list[dict]:
        await ensure_control_topic(settings)
        return await read_commands(settings, default_codec())

    state = ControlState()
    for command in asyncio.run(read()):
        state.apply(command)
    active = {c["command_id"] for c in state.active()}
    if as_json:
        for c in state.commands.values():
            click.echo(json.dumps({**c, "in_force": c["command_id"] in active}))
        return
    if not state.commands:
        click.echo("no commands: lite mode is off everywhere")
        return
    for c in sorted(state.commands.values(), key=lambda c: c["issued_at"]):
        scope = f"tenant {c['tenant']}" if c["scope"] == "tenant" else "global"
        status = "IN FORCE" if c["command_id"] in active else ("expired" if c["value"] == "on" else "off")
        click.echo(f"{c['command']:<10} {scope:<20} {c['value']:<3} {status:<8} by {c['issued_by']} at "
                   f"{_when(c['issued_at'])}, expires {_when(c.get('expires_at'))}: {c['reason']}")


@click.command()
@click.option("--follow", "-f", is_flag=True, help="Keep printing new alerts until Ctrl-C.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per alert.")
@click.pass_obj
def alerts(settings: Settings, follow: bool, as_json: bool) -> None:
    """The risk alerts on agent.alerts, oldest first."""
    from schemas import default_codec
    from streams.admin import ensure_topics
    from streams.client import read_topic
    from streams.topics import ALERTS, topic_specs

    topic = settings.topic(ALERTS)

    async def read() -> None:
        await ensure_topics(settings, [s for s in topic_specs(settings) if s.name == topic])
        async for r in read_topic(settings, default_codec(), topic, from_beginning=True,
                                  idle_timeout_s=None if follow else 1.0):
            if r.record is None:
                continue
            a = r.record
            if as_json:
                click.echo(json.dumps(a))
                continue
            details = " ".join(f"{k}={v}" for k, v in sorted(a["details"].items()))
            click.echo(f"{_when(a['last_seen'])} {a['severity'].upper():<8} {a['kind']:<20} tenant={a['tenant']} "
                       f"x{a['count']}: {a['summary']}\n    {details}")

    try:
        asyncio.run(read())
    except KeyboardInterrupt:
        pass


@click.command()
@click.pass_obj
def risk(settings: Settings) -> None:
    """Run the risk stage alone (cost spikes, key exposure, budgets, dead letters, conflicts) until Ctrl-C."""
    from streams.risk.service import run_risk

    run_risk(settings)
