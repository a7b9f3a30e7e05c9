"""``peerbak mount``: the snapshots as a read-only file system (restic's ``mount``)."""

from __future__ import annotations

import asyncio
import os

import click

from peerbak.cli.kit import quiet, repo_in_thread, run, selection, selection_options
from peerbak.core.words import plural


@click.command()
@click.argument("mountpoint", type=click.Path(file_okay=False))
@click.option("--allow-other", is_flag=True, help="Let other users in (needs user_allow_other).")
@selection_options
def mount(
    mountpoint: str,
    allow_other: bool,
    hosts: tuple[str, ...],
    paths: tuple[str, ...],
    tags: tuple[str, ...],
) -> None:
    """Browse the snapshots read-only at MOUNTPOINT: snapshots/ by time (and latest),
    ids/, hosts/HOST/, tags/TAG/. Runs until Ctrl-C or `fusermount -u MOUNTPOINT`."""
    only = selection(hosts, paths, tags)

    def warn(text: str) -> None:  # from libfuse's threads: one line for each failed read
        click.echo(f"peerbak: {text}", err=True)

    def go() -> None:
        # First, so a machine without libfuse hears it before the pool is dialled.
        from peerbak.adapters.fuse import SnapshotFS, check_mountpoint, serve
        from peerbak.services.browse import Browser

        check_mountpoint(mountpoint)
        with repo_in_thread() as (repo, loop):
            view = Browser(repo, only, uid=os.getuid(), gid=os.getgid())
            count = asyncio.run_coroutine_threadsafe(view.refresh(force=True), loop).result()
            if not quiet():
                click.echo(
                    f"Serving {plural(count, 'snapshot')} at {mountpoint}; "
                    f"quit with Ctrl-C or `fusermount -u {mountpoint}`",
                    err=True,
                )
            serve(SnapshotFS(view, loop, warn), mountpoint, allow_other=allow_other)

    run(False, go)


COMMANDS = (mount,)
