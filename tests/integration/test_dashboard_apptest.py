"""The Streamlit dashboard (AppTest) against the REAL query API over a seeded chDB (never mocked numbers).

Each test serves the analytics app from a background thread (QueryApiServer: real ingest path, real migrations, real
routes), points the dashboard at it with HOWHOT_ANALYTICS_API_URL and runs the script once.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from streamlit import config as st_config
from streamlit.testing.v1 import AppTest

from services.analytics.dashboard_app.client import API_URL_ENV
from services.analytics.dashboard_app.devserver import QueryApiServer
from services.analytics.simulate.seeded import steady_with_spike, tiny_launch

pytestmark = pytest.mark.integration

DASHBOARD = Path(__file__).resolve().parents[2] / "services" / "analytics" / "dashboard.py"
T0 = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)
RUN_TIMEOUT_S = 120  # a cold chDB on a shared 2-core machine; normally ~2 s
TOKEN = "s3cret-dashboard-token"


@pytest.fixture
def bind(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Pretend the dashboard listens on loopback (AppTest has no server; the gate reads server.address)."""
    previous = st_config.get_option("server.address")
    st_config.set_option("server.address", "127.0.0.1")
    monkeypatch.delenv("HOWHOT_ANALYTICS_DASHBOARD_TOKEN", raising=False)
    yield
    st_config.set_option("server.address", previous)


def run_dashboard(server: QueryApiServer, monkeypatch: pytest.MonkeyPatch, **query: str) -> AppTest:
    monkeypatch.setenv(API_URL_ENV, server.url)
    app = AppTest.from_file(str(DASHBOARD), default_timeout=RUN_TIMEOUT_S)
    app.query_params.update(query)
    app.run()
    assert not app.exception, [e.value for e in app.exception]
    return app


def metrics(app: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in app.metric}


@pytest.mark.usefixtures("bind")
def test_empty_store_renders_without_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with QueryApiServer(tmp_path) as server:
        app = run_dashboard(server, monkeypatch)
    shown = metrics(app)
    assert shown["Evaluations"] == "0" and shown["Visitors"] == "0"
    assert shown["K-factor"] == "–" and shown["Time to result (median)"] == "–"
    assert not app.error
    assert any("No events in this range" in i.value for i in app.info)


@pytest.mark.usefixtures("bind")
def test_seeded_store_shows_its_kpis(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with QueryApiServer(tmp_path, tiny_launch(T0)[0]) as server:
        app = run_dashboard(server, monkeypatch)
    assert metrics(app) == {
        "Evaluations": "4",
        "Evaluations today": "4",
        "Visitors": "6",
        "Photos": "4",
        "Shares": "2",
        "Share views": "3",
        "K-factor": "1.00",
        "Share → upload (median)": "80 s",
        "Time to result (median)": "5.0 s",
        "Time to result (p95)": "5.9 s",
    }
    assert not app.error
    assert "2026-03-02 14:00 → 2026-03-02 14:04 UTC" in app.caption[0].value  # "Whole launch" found the data
    assert {b.label for b in app.get("download_button")} >= {"Download kpis.csv", "Download funnel.csv"}


@pytest.mark.usefixtures("bind")
def test_planted_spike_is_marked_and_explained(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with QueryApiServer(tmp_path, steady_with_spike(T0)) as server:
        app = run_dashboard(server, monkeypatch)
    sentences = [m.value for m in app.markdown if "Spike at" in m.value]
    assert sentences == [
        ":red[**●**] Spike at 16:00 UTC (Mar 02), peak 50/min at 16:00 (10× baseline): 86% of uploads from"
        " news.example.com (utm_source press 86%)."
    ]


def test_public_address_needs_the_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    previous = st_config.get_option("server.address")
    st_config.set_option("server.address", "0.0.0.0")
    monkeypatch.setenv("HOWHOT_ANALYTICS_DASHBOARD_TOKEN", TOKEN)
    try:
        with QueryApiServer(tmp_path, tiny_launch(T0)[0], token=TOKEN) as server:
            locked = run_dashboard(server, monkeypatch)
            assert not locked.metric and "Enter the dashboard token." in [w.value for w in locked.warning]
            wrong = run_dashboard(server, monkeypatch, token="nope")
            assert not wrong.metric and "That token is not right." in [w.value for w in wrong.warning]
            opened = run_dashboard(server, monkeypatch, token=TOKEN)  # ?token=… (forwarded as the API's bearer)
            assert metrics(opened)["Evaluations"] == "4"
            assert "token" not in opened.query_params  # taken out of the address bar once accepted
    finally:
        st_config.set_option("server.address", previous)


@pytest.mark.usefixtures("bind")
def test_unreachable_api_is_an_error_message_not_a_crash(monkeypatch: pytest.MonkeyPatch) -> None:
    class Gone:
        url = "http://127.0.0.1:9"  # discard port: nothing listens

    app = run_dashboard(Gone(), monkeypatch)  # type: ignore[arg-type]
    assert any("is not answering" in e.value for e in app.error)
