"""End-to-end ingestion throughput of the analytics service: Tansu → analytics (subprocess, chDB) → queryable rows.

Each run starts a fresh Tansu broker and a fresh ``python -m services.analytics`` with chDB in a temp directory,
produces N realistic events (a mix of page views, share views, ratings and photo-journey events, pre-serialized so the
producer's cost stays small) as fast as a raw AIOKafkaProducer can, and measures the wall time from the first send
until every event is queryable through the HTTP query API (``dedup_stats``). It also records the analytics process's
peak RSS (VmHWM), the CPU time the analytics process and the broker spent per event during the timed window (a
figure that stays meaningful on a shared, loaded machine, unlike events/s), and, in-process, what each stage of the
chain costs per event, to show where the time goes.

    .venv/bin/python benchmarks/ingest_throughput.py --events 100000 --runs 3 --stage-events 20000
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import aiohttp
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from libs.common.broker import EmbeddedBroker  # noqa: E402
from libs.common.bus import Delivery, ensure_topics  # noqa: E402
from libs.common.events import Event, PhotoDeleted, decode_event  # noqa: E402
from libs.common.events.examples import PHOTO, SHARE, VISITOR, examples  # noqa: E402
from libs.common.ids import new_id  # noqa: E402
from libs.common.netutil import LOOPBACK, free_port, wait_for_port  # noqa: E402
from libs.common.settings import KafkaSettings  # noqa: E402

# How often each event type occurs: visitors browse, view shares and rate far more often than they upload.
TYPE_WEIGHTS = {
    "page.viewed": 35,
    "share.viewed": 15,
    "rating.submitted": 20,
    "photo.uploaded": 6,
    "faces.detected": 6,
    "photo.scored": 6,
    "card.rendered": 5,
    "photo.shared": 4,
    "photo.failed": 1,
    "photo.deleted": 2,
}
WARMUP_EVENTS = 2_000  # joins the consumer group and warms chDB before the clock starts
POLL_S = 0.25  # how often the benchmark asks the query API whether every event has landed
PRODUCER_LINGER_MS = 20  # big producer batches: the benchmark measures the consumer, not the producer
PRODUCER_BATCH_BYTES = 512 * 1024
STARTUP_TIMEOUT_S = 60.0
DRAIN_TIMEOUT_S = 600.0
OCCURRED_AT = '"occurred_at":"'
T = TypeVar("T")


@dataclass
class RunResult:
    events: int
    produce_s: float
    end_to_end_s: float
    peak_rss_mb: float
    cpu_s: dict[str, float]  # CPU seconds in the timed window, by cpu_snapshot's keys

    @property
    def analytics_us_per_event(self) -> float:
        return sum(v for k, v in self.cpu_s.items() if k != "broker") / self.events * 1e6

    def us_per_event(self, key: str) -> float:
        return self.cpu_s[key] / self.events * 1e6

    @property
    def events_per_s(self) -> float:
        return self.events / self.end_to_end_s


def _kept_by_analytics(event: Event) -> Event:
    """Deletions as "don't store my photo": an owner's deletion makes analytics forget the photo's rows
    (services/analytics/forget.py), so the raw event count this benchmark waits for would never be reached."""
    return event.model_copy(update={"reason": "ephemeral"}) if isinstance(event, PhotoDeleted) else event


def make_events(n: int, seed: int) -> list[tuple[str, bytes, bytes]]:
    """(topic, key, value) triples: the example events with fresh ids, by text substitution (fast, still valid)."""
    rng = random.Random(seed)
    templates = {e.type: (e.TOPIC, e.model_dump_json(), str(e.event_id)) for e in map(_kept_by_analytics, examples())}
    types = rng.choices(list(TYPE_WEIGHTS), weights=list(TYPE_WEIGHTS.values()), k=n)
    photos = [new_id() for _ in range(max(1, n // 20))]
    visitors = [new_id() for _ in range(max(1, n // 10))]
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    out = []
    for kind in types:
        topic, text, event_id = templates[kind]
        photo, visitor = rng.choice(photos), rng.choice(visitors)
        value = (
            text.replace(event_id, str(uuid.uuid4()))
            .replace(PHOTO, photo)
            .replace(VISITOR, visitor)
            .replace(SHARE, photo[::-1])
        )
        start = value.index(OCCURRED_AT) + len(OCCURRED_AT)
        value = value[:start] + now + value[value.index('"', start) :]  # all "now": the per-minute chart is dense
        key = visitor if kind == "rating.submitted" or kind == "page.viewed" else photo
        out.append((topic, key.encode(), value.encode()))
    return out


async def produce(bootstrap: str, events: list[tuple[str, bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=PRODUCER_LINGER_MS, max_batch_size=PRODUCER_BATCH_BYTES
    )
    await producer.start()
    try:
        futures = [await producer.send(topic, value, key=key) for topic, key, value in events]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def stored_events(session: aiohttp.ClientSession, base: str) -> int:
    async with session.get(f"{base}/api/v1/query/dedup_stats") as response:
        if response.status != 200:
            return -1
        doc = await response.json()
        return int(doc["rows"][0][doc["columns"].index("events")])


async def wait_for_count(session: aiohttp.ClientSession, base: str, want: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while (await stored_events(session, base)) < want:
        if time.monotonic() > deadline:
            raise TimeoutError(f"fewer than {want} events stored after {timeout_s:.0f} s")
        await asyncio.sleep(POLL_S)


def _stat_cpu_s(stat_path: Path) -> float:
    fields = stat_path.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime (fields 14, 15 of stat)


def cpu_snapshot(analytics_pid: int, broker: EmbeddedBroker) -> dict[str, float]:
    """CPU seconds so far (Linux /proc) of the analytics process split by thread — the event loop (aiokafka,
    validation, row encoding), the store thread (clickhouse-connect + chDB's insert pipeline) and every other thread
    (chDB's background merges and pools) — and of the broker."""
    process = broker._process  # benchmark introspection only: EmbeddedBroker does not expose its process
    assert process is not None
    out = {"loop": 0.0, "store": 0.0, "chdb": 0.0, "broker": _stat_cpu_s(Path(f"/proc/{process.pid}/stat"))}
    # Python 3.11 does not name its threads; chDB renames a thread that runs a query to "Unknown" (the store thread)
    store_comms = {Path(f"/proc/{analytics_pid}/comm").read_text(), "Unknown\n"}
    for task in Path(f"/proc/{analytics_pid}/task").iterdir():
        try:
            comm, seconds = (task / "comm").read_text(), _stat_cpu_s(task / "stat")
        except FileNotFoundError:  # the thread ended between listing and reading
            continue
        key = "loop" if task.name == str(analytics_pid) else "store" if comm in store_comms else "chdb"
        out[key] += seconds
    out["worker"] = sum(_stat_cpu_s(Path(f"/proc/{pid}/stat")) for pid in _children(analytics_pid))
    return out


def _children(pid: int) -> list[int]:
    """Child processes of ``pid`` (the decode worker and multiprocessing's resource tracker)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def peak_rss_with_children_mb(pid: int) -> float:
    """Peak RSS of the analytics process plus that of its children (the decode worker)."""
    return peak_rss_mb(pid) + sum(peak_rss_mb(child) for child in _children(pid))


def peak_rss_mb(pid: int) -> float:
    """VmHWM: the peak resident set of the process so far (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def start_analytics(
    env: dict[str, str], port: int, log_path: Path, profile: Path | None
) -> subprocess.Popen[bytes]:
    with log_path.open("wb") as log:
        profiler = ["-m", "cProfile", "-o", str(profile)] if profile else []
        process = subprocess.Popen(
            [sys.executable, *profiler, "-m", "services.analytics"], cwd=REPO, env=env,
            stdout=log, stderr=subprocess.STDOUT,
        )
    wait_for_port(LOOPBACK, port, STARTUP_TIMEOUT_S)
    return process


async def one_run(
    n: int, seed: int, args: argparse.Namespace, log_dir: Path, *, backlog: bool
) -> RunResult:
    """live: produce while the service consumes (clock from the first send to the last row queryable).
    backlog: produce everything first, then start the service and time the catch-up (clock from the first rows
    queryable, so the group join is excluded) — the "Kafka absorbs the spike, consumers catch up" case."""
    events = make_events(n, seed)
    warmup = make_events(WARMUP_EVENTS, seed + 1000)
    with tempfile.TemporaryDirectory(prefix="howhot-bench-") as data_dir, EmbeddedBroker() as broker:
        await ensure_topics(KafkaSettings(bootstrap=broker.bootstrap))
        port = free_port()
        env = {
            **os.environ,
            "HOWHOT_DATA_DIR": data_dir,
            "HOWHOT_KAFKA_BOOTSTRAP": broker.bootstrap,
            "HOWHOT_ANALYTICS_HOST": LOOPBACK,
            "HOWHOT_ANALYTICS_PORT": str(port),
            "HOWHOT_ANALYTICS_FLUSH_INTERVAL_S": str(args.flush_s),
            **({"HOWHOT_ANALYTICS_BATCH_SIZE": str(args.batch_size)} if args.batch_size else {}),
            **({} if args.decode_workers is None else {"HOWHOT_ANALYTICS_DECODE_WORKERS": str(args.decode_workers)}),
            "HOWHOT_LOG_LEVEL": "WARNING",
        }
        base = f"http://{LOOPBACK}:{port}"
        log_path = log_dir / f"ingest_{'backlog' if backlog else 'live'}_{seed}.log"
        async with aiohttp.ClientSession() as session:
            if backlog:
                started = time.perf_counter()
                await produce(broker.bootstrap, events)
                produce_s = time.perf_counter() - started
                process = await start_analytics(env, port, log_path, args.profile)
                try:
                    await wait_for_count(session, base, 1, STARTUP_TIMEOUT_S)
                    started, first = time.perf_counter(), await stored_events(session, base)
                    cpu0 = cpu_snapshot(process.pid, broker)
                    await wait_for_count(session, base, n, DRAIN_TIMEOUT_S)
                    done = time.perf_counter()
                    cpu1 = cpu_snapshot(process.pid, broker)
                    rss = peak_rss_with_children_mb(process.pid)
                finally:
                    process.terminate()
                    process.wait(timeout=60)
                return RunResult(n - first, produce_s, done - started, rss, {k: cpu1[k] - cpu0[k] for k in cpu1})
            process = await start_analytics(env, port, log_path, args.profile)
            try:
                await produce(broker.bootstrap, warmup)
                await wait_for_count(session, base, WARMUP_EVENTS, STARTUP_TIMEOUT_S)
                started = time.perf_counter()
                cpu0 = cpu_snapshot(process.pid, broker)
                await produce(broker.bootstrap, events)
                produced = time.perf_counter()
                await wait_for_count(session, base, WARMUP_EVENTS + n, DRAIN_TIMEOUT_S)
                done = time.perf_counter()
                cpu1 = cpu_snapshot(process.pid, broker)
                rss = peak_rss_with_children_mb(process.pid)
            finally:
                process.terminate()
                process.wait(timeout=60)
            return RunResult(n, produced - started, done - started, rss, {k: cpu1[k] - cpu0[k] for k in cpu1})


async def consume_only(n: int, seed: int) -> float:
    """Events/s of a bare aiokafka consumer (no decoding): the floor the broker + client impose."""
    events = make_events(n, seed)
    with EmbeddedBroker() as broker:
        await ensure_topics(KafkaSettings(bootstrap=broker.bootstrap))
        await produce(broker.bootstrap, events)
        consumer = AIOKafkaConsumer(
            *sorted({t for t, _, _ in events}), bootstrap_servers=broker.bootstrap, group_id="bench",
            auto_offset_reset="earliest", enable_auto_commit=False,
        )
        await consumer.start()
        try:
            seen, started = 0, time.perf_counter()
            while seen < n:
                got = await consumer.getmany(timeout_ms=500, max_records=10_000)
                seen += sum(len(v) for v in got.values())
            return n / (time.perf_counter() - started)
        finally:
            await consumer.stop()


async def stage_costs(n: int, seed: int) -> dict[str, float]:
    """Microseconds per event for each in-process stage, on the previous path (per-record decode_event, tuple rows,
    clickhouse-connect's Native insert) and on the service's path (bulk decode, RowBinary rows, raw insert)."""
    from aiokafka import ConsumerRecord

    from libs.common.bus.bulk import decode_records, gc_paused
    from services.analytics.ingest import build_blocks
    from services.analytics.ingest_rowbinary import build_rowbinary_blocks

    events = make_events(n, seed)
    records = [ConsumerRecord(t, 0, i, 0, 0, k, v, None, len(k), len(v), []) for i, (t, k, v) in enumerate(events)]
    timings: dict[str, float] = {}

    def timed(stage: str, run: Callable[[], T]) -> T:
        started = time.perf_counter()
        out = run()
        timings[stage] = (time.perf_counter() - started) / n * 1e6
        return out

    deliveries = timed(
        "decode_event per record (JSON + pydantic; previous path)",
        lambda: [Delivery(decode_event(r.value, r.topic), r.topic, 0, r.offset, r.value) for r in records],
    )

    def decode_bulk() -> list[Delivery]:
        with gc_paused():  # as ConsumerRunner does around it
            return [Delivery(e, r.topic, 0, r.offset, r.value) for r, e in decode_records(records)[0]]

    del deliveries  # both decoders start from the same heap
    deliveries = timed("bulk decode (one pydantic call per poll, GC paused)", decode_bulk)
    blocks = timed("build_blocks (tuple rows + tokens; previous path)", lambda: build_blocks(deliveries))
    encoded = timed("build_rowbinary_blocks (RowBinary rows + tokens)", lambda: build_rowbinary_blocks(deliveries))

    async def insert() -> None:
        from libs.common.settings import CoreSettings, Settings
        from services.analytics.store import AnalyticsStore

        with tempfile.TemporaryDirectory(prefix="howhot-bench-") as data_dir:
            store = await AnalyticsStore.open(Settings(core=CoreSettings(data_dir=Path(data_dir))))
            try:
                await store.insert_blocks(build_blocks(deliveries[:1000]))  # warm-up
                for stage, batch in (("insert tuple rows (Native, one insert per topic-partition; previous)", blocks),
                                     ("insert RowBinary (raw_insert, one insert per batch)", encoded)):
                    started = time.perf_counter()
                    await store.insert_blocks(batch)
                    timings[stage] = (time.perf_counter() - started) / n * 1e6
            finally:
                await store.close()

    await insert()
    return timings


async def main_async(args: argparse.Namespace) -> None:
    log_dir = Path(tempfile.mkdtemp(prefix="howhot-bench-logs-"))
    print(f"load average before: {os.getloadavg()}; cpus: {os.cpu_count()}", flush=True)
    for mode in args.modes.split(","):
        results = []
        for run in range(args.runs):
            result = await one_run(args.events, run, args, log_dir, backlog=mode == "backlog")
            results.append(result)
            print(
                f"{mode} run {run + 1}: {result.events} events (produced in {result.produce_s:.2f} s), all queryable "
                f"after {result.end_to_end_s:.2f} s → {result.events_per_s:,.0f} events/s; analytics peak RSS "
                f"{result.peak_rss_mb:.0f} MB; CPU µs/event: analytics {result.analytics_us_per_event:.1f} (event loop "
                f"{result.us_per_event('loop'):.1f}, store thread {result.us_per_event('store'):.1f}, chDB background "
                f"{result.us_per_event('chdb'):.1f}, decode worker {result.us_per_event('worker'):.1f}), "
                f"broker {result.us_per_event('broker'):.1f}; "
                f"load average {os.getloadavg()[0]:.1f}",
                flush=True,
            )
        median = statistics.median(r.events_per_s for r in results)
        cpu = statistics.median(r.analytics_us_per_event for r in results)
        print(f"{mode} median: {median:,.0f} events/s over {args.runs} runs; analytics CPU {cpu:.1f} µs/event "
              f"(≈ {1e6 / cpu:,.0f} events/s per busy core); peak RSS max {max(r.peak_rss_mb for r in results):.0f} MB",
              flush=True)
    if args.profile:
        import pstats

        pstats.Stats(str(args.profile)).sort_stats("tottime").print_stats(25)
    if args.stage_events > 0:
        print(f"bare aiokafka consume (no decoding): {await consume_only(args.stage_events, 99):,.0f} events/s")
        for stage, micros in (await stage_costs(args.stage_events, 7)).items():
            print(f"stage {stage}: {micros:.1f} µs/event ({1e6 / micros:,.0f}/s on one core)")
    print(f"load average after: {os.getloadavg()} (logs in {log_dir})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--modes", default="live,backlog", help="comma-separated: live, backlog")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="HOWHOT_ANALYTICS_BATCH_SIZE (default: the service's)")
    parser.add_argument("--decode-workers", type=int, default=None,
                        help="HOWHOT_ANALYTICS_DECODE_WORKERS (default: the service's; 0 = all in process)")
    parser.add_argument("--flush-s", type=float, default=1.0, help="HOWHOT_ANALYTICS_FLUSH_INTERVAL_S")
    parser.add_argument("--profile", type=Path, help="run the analytics process under cProfile, write stats here")
    parser.add_argument(
        "--stage-events", type=int, default=20_000, help="events for the per-stage measurements (0: skip them)"
    )
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
