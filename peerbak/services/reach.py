"""Can members reach this node? Each member that is up dials us back (wire ``ReachMe``)
at the address it sees us from; the answers say, per address family, whether a direct
connection to this node works from outside."""

from __future__ import annotations

import asyncio
from typing import Any

from peerbak.core.addresses import split_host_port
from peerbak.core.errors import InputError, PeerbakError
from peerbak.services.repository import Repository


def family(address: str) -> str:
    """``v6`` for a bracketed (IPv6) address, else ``v4``."""
    return "v6" if address.startswith("[") else "v4"


def own_port(repo: Repository) -> int:
    """The port this node's roster record names: what members are told to dial."""
    record = repo.roster.record(bytes(repo.node_id))
    for address in record.addresses if record is not None else []:
        try:
            return split_host_port(address)[1]
        except InputError:
            continue
    raise InputError("this node names no address in the roster: set node.port or node.advertise")


async def reachability(repo: Repository, port: int | None = None) -> dict[str, Any]:
    """Ask every member, concurrently, to dial us back on ``port`` (default: the port of
    our roster record); per member what happened, and per family ``yes``/``no``/``unknown``."""
    port = port or own_port(repo)

    async def one(node: bytes) -> dict[str, Any]:
        m = repo.members[node]
        row: dict[str, Any] = {"node": node.hex(), "name": m.label, "up": True}
        try:
            reached = await m.link.reach_me(port)
        except PeerbakError as exc:
            return {**row, "up": False, "ok": False, "address": "", "error": str(exc)}
        return {**row, "ok": reached.ok, "address": reached.address, "error": reached.error}

    rows = await asyncio.gather(*(one(node) for node in repo.members))
    report: dict[str, Any] = {"port": port, "members": list(rows)}
    for fam in ("v4", "v6"):
        tried = [r for r in rows if r["up"] and r["address"] and family(r["address"]) == fam]
        verdict = "unknown" if not tried else "yes" if any(r["ok"] for r in tried) else "no"
        report[f"direct_{fam}"] = verdict
        report[f"errors_{fam}"] = [f"{r['name']}: {r['error']}" for r in tried if not r["ok"]]
    report["reachable"] = "yes" in (report["direct_v4"], report["direct_v6"])
    return report
