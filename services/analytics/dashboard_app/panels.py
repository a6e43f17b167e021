"""The dashboard's panels: each fetches its named queries through ``fetch`` and draws them with a CSV download.

``fetch(name, **params) -> DataFrame`` is injected by dashboard.py (it adds caching and the API client), so the
panels never know how data arrives.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import pandas as pd
import streamlit as st

from services.analytics.dashboard_app import charts

Fetch = Callable[..., pd.DataFrame]

KPI_LAYOUT = (  # (column, label, format, help): the headline row, read left to right like the funnel
    ("evaluations", "Evaluations", "{:,.0f}", "Faces scored in the range."),
    ("evaluations_today", "Evaluations today", "{:,.0f}", "Faces scored on the UTC day of the range's end."),
    ("visitors", "Visitors", "{:,.0f}", "Distinct visitor ids with any event."),
    ("photos", "Photos", "{:,.0f}", "Photos uploaded."),
    ("shares", "Shares", "{:,.0f}", "Results made public (once each) and presses of a share channel (X, copy…)."),
    ("share_views", "Share views", "{:,.0f}", "Share pages opened by others than the owner."),
    ("k_factor", "K-factor", "{:.2f}", "Uploads that came through a share ÷ distinct sharers (> 1: it spreads)."),
    ("share_to_upload_p50_s", "Share → upload (median)", "{:,.0f} s", "From a share to an upload it brought."),
    ("result_p50_s", "Time to result (median)", "{:.1f} s", "Upload → scored."),
    ("result_p95_s", "Time to result (p95)", "{:.1f} s", "Upload → scored, 95th percentile."),
)
KPI_COLUMNS_PER_ROW = 5
FUNNEL_HELP = (  # one unit throughout, so "% of previous step" never passes 100 % (it counted photos and uploads)
    "Distinct visitors at every step; each bar's percent is of the step above. **visited**: a page view or an upload"
    " in the range. **uploaded**: at least one photo in the range. The next steps follow those uploaders, with what"
    " their photos did later: **face found** and **got a result** (a photo scored), **shared**, **share viewed**"
    " (their share opened by someone else), **brought an upload** (another visitor uploaded through their share)."
    " A step counts only visitors who also reached the one above it through the same photo. Uploads without a visitor"
    " id are left out. Visited is estimated (~1 % off beyond 65,536 visitors, like the KPIs); the rest are exact."
)
NO_DATA = "No data in this range yet."


def download(frame: pd.DataFrame, name: str) -> None:
    """A CSV download of the table behind a panel (the exact figures, not the picture)."""
    st.download_button(
        f"Download {name}.csv", frame.to_csv(index=False).encode(), file_name=f"{name}.csv", mime="text/csv",
        on_click="ignore", key=f"download-{name}",
    )


def chart_or_note(frame: pd.DataFrame, build: Callable[[pd.DataFrame], object], note: str = NO_DATA) -> None:
    """Draw the chart, or say there is nothing to draw (an empty answer carries no columns to chart)."""
    if frame.empty:
        st.info(note)
    else:
        st.altair_chart(build(frame), width="stretch")  # type: ignore[arg-type]


def _format(value: object, fmt: str) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return "–"
    return fmt.format(value)


def kpis(fetch: Fetch, start: datetime, end: datetime) -> None:
    frame = fetch("kpis", **{"from": start, "to": end})
    row = frame.iloc[0].to_dict() if not frame.empty else {}
    for offset in range(0, len(KPI_LAYOUT), KPI_COLUMNS_PER_ROW):
        columns = st.columns(KPI_COLUMNS_PER_ROW)
        for column, (key, label, fmt, help_text) in zip(
            columns, KPI_LAYOUT[offset : offset + KPI_COLUMNS_PER_ROW], strict=True
        ):
            column.metric(label, _format(row.get(key), fmt), help=help_text)
    with st.expander("KPI table"):
        st.dataframe(frame, hide_index=True)
        download(frame, "kpis")


def activity(fetch: Fetch, start: datetime, end: datetime, metric: str) -> None:
    params = {"from": start, "to": end, "metric": metric}
    series = fetch("activity_per_minute", **params)
    spikes = fetch("spikes", **params)
    st.subheader(f"{metric.replace('_', ' ').capitalize()} per minute")
    if series.empty or series["value"].sum() == 0:
        st.info("No events in this range yet.")
    else:
        st.altair_chart(charts.activity_chart(series, spikes, metric), width="stretch")
    if spikes.empty:
        st.caption("No spikes: no minute stood out from its ±90-minute median.")
    else:
        for _, spike in spikes.iterrows():
            st.markdown(f":red[**●**] {charts.spike_sentence(spike)}")
        sources = fetch("spike_sources", **params)
        with st.expander("What drove each spike"):
            st.dataframe(sources, hide_index=True)
            download(sources, "spike_sources")
    columns = st.columns(2)
    with columns[0]:
        download(series, "activity_per_minute")
    with columns[1]:
        download(spikes, "spikes")


def funnel_and_latency(fetch: Fetch, start: datetime, end: datetime) -> None:
    left, right = st.columns(2)
    with left:
        st.subheader("Funnel", help=FUNNEL_HELP)
        funnel = fetch("funnel", **{"from": start, "to": end})
        chart_or_note(funnel, charts.funnel_chart)
        download(funnel, "funnel")
    with right:
        st.subheader("Pipeline latency")
        stages = fetch("stage_latency", **{"from": start, "to": end})
        if stages.empty or stages["photos"].sum() == 0:
            st.info("No photos in this range yet.")
        else:
            st.altair_chart(charts.latency_chart(stages), width="stretch")
        download(stages, "stage_latency")


def distributions(fetch: Fetch, start: datetime, end: datetime) -> None:
    rng = {"from": start, "to": end}
    ages, split = fetch("age_histogram", **rng), fetch("gender_split", **rng)
    groups, hot = fetch("attractiveness_by_group", **rng), fetch("hot_ratings_by_gender", **rng)
    top = st.columns([2, 1])
    with top[0]:
        st.subheader("Age")
        chart_or_note(ages, charts.age_chart)
        download(ages, "age_histogram")
    with top[1]:
        st.subheader("Gender")
        chart_or_note(split, charts.gender_chart)
        download(split, "gender_split")
    bottom = st.columns(2)
    with bottom[0]:
        st.subheader("Attractiveness by age and gender")
        chart_or_note(groups, charts.attractiveness_chart)
        download(groups, "attractiveness_by_group")
    with bottom[1]:
        st.subheader("“Hot” ratings by gender")
        chart_or_note(hot, charts.hot_ratings_chart, "No ratings in this range yet.")
        download(hot, "hot_ratings_by_gender")


def sources(fetch: Fetch, start: datetime, end: datetime) -> None:
    frame = fetch("traffic_sources", **{"from": start, "to": end})
    left, right = st.columns(2)
    with left:
        st.subheader("Referrers")
        chart_or_note(frame, lambda f: charts.sources_chart(f, "referrer"))
    with right:
        st.subheader("utm_source")
        chart_or_note(frame, lambda f: charts.sources_chart(f, "utm_source"))
    download(frame, "traffic_sources")
