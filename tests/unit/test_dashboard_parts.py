"""The dashboard's pure parts: the access gate, the time-range arithmetic, the launch command, charts and sentences."""

from __future__ import annotations

import sys
from datetime import UTC, date, datetime, timedelta

import pandas as pd
import pytest
from pydantic import SecretStr

from libs.common.settings import AnalyticsSettings, Settings
from services.analytics.dashboard_app import charts, timerange
from services.analytics.dashboard_app.access import decide_access, is_loopback
from services.analytics.dashboard_app.client import API_URL_ENV, api_url, to_frame
from services.analytics.dashboard_app.launch import DASHBOARD_SCRIPT, dashboard_command

NOW = datetime(2026, 3, 2, 14, 7, 31, tzinfo=UTC)


@pytest.mark.parametrize(("address", "loopback"), [
    ("127.0.0.1", True), ("::1", True), ("localhost", True), ("127.0.0.2", True),
    ("0.0.0.0", False), ("10.0.0.5", False), ("", False), (None, False), ("dash.example.com", False),
])
def test_loopback(address: str | None, loopback: bool) -> None:
    assert is_loopback(address) is loopback


def test_access_gate() -> None:
    assert decide_access("127.0.0.1", None, None).allowed
    assert decide_access("127.0.0.1", "tok", None).api_token == "tok"  # loopback forwards the configured token
    refused = decide_access("0.0.0.0", None, "anything")
    assert not refused.allowed and "HOWHOT_ANALYTICS_DASHBOARD_TOKEN" in refused.reason
    assert not decide_access("0.0.0.0", "tok", None).allowed
    assert not decide_access("0.0.0.0", "tok", "wrong").allowed
    assert decide_access("0.0.0.0", "tok", "tok") == decide_access("0.0.0.0", "tok", "tok")
    assert decide_access("0.0.0.0", "tok", "tok").api_token == "tok"


def test_presets_are_minute_aligned_and_include_the_current_minute() -> None:
    start, end = timerange.resolve("Last hour", NOW)
    assert end == datetime(2026, 3, 2, 14, 8, tzinfo=UTC) and end - start == timedelta(hours=1)


def test_whole_launch_follows_the_data_and_is_capped_at_seven_days() -> None:
    start, end = timerange.resolve(timerange.WHOLE_LAUNCH, NOW, "2026-03-01T10:00:00", "2026-03-01T12:30:00")
    assert (start, end) == (datetime(2026, 3, 1, 10, tzinfo=UTC), datetime(2026, 3, 1, 12, 31, tzinfo=UTC))
    start, end = timerange.resolve(timerange.WHOLE_LAUNCH, NOW, "2026-01-01T00:00:00", "2026-03-01T00:00:00")
    assert end - start == timerange.MAX_SPAN
    start, end = timerange.resolve(timerange.WHOLE_LAUNCH, NOW, None, None)  # empty store
    assert end - start == timerange.EMPTY_FALLBACK
    assert timerange.resolve(timerange.WHOLE_LAUNCH, NOW, pd.NaT, pd.NaT)[1] == end


def test_custom_days() -> None:
    start, end = timerange.resolve(timerange.CUSTOM, NOW, custom=(date(2026, 3, 1), date(2026, 3, 2)))
    assert (start, end) == (datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 3, 3, tzinfo=UTC))


def test_dashboard_command_binds_the_configured_address_and_port() -> None:
    settings = Settings(analytics=AnalyticsSettings(host="0.0.0.0", dashboard_port=9501))
    argv = dashboard_command(settings)
    assert argv[:4] == [sys.executable, "-m", "streamlit", "run"] and argv[4] == str(DASHBOARD_SCRIPT)
    assert DASHBOARD_SCRIPT.exists()
    options = dict(zip(argv[5::2], argv[6::2], strict=True))
    assert options["--server.address"] == "0.0.0.0" and options["--server.port"] == "9501"
    assert options["--server.headless"] == "true" and options["--browser.gatherUsageStats"] == "false"


def test_api_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(API_URL_ENV, raising=False)
    assert api_url(Settings(analytics=AnalyticsSettings(host="0.0.0.0", port=9084))) == "http://127.0.0.1:9084"
    monkeypatch.setenv(API_URL_ENV, "http://analytics:8084/")
    assert api_url(Settings(analytics=AnalyticsSettings(dashboard_token=SecretStr("x")))) == "http://analytics:8084"


SERIES = to_frame({
    "columns": ["minute", "value", "baseline", "score", "is_spike", "run"],
    "rows": [["2026-03-02T14:00:00", 5.0, 5.0, 0.0, 0, 1], ["2026-03-02T14:01:00", 50.0, 5.0, 20.1, 1, 1]],
})
SPIKES = to_frame({
    "columns": ["start", "end", "peak_minute", "peak_value", "baseline_at_peak", "excess", "top_referrer",
                "top_referrer_pct", "top_utm_source", "top_utm_source_pct", "photos"],
    "rows": [["2026-03-02T14:01:00", "2026-03-02T14:02:00", "2026-03-02T14:01:00", 50.0, 5.0, 45.0,
              "news.example.com", 68.4, "press", 68.4, 60]],
})


def test_times_are_utc_timestamps() -> None:
    assert SERIES["minute"].dt.tz is not None and str(SERIES["minute"].iloc[1]) == "2026-03-02 14:01:00+00:00"


def test_spike_sentence_reads_like_a_headline() -> None:
    assert charts.spike_sentence(SPIKES.iloc[0]) == (
        "Spike at 14:01 UTC (Mar 02), peak 50/min at 14:01 (10× baseline): 68% of uploads from news.example.com"
        " (utm_source press 68%)."
    )


def test_charts_build_valid_vega_lite() -> None:
    funnel = pd.DataFrame({"step": ["visited", "uploaded"], "value": [10, 4], "unit": ["visitors", "photos"]})
    stages = pd.DataFrame({"stage": ["upload → faces"], "photos": [3], "p50_ms": [2000.0], "p95_ms": [None]})
    hot = pd.DataFrame({"rater_gender": ["male"], "rated_gender": ["female"], "ratings": [2], "hot": [1],
                        "hot_pct": [50.0]})
    built = [
        charts.activity_chart(SERIES, SPIKES, "evaluations"),
        charts.activity_chart(SERIES, SPIKES.iloc[0:0], "evaluations"),
        charts.funnel_chart(funnel),
        charts.latency_chart(stages),
        charts.hot_ratings_chart(hot),
    ]
    for chart in built:
        assert chart.to_dict()["$schema"].startswith("https://vega.github.io/schema/vega-lite/")
    labels = built[2].to_dict()["datasets"]
    assert any(row.get("label") == "4  (40%)" for rows in labels.values() for row in rows)
