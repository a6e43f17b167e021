"""``howhot simulate``: play a viral launch into the stack, then print what was planted.

    howhot simulate --events-only --visitors 100000 --hours 12 --seed 7          # events into Kafka, simulated time
    howhot simulate --events-only --spike 2:news.example.com:30000:press          # your own press spikes
    howhot simulate --photos tests/data/faces --max-photos 200 --speedup 720      # real uploads, end to end
    howhot simulate --dry-run --visitors 1000000                                  # generate and count only

The CLI owner wires ``add_arguments`` and ``run`` into the ``howhot`` parser.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tqdm import tqdm

from libs.common.bus import KafkaEventPublisher, ensure_topics
from libs.common.settings import Settings
from services.analytics.simulate.feed import Pacer, PhotoFeeder, feed_events, image_files
from services.analytics.simulate.generator import LaunchSimulator, SimulationStats
from services.analytics.simulate.scenario import LaunchConfig, MediaSpike

DEFAULT_VISITORS = 10_000  # a quick demo; the seed's 1M takes ~15 min to generate on one core
DEFAULT_MAX_PHOTOS = 100  # photos mode runs the real models: keep a demo in minutes, not hours


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``howhot simulate``."""
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--events-only", action="store_true", help="publish events straight to Kafka (simulated time)")
    mode.add_argument("--photos", type=Path, metavar="DIR", help="upload the images in DIR through the upload API")
    mode.add_argument("--dry-run", action="store_true", help="generate and summarize, publish nothing")
    parser.add_argument("--visitors", type=int, default=DEFAULT_VISITORS, help="organic + press arrivals")
    parser.add_argument("--hours", type=float, default=12.0, help="length of the launch in simulated hours")
    parser.add_argument("--start", type=datetime.fromisoformat, default=None,
                        help="simulated start, ISO 8601 (default: HOURS ago, so the launch ends now)")
    parser.add_argument("--spike", action="append", type=MediaSpike.parse, default=None,
                        metavar="HOURS:DOMAIN:VISITORS[:UTM[:DECAY_MIN]]",
                        help="a press spike (repeatable; default: three waves with 35%% of the visitors)")
    parser.add_argument("--k-factor", type=float, default=LaunchConfig.k_factor, help="uploads per share")
    parser.add_argument("--share-delay-min", type=float, default=LaunchConfig.share_delay_min,
                        help="mean minutes from a share to a friend opening it")
    parser.add_argument("--seed", type=int, default=1, help="same seed, same events (ids included)")
    parser.add_argument("--speedup", type=float, default=0.0,
                        help="simulated seconds per real second (0: as fast as possible)")
    parser.add_argument("--upload-url", default=None, help="photos mode: the upload service (default from settings)")
    parser.add_argument("--max-photos", type=int, default=DEFAULT_MAX_PHOTOS, help="photos mode: stop after this many")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (logs, CI)")


def config_from_args(args: argparse.Namespace) -> LaunchConfig:
    start = args.start or datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=args.hours)
    if start.tzinfo is None:
        start = start.replace(tzinfo=UTC)
    return LaunchConfig(
        visitors=args.visitors, duration_h=args.hours, start=start,
        spikes=tuple(args.spike) if args.spike else None, k_factor=args.k_factor,
        share_delay_min=args.share_delay_min, seed=args.seed,
    )


def summary(config: LaunchConfig, stats: SimulationStats, published: int | None, extra: str = "") -> str:
    """The end-of-run report: what was generated, the planted spikes (what the dashboard should find), K."""
    end = config.start + timedelta(hours=config.duration_h)
    lines = [
        f"Simulated launch {config.start:%Y-%m-%d %H:%M} → {end:%Y-%m-%d %H:%M} UTC, seed {config.seed}",
        f"  events generated: {sum(stats.events.values()):,}"
        + (f", published: {published:,}" if published is not None else " (dry run: nothing published)"),
    ]
    lines += [f"    {kind:<18} {count:>12,}" for kind, count in sorted(stats.events.items())]
    lines.append(f"  evaluations (faces scored): {stats.faces_scored:,}")
    lines.append("  arrivals by source: " + ", ".join(f"{k} {v:,}" for k, v in stats.arrivals.most_common()))
    k = stats.attributed_uploads / stats.sharers if stats.sharers else 0.0
    lines.append(f"  K-factor: {k:.2f} ({stats.attributed_uploads:,} uploads via shares ÷ {stats.sharers:,} shares;"
                 f" configured {config.k_factor})")
    lines.append("  planted spikes (the dashboard's spike query should find these):")
    for spike in config.planned_spikes():
        at = config.start + timedelta(hours=spike.at_h)
        lines.append(f"    {at:%H:%M} UTC  {spike.domain:<24} utm_source={spike.utm_source or '-':<10}"
                     f" {spike.visitors:>9,} visitors, decay {spike.decay_min:g} min")
    return "\n".join(lines + ([extra] if extra else []))


def _progress(total: int, disabled: bool) -> tuple[Callable[[int], None], Callable[[], None]]:
    bar = tqdm(total=total, unit="sim-min", desc="launch", disable=disabled, smoothing=0.1)
    return bar.update, bar.close


async def simulate(args: argparse.Namespace, settings: Settings) -> tuple[LaunchSimulator, int | None, str]:
    """Generate and feed; returns the simulator (for its stats), events published and a mode-specific note."""
    config = config_from_args(args)
    simulator = LaunchSimulator(config)
    update, close = _progress(config.minutes, args.no_progress)
    try:
        if args.dry_run:
            for _ in simulator.minutes():
                update(1)
            return simulator, None, ""
        await ensure_topics(settings.kafka)
        publisher = KafkaEventPublisher(settings.kafka, "simulator")
        await publisher.start()
        try:
            pacer = Pacer(args.speedup)
            if args.events_only:
                return simulator, await feed_events(simulator.minutes(), publisher, pacer, update), ""
            url = args.upload_url or f"http://{settings.upload.host}:{settings.upload.port}"
            feeder = PhotoFeeder(url, image_files(args.photos), publisher, args.max_photos)
            published = await feeder.run(simulator.minutes(), pacer, update)
            note = "  uploads: " + ", ".join(f"{k} {v:,}" for k, v in feeder.outcomes.items())
            return simulator, published, note
        finally:
            await publisher.stop()
    finally:
        close()


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Entry point for ``howhot simulate``; 0 on success, 2 when the photos directory is unusable."""
    try:
        simulator, published, note = asyncio.run(simulate(args, settings))
    except FileNotFoundError as exc:
        print(f"simulate: {exc}")
        return 2
    print(summary(simulator.config, simulator.stats, published, note))
    return 0


def main() -> int:
    """``python -m services.analytics.simulate.cli`` until the howhot CLI wires it."""
    parser = argparse.ArgumentParser(prog="howhot simulate", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(), Settings())


if __name__ == "__main__":
    raise SystemExit(main())
