"""This node itself: ``init`` makes it, ``daemon`` runs it, ``recover`` rebuilds it,
``passphrase`` seals its secret at rest."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import click

from peerbak.cli.kit import (
    ask_hidden,
    emit,
    home_call,
    home_path,
    open_home,
    passphrase,
    run,
)
from peerbak.core.errors import InputError
from peerbak.core.textcode import KEY_FILE_MAX
from peerbak.core.words import plural

if TYPE_CHECKING:
    from peerbak.adapters.home import Home


@click.command()
@click.option("--name", default="", help="How friends see this node.")
@click.option("--port", default=7420, show_default=True, help="SSH port (0: OS-chosen).")
@click.option("--listen", default="0.0.0.0", show_default=True, help="Address to listen on.")  # noqa: S104
@click.option("--no-lan", is_flag=True, help="Turn LAN discovery (mDNS) off.")
@click.option(
    "--web-port",
    default=7421,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Port of the status page on 127.0.0.1 (0: OS-chosen).",
)
@click.option(
    "--passphrase",
    "sealed",
    is_flag=True,
    help="Seal the node secret with a passphrase (from $PEERBAK_PASSWORD_FILE, "
    "$PEERBAK_PASSWORD_COMMAND, or asked twice).",
)
@click.option("--json", "as_json", is_flag=True)
def init(
    name: str, port: int, listen: str, no_lan: bool, web_port: int, sealed: bool, as_json: bool
) -> None:
    """Create a node: its secret, config and ledger. Shows the recovery key once."""
    from peerbak.node.compose import create_node

    def go() -> dict[str, Any]:
        secret_passphrase = passphrase(confirm=True, prompt="New passphrase") if sealed else None
        return create_node(
            home_path(),
            name,
            port,
            listen=listen,
            lan=not no_lan,
            passphrase=secret_passphrase,
            web_port=web_port,
        )

    info = run(as_json, go)
    emit(
        as_json,
        info,
        f"Created node {info['node'][:12]} in {info['home']}"
        + (" (its secret sealed with your passphrase)" if sealed else "")
        + "\n\n"
        f"Your recovery key (shown once; it is also in {info['recovery_kit'][0]}):\n\n"
        f"    {info['recovery_key']}\n\n"
        "Write it down or print the kit and keep it away from this machine: with it and\n"
        "one friend's address you can get everything back if this machine is lost.\n"
        + (_KIT_ON_DISK if sealed else "")
        + "Next: `peerbak daemon`, then `peerbak invite` (start a pool) or `peerbak join TOKEN`.",
    )


_KIT_ON_DISK = (
    "The kit files are not sealed: once printed or copied away, delete them from this machine.\n"
)


@click.command()
def daemon() -> None:
    """Run the node in the foreground (systemd: Type=notify)."""
    import logging
    import os

    from peerbak.node.daemon import run_daemon

    # Under systemd the journal stamps each line: a second time would only be noise.
    stamp = "" if os.environ.get("JOURNAL_STREAM") else "%(asctime)s "
    logging.basicConfig(
        level=logging.INFO,
        format=stamp + "%(levelname)s %(name)s: %(message)s",
        datefmt="%Y-%m-%dT%H:%M:%S%z",
    )
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
        info = run(
            as_json,
            lambda: asyncio.run(recover_in_place(home_path(), address, passphrase=passphrase)),
        )
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


@click.group("passphrase")
def passphrase_group() -> None:
    """Seal the node secret at rest with a passphrase, change it, or remove it.

    Sealed, a stolen powered-off disk reveals nothing without the passphrase; but every
    command and each daemon start need it ($PEERBAK_PASSWORD_FILE,
    $PEERBAK_PASSWORD_COMMAND, or a terminal). The recovery key stays what it was.
    """


@passphrase_group.command("set")
@click.option(
    "--new-password-file",
    type=click.Path(dir_okay=False),
    help="Read the new passphrase here (else it is asked twice on the terminal).",
)
@click.option("--json", "as_json", is_flag=True)
def passphrase_set(new_password_file: str | None, as_json: bool) -> None:
    """Seal the node secret with a new passphrase (asks the current one, if any)."""
    from peerbak.adapters.passphrase import read_file

    def go() -> dict[str, Any]:
        home = open_home()  # a sealed secret is opened with the current passphrase first
        changed = home.is_sealed()
        if new_password_file:
            new = read_file(new_password_file, "--new-password-file")
        else:
            new = ask_hidden(
                "New passphrase",
                confirm=True,
                otherwise="give the new passphrase with --new-password-file FILE, "
                "or run on a terminal to be asked",
            )
        home.set_passphrase(new)
        return {**_secret_info(home), "changed": changed}

    info = run(as_json, go)
    kit = info["recovery_kit_on_disk"]
    emit(
        as_json,
        info,
        ("Changed the passphrase of" if info["changed"] else "Sealed")
        + f" the secret of node {info['node'][:12]} ({info['path']}).\n"
        "Every command and each daemon start now need the passphrase: $PEERBAK_PASSWORD_FILE,\n"
        "$PEERBAK_PASSWORD_COMMAND, or a terminal. The node, its keys and its recovery key\n"
        "stay the same."
        + (
            "\nThe recovery kit still holds the secret unsealed: once printed or copied away,\n"
            "delete it from this machine: " + " ".join(kit)
            if kit
            else ""
        ),
    )


@passphrase_group.command("remove")
@click.option("--json", "as_json", is_flag=True)
def passphrase_remove(as_json: bool) -> None:
    """Make the node secret plain again (asks the current passphrase)."""

    def go() -> dict[str, Any]:
        home = open_home()
        changed = home.is_sealed()
        if changed:
            home.set_passphrase(None)
        return {**_secret_info(home), "changed": changed}

    info = run(as_json, go)
    emit(
        as_json,
        info,
        f"The secret of node {info['node'][:12]} ({info['path']}) is plain again: the daemon\n"
        "starts on its own, and anyone who reads this disk can read your backups."
        if info["changed"]
        else f"{info['path']} has no passphrase: nothing to do.",
    )


def _secret_info(home: Home) -> dict[str, Any]:
    from peerbak.core.crypto import NodeKeys

    kit = [home.root / "recovery-kit.txt", home.root / "recovery-kit.png"]
    return {
        "home": str(home.root),
        "node": NodeKeys.derive(home.secret()).node_id.hex(),
        "path": str(home.secret_path),
        "sealed": home.is_sealed(),
        "recovery_kit_on_disk": [str(p) for p in kit if p.exists()],
    }


COMMANDS = (init, daemon, recover, passphrase_group)
