"""Never silent, on four real nodes (owner + three friends, 2-of-3): a friend that dies
is told to the owner's webhook with what it means for restoring, and its return too;
and a friend tells its own user when the owner's backups stopped reaching it.

The webhook is a receiver on 127.0.0.1 (``tests/receiver.py``) behind apprise's
``json://`` URLs. The owner's daemon runs a backup job every minute all along; it probes
every six seconds (``probe_minutes = 0.1``) and calls a member unreachable after three
missed probes, and tells it past ``unreachable_after = "1min"``: the first notice comes
a minute or so after the kill. The friend's silence clock
(``owner_silent_after = "1min"``) starts at the owner's last manifest, which each
successful job sends.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from peerbak.tools.localpool import LocalNode, temporary_pool
from tests.receiver import Receiver, receiving

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

NAMES = ["owner", "f1", "f2", "f3"]
#: Seconds to wait for a notice at most.
DEADLINE = 300.0


@pytest.fixture(scope="module")
def pool() -> Iterator[list[LocalNode]]:
    with temporary_pool(NAMES, "pbk-notify-") as nodes:
        yield nodes


def _configure(node: LocalNode, port: int, *lines: str) -> None:
    """Point ``node``'s [notify] at the receiver (path /<name>), probe every six seconds and
    restart its daemon so it runs on the new config at once."""
    path = node.home / "config.toml"
    text = path.read_text().replace("probe_minutes = 5", "probe_minutes = 0.1")
    text = text[: text.index("[notify]\n")] + "[notify]\n"
    text += f'urls = ["json://127.0.0.1:{port}/{node.name}"]\n'
    path.write_text(text + "".join(f"{line}\n" for line in lines))
    node.stop()
    node.start()


def _status(owner: LocalNode) -> tuple[int, dict[str, object]]:
    out = owner.cli("status", check=False)
    return out.returncode, json.loads(out.stdout.splitlines()[-1])


def test_a_friend_dies_and_comes_back_and_an_owner_falls_silent(
    pool: list[LocalNode], tmp_path: Path
) -> None:
    owner, f1, f2, _ = pool
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_bytes(b"never silent\n" * 1000)
    owner.cli("backup", "--shards", "2/3", str(src))
    with receiving() as receiver:
        _run(receiver, owner, f1, f2, src)


def _job_ran(owner: LocalNode) -> bool:
    out = owner.cli("log", "--kind", "job.ok", check=False)
    return out.returncode == 0 and bool(out.stdout.strip())


def _run(receiver: Receiver, owner: LocalNode, f1: LocalNode, f2: LocalNode, src: Path) -> None:
    job = ("[[job]]", 'name = "minutely"', f'paths = ["{src}"]', 'schedule = "every 1min"')
    _configure(owner, receiver.port, 'unreachable_after = "1min"', *job)
    _configure(f2, receiver.port, 'owner_silent_after = "1min"')
    deadline = time.monotonic() + DEADLINE
    while not _job_ran(owner):  # the daemon runs the job on its own
        assert time.monotonic() < deadline, "the job never ran"
        time.sleep(1)  # polling a condition, with a deadline
    code, status = _status(owner)
    assert code == 0, status

    # A friend dies: the owner is told, and status says what it means.
    f1.kill()
    told = receiver.wait_for("/owner", "f1 is unreachable", deadline=time.monotonic() + DEADLINE)
    assert told.startswith("peerbak: f1 is unreachable: f1 has not answered for ")
    code, status = _status(owner)
    assert code == 75  # a member is down: retry later
    health = status["health"]
    assert isinstance(health, dict)
    assert health["unreachable"] == ["f1"]
    assert health["restorable_now"] is True  # 2-of-3: f2 and f3 answer
    assert any("f1 is unreachable" in line for line in health["advice"])

    # It comes back: told once it answers again.
    f1.start()
    back = receiver.wait_for("/owner", "f1 recovered", deadline=time.monotonic() + DEADLINE)
    assert "f1 is back" in back
    assert len([m for m in receiver.messages("/owner") if "f1 is unreachable" in m]) == 1

    # The owner stops; its friend f2 tells its own user that the backups stopped.
    owner.stop()
    silent = receiver.wait_for(
        "/f2", "owner's backups to you stopped", deadline=time.monotonic() + DEADLINE
    )
    assert "Ask owner whether" in silent
    logged = f2.cli("log", "--kind", "owner.silent", check=False)
    assert logged.returncode == 0, logged.stderr
    (event,) = [json.loads(line) for line in logged.stdout.splitlines()]
    assert event["subject"] == "owner"
    assert len([m for m in receiver.messages("/f2") if "stopped" in m]) == 1  # once per silence
