"""The owner SIGSTOPped in the middle of a backup and continued 10 minutes later.

A laptop lid closed during a backup, a VM paused, a process stopped from a terminal:
the owner's backup stops between two shards while its SSH connections stay open and its
lock stays held. Meanwhile a second backup is refused at once (exit 75), and the friends
go on serving: one of them backs up and restores a million small files meanwhile (the
scale row of the matrix, ``tests/faults/scale.py``). When the owner continues, the
backup either finishes or fails with one clear line, and nothing is lost: the holders
keep no half-written shard, the next backup completes, and every snapshot restores byte
for byte.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from peerbak.tools.localpool import make_pool
from peerbak.tools.sample import describe
from tests.faults.scale import a_million_small_files

pytestmark = [pytest.mark.slow, pytest.mark.wait]

#: How long the owner stays stopped: the row of the fault matrix says ten minutes, longer
#: than every timeout a holder or a link has (the longest, the link backoff, is 5 min).
STOP_SECONDS = 600.0
SHARDS = ("--shards", "2/3", "--pack-size", "1MiB")


@pytest.mark.timeout(STOP_SECONDS + 1800)
def test_an_owner_stopped_mid_backup_for_ten_minutes_loses_nothing() -> None:
    base = Path(tempfile.mkdtemp(prefix="pbk-sigstop-"))
    nodes = make_pool(base, ["owner", "f1", "f2", "f3"])
    owner, friends = nodes[0], nodes[1:]
    proc: subprocess.Popen[str] | None = None
    try:
        src = base / "src"
        src.mkdir()
        rnd = random.Random(3)
        for i in range(128):  # long enough to be caught mid-upload
            (src / f"f{i:02}.bin").write_bytes(rnd.randbytes(1_000_000))
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "peerbak",
                "--home",
                str(owner.home),
                "backup",
                *SHARDS,
                str(src),
                "--json",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        for line in proc.stdout:  # status lines, one a second
            row = json.loads(line)
            if row.get("message_type") == "status" and row.get("packs", 0) >= 1:
                break  # packs sealed and on their way to the friends
        else:
            pytest.fail("the backup finished before it could be stopped")
        os.kill(proc.pid, signal.SIGSTOP)
        stopped = time.monotonic()

        second = owner.cli("backup", *SHARDS, str(src), check=False)
        assert second.returncode == 75, second.stderr  # the lock is held, not stale
        assert "Traceback" not in second.stderr
        for friend in friends:  # the friends go on serving
            assert friend.status()["node"] == friend.info["node"]
        # And serve a friend's backup of a million small files, the scale row: the two
        # rows share the stopped owner's ten minutes instead of taking twenty.
        a_million_small_files(friends[0], base)
        print(f"\n  the million-file row took {time.monotonic() - stopped:.0f} s of the stop")

        # The fault itself is the time that passes: this wait is the stop, not a sync.
        time.sleep(max(0.0, STOP_SECONDS - (time.monotonic() - stopped)))
        os.kill(proc.pid, signal.SIGCONT)
        continued = time.monotonic()
        out, err = proc.communicate(timeout=600)
        took = time.monotonic() - continued
        print(f"\nafter SIGCONT the backup took {took:.1f} s more and exited {proc.returncode}")
        assert "Traceback" not in err
        if proc.returncode == 0:
            first = json.loads(out.strip().splitlines()[-1])["snapshot_id"]
        else:  # a clear refusal: one JSON exit_error line
            error = json.loads(err.strip().splitlines()[-1])
            assert error["message_type"] == "exit_error", err
            print(f"the stopped backup ended with: {error['message']}")
            first = None

        again = owner.cli("backup", *SHARDS, str(src))
        want = describe(src)
        for snap in filter(None, [first, again["snapshot_id"]]):
            target = base / f"restored-{snap[:8]}"
            owner.cli("restore", snap, "--target", str(target))
            assert describe(target / str(src).lstrip("/")) == want
        assert owner.cli("check", "--read-data", check=False).returncode == 0
        owner_id = owner.info["node"]
        for friend in friends:
            incoming = friend.home / "held" / owner_id / "incoming"
            assert list(incoming.iterdir()) == [], friend.name  # no half-written shard
    finally:
        if proc is not None and proc.poll() is None:
            os.kill(proc.pid, signal.SIGCONT)
            proc.kill()
            proc.wait()
        for node in nodes:
            node.kill()
        shutil.rmtree(base, ignore_errors=True)
