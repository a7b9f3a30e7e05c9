"""Real nodes for tests: see peerbak.localpool (shared with the demo and benchmarks)."""

from __future__ import annotations

from typing import Any

from peerbak.localpool import LocalNode, make_pool, peerbak
from peerbak.transport import private_key

__all__ = ["Daemon", "make_pool", "peerbak"]


class Daemon(LocalNode):
    @property
    def ssh_key(self) -> Any:
        return private_key(self.keys.ssh_seed)
