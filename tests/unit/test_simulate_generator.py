"""The launch simulator without a broker: determinism, the planted spikes, the cascade's K, the CLI's parsing."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

import pytest

from libs.common.events import PhotoScored, PhotoUploaded, decode_event
from services.analytics.simulate.cli import add_arguments, config_from_args, summary
from services.analytics.simulate.feed import Pacer, PhotoFeeder
from services.analytics.simulate.generator import LaunchSimulator
from services.analytics.simulate.scenario import LaunchConfig, MediaSpike

START = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


def small(seed: int = 5, **overrides: object) -> LaunchConfig:
    return LaunchConfig(**{"visitors": 3000, "duration_h": 2.0, "start": START, "seed": seed, **overrides})


def all_events(config: LaunchConfig) -> list:
    return [e for _, batch in LaunchSimulator(config).minutes() for e in batch]


def test_same_seed_same_events_and_another_seed_differs() -> None:
    first, again = all_events(small()), all_events(small())
    assert [e.model_dump_json() for e in first] == [e.model_dump_json() for e in again]
    assert [e.event_id for e in all_events(small(seed=6))][:50] != [e.event_id for e in first][:50]


def test_events_are_valid_in_time_order_and_inside_the_launch() -> None:
    simulator = LaunchSimulator(small())
    for minute, batch in simulator.minutes():
        times = [e.occurred_at for e in batch]
        assert times == sorted(times)
        assert all((t - START).total_seconds() // 60 == minute for t in times)
        for event in batch[:20]:
            assert decode_event(event.to_bytes(), event.TOPIC) == event  # the contract accepts what we publish


def test_spikes_are_planted_where_configured() -> None:
    spike = MediaSpike(1.0, "https://www.news.example.com/", "press", 2000, decay_min=5)
    simulator = LaunchSimulator(small(spikes=(spike,)))
    uploads_per_minute = [sum(isinstance(e, PhotoUploaded) for e in batch) for _, batch in simulator.minutes()]
    before, during = uploads_per_minute[50:59], uploads_per_minute[60:63]
    assert min(during) > 4 * max(before)
    assert simulator.stats.arrivals["press"] == pytest.approx(2000, rel=0.1)


def test_the_cascade_approaches_its_k_factor() -> None:
    simulator = LaunchSimulator(small(visitors=6000, duration_h=4.0, k_factor=0.8, share_delay_min=5, spikes=()))
    for _ in simulator.minutes():
        pass
    assert simulator.stats.attributed_uploads / simulator.stats.sharers == pytest.approx(0.8, rel=0.15)
    assert simulator.stats.faces_scored >= simulator.stats.events[PhotoScored.model_fields["type"].default]


def test_spike_syntax() -> None:
    spike = MediaSpike.parse("3.5:news.example.com:20000:press:12")
    assert spike == MediaSpike(3.5, "https://www.news.example.com/", "press", 20000, 12.0)
    assert spike.domain == "news.example.com"
    assert MediaSpike.parse("1:tv.example.net:500").utm_source is None
    with pytest.raises(ValueError, match="expected"):
        MediaSpike.parse("1:tv.example.net")


def test_cli_arguments_and_summary() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--dry-run", "--visitors", "500", "--hours", "1", "--start", "2026-03-02T08:00",
                              "--spike", "0.5:news.example.com:300:press"])
    config = config_from_args(args)
    assert config.start == START and config.spikes == (MediaSpike(0.5, "https://www.news.example.com/", "press", 300),)
    simulator = LaunchSimulator(config)
    for _ in simulator.minutes():
        pass
    text = summary(config, simulator.stats, None)
    assert "08:30 UTC  news.example.com" in text and "dry run" in text and "photo.uploaded" in text
    with pytest.raises(SystemExit):
        parser.parse_args(["--visitors", "5"])  # a mode is required


async def test_pacer_without_speedup_never_sleeps() -> None:
    pacer = Pacer(0)
    await pacer.wait_for_minute(10_000)  # returns at once


def test_photo_feeder_maps_visitor_events_to_real_photo_ids(tmp_path) -> None:
    (tmp_path / "a.jpg").write_bytes(b"x")
    feeder = PhotoFeeder("http://upload", [tmp_path / "a.jpg"], publisher=None, max_photos=1)  # type: ignore[arg-type]
    events = all_events(small(visitors=200))
    shared = next(e for e in events if e.type == "photo.shared")
    assert feeder.restamp(shared) is None  # its photo was never accepted: dropped
    feeder.real_ids[shared.photo_id] = "realPhotoId_0123456789"
    restamped = feeder.restamp(shared)
    assert restamped is not None and restamped.photo_id == "realPhotoId_0123456789"
    assert restamped.occurred_at > shared.occurred_at and restamped.share_id == shared.share_id
