"""What a simulated launch looks like: the knobs, with defaults modelled on the seed's own numbers.

The seed: 1M visitors in the first 12 hours, 100M+ evaluations over the service's life, and usage spikes whenever
the press wrote about it. A launch here is a daily curve of organic visitors, press spikes that decay exponentially,
and a share cascade (a branching process: each share brings Poisson(views) viewers, each converts with probability
K ÷ views, so every share brings K uploads on average and every upload may be shared again).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

DAILY_PEAK_HOUR_UTC = 20.0  # evening browsing peak (Europe/US overlap)
DAILY_AMPLITUDE = 0.6  # the trough at night is ~1/4 of the evening peak: (1-0.6)/(1+0.6)
SPIKE_DECAY_MIN = 25.0  # a news item's traffic halves in ~17 min (e-folding 25 min)
SPIKE_FRACTION_DEFAULT = 0.35  # share of the non-viral visitors brought by the press spikes together

BASELINE_REFERRERS = (  # (referrer URL or None for direct, utm_source or None, weight)
    (None, None, 0.45),
    ("https://www.google.com/", None, 0.25),
    ("https://t.co/", "twitter", 0.15),
    ("https://www.facebook.com/", "facebook", 0.10),
    ("https://www.reddit.com/", None, 0.05),
)


@dataclass(frozen=True)
class MediaSpike:
    """A press article: ``visitors`` extra arrivals starting ``at_h`` hours into the launch, decaying exponentially."""

    at_h: float
    referrer: str
    utm_source: str | None
    visitors: int
    decay_min: float = SPIKE_DECAY_MIN

    @classmethod
    def parse(cls, text: str) -> MediaSpike:
        """``HOURS:DOMAIN:VISITORS[:UTM_SOURCE[:DECAY_MIN]]``, e.g. ``3.5:news.example.com:20000:press``."""
        parts = text.split(":")
        if len(parts) < 3:  # hours, domain, visitors are required
            raise ValueError(f"spike {text!r}: expected HOURS:DOMAIN:VISITORS[:UTM_SOURCE[:DECAY_MIN]]")
        utm = parts[3] if len(parts) > 3 and parts[3] else None
        decay = float(parts[4]) if len(parts) > 4 else SPIKE_DECAY_MIN
        return cls(float(parts[0]), f"https://www.{parts[1]}/", utm, int(parts[2]), decay)

    @property
    def domain(self) -> str:
        return self.referrer.split("//", 1)[-1].strip("/").removeprefix("www.")


def default_spikes(duration_h: float, press_visitors: int) -> tuple[MediaSpike, ...]:
    """Three press waves at 25 %, 50 % and 75 % of the launch, big → medium → small (a story getting picked up)."""
    weights = (0.5, 0.3, 0.2)
    sites = (("news.example.com", "press"), ("techblog.example.org", "techblog"), ("tv.example.net", None))
    return tuple(
        MediaSpike(duration_h * (i + 1) / 4, f"https://www.{site}/", utm, int(press_visitors * w))
        for i, ((site, utm), w) in enumerate(zip(sites, weights, strict=True))
    )


@dataclass(frozen=True)
class LaunchConfig:
    """One launch. ``visitors`` counts organic + press arrivals; the share cascade adds its viewers on top."""

    visitors: int = 10_000
    duration_h: float = 12.0
    start: datetime = field(
        default_factory=lambda: datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=12)
    )
    spikes: tuple[MediaSpike, ...] | None = None  # None: default_spikes with SPIKE_FRACTION_DEFAULT of visitors
    k_factor: float = 0.6  # uploads per share; < 1 keeps the cascade finite, as it was for the real service
    views_per_share: float = 3.0
    share_delay_min: float = 20.0  # mean delay share → a friend opening it
    p_upload: float = 0.55  # an organic visitor uploads a photo
    p_face: float = 0.93  # a face is found
    p_share: float = 0.35  # a scored photo gets shared
    p_rate: float = 0.25  # an uploader goes on to rate others
    ratings_mean: float = 4.0
    seed: int = 1

    def planned_spikes(self) -> tuple[MediaSpike, ...]:
        if self.spikes is not None:
            return self.spikes
        return default_spikes(self.duration_h, int(self.visitors * SPIKE_FRACTION_DEFAULT))

    @property
    def minutes(self) -> int:
        return round(self.duration_h * 60)
