"""A running node: its roster, the holder service, links to members, invites and joins.

:class:`Node` is what the SSH server calls for each session (ServerHooks) and what the
control socket drives; ``peerbak.node.daemon`` runs it as a process. :func:`join_pool` is the
joiner's side of an invite, run by ``peerbak join``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import time
from collections.abc import Callable
from typing import Any, Final

from peerbak import __version__
from peerbak.adapters import netif, transport
from peerbak.adapters.home import Home
from peerbak.adapters.ledger import InviteStatus, Ledger
from peerbak.adapters.link import SOFTWARE, PeerLink
from peerbak.adapters.store import DirectoryShareStore
from peerbak.adapters.transport import Caller, FramedChannel
from peerbak.core import pool, wire
from peerbak.core.addresses import join_host_port
from peerbak.core.config import Config
from peerbak.core.crypto import NodeKeys, RandomBytes
from peerbak.core.errors import (
    InputError,
    IntegrityError,
    PeerbakError,
    RemoteProtocolError,
)
from peerbak.core.ids import NodeId
from peerbak.node.reachback import ReachBack
from peerbak.services.holder import Holder

log = logging.getLogger(__name__)

#: Every member pushes its whole record set to every other this often (and at start):
#: a member that was away when a change was pushed learns it within one interval.
GOSSIP_INTERVAL: Final = 600.0
PURGE_INTERVAL: Final = 3600.0
PUSH_TIMEOUT: Final = 10.0


#: At most this many of this host's addresses go into our record (loopback comes on top):
#: four addresses of any length still fit in an invite token (pool.TOKEN_MAX_PAYLOAD).
MAX_HOST_ADDRESSES: Final = 3


def local_addresses(config: Config, port: int) -> list[str]:
    """What this node tells friends: ``advertise`` if set, else the listen address, else
    this host's IPv4 addresses (loopback last, for pools on one machine).

    IPv6 is left to ``advertise``: a link-local address needs a scope a record cannot carry.
    """
    if config.node.advertise:
        return list(config.node.advertise)
    listen = config.node.listen
    if listen not in ("0.0.0.0", "::", ""):  # noqa: S104 - a comparison, not a bind
        return [join_host_port(listen, port)]
    found: list[str] = []
    with contextlib.suppress(OSError):
        found = [a for a, _ in netif.host_addresses() if ":" not in a]
    hosts = [*list(dict.fromkeys(found))[:MAX_HOST_ADDRESSES], "127.0.0.1"]
    return [join_host_port(h, port) for h in hosts]


class Node:
    """A running node: roster, holder, links to members, invites. Implements ServerHooks."""

    def __init__(
        self,
        home: Home,
        config: Config,
        keys: NodeKeys,
        ledger: Ledger,
        roster: pool.Roster | None,
        *,
        clock: Callable[[], float] = time.time,
        random_bytes: RandomBytes = os.urandom,
    ) -> None:
        self.home = home
        self.config = config
        self.keys = keys
        self.ledger = ledger
        self.roster = roster
        self.clock = clock
        self.random_bytes = random_bytes
        self.node_id = keys.node_id
        self.ssh_key = transport.private_key(keys.ssh_seed)
        self.ssh_public = pool.ssh_public_key(keys)
        self.port = 0
        self.web_port = 0  # the status page's, 0 when it is not served
        self.addresses: list[str] = []
        self.links: dict[bytes, PeerLink] = {}
        self.stopping = asyncio.Event()
        self._sessions: set[asyncio.Task[Any]] = set()
        self._touches: set[asyncio.Task[None]] = set()  # last-seen records being written
        #: Sessions waiting for the peer's next request: nothing of theirs is half done.
        self._idle: set[asyncio.Task[Any]] = set()
        self._by_ssh: dict[bytes, bytes] = {}
        self._open_invites = False
        self._refresh_keys()
        self.holder = Holder(
            store_for=self._held_store,
            lend_for=config.lend_for,
            free_bytes=lambda: shutil.disk_usage(home.held_dir).free,
            reserve=config.storage.reserve_free,
        )
        self._stores: dict[NodeId, DirectoryShareStore] = {}
        self.reach_back = ReachBack(self._host_key_of, self._dial_back)

    # -- roster ---------------------------------------------------------------------------

    def _refresh_keys(self) -> None:
        if self.roster is None:
            return
        self._by_ssh = {ssh: node for node, ssh in self.roster.ssh_keys().items()}
        for record in self.roster.members():
            if record.node == bytes(self.node_id):
                continue
            link = self.links.get(record.node)
            if link is None or link.host_key != record.ssh_key:
                self.links[record.node] = PeerLink(
                    NodeId(record.node), record.addresses, record.ssh_key, self.ssh_key
                )
            elif link.addresses != list(record.addresses):
                link.addresses = list(record.addresses)
                link.seen_alive()
        for node in list(self.links):
            if not self.roster.is_member(node):
                self.links.pop(node)

    def _host_key_of(self, node: bytes) -> bytes | None:
        record = self.roster.record(node) if self.roster else None
        return record.ssh_key if record is not None else None

    async def _dial_back(self, address: str, host_key: bytes, timeout: float) -> None:
        await transport.handshake_only(address, host_key, self.ssh_key, timeout)

    async def apply_records(self, blobs: list[bytes]) -> int:
        """Apply gossiped records; persist the accepted ones. Returns how many changed."""
        if self.roster is None:
            return 0
        changed = sum(self.roster.apply(blob) for blob in blobs)
        if changed:
            await self.ledger.add_records(self.roster.blobs(), self.clock())
            self._refresh_keys()
        return changed

    async def reload_roster(self) -> None:
        """Re-read the roster from the ledger (after ``peerbak join`` wrote to it)."""
        pool_id = await self.ledger.get_meta("pool")
        if pool_id is None:
            return
        if self.roster is None or self.roster.pool != pool_id:
            self.roster = pool.Roster(pool_id)
        for blob in await self.ledger.records():  # replay makes the order irrelevant
            self.roster.apply(blob)
        self._refresh_keys()

    async def found_pool(self) -> None:
        """Start a pool with this node as its only member (on the first invite)."""
        pool_id = self.random_bytes(16)
        blob = pool.found_pool(
            self.keys, pool_id, self.config.node.name, self.addresses, self.ssh_public
        )
        await self.ledger.add_records([blob], self.clock())
        await self.ledger.set_meta("pool", pool_id)
        await self.reload_roster()

    async def push(self, blobs: list[bytes], exclude: bytes = b"") -> dict[str, str]:
        """Gossip records to every other member, in parallel; returns failures by member."""
        links = [link for node, link in self.links.items() if node != exclude]

        async def one(link: PeerLink) -> tuple[str, str]:
            try:
                async with asyncio.timeout(PUSH_TIMEOUT):
                    await link.push_roster(blobs)
            except (PeerbakError, TimeoutError) as exc:
                return link.node.short, str(exc) or "timeout"
            return link.node.short, ""

        results = await asyncio.gather(*(one(link) for link in links))
        return {node: error for node, error in results if error}

    async def gossip(self) -> None:
        """Anti-entropy: push every record we hold to every member (a few KB each)."""
        if self.roster is None:
            return
        failures = await self.push(self.roster.blobs())
        for node, error in failures.items():
            log.info("gossip to %s failed: %s", node, error)

    async def purge_trash(self) -> tuple[int, int]:
        """Free trash older than this holder's grace period, for every owner."""
        await asyncio.to_thread(self.open_held_stores)
        grace = self.config.storage_section.trash_days * 86400
        freed = size = 0
        for owner, store in list(self._stores.items()):
            n, b = await asyncio.to_thread(store.purge_trash, self.clock(), grace)
            if n:
                self.holder.forget_usage(owner)
            freed, size = freed + n, size + b
        if freed:
            log.info("freed %d trashed shards (%d bytes) past the grace period", freed, size)
        return freed, size

    async def purge_forever(self, interval: float = PURGE_INTERVAL) -> None:
        while True:
            try:
                await self.purge_trash()
            except (PeerbakError, OSError) as exc:  # a read-only or failing disk: the
                log.warning("trash not purged this time: %s", exc)  # next round tries again
            await asyncio.sleep(interval)

    async def gossip_forever(self, interval: float = GOSSIP_INTERVAL) -> None:
        while True:
            await self.gossip()
            await asyncio.sleep(interval)

    async def publish_self(self) -> None:
        """Re-sign our own record when our addresses changed, and gossip it."""
        mine = self.roster.record(bytes(self.node_id)) if self.roster else None
        if self.roster is None or mine is None or list(mine.addresses) == self.addresses:
            return
        blob = self.roster.update(self.keys, addresses=self.addresses)
        await self.apply_records([blob])
        failures = await self.push([blob])
        for node, error in failures.items():
            log.info("could not tell %s our new address: %s", node, error)

    # -- ServerHooks ------------------------------------------------------------------------

    def member_for_key(self, ssh_key: bytes) -> bytes | None:
        return self._by_ssh.get(ssh_key)

    def guests_allowed(self) -> bool:
        """Keys outside the roster may log in (to join, nothing else) only while this
        node has an open invite; otherwise SSH refuses them at authentication."""
        return self._open_invites and not self.stopping.is_set()

    async def refresh_guests(self) -> None:
        self._open_invites = await self.ledger.has_open_invites(self.clock())

    async def serve(self, caller: Caller, channel: FramedChannel) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._sessions.add(task)
        try:
            await self._conversation(caller, channel)
        except PeerbakError as exc:
            with contextlib.suppress(PeerbakError):
                await channel.send(wire.error_from(exc))
        finally:
            self._sessions.discard(task)

    def end_idle_sessions(self) -> int:
        """Cancel the sessions that wait for a request (a stopping daemon need not wait
        for members that keep a connection open); returns how many."""
        idle = list(self._idle)
        for task in idle:
            task.cancel()
        return len(idle)

    async def _next(self, chan: FramedChannel) -> wire.Message | None:
        """The peer's next request; while waiting for it the session counts as idle."""
        task = asyncio.current_task()
        assert task is not None
        self._idle.add(task)
        try:
            return await chan.recv()
        finally:
            self._idle.discard(task)

    async def _conversation(self, caller: Caller, chan: FramedChannel) -> None:
        hello = await self._next(chan)
        if not isinstance(hello, wire.Hello):
            raise RemoteProtocolError("a session must start with Hello")
        version = wire.choose_version(hello.versions)
        if not version:
            supported = ", ".join(str(v) for v in wire.SUPPORTED_VERSIONS)
            await chan.send(
                wire.Error(code="version", message=f"this node speaks wire v{supported}")
            )
            return
        await chan.send(wire.Welcome(version=version, software=SOFTWARE, node=bytes(self.node_id)))
        if caller.node is None:
            request = await chan.recv()
            if not isinstance(request, wire.JoinRequest):
                raise RemoteProtocolError("a key outside the roster may only ask to join")
            await chan.send(await self.admit(caller.ssh_key, request))
            return
        owner = NodeId(caller.node)
        # Bookkeeping, not service: a local process stopped inside a ledger write (a
        # backup SIGSTOPped) must not make this node unable to answer its friends.
        touch = asyncio.create_task(self._touch(caller.node))
        self._touches.add(touch)
        touch.add_done_callback(self._touches.discard)
        link = self.links.get(caller.node)
        if link is not None:
            link.seen_alive()
        while (msg := await self._next(chan)) is not None:
            if isinstance(msg, wire.RosterPush):
                accepted = await self.apply_records(list(msg.records))
                await chan.send(wire.RosterAck(accepted=accepted))
                continue
            if isinstance(msg, wire.ReachMe):
                await chan.send(await self.reach_back.answer(caller.node, caller.peer, msg.port))
                continue
            if isinstance(msg, wire.GetRoster):
                blobs = self.roster.blobs() if self.roster else []
                await chan.send(wire.RosterIs(records=blobs[: wire.ROSTER_MAX]))
                continue
            try:
                handled = await self.holder.handle(owner, chan, msg)
            except PeerbakError as exc:
                await chan.send(wire.error_from(exc))
                if isinstance(msg, wire.PutShard) or isinstance(exc, RemoteProtocolError):
                    return  # the rest of this stream cannot be framed: end the session
                continue
            if not handled:
                raise RemoteProtocolError(f"unexpected {type(msg).__name__} from a member")

    async def _touch(self, node: bytes) -> None:
        try:
            await self.ledger.touch_member(node, self.clock())
        except Exception as exc:  # bookkeeping: a failure must not end anything
            log.warning("member %s seen, not recorded: %s", node.hex()[:12], exc)

    def open_held_stores(self) -> None:
        """Open every owner's store once at start: that sweeps writes a crash cut short."""
        if not self.home.held_dir.exists():
            return
        for entry in self.home.held_dir.iterdir():
            with contextlib.suppress(InputError):
                self._held_store(NodeId.from_hex(entry.name))

    def _held_store(self, owner: NodeId) -> DirectoryShareStore:
        store = self._stores.get(owner)
        if store is None:
            store = DirectoryShareStore(
                self.home.holder_dir(owner), manifest_limit=self.config.storage.manifest_limit
            )
            self._stores[owner] = store
        return store

    # -- invites and joins --------------------------------------------------------------------

    async def create_invite(self, ttl: float, uses: int) -> str:
        if not 60 <= ttl <= 30 * 86400 or not 1 <= uses <= 100:
            raise InputError("an invite lasts 1 minute to 30 days and admits 1 to 100 nodes")
        if self.roster is None:
            await self.found_pool()
        assert self.roster is not None
        invite, verifier = pool.new_invite(
            self.keys,
            self.roster.pool,
            self.ssh_public,
            self.addresses,
            self.clock(),
            ttl,
            self.random_bytes,
        )
        await self.ledger.add_invite(
            invite.invite_id, verifier, self.clock(), float(invite.expires), uses
        )
        self._open_invites = True
        return pool.encode_token(invite)

    async def admit(  # noqa: PLR0911 - one answer per way a join can fail
        self, ssh_key: bytes, req: wire.JoinRequest
    ) -> wire.Message:
        """Check a join request; admit the joiner and introduce it to every member.

        The proof is checked against the stored verifier before the invite's use is
        consumed, so a caller without the secret cannot burn someone's invite.
        """
        if self.roster is None:
            return wire.Error(code="invite-unknown", message="this node has no pool yet")
        verifier = await self.ledger.invite_verifier(req.invite)
        if verifier is None:
            return wire.Error(code="invite-unknown", message="no such invite here")
        claim = pool.JoinClaim(invite_id=req.invite, proof=req.proof, proposal=req.record)
        try:
            proposal = pool.check_join_claim(
                claim, pool=self.roster.pool, inviter=bytes(self.node_id), verifier=verifier
            )
        except RemoteProtocolError as exc:
            code = "invite-pool" if "another pool" in str(exc) else "protocol"
            return wire.Error(code=code, message=str(exc))
        except IntegrityError as exc:
            return wire.Error(code="invite-proof", message=str(exc))
        if proposal.ssh_key != ssh_key:
            return wire.Error(code="invite-proof", message="the proposal is not the caller's key")
        status, _ = await self.ledger.use_invite(req.invite, self.clock(), proposal.node)
        if status is InviteStatus.EXPIRED:
            return wire.Error(code="invite-expired", message="this invite has expired")
        if status is InviteStatus.USED_UP:
            return wire.Error(code="invite-used", message="this invite was already used")
        if status is not InviteStatus.OK:
            return wire.Error(code="invite-unknown", message="no such invite here")
        try:
            blob = self.roster.admit(self.keys, proposal)
        except InputError as exc:
            await self.ledger.refund_invite(req.invite)
            return wire.Error(code="input", message=str(exc))
        if not await self.apply_records([blob]):
            await self.ledger.refund_invite(req.invite)
            return wire.Error(
                code="internal", message=f"admission refused: {self.roster.last_rejection}"
            )
        await self.refresh_guests()
        await self.push([blob], exclude=proposal.node)
        return wire.JoinAccepted(roster=self.roster.blobs())

    # -- control socket ----------------------------------------------------------------------

    async def control(self, request: dict[str, Any]) -> dict[str, Any]:
        """One request from the CLI over the control socket."""
        cmd = request.get("cmd")
        if cmd == "status":
            return await self.status()
        if cmd == "invite":
            ttl, uses = float(request.get("ttl", 86400)), int(request.get("uses", 1))
            return {"token": await self.create_invite(ttl, uses)}
        if cmd in ("remove", "leave"):
            target = str(request.get("node", "")) if cmd == "remove" else self.node_id.hex()
            return await self.remove_member(target)
        if cmd == "reload":
            await self.reload_roster()
            await self.publish_self()
        elif cmd == "gossip":
            await self.gossip()
        elif cmd == "stop":
            self.stopping.set()
        else:
            raise InputError(f"unknown control command {cmd!r}")
        return {"members": len(self.roster.members()) if self.roster else 0}

    def _find_member(self, prefix: str) -> bytes:
        if self.roster is None or not 4 <= len(prefix) <= 64:
            raise InputError(f"give at least 4 hex digits of a member's id, not {prefix!r}")
        found = [r.node for r in self.roster.members() if r.node.hex().startswith(prefix)]
        if len(found) != 1:
            raise InputError(f"{len(found)} members match {prefix!r}: give more of the id")
        return found[0]

    async def remove_member(self, prefix: str) -> dict[str, Any]:
        """A signed tombstone for a member (ourselves: leaving), applied and gossiped to
        every member, the removed one included so it learns it."""
        node = self._find_member(prefix)
        assert self.roster is not None
        blob = self.roster.remove(self.keys, node)
        links = dict(self.links)  # before the removal drops the removed member's link
        await self.apply_records([blob])
        failures: dict[str, str] = {}
        for member, link in links.items():
            try:
                async with asyncio.timeout(PUSH_TIMEOUT):
                    await link.push_roster([blob])
            except (PeerbakError, TimeoutError) as exc:
                failures[member.hex()[:12]] = str(exc) or "timeout"
        return {"removed": node.hex(), "unreached": failures}

    async def status(self) -> dict[str, Any]:
        members = []
        for record in self.roster.members() if self.roster else []:
            row = await self.ledger.member(record.node)
            if record.node == bytes(self.node_id):
                row = None
            held = 0
            owner = NodeId(record.node)
            # A member that never stored anything here has no directory: none is made for
            # it (on a read-only disk that would fail the whole status).
            if record.node != bytes(self.node_id) and self.home.holder_dir(owner).exists():
                held = await self.holder.used(owner)
            members.append(
                {
                    "node": record.node.hex(),
                    "name": record.name,
                    "addresses": record.addresses,
                    "added_by": record.added_by.hex(),
                    "version": record.version,
                    "last_seen": row.last_seen if row else None,
                    "held_bytes": held,
                    "lent_bytes": self.config.lend_for(NodeId(record.node)),
                    "self": record.node == bytes(self.node_id),
                }
            )
        return {
            "node": self.node_id.hex(),
            "name": self.config.node.name,
            "pool": self.roster.pool.hex() if self.roster else "",
            "version": __version__,
            "addresses": self.addresses,
            "port": self.port,
            "web_port": self.web_port,
            "members": members,
        }


