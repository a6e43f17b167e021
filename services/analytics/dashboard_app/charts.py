"""Altair charts and sentences built from query frames: pure functions, so they are tested without Streamlit.

Colours are fixed per meaning (spikes red, female/male always the same two hues) so a glance across panels reads
the same way; every chart carries tooltips with the exact figures behind the marks.
"""

from __future__ import annotations

import altair as alt
import pandas as pd

SPIKE_COLOR = "#d62728"
SERIES_COLOR = "#1f77b4"
BASELINE_COLOR = "#7f7f7f"
GENDER_DOMAIN = ["female", "male", "unknown"]
GENDER_RANGE = ["#e377c2", "#17becf", "#bbbbbb"]
AGE_BANDS = ["<18", "18-24", "25-34", "35-44", "45-54", "55+"]
CHART_HEIGHT = 260  # fits two charts in a laptop screen's height without scrolling
PERCENT_OF_TOTAL = 100.0


def _gender_color(title: str = "gender") -> alt.Color:
    return alt.Color("gender:N", title=title, scale=alt.Scale(domain=GENDER_DOMAIN, range=GENDER_RANGE))


def spike_sentence(spike: pd.Series) -> str:
    """'Spike at 14:05 UTC: 50/min (10× baseline), 86% of uploads from news.example.com (utm: press 86%).'"""
    baseline = float(spike["baseline_at_peak"]) or 1.0
    ratio = float(spike["peak_value"]) / baseline
    text = (
        f"Spike at {pd.Timestamp(spike['start']):%H:%M} UTC ({pd.Timestamp(spike['start']):%b %d}), peak"
        f" {spike['peak_value']:.0f}/min at {pd.Timestamp(spike['peak_minute']):%H:%M} ({ratio:.0f}× baseline)"
    )
    if spike["top_referrer"]:
        text += f": {spike['top_referrer_pct']:.0f}% of uploads from {spike['top_referrer']}"
        if spike["top_utm_source"] and spike["top_utm_source"] != "(none)":
            text += f" (utm_source {spike['top_utm_source']} {spike['top_utm_source_pct']:.0f}%)"
    return text + "."


def activity_chart(series: pd.DataFrame, spikes: pd.DataFrame, metric: str) -> alt.LayerChart:
    """The per-minute series as an area, its rolling baseline dashed, spike minutes as red dots, each spike labelled
    at its peak with its top referrer."""
    base = alt.Chart(series).encode(x=alt.X("minute:T", title="minute (UTC)"))
    area = base.mark_area(opacity=0.35, color=SERIES_COLOR, line={"color": SERIES_COLOR}).encode(
        y=alt.Y("value:Q", title=f"{metric} / minute"),
        tooltip=[alt.Tooltip("minute:T", format="%b %d %H:%M"), "value:Q", "baseline:Q", "score:Q"],
    )
    baseline = base.mark_line(strokeDash=[4, 3], color=BASELINE_COLOR).encode(y="baseline:Q")
    dots = (
        alt.Chart(series[series["is_spike"].astype(bool)])
        .mark_circle(color=SPIKE_COLOR, size=40)
        .encode(x="minute:T", y="value:Q", tooltip=[alt.Tooltip("minute:T", format="%H:%M"), "value:Q", "score:Q"])
    )
    layers: list[alt.Chart] = [area, baseline, dots]
    if not spikes.empty:
        labels = spikes.assign(
            label=spikes.apply(
                lambda s: f"{pd.Timestamp(s['start']):%H:%M} · "
                + (f"{s['top_referrer_pct']:.0f}% {s['top_referrer']}" if s["top_referrer"] else "spike"),
                axis=1,
            )
        )
        layers.append(
            alt.Chart(labels)
            .mark_text(align="left", dx=6, dy=-8, color=SPIKE_COLOR, fontWeight="bold")
            .encode(x="peak_minute:T", y="peak_value:Q", text="label:N")
        )
    return alt.layer(*layers).properties(height=CHART_HEIGHT)


def funnel_chart(funnel: pd.DataFrame) -> alt.LayerChart:
    """Horizontal bars in step order, labelled with the count and the percent of the previous step."""
    frame = funnel.copy()
    previous = frame["value"].shift(1)
    frame["of_previous"] = (PERCENT_OF_TOTAL * frame["value"] / previous.where(previous > 0)).round(1)
    frame["label"] = frame.apply(
        lambda r: f"{r['value']:,}" + ("" if pd.isna(r["of_previous"]) else f"  ({r['of_previous']:g}%)"), axis=1
    )
    order = list(frame["step"])
    bars = alt.Chart(frame).mark_bar(color=SERIES_COLOR).encode(
        y=alt.Y("step:N", sort=order, title=None),
        x=alt.X("value:Q", title="count"),
        tooltip=["step:N", "value:Q", "unit:N", alt.Tooltip("of_previous:Q", title="% of previous step")],
    )
    text = bars.mark_text(align="left", dx=4, color="black").encode(text="label:N")
    return alt.layer(bars, text).properties(height=CHART_HEIGHT)


