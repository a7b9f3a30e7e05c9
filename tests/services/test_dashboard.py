"""The status page's figures against the in-process pool: the health is ``pool_health``'s,
jobs come from their events, snapshots newest first, the stored-bytes chart adds up the
snapshots' uploads, failed challenges are counted per day, and it all renders as HTML
and Prometheus text."""

from __future__ import annotations

import json

from prometheus_client.parser import text_string_to_metric_families

from peerbak.adapters.web import metrics_text
from peerbak.adapters.web_pages import page
from peerbak.core.health import DAY, RepairPolicy
from peerbak.services.dashboard import CHART_DAYS, gather
from peerbak.services.events import note
from peerbak.services.repository import Repository
from peerbak.services.status import pool_health
from peerbak.tools.mempool import MemoryPool
from tests.services._care import Made

POLICY = RepairPolicy(offline_after=15 * 60)


async def test_the_figures_agree_with_status_and_the_ledger(
    repo: Repository, mempool: MemoryPool, made: Made
) -> None:
    now = mempool.clock()
    await note(repo.ledger, now - 7200, "error", "job.failed", "docs", "docs failed", error="no")
    await note(repo.ledger, now - 3600, "info", "job.ok", "docs", "docs done", snapshot="ab" * 16)
    await note(repo.ledger, now - 60, "error", "job.failed", "photos", "photos failed", error="x")
    member = next(iter(repo.members))
    pack_id = (await repo.ledger.shards_held_by(member).__anext__())[0][0]
    await repo.ledger.record_challenge(member, pack_id, 0, "fail", "gone", now - DAY)
    await repo.ledger.record_challenge(member, pack_id, 0, "fail", "gone", now - 2 * DAY - 1)

    data = await gather(repo, POLICY, now)

    assert data["health"] == await pool_health(repo, POLICY, now)
    json.dumps(data)  # plain data only
    snaps = sorted(await repo.snapshots(), key=lambda s: s.time)
    assert [s["id"] for s in data["snapshots"]] == [s.id.hex() for s in reversed(snaps)]
    assert data["snapshots_total"] == len(made) == 3
    stored = [p["bytes"] for p in data["charts"]["stored"]]
    assert stored[-1] == sum(s.summary.stored_added for s in snaps) > 0
    assert stored == sorted(stored)
    jobs = {j["name"]: j for j in data["jobs"]}
    assert jobs["docs"]["result"] == "ok"
    assert jobs["docs"]["snapshot"] == "ab" * 16
    assert jobs["docs"]["last_success"] == now - 3600
    assert [r["result"] for r in jobs["docs"]["runs"]] == ["ok", "failed"]
    assert jobs["photos"]["result"] == "failed"
    assert jobs["photos"]["error"] == "x"
    assert jobs["photos"]["last_success"] is None
    days = data["charts"]["challenges"]["failed_per_day"]
    assert len(days) == CHART_DAYS
    assert sum(d["failed"] for d in days) == 2
    assert days[-1]["day"] == now // DAY * DAY  # today last
    failed_days = {int(d["day"] // DAY) for d in days if d["failed"]}
    assert failed_days == {int((now - DAY) // DAY), int((now - 2 * DAY - 1) // DAY)}
    assert data["charts"]["challenges"]["failed_total"] == 2
    assert data["events"][0]["kind"] == "job.failed"  # newest first

    html = page(data)
    assert html.count('class="member-name"') == len(repo.members)
    assert "docs" in html
    assert "photos" in html
    families = {f.name: f for f in text_string_to_metric_families(metrics_text(data).decode())}
    success = {
        s.labels["job"]: s.value
        for s in families["peerbak_job_last_success_timestamp_seconds"].samples
    }
    assert success == {"docs": now - 3600}
    assert families["peerbak_restorable_now"].samples[0].value == 1.0
