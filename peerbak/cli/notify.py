"""``peerbak notify``: try the notification settings before something goes wrong."""

from __future__ import annotations

import asyncio
import json
import socket
from typing import TYPE_CHECKING, Any

import click

from peerbak.cli.kit import fail, open_home, run
from peerbak.core.errors import ConfigError, NotDelivered

if TYPE_CHECKING:
    from peerbak.adapters.home import Home


@click.group()
def notify() -> None:
    """Notifications: where the daemon tells you when something needs you."""


@notify.command("test")
@click.option("--json", "as_json", is_flag=True)
def test(as_json: bool) -> None:
    """Send one notification to every URL of [notify] urls; say which took it."""

    async def go(home: Home) -> list[dict[str, Any]]:
        from peerbak.adapters.notify import AppriseNotifier

        config = home.config()
        if not config.notify.urls:
            raise ConfigError(
                f"no notification URLs: add [notify] urls = [...] to {home.root / 'config.toml'}"
                ' (e.g. "ntfys://ntfy.sh/your-topic"; README: Notifications)'
            )
        name = config.node.name or socket.gethostname()
        results = await AppriseNotifier(config.notify.urls).send_each(
            "peerbak: a test notification",
            f"{name} can reach you here: this is where peerbak tells you when your "
            "backups need you.",
            "info",
        )
        return [{"url": url, "delivered": ok} for url, ok in results]

    # The secret stays sealed: a test message needs only the config.
    rows = run(as_json, lambda: asyncio.run(go(open_home(unlock=False))))
    for row in rows:
        if as_json:
            click.echo(json.dumps(row))
        else:
            click.echo(f"{'sent  ' if row['delivered'] else 'FAILED'}  {row['url']}")
    failed = sum(not row["delivered"] for row in rows)
    if failed:
        if not as_json:
            click.echo(f"{failed} of {len(rows)} not delivered", err=True)
        fail(as_json, NotDelivered(f"{failed} of {len(rows)} notifications not delivered"))


COMMANDS = (notify,)
