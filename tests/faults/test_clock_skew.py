"""Members whose clocks differ by a day (the fault matrix): invites, backups, challenges,
health and the trash grace, on real daemons run under libfaketime.

The owner runs on real time; ``ahead`` runs a day ahead and ``behind`` a day behind
(their daemons and every command run against their homes, as on machines whose clocks
are wrong); ``newcomer`` runs on real time and joins through ``behind``. Each skewed
daemon is checked to really see its skew (the start time it reports, the time it
stamps on files), or the test would prove nothing.

An invite lasts 24 hours by the inviter's clock and the joiner refuses a token its own
clock says has expired, so a day of skew the wrong way makes a fresh default invite
unusable: that is checked to fail clearly (an invite that lasts longer works). The rest
must not notice the skew: backup and restore, challenges of every holder, ``status``
calling every member healthy, and a holder a day ahead keeping the owner's trash for
its whole grace.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from peerbak.tools.localpool import LocalNode, set_config
from peerbak.tools.sample import describe, make_tree

pytestmark = pytest.mark.slow

DAY = 86400.0
#: How far a time may be from the one expected (process start-up, slow machines).
SLACK = 600.0
SHARDS = ("--shards", "2/3")
PACK = ("--pack-size", "1MiB")
DEADLINE = 30.0


def _libfaketime() -> Path | None:
    """The preload library of Debian's libfaketime, wherever the architecture put it."""
    listed = subprocess.run(
        ["dpkg", "-L", "libfaketime"], capture_output=True, text=True, check=False
    ).stdout.split()
    candidates = [Path(p) for p in listed if p.endswith("/libfaketime.so.1")]
    candidates += sorted(Path("/usr/lib").glob("*/faketime/libfaketime.so.1"))
    return next((p for p in candidates if p.is_file()), None)


LIBFAKETIME = _libfaketime() if shutil.which("dpkg") else None


def _skew_env(offset: str) -> dict[str, str]:
    """The environment that makes a process's wall clock ``offset`` off (e.g. "+1d").
    Its monotonic clock stays true, as on a machine whose date is simply wrong."""
    if not offset:
        return {}
    assert LIBFAKETIME is not None
    return {
        "LD_PRELOAD": str(LIBFAKETIME),
        "FAKETIME": offset,
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
    }


class Member(LocalNode):
    """A node whose daemon and commands all run ``skew`` off real time."""

    def __init__(self, base: Path, name: str, skew: str = "") -> None:
        super().__init__(base, name)
        self.skew = skew

    def start(self, extra_env: dict[str, str] | None = None) -> None:
        super().start({**_skew_env(self.skew), **(extra_env or {})})

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``peerbak --home HOME ARGS --json`` under this member's clock."""
        out = subprocess.run(
            [sys.executable, "-m", "peerbak", "--home", str(self.home), *args, "--json"],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            env={**os.environ, **_skew_env(self.skew)},
        )
        assert "Traceback" not in out.stderr, out.stderr
        return out

    def ok(self, *args: str) -> Any:
        """The last line of a command that must succeed, parsed."""
        out = self.run(*args)
        assert out.returncode == 0, f"{self.name}: {' '.join(args)}: {out.stderr}"
        return json.loads(out.stdout.strip().splitlines()[-1])


@dataclass
class Pool:
    base: Path
    owner: Member
    ahead: Member
    behind: Member
    newcomer: Member

    @property
    def friends(self) -> list[Member]:
        return [self.ahead, self.behind, self.newcomer]


def _configure(node: LocalNode, key: str, value: str) -> None:
    config = node.home / "config.toml"
    text, count = re.subn(rf"(?m)^{key} = .*$", f"{key} = {value}", config.read_text())
    assert count == 1, f"no {key} in {config}"
    config.write_text(text)


def _join(joiner: Member, token: str) -> subprocess.CompletedProcess[str]:
    return joiner.run("join", token)


