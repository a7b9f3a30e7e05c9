"""``reach``: can the members connect to this node? Each dials it back and says how."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import click

from peerbak.cli.kit import fail, open_home, repo_call, run
from peerbak.core.errors import NotReachable

if TYPE_CHECKING:
    from peerbak.services.repository import Repository


def _port() -> int | None:
    """The running daemon's SSH port, else the configured one; None: the roster's."""
    home = open_home(unlock=False)
    state = home.running_state()
    if state is not None:
        return state.port
    return home.config().node.port or None


@click.command()
@click.option("--json", "as_json", is_flag=True)
def reach(as_json: bool) -> None:
    """Can members reach this node? Each member that is up dials this node back at the
    address it sees it from. Exits 0 when one could, 75 when none could."""
    from peerbak.services.reach import reachability

    port = run(as_json, _port)

    async def go(repo: Repository) -> dict[str, Any]:
        return await reachability(repo, port)

    report = repo_call(as_json, go)
    if as_json:
        click.echo(json.dumps(report))
    else:
        _print(report)
    if not report["reachable"]:
        fail(as_json, NotReachable("no member could reach this node"))


def _print(report: dict[str, Any]) -> None:
    for row in report["members"]:
        if not row["up"]:
            click.echo(f"{row['name']}: not asked, it is down ({row['error']})")
        elif row["ok"]:
            click.echo(f"{row['name']}: reached this node at {row['address']}")
        else:
            click.echo(f"{row['name']}: could not reach {row['address']}: {row['error']}")
    click.echo(f"direct IPv4: {report['direct_v4']}; direct IPv6: {report['direct_v6']}")
    if not report["reachable"]:
        click.echo(
            f"No member could reach this node. Forward TCP port {report['port']} on your "
            "router to this machine and set node.advertise to your public address:port, "
            "or give this node an IPv6 address members can reach (and advertise it)."
        )


COMMANDS = (reach,)
