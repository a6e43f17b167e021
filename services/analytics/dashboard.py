"""Howhot's virality dashboard (Streamlit): KPIs, evaluations per minute with spikes and what drove them, the funnel,
distributions and traffic sources, all read through the analytics service's query API.

Run: the argv of ``services.analytics.dashboard_app.launch.dashboard_command(settings)`` (``howhot up`` does), or
``streamlit run services/analytics/dashboard.py`` for development. Settings come from HOWHOT_* variables; the API URL
from HOWHOT_ANALYTICS_HOST/PORT or HOWHOT_ANALYTICS_API_URL. On a non-loopback address the page asks for
HOWHOT_ANALYTICS_DASHBOARD_TOKEN (typed once per session, or passed as ``?token=``).
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `streamlit run` puts this file's folder on sys.path, not the repository root
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import pandas as pd
import streamlit as st

from libs.common.settings import Settings
from services.analytics.dashboard_app import panels, timerange
from services.analytics.dashboard_app.access import decide_access
from services.analytics.dashboard_app.client import QueryApiError, QueryClient, api_url

CACHE_TTL_S = 30  # shorter than the shortest refresh interval a person would choose, longer than one page render
REFRESH_CHOICES_S = (15, 30, 60, 300)  # live-launch watching wants 15–60 s; 5 min for a wall screen
DEFAULT_REFRESH_S = 60
TOKEN_PARAM = "token"  # noqa: S105 - the query parameter's name, not a secret
METRICS = ("evaluations", "uploads", "visitors", "page_views", "shares", "share_views", "ratings")


@st.cache_resource(show_spinner=False)
def query_client(base_url: str, token: str | None) -> QueryClient:
    """One keep-alive HTTP session per (API, token) for the whole Streamlit server."""
    return QueryClient(base_url, token)


@st.cache_data(ttl=CACHE_TTL_S, show_spinner=False)
def cached_query(base_url: str, token: str | None, name: str, params: tuple[tuple[str, str], ...]) -> pd.DataFrame:
    """A named query's frame, shared by every viewer for CACHE_TTL_S (the store serves one query at a time)."""
    return query_client(base_url, token).run(name, **dict(params))


def make_fetch(base_url: str, token: str | None) -> panels.Fetch:
    def fetch(name: str, **params: Any) -> pd.DataFrame:
        bound = tuple(sorted((k, v.isoformat() if isinstance(v, datetime) else str(v)) for k, v in params.items()))
        return cached_query(base_url, token, name, bound)

    return fetch


def gate(settings: Settings) -> str | None:
    """Show the token prompt and stop the script unless this session may see data; returns the API token."""
    presented = st.query_params.get(TOKEN_PARAM)
    if presented:  # accept it once, then take it out of the address bar (screenshots, screen shares)
        st.session_state[TOKEN_PARAM] = presented
        del st.query_params[TOKEN_PARAM]
    configured = settings.analytics.dashboard_token.get_secret_value() if settings.analytics.dashboard_token else None
    access = decide_access(st.get_option("server.address"), configured, st.session_state.get(TOKEN_PARAM))
    if access.allowed:
        return access.api_token
    st.title("Howhot · virality")
    st.warning(access.reason)
    if configured:
        entered = st.text_input("Dashboard token", type="password", key="token-input")
        if entered:
            st.session_state[TOKEN_PARAM] = entered
            st.rerun()
    st.stop()
    return None  # unreachable: st.stop() raises


def sidebar() -> tuple[str, tuple[Any, Any] | None, str, int | None]:
    """The picker: preset (or custom dates), metric of the main chart, auto-refresh interval (None: off)."""
    with st.sidebar:
        st.header("Range (UTC)")
        preset = st.radio("Time range", list(timerange.PRESETS), index=0, label_visibility="collapsed")
        custom = None
        if preset == timerange.CUSTOM:
            today = datetime.now(UTC).date()
            picked = st.date_input("Days", value=(today - timedelta(days=1), today))
            if isinstance(picked, tuple) and len(picked) == 2:  # a (start, end) pair once both days are picked
                custom = picked
        metric = st.selectbox("Main chart", METRICS, index=0)
        auto = st.toggle("Auto refresh", value=True)
        every = st.select_slider("Every (s)", REFRESH_CHOICES_S, value=DEFAULT_REFRESH_S, disabled=not auto)
    return preset, custom, metric, every if auto else None


def render(fetch: panels.Fetch, preset: str, custom: tuple[Any, Any] | None, metric: str) -> None:
    """Every panel for the resolved range (runs inside the auto-refresh fragment, so 'now' moves)."""
    bounds = fetch("data_bounds")
    first = bounds["first_minute"].iloc[0] if not bounds.empty else None
    last = bounds["last_minute"].iloc[0] if not bounds.empty else None
    start, end = timerange.resolve(preset, datetime.now(UTC), first, last, custom)
    st.caption(f"{start:%Y-%m-%d %H:%M} → {end:%Y-%m-%d %H:%M} UTC · updated {datetime.now(UTC):%H:%M:%S} UTC")
    panels.kpis(fetch, start, end)
    panels.activity(fetch, start, end, metric)
    funnel_tab, people_tab, sources_tab = st.tabs(["Funnel & latency", "Who uploads", "Where they come from"])
    with funnel_tab:
        panels.funnel_and_latency(fetch, start, end)
    with people_tab:
        panels.distributions(fetch, start, end)
    with sources_tab:
        panels.sources(fetch, start, end)


def main() -> None:
    st.set_page_config(page_title="Howhot · virality", page_icon="🔥", layout="wide")
    settings = Settings()
    token = gate(settings)
    base_url = api_url(settings)
    preset, custom, metric, every = sidebar()
    st.title("Howhot · virality")
    fetch = make_fetch(base_url, token)

    @st.fragment(run_every=every)
    def live() -> None:
        try:
            render(fetch, preset, custom, metric)
        except QueryApiError as exc:
            if exc.status == 401:  # HTTP Unauthorized: the token is wrong or missing
                st.session_state.pop(TOKEN_PARAM, None)
                st.error(
                    "The query API refused the token. Open the page with ?token=<dashboard token>, or start the"
                    " dashboard with the same HOWHOT_ANALYTICS_DASHBOARD_TOKEN as the analytics service."
                )
            else:
                st.error(f"The analytics query API answered an error: {exc}")
        except OSError as exc:  # requests' ConnectionError and timeouts derive from OSError
            st.error(f"The analytics service at {base_url} is not answering ({type(exc).__name__}). Is it running?")

    live()


main()