def _token(inviter: Member, *args: str) -> str:
    return str(inviter.ok("invite", *args)["token"])


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pool]:
    if LIBFAKETIME is None or shutil.which("faketime") is None:
        pytest.skip("libfaketime is not installed (Debian: apt-get install faketime)")
    base = tmp_path_factory.mktemp("clock-skew")
    p = Pool(
        base,
        Member(base, "owner"),
        Member(base, "ahead", "+1d"),
        Member(base, "behind", "-1d"),
        Member(base, "newcomer"),
    )
    nodes = [p.owner, *p.friends]
    try:
        for node in nodes:
            node.info = node.ok(
                "init", "--name", node.name, "--port", "0", "--listen", "127.0.0.1", "--no-lan"
            )
        # The owner's daemon does not challenge or repair on its own here: the test asks
        # for challenges when it wants them. The friends' maintenance runs, skewed.
        set_config(p.owner.home, "maintenance", "enabled", "false")
        # The shortest grace a holder may keep (1 day), so a day of skew would show: a
        # holder a day ahead that dated deletions by anyone's clock but its own would
        # free them at its next purge.
        for friend in (p.ahead, p.behind):
            _configure(friend, "trash_days", "1")
        for node in nodes:
            node.start()
        assert _join(p.behind, _token(p.owner)).returncode == 0
        # A default (24 h) invite from the owner has expired by ahead's clock (see
        # test_a_fresh_invite_is_refused_clearly_by_a_joiner_whose_clock_says_expired).
        assert _join(p.ahead, _token(p.owner, "--expires", "48h")).returncode == 0
        assert _join(p.newcomer, _token(p.behind, "--expires", "48h")).returncode == 0
        yield p
    finally:
        for node in nodes:
            node.kill()
    for node in nodes:
        assert "Traceback" not in node.log.read_text(), node.log.read_text()


def _gone(path: Path) -> bool:
    return not path.exists()


