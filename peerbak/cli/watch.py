"""Keeping an eye on the node: ``log`` shows what happened, from the ledger's events."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

import click

from peerbak.cli.kit import repo_call, rfc3339, run, when
from peerbak.cli.pool import parse_duration

if TYPE_CHECKING:
    from peerbak.services.repository import Repository


@click.command()
@click.option("--since", help="Only events this recent: 30min, 24h, 7d.")
@click.option(
    "--kind", "kinds", multiple=True, help="Only events of this kind (member. matches a prefix)."
)
@click.option("-n", "--limit", default=50, show_default=True, help="At most this many, newest.")
@click.option("--json", "as_json", is_flag=True)
def log(since: str | None, kinds: tuple[str, ...], limit: int, as_json: bool) -> None:
    """What happened: members gone and back, failed challenges, repairs, jobs; oldest
    first."""
    after = run(as_json, lambda: time.time() - parse_duration(since)) if since else None

    async def go(repo: Repository) -> list[Any]:
        newest = await repo.ledger.events(since=after, kinds=kinds, limit=limit, newest_first=True)
        return newest[::-1]

    events = repo_call(as_json, go)
    if as_json:
        for e in events:
            click.echo(
                json.dumps(
                    {
                        "id": e.id,
                        "time": rfc3339(e.time),
                        "level": e.level,
                        "kind": e.kind,
                        "subject": e.subject,
                        "message": e.message,
                        "details": e.details,
                    }
                )
            )
        return
    for e in events:
        click.echo(f"{when(e.time)}  {e.level:<7}  {e.kind:<18}  {e.message}")
    if not events:
        click.echo("nothing logged" + (f" in the last {since}" if since else ""), err=True)


COMMANDS = (log,)
