"""The notifier against the in-process pool: events in the log become the right
messages through a fake Notifier (unreachable only once it has lasted, recovered after
that, the same news at most every six hours, a failed send tried again), a restart
neither repeats nor loses, the pool's own state is told (thin packs, a quota nearly
full), a job's end pings the dead man's switch, and a holder notices an owner whose
backups stopped."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from peerbak.adapters.ledger import Ledger
from peerbak.core.ids import NodeId
from peerbak.core.notices import RATE_LIMIT, NoticeBook
from peerbak.ports.notify import Notifier
from peerbak.services.backup import run_backup
from peerbak.services.events import note
from peerbak.services.notifier import EVENT_KEY, NotifyRound, on_event, owners_silent
from peerbak.services.repository import Repository
from peerbak.tools.mempool import MemoryPool
from tests.services.kit import node, write

HOOK = "https://hc.example.org/ping/abc"
MINUTE, HOUR, DAY = 60.0, 3600.0, 86400.0


class FakeNotifier:
    """Records what would have been sent; ``ok`` False: every destination fails."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, str]] = []
        self.tries = 0
        self.ok = True

    async def send(self, title: str, body: str, level: str) -> bool:
        self.tries += 1
        if self.ok:
            self.sent.append((title, body, level))
        return self.ok

    def titles(self) -> list[str]:
        titles = [t for t, _, _ in self.sent]
        self.sent.clear()
        return titles


class FakePinger:
    def __init__(self) -> None:
        self.urls: list[str] = []

    async def ping(self, url: str) -> bool:
        self.urls.append(url)
        return True


def configure(mempool: MemoryPool, *lines: str) -> None:
    """The owner's [notify] section: a URL (the fake ignores it) and ``lines``."""
    path = mempool.home.root / "config.toml"
    text = path.read_text()
    text = text[: text.index("[notify]\n")] + "[notify]\n" + 'urls = ["json://x.example/h"]\n'
    path.write_text(text + "".join(f"{line}\n" for line in lines))


def rounds(mempool: MemoryPool, fake: FakeNotifier, pinger: FakePinger) -> NotifyRound:
    seen: list[Sequence[str]] = []

    def notifier_for(urls: Sequence[str]) -> Notifier:
        seen.append(urls)
        return fake

    return NotifyRound(mempool.home, mempool.open, notifier_for, pinger, clock=mempool.clock)


async def _note(
    repo: Repository, mempool: MemoryPool, kind: str, subject: str, **kw: object
) -> int:
    level = "info" if kind in ("job.ok", "member.ok") else "error"
    return await note(repo.ledger, mempool.clock(), level, kind, subject, f"{kind} {subject}", **kw)


