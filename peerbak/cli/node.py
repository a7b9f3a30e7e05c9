"""This node itself: ``init`` makes it, ``daemon`` runs it, ``recover`` rebuilds it."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import click

from peerbak.cli.kit import emit, home_call, home_path, run
from peerbak.core.errors import InputError
from peerbak.core.textcode import KEY_FILE_MAX
from peerbak.core.words import plural

if TYPE_CHECKING:
    pass


@click.command()
@click.option("--name", default="", help="How friends see this node.")
@click.option("--port", default=7420, show_default=True, help="SSH port (0: OS-chosen).")
@click.option("--listen", default="0.0.0.0", show_default=True, help="Address to listen on.")  # noqa: S104
@click.option("--no-lan", is_flag=True, help="Turn LAN discovery (mDNS) off.")
@click.option("--json", "as_json", is_flag=True)
def init(name: str, port: int, listen: str, no_lan: bool, as_json: bool) -> None:
    """Create a node: its secret, config and ledger. Shows the recovery key once."""
    from peerbak.node.compose import create_node

    info = run(as_json, lambda: create_node(home_path(), name, port, listen=listen, lan=not no_lan))
    emit(
        as_json,
        info,
        f"Created node {info['node'][:12]} in {info['home']}\n\n"
        f"Your recovery key (shown once; it is also in {info['recovery_kit'][0]}):\n\n"
        f"    {info['recovery_key']}\n\n"
        "Write it down or print the kit and keep it away from this machine: with it and\n"
        "one friend's address you can get everything back if this machine is lost.\n"
        "Next: `peerbak daemon`, then `peerbak invite` (start a pool) or `peerbak join TOKEN`.",
    )


@click.command()
def daemon() -> None:
    """Run the node in the foreground (systemd: Type=notify)."""
    import logging

    from peerbak.node.daemon import run_daemon

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("asyncssh").setLevel(logging.WARNING)  # one line per connection is noise
    home_call(False, run_daemon)


@click.command()
@click.option("--from", "address", required=True, help="A member's HOST:PORT.")
@click.option("--key-file", type=click.Path(dir_okay=False), help="Read the recovery key here.")
@click.option("--name", default="", help="How friends see this node.")
@click.option("--port", default=7420, show_default=True, help="SSH port (0: OS-chosen).")
@click.option("--listen", default="0.0.0.0", show_default=True, help="Address to listen on.")  # noqa: S104
@click.option("--no-lan", is_flag=True, help="Turn LAN discovery (mDNS) off.")
@click.option(
    "--in-place",
    is_flag=True,
    help="Rebuild this node's damaged ledger from the pool (the damaged file is kept aside).",
)
@click.option("--json", "as_json", is_flag=True)
def recover(
    address: str,
    key_file: str | None,
    name: str,
    port: int,
    listen: str,
    no_lan: bool,
    in_place: bool,
    as_json: bool,
) -> None:
    """Rebuild this node on a new machine from its recovery key and one member."""
    from peerbak.node.recover import recover as do_recover
    from peerbak.node.recover import recover_in_place

    if in_place:
        if key_file:
            raise click.UsageError("--in-place uses this node's own secret: no --key-file")
        info = run(as_json, lambda: asyncio.run(recover_in_place(home_path(), address)))
        emit(
            as_json,
            info,
            f"Rebuilt the ledger of node {info['node'][:12]} through member "
            f"{info['through'][:12]}: {plural(info['snapshots'], 'snapshot')}, "
            f"{plural(info['packs'], 'pack')}.\n"
            + (
                f"The damaged ledger ({info['damaged']}) is kept as "
                + ", ".join(info["kept_aside"])
                + ".\n"
                if info["kept_aside"]
                else ""
            )
            + "Start `peerbak daemon`; `peerbak snapshots` and `peerbak restore` work now.",
        )
        return

    def go() -> dict[str, Any]:
        if key_file:
            try:
                with open(key_file, encoding="utf-8", errors="replace") as f:
                    key = f.read(KEY_FILE_MAX + 1)  # the key, or the kit init wrote
            except OSError as exc:
                raise InputError(f"cannot read {key_file}: {exc.strerror}") from None
        else:
            key = click.prompt("Recovery key", hide_input=True, err=True)
        return asyncio.run(
            do_recover(
                home_path(), key, address, name=name, port=port, listen=listen, lan=not no_lan
            )
        )

    info = run(as_json, go)
    emit(
        as_json,
        info,
        f"Recovered node {info['node'][:12]} into {info['home']} through member "
        f"{info['through'][:12]}: {plural(info['snapshots'], 'snapshot')}, "
        f"{plural(info['packs'], 'pack')}.\n"
        "Start `peerbak daemon`; `peerbak snapshots` and `peerbak restore` work now.",
    )


COMMANDS = (init, daemon, recover)
