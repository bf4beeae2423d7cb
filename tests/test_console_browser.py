"""The web console in a real browser: Debian's Chromium, headless, driven by Playwright.

Never downloads a browser: Playwright launches /usr/bin/chromium (the ``chromium``
package that ``scripts/install.sh`` installs). Screenshots of every page are kept
in ``test-artifacts/console/`` (ignored by git) for a person to look at.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from axe_playwright_python.async_playwright import Axe
from playwright.async_api import Browser, Page, async_playwright, expect

from devices.simulators.hall import SimulatedHall
from hub.broker import ManagedBroker
from hub.demo import DEMO_TICKETS
from hub.service import HubService
from hub.users import UserStore
from tests.hubkit import running_hub

CHROMIUM = Path("/usr/bin/chromium")
LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "console"
PASSWORD = "hall-it-password-1"
SERIOUS = ("serious", "critical")
WAIT_MS = 15_000


@pytest.fixture
async def hall(
    broker: ManagedBroker, tmp_path: Path, unique_topic_root: str
) -> AsyncIterator[tuple[HubService, SimulatedHall]]:
    """A hub with the simulated hall's devices, and hall IT's account."""
    root = unique_topic_root.replace("/", "-")
    simulated = SimulatedHall(
        broker_port=broker.port, publication_log=tmp_path / "published.jsonl", topic_root=root
    )
    await simulated.start()
    UserStore.in_state_dir(tmp_path / "hub").add("hallit", "operator", PASSWORD)
    devices = simulated.hub_devices_config()
    try:
        async with running_hub(
            broker.port, tmp_path / "hub", root, devices, tickets=DEMO_TICKETS
        ) as service:
            yield service, simulated
    finally:
        await simulated.stop()


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    assert CHROMIUM.exists(), "install Debian's chromium: bash scripts/install.sh --with-browser"
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=LAUNCH_ARGS, headless=True
        )
        yield launched
        await launched.close()


async def serious_violations(page: Page, name: str) -> list[dict[str, Any]]:
    """axe's serious and critical findings on the page, after saving its screenshot."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
    results = await Axe().run(page)
    found = [v for v in results.response["violations"] if v.get("impact") in SERIOUS]
    return [{"page": name, "rule": v["id"], "nodes": len(v["nodes"])} for v in found]


async def test_hall_it_works_the_console_live_in_chromium(
    hall: tuple[HubService, SimulatedHall], browser: Browser
) -> None:
    """Hall IT signs in, sees the simulated devices, acknowledges a toilet alarm, watches a
    rating pad change without reloading, sees the banner while the live channel is down
    and its end once it is back, switches to English; axe finds nothing serious on any
    page."""
    hub, simulated = hall
    page = await browser.new_page()
    page.set_default_timeout(WAIT_MS)
    findings: list[dict[str, Any]] = []

    await page.goto(hub.console_url + "login")
    findings += await serious_violations(page, "login")
    await page.get_by_label("用户名").fill("hallit")
    await page.get_by_label("密码").fill(PASSWORD)
    await page.get_by_role("button", name="登录").click()
    await expect(page).to_have_url(hub.console_url + "ui/overview")
    await expect(page.locator("body[data-live=up]")).to_have_count(1)
    for zone in {info.zone for info in simulated.devices}:
        await expect(page.locator("#health")).to_contain_text(zone)
    await expect(page.locator("#figure-queue")).to_have_text(re.compile(r"^\d+$"))
    findings += await serious_violations(page, "overview")

    await page.goto(hub.console_url + "ui/devices")
    for info in simulated.devices:
        await expect(page.locator("#devices")).to_contain_text(info.device_id)
    findings += await serious_violations(page, "devices")

    pad_id, pad = next(iter(simulated.rating_pads.items()))
    await expect(page.locator("body[data-live=up]")).to_have_count(1)
    pad.rate("非常满意", ticket="A001")
    await expect(page.get_by_role("row", name=pad_id)).to_contain_text("非常满意")

    alarm_id, alarm = next(iter(simulated.alarms.items()))
    await page.goto(hub.console_url + "ui/alerts")
    await expect(page.locator("body[data-live=up]")).to_have_count(1)
    alarm.press("cord")
    acknowledge = page.get_by_role("button", name="确认 #")
    await acknowledge.first.click()
    await expect(page.locator("#alerts")).to_contain_text("acknowledged")
    await expect(page.locator("#alerts")).to_contain_text(alarm_id)
    findings += await serious_violations(page, "alerts")

    hub.live.close_all(accept_new=False)
    await expect(page.locator("#live-banner")).to_be_visible()
    await expect(page.locator("#live-banner")).to_contain_text("实时连接已断开")
    await page.screenshot(path=str(ARTIFACTS / "live-banner.png"))
    hub.live.reopen()
    await expect(page.locator("#live-banner")).to_be_hidden()

    counter = next(info for info in simulated.devices if info.protocol == "modbus")
    await page.goto(hub.console_url + f"ui/devices/{counter.device_id}")
    await expect(page.locator("#chart svg")).to_have_count(1)
    await expect(page.locator("#settings")).to_contain_text("hall configuration")
    findings += await serious_violations(page, "device")
    for name in ("queue", "ratings", "sync", "rules"):
        await page.goto(hub.console_url + f"ui/{name}")
        await expect(page.locator("body[data-refreshed]")).to_have_count(1)
        findings += await serious_violations(page, name)
    await expect(page.locator("#rules tbody tr").first).to_be_visible()

    await page.goto(hub.console_url + "ui/ratings")
    await expect(page.locator("#distribution")).to_contain_text("非常满意")
    await page.goto(hub.console_url + "ui/queue")
    await expect(page.locator("#categories")).to_contain_text("综合受理")
    await page.get_by_label("语言").select_option("en")
    await expect(page.get_by_role("link", name="Devices")).to_be_visible()
    await expect(page.locator("#windows")).to_contain_text("W01")

    assert findings == []
    acknowledged = [e for e in hub.audit.entries() if e.target.endswith("/acknowledge")]
    assert [e.actor for e in acknowledged] == ["hallit"]