async def test_events_become_the_right_notices(repo: Repository, mempool: MemoryPool) -> None:
    configure(mempool, f'healthcheck_url = "{HOOK}"')
    fake, pinger = FakeNotifier(), FakePinger()
    r = rounds(mempool, fake, pinger)
    await _note(repo, mempool, "job.failed", "old")  # before the first start: not news
    await r.round()
    assert fake.titles() == []
    await _note(repo, mempool, "job.failed", "photos", error="disk full")
    await _note(repo, mempool, "job.ok", "docs")
    await _note(repo, mempool, "challenge.failed", "m2")
    await _note(repo, mempool, "repair.stuck", "")
    await _note(repo, mempool, "repair.done", "")  # news for the log, not for a person
    await r.round()
    assert fake.sent[0] == ("peerbak: backup job photos failed", "job.failed photos", "error")
    assert fake.titles() == [
        "peerbak: backup job photos failed",
        "peerbak: m2 failed a storage challenge",
        "peerbak: repair is stuck",
    ]
    assert pinger.urls == [f"{HOOK}/fail", HOOK]  # in the order the jobs ended

    # Unreachable: told once it has lasted the hour, recovered after that.
    await _note(repo, mempool, "member.unreachable", "m1", last_seen=mempool.clock())
    mempool.clock.advance(30 * MINUTE)
    await r.round()
    assert fake.titles() == []
    mempool.clock.advance(31 * MINUTE)
    await r.round()
    assert fake.sent[0][0] == "peerbak: m1 is unreachable"
    assert "has not answered for 61 minutes" in fake.sent[0][1]
    assert fake.titles() == ["peerbak: m1 is unreachable"]
    mempool.clock.advance(MINUTE)
    await r.round()
    assert fake.titles() == []  # still away: told already
    await _note(repo, mempool, "member.ok", "m1")
    await r.round()
    assert fake.sent[0][2] == "success"
    assert fake.titles() == ["peerbak: m1 recovered"]

    # Away briefly: neither the absence nor the return is news.
    await _note(repo, mempool, "member.unreachable", "m3", last_seen=mempool.clock())
    mempool.clock.advance(10 * MINUTE)
    await r.round()
    await _note(repo, mempool, "member.ok", "m3")
    mempool.clock.advance(2 * HOUR)
    await r.round()
    assert fake.titles() == []

    # The same news at most every six hours; lost is told at once.
    await _note(repo, mempool, "job.failed", "photos")
    await _note(repo, mempool, "member.lost", "m4")
    await r.round()
    assert fake.titles() == ["peerbak: m4 is lost"]
    mempool.clock.advance(RATE_LIMIT)
    await _note(repo, mempool, "job.failed", "photos")
    await r.round()
    assert fake.titles() == ["peerbak: backup job photos failed"]


async def test_a_failed_send_is_tried_again_next_round(
    repo: Repository, mempool: MemoryPool
) -> None:
    configure(mempool)
    fake = FakeNotifier()
    r = rounds(mempool, fake, FakePinger())
    await r.round()
    fake.ok = False
    await _note(repo, mempool, "job.failed", "docs")
    assert await r.round() == []
    assert fake.tries == 1
    assert await r.round() == []  # tried again, failed again
    assert fake.tries == 2
    fake.ok = True
    sent = await r.round()
    assert [n.title for n in sent] == ["peerbak: backup job docs failed"]
    assert await r.round() == []  # delivered: not again
    assert fake.tries == 3


async def test_a_restart_neither_repeats_nor_loses(repo: Repository, mempool: MemoryPool) -> None:
    configure(mempool)
    fake = FakeNotifier()
    await rounds(mempool, fake, FakePinger()).round()
    await _note(repo, mempool, "job.failed", "a")
    await _note(repo, mempool, "member.unreachable", "m2", last_seen=mempool.clock())
    await rounds(mempool, fake, FakePinger()).round()
    assert fake.titles() == ["peerbak: backup job a failed"]
    last = await repo.ledger.get_meta(EVENT_KEY)
    assert last is not None
    assert int(last) == (await repo.ledger.events())[-1].id
    # Down for a while: what happened meanwhile is told by the next daemon, once.
    await _note(repo, mempool, "job.failed", "b")
    mempool.clock.advance(2 * HOUR)
    await rounds(mempool, fake, FakePinger()).round()
    assert fake.titles() == ["peerbak: backup job b failed", "peerbak: m2 is unreachable"]
    await rounds(mempool, fake, FakePinger()).round()
    assert fake.titles() == []
    await _note(repo, mempool, "member.ok", "m2")  # the told absence survived the restarts
    await rounds(mempool, fake, FakePinger()).round()
    assert fake.titles() == ["peerbak: m2 recovered"]


async def test_no_urls_no_messages_and_nothing_kept(repo: Repository, mempool: MemoryPool) -> None:
    fake = FakeNotifier()
    r = rounds(mempool, fake, FakePinger())
    await r.round()
    await _note(repo, mempool, "job.failed", "a")
    assert await r.round() == []
    configure(mempool)
    await r.round()
    assert fake.titles() == []  # told to nobody then; not saved up for later


