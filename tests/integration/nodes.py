"""Real nodes for tests: see peerbak.tools.localpool (shared with the demo and benchmarks)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from peerbak.adapters.home import Home
from peerbak.adapters.transport import private_key
from peerbak.node.compose import open_repository
from peerbak.services.backup import run_backup
from peerbak.tools.localpool import LocalNode, make_pool, peerbak

__all__ = ["Daemon", "backup_in_process", "make_pool", "peerbak"]


class Daemon(LocalNode):
    @property
    def ssh_key(self) -> Any:
        return private_key(self.keys.ssh_seed)


async def backup_in_process(
    home: Path, paths: list[Path], *, clock: Callable[[], float] = time.time, **options: Any
) -> dict[str, Any]:
    """``peerbak backup`` in this process, as the CLI runs it, with a clock of the test's."""
    node = Home.open(home)
    with node.lock("backup"):
        async with await open_repository(node, clock=clock) as repo:
            return await run_backup(repo, paths, **options)