async def join_pool(
    home: Home, token: str, *, clock: Callable[[], float] = time.time
) -> dict[str, Any]:
    """``peerbak join``: ask the inviter to admit this node, store the roster it returns,
    and tell this node's daemon (if it runs) to pick it up."""
    invite = pool.decode_token(token)
    now = clock()
    if pool.is_expired(invite, now):
        # Said in this machine's time: a clock a day off makes every fresh invite look
        # expired, and a new one would be too unless the clock is set right first.
        when, here = (
            time.strftime("%Y-%m-%d %H:%M", time.localtime(t)) for t in (invite.expires, now)
        )
        raise InputError(
            f"this invite expired at {when} by this machine's clock, which says {here}: "
            "ask for a new one (if this clock is wrong, set it right first, or ask for an "
            "invite that lasts longer: peerbak invite --expires 72h)"
        )
    config = home.config()
    keys = NodeKeys.derive(home.secret())
    state = home.running_state()
    port = state.port if state is not None else config.node.port
    ledger = await Ledger.open(home.ledger_path)
    try:
        current = await ledger.get_meta("pool")
        if current is not None:
            raise InputError(
                f"this node already belongs to pool {current.hex()[:12]}; "
                "a node joins one pool (make a new home with `peerbak --home DIR init`)"
            )
        ours = pool.join_claim(keys, invite, config.node.name, local_addresses(config, port))
        request = wire.JoinRequest(invite=ours.invite_id, proof=ours.proof, record=ours.proposal)
        from peerbak.adapters.link import request_join

        accepted = await request_join(
            invite.addresses,
            invite.host_key,
            invite.inviter,
            transport.private_key(keys.ssh_seed),
            request,
        )
        roster = pool.Roster(invite.pool)
        for blob in accepted.roster:
            roster.apply(blob)
        if not roster.is_member(bytes(keys.node_id)):
            raise RemoteProtocolError("the inviter answered without admitting this node")
        await ledger.add_records(roster.blobs(), clock())
        await ledger.set_meta("pool", invite.pool)
    finally:
        await ledger.close()
    if state is not None:
        from peerbak.adapters.control import DaemonNotRunning, call

        with contextlib.suppress(DaemonNotRunning):
            await asyncio.to_thread(call, home.control_socket, {"cmd": "reload"})
    return {
        "pool": invite.pool.hex(),
        "inviter": invite.inviter.hex(),
        "members": len(roster.members()),
    }
