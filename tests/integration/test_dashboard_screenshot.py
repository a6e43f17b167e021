"""The dashboard in headless Chromium over a simulated launch: it renders, shows the spikes, and leaves a screenshot.

Serves the real query API over chDB seeded by the launch simulator, starts Streamlit with the very argv ``howhot up``
uses (dashboard_command), and keeps test-artifacts/dashboard.png for a person to look at. Skipped when Chromium or
Playwright is missing (``apt-get install -y chromium``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from libs.common.netutil import LOOPBACK, free_port, wait_for_port
from libs.common.settings import AnalyticsSettings, Settings
from services.analytics.dashboard_app.client import API_URL_ENV
from services.analytics.dashboard_app.devserver import QueryApiServer
from services.analytics.dashboard_app.launch import dashboard_command
from services.analytics.simulate.generator import LaunchSimulator
from services.analytics.simulate.scenario import LaunchConfig, MediaSpike

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.slow]

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
STREAMLIT_START_S = 60.0
RENDER_TIMEOUT_MS = 90_000  # first render runs every panel's query on a cold store
VIEWPORT = {"width": 1400, "height": 2200}  # Streamlit scrolls inside its own container: show it all
START = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


def launch_events() -> list:
    config = LaunchConfig(
        visitors=6000, duration_h=4.0, start=START, seed=11,
        spikes=(MediaSpike(1.0, "https://www.news.example.com/", "press", 1500, 8),
                MediaSpike(2.5, "https://www.tv.example.net/", None, 1000, 8)),
    )
    return [e for _, batch in LaunchSimulator(config).minutes() for e in batch]


@pytest.fixture
def dashboard_url(tmp_path: Path) -> Iterator[str]:
    if CHROMIUM is None:
        pytest.skip("chromium not installed (apt-get install -y chromium)")
    pytest.importorskip("playwright")
    with QueryApiServer(tmp_path / "store", launch_events()) as server:
        port = free_port()
        argv = dashboard_command(Settings(analytics=AnalyticsSettings(host=LOOPBACK, dashboard_port=port)))
        env = {**os.environ, API_URL_ENV: server.url}
        env.pop("HOWHOT_ANALYTICS_DASHBOARD_TOKEN", None)
        log = (tmp_path / "streamlit.log").open("wb")
        process = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_for_port(LOOPBACK, port, STREAMLIT_START_S)
            yield f"http://{LOOPBACK}:{port}/"
        finally:
            process.terminate()
            process.wait(timeout=30)
            log.close()


def test_dashboard_renders_in_chromium(dashboard_url: str) -> None:
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
        )
        try:
            page = browser.new_page(viewport=VIEWPORT)
            page.goto(dashboard_url)
            page.get_by_text("Spike at", exact=False).first.wait_for(timeout=RENDER_TIMEOUT_MS)
            page.locator("canvas, svg.marks").first.wait_for(timeout=RENDER_TIMEOUT_MS)  # Vega has drawn
            page.wait_for_timeout(2_000)  # let the remaining charts finish their first paint
            text = page.inner_text("body")
            page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
            for tab, name in (("Who uploads", "people"), ("Where they come from", "sources")):
                page.get_by_role("tab", name=tab).click()
                page.wait_for_timeout(1_500)
                text += page.inner_text("body")
                page.screenshot(path=str(ARTIFACTS / f"dashboard-{name}.png"), full_page=True)
        finally:
            browser.close()
    assert "Traceback" not in text and "Error" not in text
    assert "news.example.com" in text and "Evaluations" in text
