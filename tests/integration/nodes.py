"""Real nodes for tests: see peerbak.tools.localpool (shared with the demo and benchmarks)."""

from __future__ import annotations

from typing import Any

from peerbak.adapters.transport import private_key
from peerbak.tools.localpool import LocalNode, make_pool, peerbak

__all__ = ["Daemon", "make_pool", "peerbak"]


class Daemon(LocalNode):
    @property
    def ssh_key(self) -> Any:
        return private_key(self.keys.ssh_seed)
