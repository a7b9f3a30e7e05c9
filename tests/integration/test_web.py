"""The status page and /metrics served by a real daemon, seen in a real browser.

Four real nodes on 127.0.0.1 (owner + three friends, 2-of-3) and one small backup. The
owner's page, opened in headless Chromium (Debian's chromium and chromium-driver, driven
by Selenium with the driver named outright: nothing is downloaded), logs in with the
token `peerbak web` prints, lists every member in the state ``peerbak status --json``
gives it, the same pack count and the same verdict; a screenshot is kept. /metrics
parses with prometheus_client's parser. Without the token the page answers 401; from an
address outside ``[web] allow`` (the daemon restarted with another network), 403.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from peerbak.adapters.home import Home
from peerbak.adapters.ledger import Ledger
from peerbak.services.events import note
from peerbak.tools.localpool import LocalNode, make_pool

pytestmark = pytest.mark.slow

NAMES = ["owner", "f1", "f2", "f3"]
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "status-page.png"
JOB = "nightly <photos>"


class Pool:
    def __init__(self, base: Path, nodes: list[LocalNode]) -> None:
        self.base = base
        self.owner = nodes[0]
        self.nodes = nodes
        self.job_time = 0.0

    def web(self) -> dict[str, Any]:
        info: dict[str, Any] = self.owner.cli("web")
        return info


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pool]:
    base = tmp_path_factory.mktemp("web")
    nodes = make_pool(base, NAMES)
    try:
        pool = Pool(base, nodes)
        source = base / "source"
        source.mkdir()
        for round_ in range(3):  # three snapshots, each adding some: a chart with steps
            for i in range(3):
                (source / f"file-{round_}-{i}.bin").write_bytes(os.urandom(20_000 * (round_ + 1)))
            backup = pool.owner.cli("backup", "--shards", "2/3", str(source))
        pool.job_time = time.time()
        asyncio.run(_job_ok(pool.owner.home, pool.job_time, backup["snapshot_id"]))
        yield pool
    finally:
        for node in nodes:
            node.kill()


async def _job_ok(home: Path, when: float, snapshot: str) -> None:
    """A backup job's success, as the daemon's jobs log it."""
    ledger = await Ledger.open(Home.open(home).ledger_path)
    try:
        await note(
            ledger,
            when,
            "info",
            "job.ok",
            JOB,
            f"{JOB}: snapshot {snapshot[:8]}",
            snapshot=snapshot,
            started=when - 2,
            duration=2.0,
            files_new=5,
            data_added=100_000,
        )
    finally:
        await ledger.close()


def get(url: str, token: str | None = None) -> tuple[int, str]:
    """A GET from 127.0.0.1: the status and the body (of an error too)."""
    request = urllib.request.Request(url)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_peerbak_web_names_the_running_page(pool: Pool) -> None:
    info = pool.web()
    status = pool.owner.cli("status")
    assert info["running"] is True
    assert info["port"] > 0  # port 0 in the config: the daemon says which it got
    assert info["port"] == status["web_port"]
    assert info["url"] == f"http://127.0.0.1:{info['port']}/?token={info['token']}"
    assert (pool.owner.home / "web.token").read_text().strip() == info["token"]


def test_metrics_from_the_daemon(pool: Pool) -> None:
    info = pool.web()
    code, text = get(info["metrics"], info["token"])
    assert code == 200, text
    families = {f.name: f for f in text_string_to_metric_families(text)}

    def by_member(name: str) -> dict[str, float]:
        return {s.labels["member"]: s.value for s in families[name].samples}

    states = {
        s.labels["member"]: s.labels["state"]
        for s in families["peerbak_member_state"].samples
        if s.value == 1.0
    }
    assert states == {"f1": "ok", "f2": "ok", "f3": "ok"}
    held = by_member("peerbak_member_bytes_held_for_us")
    assert set(held) == {"f1", "f2", "f3"}
    assert all(v > 0 for v in held.values())  # 2-of-3 over three friends: each holds some
    assert set(by_member("peerbak_member_bytes_we_hold")) == {"f1", "f2", "f3"}
    assert families["peerbak_member_challenges_passed"].type == "counter"
    assert set(by_member("peerbak_member_challenges_passed")) == {"f1", "f2", "f3"}
    assert set(by_member("peerbak_member_challenges_failed")) == {"f1", "f2", "f3"}
    (job,) = families["peerbak_job_last_success_timestamp_seconds"].samples
    assert job.labels == {"job": JOB}
    assert job.value == pytest.approx(pool.job_time)
    assert families["peerbak_restorable_now"].samples[0].value == 1.0
    (backup,) = families["peerbak_last_backup_timestamp_seconds"].samples
    assert backup.labels["paths"] == str(pool.base / "source")
    assert get(info["metrics"])[0] == 401


def _browser() -> Any:
    if not (shutil.which("chromium") or os.path.exists(CHROMIUM)):
        pytest.skip("no chromium here (Debian: apt-get install chromium chromium-driver)")
    if not os.path.exists(CHROMEDRIVER):
        pytest.skip("no chromedriver here (Debian: apt-get install chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--lang=en"):
        options.add_argument(arg)
    options.add_argument("--window-size=1280,1900")
    return webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)


def test_the_page_in_a_browser_shows_what_status_says(pool: Pool, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    info = pool.web()
    health = pool.owner.cli("status")["health"]
    driver = _browser()
    try:
        driver.get(info["url"])
        assert driver.current_url == info["base"]  # the token traded for a cookie
        assert driver.title == "peerbak: owner"
        names = [e.text for e in driver.find_elements(By.CSS_SELECTOR, ".member-name")]
        states = [
            e.get_attribute("data-state")
            for e in driver.find_elements(By.CSS_SELECTOR, ".member-state")
        ]
        assert dict(zip(names, states, strict=True)) == {
            m["name"]: m["state"] for m in health["members"]
        }
        assert names == ["f1", "f2", "f3"]  # by name
        assert int(driver.find_element(By.ID, "packs").text) == health["packs"] > 0
        assert driver.find_element(By.ID, "verdict").text == health["verdict"]
        assert driver.find_element(By.ID, "restorable-now").text == "yes"
        assert JOB in driver.find_element(By.CSS_SELECTOR, ".job-name").text
        assert driver.find_element(By.ID, "chart-stored").is_displayed()
        shot = tmp_path / "status-page.png"
        assert driver.save_screenshot(str(shot))
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        shutil.copyfile(shot, SCREENSHOT)

        driver.delete_all_cookies()  # a visitor without the token
        driver.get(info["base"])
        assert driver.title == "Login needed"
        assert not driver.find_elements(By.CSS_SELECTOR, ".member-name")
    finally:
        driver.quit()
    assert get(info["base"])[0] == 401
    assert get(info["base"], "wrong-token")[0] == 401
    assert get(info["base"], info["token"])[0] == 200


def test_an_address_outside_allow_is_refused(pool: Pool) -> None:
    """Last: the owner's daemon restarts with only 10.0.0.0/8 allowed; 127.0.0.1 is out."""
    config = pool.owner.home / "config.toml"
    text = config.read_text()
    assert 'allow = ["127.0.0.0/8", "::1/128"]' in text
    config.write_text(text.replace('allow = ["127.0.0.0/8", "::1/128"]', 'allow = ["10.0.0.0/8"]'))
    assert pool.owner.stop() == 0  # SIGTERM: the page stops with the rest, cleanly
    pool.owner.start()
    info = pool.web()
    code, body = get(info["base"], info["token"])
    assert code == 403
    assert "may not see" in body
    from selenium.webdriver.common.by import By

    driver = _browser()
    try:
        driver.get(info["url"])
        assert driver.title == "Forbidden"
        assert not driver.find_elements(By.CSS_SELECTOR, ".member-name")
    finally:
        driver.quit()
    assert "refused a request from 127.0.0.1" in pool.owner.log.read_text()
