"""The pool's membership: ``invite``, ``join``, ``peers`` (and its ``trust`` and ``remove``),
``leave`` and the hidden ``gossip``. Changes go through the running daemon."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

import click

from peerbak.cli.kit import (
    ask_daemon,
    emit,
    emit_table,
    health,
    home_call,
    human_size,
    matching,
    repo_call,
    run,
    time_ago,
)
from peerbak.core.errors import InputError
from peerbak.core.words import plural

if TYPE_CHECKING:
    from peerbak.services.repository import Repository


@click.command()
@click.option("--expires", default="24h", show_default=True, help="e.g. 30min, 24h, 7d.")
@click.option("--uses", default=1, show_default=True, help="How many nodes may join with it.")
@click.option("--qr", is_flag=True, help="Also show the token as a QR code.")
@click.option("--json", "as_json", is_flag=True)
def invite(expires: str, uses: int, qr: bool, as_json: bool) -> None:
    """Print a single-use, expiring token a friend passes to `peerbak join`."""
    info = run(
        as_json,
        lambda: ask_daemon({"cmd": "invite", "ttl": parse_duration(expires), "uses": uses}),
    )
    token = info["token"]
    if as_json:
        click.echo(json.dumps({"token": token}))
        return
    click.echo(token)
    if qr:
        import segno

        segno.make(token, error="m").terminal(compact=True)


def parse_duration(text: str) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(s|min|m|h|d)?", text.strip())
    if match is None:
        raise InputError(f"not a duration: {text!r} (try 30min, 24h or 7d)")
    scale = {"s": 1, "min": 60, "m": 60, "h": 3600, "d": 86400}[match.group(2) or "s"]
    return float(match.group(1)) * scale


@click.command()
@click.argument("token")
@click.option("--json", "as_json", is_flag=True)
def join(token: str, as_json: bool) -> None:
    """Join the pool a friend invited this node to."""
    from peerbak.node.server import join_pool

    info = home_call(as_json, lambda home: join_pool(home, token))
    emit(
        as_json,
        info,
        f"Joined pool {info['pool'][:12]} through {info['inviter'][:12]}: "
        f"{plural(info['members'], 'member')}.",
    )


@click.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def peers(ctx: click.Context, as_json: bool) -> None:
    """Members: state, last seen, uptime, latency, challenges, bytes each way."""
    if ctx.invoked_subcommand is not None:
        return
    h = repo_call(as_json, health)
    if as_json:
        click.echo(json.dumps(h["members"]))
        return
    emit_table(
        plural(len(h["members"]), "member"),
        [
            "name",
            "node",
            "state",
            "last seen",
            "uptime",
            "latency",
            "challenges ok/failed",
            "holds for us",
            "we hold for it",
        ],
        (
            (
                m["name"],
                m["node"][:12],
                m["state"] if m["last_seen"] is not None or m["state"] != "ok" else "not seen yet",
                time_ago(m["last_seen"]),
                f"{m['uptime'] * 100:.0f} %" if m["uptime"] is not None else "-",
                f"{m['latency_ms']} ms" if m["latency_ms"] is not None else "-",
                f"{m['challenges_passed']}/{m['challenges_failed']}",
                human_size(m["bytes_held_for_us"]),
                human_size(m["bytes_we_hold_for_it"]),
            )
            for m in h["members"]
        ),
    )
    for f in h["recent_failures"]:
        ago, who = time_ago(f["time"]), f["member"]
        click.echo(f"{ago}: {who} {f['outcome']} on shard {f['shard']}: {f['evidence']}")


@peers.command("trust")
@click.argument("node")
@click.option("--json", "as_json", is_flag=True)
def peers_trust(node: str, as_json: bool) -> None:
    """Trust a member that failed challenges again (after its disk was fixed)."""

    async def go(repo: Repository) -> dict[str, Any]:
        # Clearing the failing mark: the member gets shards again and its good ones count.
        found = matching(repo.members.values(), node)
        if len(found) != 1:
            raise InputError(f"{len(found)} members match {node!r}: give a name or a longer id")
        await repo.ledger.set_failing(found[0].node, None)
        return {"node": found[0].node.hex(), "name": found[0].name}

    r = repo_call(as_json, go)
    click.echo(json.dumps(r) if as_json else f"{r['name'] or r['node'][:12]} is trusted again")


@peers.command("remove")
@click.argument("node")
@click.option("--json", "as_json", is_flag=True)
def peers_remove(node: str, as_json: bool) -> None:
    """Remove a member from the pool (a signed change every member applies)."""
    info = run(as_json, lambda: ask_daemon({"cmd": "remove", "node": node.lower()}))
    info.pop("ok", None)
    emit(as_json, info, _removal_text(info, "Removed"))


@click.command()
@click.option("--json", "as_json", is_flag=True)
def leave(as_json: bool) -> None:
    """Leave the pool: this node stops being a member for everyone."""
    info = run(as_json, lambda: ask_daemon({"cmd": "leave"}))
    info.pop("ok", None)
    emit(as_json, info, _removal_text(info, "Left the pool; removed"))


def _removal_text(info: dict[str, Any], verb: str) -> str:
    text = f"{verb} {info['removed'][:12]}."
    for member, why in info["unreached"].items():
        text += f"\n  not told yet: {member} ({why}); it will learn by gossip"
    return text


@click.command(hidden=True)
@click.option("--json", "as_json", is_flag=True)
def gossip(as_json: bool) -> None:
    """Push this node's roster records to every member now (normally every 10 minutes)."""
    info = run(as_json, lambda: ask_daemon({"cmd": "gossip"}))
    emit(as_json, info, f"Told {plural(info['members'] - 1, 'member')} what this node knows.")


COMMANDS = (invite, join, peers, leave, gossip)