async def test_the_pool_itself_thin_packs_and_a_quota_nearly_full(
    repo: Repository, mempool: MemoryPool, tmp_path: Path
) -> None:
    write(tmp_path / "src" / "a.bin", 300_000, seed=3)
    await run_backup(repo, [tmp_path / "src"], code=(2, 4))
    m1 = NodeId(node(mempool, 1))
    path = mempool.home.root / "config.toml"
    path.write_text(
        path.read_text().replace(
            "[storage.lend_to]\n", f'[storage.lend_to]\n{m1.hex()} = "10KiB"\n'
        )
    )
    configure(mempool)
    held = mempool.home.holder_dir(m1) / "shards"
    held.mkdir(parents=True)
    (held / "x").write_bytes(b"x" * 9_500)  # 93 % of the 10 KiB lent to m1
    fake = FakeNotifier()
    r = rounds(mempool, fake, FakePinger())
    await r.round()
    assert fake.titles() == ["peerbak: m1 uses 93% of what you lend it"]
    # m2 gone past the grace: its shards no longer count, every pack needs repair.
    mempool.member(2).up = False
    mempool.clock.advance(8 * DAY)
    await r.round()
    titles = fake.titles()
    assert "peerbak: m1 uses 93% of what you lend it" in titles  # six hours passed
    thin = [t for t in titles if "need repair" in t]
    assert len(thin) == 1
    assert thin[0].endswith("packs need repair")
    mempool.clock.advance(MINUTE)
    await r.round()
    assert fake.titles() == []  # looked at again only after probe_minutes, and rate-limited


async def test_a_holder_notices_an_owner_whose_backups_stopped(
    repo: Repository, mempool: MemoryPool, tmp_path: Path
) -> None:
    write(tmp_path / "src" / "a.bin", 100_000, seed=4)
    await run_backup(repo, [tmp_path / "src"], code=(2, 4))
    owner = bytes(mempool.owner.node_id)
    store = mempool.store(node(mempool, 1))  # what member m1 keeps for the owner

    def received(who: NodeId) -> float | None:
        assert bytes(who) == owner
        return store.manifest_path.stat().st_mtime

    ledger = await Ledger.open(tmp_path / "m1-ledger.sqlite", create=True)  # m1's own
    try:
        first = received(NodeId(owner))
        assert first is not None
        owners = {owner: "alice"}
        assert await owners_silent(ledger, owners, received, 3 * DAY, first + 2 * DAY) == []
        assert await owners_silent(ledger, owners, received, 3 * DAY, first + 4 * DAY) == ["alice"]
        assert await owners_silent(ledger, owners, received, 3 * DAY, first + 5 * DAY) == []
        (event,) = await ledger.events(kinds=["owner.silent"])
        assert event.subject == "alice"
        assert event.message.startswith("alice's backups to you stopped 4 days ago")
        (told,) = on_event(NoticeBook(), event)
        assert told.title == "peerbak: alice's backups to you stopped"
        # A new backup reaches m1: a later silence is a new one, told again.
        write(tmp_path / "src" / "b.bin", 100_000, seed=5)
        await run_backup(repo, [tmp_path / "src"], code=(2, 4))
        later = received(NodeId(owner))
        assert later is not None
        assert later > first
        assert await owners_silent(ledger, owners, received, 3 * DAY, first + 5 * DAY) == ["alice"]
    finally:
        await ledger.close()


async def test_a_daily_digest_counts_the_day_and_gives_the_verdict(
    repo: Repository, mempool: MemoryPool
) -> None:
    configure(mempool, 'digest = "daily"')
    fake = FakeNotifier()
    r = rounds(mempool, fake, FakePinger())
    await r.round()  # starts the first day
    await _note(repo, mempool, "job.ok", "docs")
    await _note(repo, mempool, "job.ok", "docs")
    await _note(repo, mempool, "challenge.failed", "m2")
    mempool.clock.advance(DAY - MINUTE)
    await r.round()
    assert fake.titles() == ["peerbak: m2 failed a storage challenge"]  # no digest yet
    mempool.clock.advance(MINUTE)
    await r.round()
    ((title, body, _),) = fake.sent
    assert title == "peerbak: daily digest"
    assert body.startswith("Pool: no backups yet.")
    assert "1 challenge failed, 2 job ok" in body
    assert "- challenge.failed m2" in body