def _wait_for(what: str, condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():
        assert time.monotonic() < deadline, f"still not {what} after {DEADLINE:.0f} s"
        time.sleep(0.05)  # polling a state that must come, with a deadline


def _members(node: Member) -> set[str]:
    return {m["name"] for m in node.ok("status")["members"]}


def _held(friend: Member, owner: Member) -> Path:
    return friend.home / "held" / owner.keys.node_id.hex()


# --- the skew is real ------------------------------------------------------------------------


def test_the_skewed_daemons_really_run_a_day_off(pool: Pool) -> None:
    """Each daemon writes its start time (its own clock) to run/daemon.json."""
    now = time.time()
    for node, offset in ((pool.owner, 0.0), (pool.ahead, DAY), (pool.behind, -DAY)):
        started = json.loads((node.home / "run" / "daemon.json").read_text())["started"]
        assert abs(started - (now + offset)) < SLACK, (node.name, started - now)
    # The commands run against a skewed home get the same environment.
    probe = subprocess.run(
        [sys.executable, "-c", "import time; print(time.time())"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **_skew_env("-1d")},
    )
    assert abs(float(probe.stdout) - (time.time() - DAY)) < SLACK


# --- invites -------------------------------------------------------------------------------


def _refused_as_expired(out: subprocess.CompletedProcess[str]) -> str:
    assert out.returncode == 64, out.stderr
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, out.stderr
    error = json.loads(lines[0])
    assert error["message_type"] == "exit_error"
    assert error["error"] == "InputError"
    message: str = error["message"]
    assert message.startswith("this invite expired at "), message
    return message


def test_a_fresh_invite_is_refused_clearly_by_a_joiner_whose_clock_says_expired(
    pool: Pool,
) -> None:
    """Finding: a default invite (24 h by the inviter's clock) made by a member a day
    behind is expired on arrival for everyone else, and one made on time is expired
    for a joiner a day ahead. The joiner refuses it before asking the inviter, in one
    line that names its own clock; an invite that lasts longer is the way round."""
    late = Member(pool.base, "late", "+1d")
    late.ok("init", "--name", "late", "--port", "0", "--listen", "127.0.0.1", "--no-lan")
    outsider = Member(pool.base, "outsider")
    outsider.ok("init", "--name", "outsider", "--port", "0", "--listen", "127.0.0.1", "--no-lan")
    before = _members(pool.owner)

    message = _refused_as_expired(_join(late, _token(pool.owner)))
    print(f"\na day-ahead joiner, an on-time 24 h invite: {message}")
    assert "this machine's clock" in message
    message = _refused_as_expired(_join(outsider, _token(pool.behind)))
    print(f"an on-time joiner, a 24 h invite from a day behind: {message}")
    assert "this machine's clock" in message
    assert _members(pool.owner) == before
    assert _members(pool.behind) == before
    # (The same pairs with invites that outlast the skew made the pool: ahead joined
    # with the owner's 48 h invite, newcomer with behind's.)
    assert {"ahead", "newcomer"} <= before


# --- backups, challenges and health ---------------------------------------------------------


def _snapshot(pool: Pool, src: Path) -> str:
    return str(pool.owner.ok("backup", *SHARDS, *PACK, str(src))["snapshot_id"])


def _restored(pool: Pool, snapshot: str, src: Path, target: Path) -> None:
    pool.owner.ok("restore", snapshot, "--target", str(target))
    assert describe(target / str(src).lstrip("/")) == describe(src)


def test_backup_restore_challenges_and_health_ignore_the_skew(pool: Pool) -> None:
    src = pool.base / "src-health"
    make_tree(src, 4 << 20, files=60, seed=21)
    t0 = time.monotonic()
    snap = _snapshot(pool, src)
    print(f"\nbackup across skewed clocks: {time.monotonic() - t0:.2f} s")
    _restored(pool, snap, src, pool.base / "restored-health")

    challenged = pool.owner.run("challenge", "--count", "3")
    assert challenged.returncode == 0, challenged.stderr
    rows = [json.loads(line) for line in challenged.stdout.splitlines() if line.strip()]
    assert {r["member"] for r in rows} == {f.name for f in pool.friends}
    assert all(r["result"] == "pass" for r in rows), rows

    report = pool.owner.ok("status")
    assert report["daemon_error"] == "", report["daemon_error"]
    health = report["health"]
    assert health["verdict"].startswith("healthy"), health
    assert {m["name"]: m["state"] for m in health["members"]} == {
        f.name: "ok" for f in pool.friends
    }
    now = time.time()
    for m in health["members"]:  # seen just now by the owner's own clock
        assert m["last_seen"] is not None, m
        assert abs(now - m["last_seen"]) < SLACK, m
        assert m["challenges_passed"] >= 3, m
        assert m["challenges_failed"] == 0, m
    assert health["advice"] == ["nothing to do"], health["advice"]

    check = pool.owner.ok("check", "--read-data")
    assert check["ok"], check
    assert check["members_down"] == {}, check


# --- the trash grace -------------------------------------------------------------------------


def test_a_holder_a_day_ahead_keeps_the_trash_for_its_whole_grace(pool: Pool) -> None:
    """Forget and prune move shards to every holder's trash, each holder stamping the
    deletion with its own clock; purging (at each daemon start, then hourly) keeps
    them until that clock is the grace (here 1 day, at least 30 by default) past the
    stamp."""
    owner = pool.owner
    src = pool.base / "src-trash"
    make_tree(src, 2 << 20, files=30, seed=22)
    _snapshot(pool, src)
    for path in sorted(src.rglob("*"))[:10]:
        if path.is_file() and not path.is_symlink():
            path.write_bytes(b"changed " + path.read_bytes())
    kept = _snapshot(pool, src)
    pruned = owner.ok("forget", "--keep-last", "1", "--prune")
    assert pruned["prune"]["packs_deleted"] > 0, pruned

    now = time.time()
    trashed: dict[str, list[Path]] = {}
    for friend, offset in ((pool.ahead, DAY), (pool.behind, -DAY), (pool.newcomer, 0.0)):
        trash = _held(friend, owner) / "trash"
        trashed[friend.name] = [p for p in trash.iterdir() if not p.name.startswith("manifest.")]
        assert trashed[friend.name], f"nothing in {friend.name}'s trash"
        for path in trashed[friend.name]:  # stamped by the holder's own (skewed) clock
            assert abs(path.stat().st_mtime - (now + offset)) < SLACK, (friend.name, path)

    # Restarted, each holder purges at once: a shard trashed 60 days ago goes (the
    # purge ran), today's stay, a day ahead or not.
    for friend in (pool.ahead, pool.behind):
        old = _held(friend, owner) / "trash" / "aged-shard"
        old.write_bytes(b"deleted long ago")
        when = time.time() - 60 * DAY
        os.utime(old, (when, when))
        assert friend.stop() == 0
        friend.start()
        _wait_for(f"purged by {friend.name}", functools.partial(_gone, old))
        still = [p for p in trashed[friend.name] if p.exists()]
        assert still == trashed[friend.name], f"{friend.name} purged the trash early"

    # The pool goes on: the kept snapshot restores, and a later backup works.
    _restored(pool, kept, src, pool.base / "restored-trash")
    _snapshot(pool, src)
    check = owner.ok("check")
    assert check["ok"], check
    assert check["members_down"] == {}, check
