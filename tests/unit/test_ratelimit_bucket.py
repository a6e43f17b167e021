"""The per-client token bucket: burst then steady rate, cookie and IP buckets, Retry-After, bounded memory."""

from __future__ import annotations

from services.upload.ratelimit import RateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def limiter(clock: Clock, **kw: float) -> RateLimiter:
    args = {"burst": 3, "per_minute": 6.0, "max_clients": 100, "ip_factor": 10} | kw
    return RateLimiter(clock=clock, **args)  # type: ignore[arg-type]


def test_burst_then_refusal_with_retry_after_then_refill() -> None:
    clock = Clock()
    rl = limiter(clock)
    assert all(rl.check(visitor_id="v1", ip="1.1.1.1").allowed for _ in range(3))
    refused = rl.check(visitor_id="v1", ip="1.1.1.1")
    assert not refused.allowed and refused.retry_after_s == 10  # 6/min → one token every 10 s
    clock.now += 10
    assert rl.check(visitor_id="v1", ip="1.1.1.1").allowed
    assert not rl.check(visitor_id="v1", ip="1.1.1.1").allowed


def test_visitors_behind_one_ip_have_their_own_buckets_but_the_ip_is_capped() -> None:
    clock = Clock()
    rl = limiter(clock, ip_factor=2)  # the IP may do 6 in a burst
    for visitor in ("a", "b"):
        assert all(rl.check(visitor_id=visitor, ip="nat").allowed for _ in range(3))
    assert not rl.check(visitor_id="c", ip="nat").allowed  # fresh cookie, but the IP is spent
    assert rl.check(visitor_id="c", ip="elsewhere").allowed


def test_a_refused_request_costs_no_tokens() -> None:
    clock = Clock()
    rl = limiter(clock, burst=1, ip_factor=1)
    assert rl.check(visitor_id="a", ip="ip").allowed
    assert not rl.check(visitor_id="b", ip="ip").allowed  # the IP refused: b's own bucket must stay full
    clock.now += 10
    assert rl.check(visitor_id="b", ip="ip").allowed


def test_cookieless_clients_are_limited_by_ip() -> None:
    clock = Clock()
    rl = limiter(clock, ip_factor=1)
    assert all(rl.check(visitor_id=None, ip="x").allowed for _ in range(3))
    assert not rl.check(visitor_id=None, ip="x").allowed


def test_memory_is_bounded_by_lru_eviction() -> None:
    clock = Clock()
    rl = limiter(clock, max_clients=50)
    for n in range(1000):
        rl.check(visitor_id=f"v{n}", ip=f"10.0.{n // 250}.{n % 250}")
    assert len(rl) == 50


def test_burst_zero_disables() -> None:
    rl = limiter(Clock(), burst=0)
    assert all(rl.check(visitor_id="v", ip="i").allowed for _ in range(1000))
    assert len(rl) == 0