def latency_chart(stages: pd.DataFrame) -> alt.Chart:
    """Median and p95 per stage side by side, in seconds."""
    long = stages.melt(id_vars=["stage", "photos"], value_vars=["p50_ms", "p95_ms"], var_name="quantile",
                       value_name="ms").dropna()
    long["seconds"] = long["ms"] / 1000
    long["quantile"] = long["quantile"].str.replace("_ms", "")
    return (
        alt.Chart(long)
        .mark_bar()
        .encode(
            y=alt.Y("stage:N", sort=list(stages["stage"]), title=None),
            yOffset="quantile:N",
            x=alt.X("seconds:Q", title="seconds"),
            color=alt.Color("quantile:N", scale=alt.Scale(domain=["p50", "p95"], range=["#9ecae1", "#08519c"])),
            tooltip=["stage:N", "quantile:N", alt.Tooltip("seconds:Q", format=".2f"), "photos:Q"],
        )
        .properties(height=CHART_HEIGHT)
    )


def age_chart(ages: pd.DataFrame) -> alt.Chart:
    """Stacked age histogram by gender."""
    return (
        alt.Chart(ages)
        .mark_bar()
        .encode(
            x=alt.X("age_from:O", title="estimated age (5-year bins)"),
            y=alt.Y("faces:Q", title="faces", stack="zero"),
            color=_gender_color(),
            tooltip=["age_from:O", "gender:N", "faces:Q"],
        )
        .properties(height=CHART_HEIGHT)
    )


def gender_chart(split: pd.DataFrame) -> alt.LayerChart:
    """A donut of the gender split with percent labels."""
    frame = split.assign(label=split["pct"].map(lambda pct: f"{pct:.0f}%"))
    base = alt.Chart(frame).encode(theta=alt.Theta("faces:Q", stack=True), color=_gender_color())
    donut = base.mark_arc(innerRadius=55, outerRadius=100).encode(tooltip=["gender:N", "faces:Q", "pct:Q"])
    text = base.mark_text(radius=78, fontWeight="bold", fontSize=13).encode(
        text="label:N", color=alt.value("white")  # the base's gender colour would hide the label in its own arc
    )
    return alt.layer(donut, text).properties(height=CHART_HEIGHT)


def attractiveness_chart(groups: pd.DataFrame) -> alt.Chart:
    """Mean attractiveness per age band, one bar per gender; bands without scores (minors) stay empty."""
    return (
        alt.Chart(groups.dropna(subset=["mean"]))
        .mark_bar()
        .encode(
            x=alt.X("age_band:N", sort=AGE_BANDS, title="age band"),
            xOffset="gender:N",
            y=alt.Y("mean:Q", title="mean attractiveness (0–10)", scale=alt.Scale(domain=[0, 10])),
            color=_gender_color(),
            tooltip=["gender:N", "age_band:N", "faces:Q", "scored:Q", "mean:Q", "median:Q", "p90:Q"],
        )
        .properties(height=CHART_HEIGHT)
    )


def hot_ratings_chart(hot: pd.DataFrame) -> alt.LayerChart:
    """A heatmap rater gender × rated gender of the share of 'hot' ratings, labelled with percent and count."""
    frame = hot.assign(label=hot.apply(lambda r: f"{r['hot_pct']:g}% of {r['ratings']:,}", axis=1))
    base = alt.Chart(frame).encode(
        x=alt.X("rated_gender:N", title="rated face", sort=GENDER_DOMAIN),
        y=alt.Y("rater_gender:N", title="rater", sort=GENDER_DOMAIN),
    )
    cells = base.mark_rect().encode(
        color=alt.Color("hot_pct:Q", title="% hot", scale=alt.Scale(scheme="reds", domain=[0, 100])),
        tooltip=["rater_gender:N", "rated_gender:N", "ratings:Q", "hot:Q", "hot_pct:Q"],
    )
    return alt.layer(cells, base.mark_text(fontSize=14).encode(text="label:N")).properties(height=CHART_HEIGHT)


def sources_chart(sources: pd.DataFrame, dimension: str) -> alt.Chart:
    """Uploads per referrer domain or utm_source, largest first."""
    frame = sources[sources["dimension"] == dimension]
    return (
        alt.Chart(frame)
        .mark_bar(color=SERIES_COLOR)
        .encode(
            y=alt.Y("value:N", sort="-x", title=dimension),
            x=alt.X("uploads:Q", title="uploads"),
            tooltip=["value:N", "uploads:Q", "pct:Q"],
        )
        .properties(height=CHART_HEIGHT)
    )
