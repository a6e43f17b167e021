"""Load spike: the whole local stack (embedded Tansu, local blobs, chDB, every service) under a baseline upload rate,
then a 10× spike, over loopback only. Shows admission control at work and proves nothing is lost on the way.

Reports per phase: uploads sent, accepted (202), shed (503 busy / overloaded / broker), rate limited (429), other;
time-to-result p50/p95/p99 (POST sent → status terminal, polled every --poll-s); then reconciliation: every accepted
photo terminal, and every photo's pipeline events present exactly once in ClickHouse (photo_events, read with FINAL),
plus the global dedup_stats. Writes benchmarks/results/load_spike.md.

Bounded by design (a shared 2-core machine): at most MAX_REQUESTS uploads and MAX_RUN_S of load, whatever the flags.

    .venv/bin/python benchmarks/load_spike.py [--base-rate 0.5] [--spike-factor 10] [--phase-s 20] [--max-backlog 15]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import platform
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from libs.cli.stack import LocalStack, stack_on_free_ports  # noqa: E402 - needs the repo on sys.path as a script

RESULTS = REPO / "benchmarks" / "results" / "load_spike.md"
MAX_REQUESTS = 2000  # hard cap on uploads per run, whatever the rates and durations
MAX_RUN_S = 180.0  # hard cap on the load phases together
DRAIN_TIMEOUT_S = 300.0  # after the load, how long accepted photos may take to finish
REQUEST_TIMEOUT_S = 60.0
MAX_CONCURRENT_POSTS = 32  # open-loop sender, but never more sockets than this
TERMINAL = frozenset({"done", "no_face", "failed"})
PIPELINE_EVENTS = ("photo.uploaded", "faces.detected", "photo.scored")
SAMPLE_SIDE, SAMPLE_QUALITY = 512, 90  # the astronaut, ~60 KB: a resized phone upload with one face
ANALYTICS_WAIT_S = 60.0
WARM_TTR_S = 1.0  # warm-up ends when one photo completes this fast
WARMUP_TIMEOUT_S = 120.0


@dataclass
class Upload:
    phase: str
    sent_at: float
    status: int = 0
    code: str = ""
    photo_id: str = ""
    status_url: str = ""
    final: str = ""
    done_at: float = 0.0

    @property
    def time_to_result_s(self) -> float:
        return self.done_at - self.sent_at


@dataclass
class Run:
    uploads: list[Upload] = field(default_factory=list)


def sample_jpeg() -> bytes:
    from skimage import data

    buf = io.BytesIO()
    Image.fromarray(data.astronaut()).resize((SAMPLE_SIDE, SAMPLE_SIDE)).save(buf, "JPEG", quality=SAMPLE_QUALITY)
    return buf.getvalue()


def build_stack(data_dir: Path, max_backlog: int) -> LocalStack:
    return stack_on_free_ports(
        data_dir,
        HOWHOT_UPLOAD_MAX_BACKLOG=str(max_backlog),
        HOWHOT_UPLOAD_BACKLOG_POLL_S="1.0",
    )


async def post_one(
    session: aiohttp.ClientSession, base: str, jpeg: bytes, up: Upload, slots: asyncio.Semaphore
) -> None:
    async with slots:
        form = aiohttp.FormData()
        form.add_field("photo", jpeg, filename="a.jpg", content_type="image/jpeg")
        up.sent_at = time.monotonic()
        try:
            async with session.post(f"{base}/api/v1/photos", data=form) as response:
                up.status = response.status
                body = await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError) as exc:
            up.code = type(exc).__name__
            return
        if up.status == 202:
            up.photo_id, up.status_url = body["photo_id"], body["status_url"]
        else:
            up.code = (body or {}).get("error", {}).get("code", "?")


async def send_phase(session, base, jpeg, run: Run, phase: str, rate: float, seconds: float, budget: list[int],
                     slots: asyncio.Semaphore) -> None:
    """Open loop: one upload every 1/rate seconds for ``seconds``, independent of how fast answers come back."""
    tasks = []
    start = time.monotonic()
    n = 0
    while time.monotonic() - start < seconds and budget[0] > 0:
        due = start + n / rate
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        up = Upload(phase=phase, sent_at=time.monotonic())
        run.uploads.append(up)
        tasks.append(asyncio.create_task(post_one(session, base, jpeg, up, slots)))
        budget[0] -= 1
        n += 1
    await asyncio.gather(*tasks)


async def warm_up(session: aiohttp.ClientSession, base: str, jpeg: bytes) -> float:
    """Photos one at a time until one comes back within WARM_TTR_S: consumers have joined their groups and every
    model has run once. Not part of the figures (a freshly started stack is not what a spike meets)."""
    started = time.monotonic()
    while time.monotonic() - started < WARMUP_TIMEOUT_S:
        up = Upload(phase="warm-up", sent_at=time.monotonic())
        await post_one(session, base, jpeg, up, asyncio.Semaphore(1))
        while up.status == 202 and not up.final and time.monotonic() - up.sent_at < WARMUP_TIMEOUT_S:
            async with session.get(up.status_url) as response:
                doc = await response.json(content_type=None)
            if doc.get("status") in TERMINAL:
                up.final, up.done_at = doc["status"], time.monotonic()
            await asyncio.sleep(0.05)
        if up.final and up.time_to_result_s < WARM_TTR_S:
            return time.monotonic() - started
    raise RuntimeError(f"the stack did not warm up within {WARMUP_TIMEOUT_S:.0f} s")


async def poll_results(session, run: Run, stop: asyncio.Event, deadline_s: float, poll_s: float) -> None:
    """Poll every accepted, unfinished photo until all are terminal (after ``stop``) or the deadline passes."""
    hard_deadline = None
    while True:
        pending = [u for u in run.uploads if u.status == 202 and not u.final]
        if stop.is_set():
            hard_deadline = hard_deadline or time.monotonic() + deadline_s
            if not pending or time.monotonic() > hard_deadline:
                return
        for up in pending:
            try:
                async with session.get(up.status_url) as response:
                    doc = await response.json(content_type=None)
            except (aiohttp.ClientError, TimeoutError):
                continue
            if doc.get("status") in TERMINAL:
                up.final, up.done_at = doc["status"], time.monotonic()
        await asyncio.sleep(poll_s)


async def reconcile(session, analytics: str, run: Run) -> dict[str, object]:
    accepted = [u for u in run.uploads if u.status == 202]
    missing_terminal = [u.photo_id for u in accepted if not u.final]
    wrong_counts: dict[str, dict[str, int]] = {}
    deadline = time.monotonic() + ANALYTICS_WAIT_S
    for up in accepted:
        while True:
            async with session.get(f"{analytics}/api/v1/query/photo_events", params={"photo_id": up.photo_id}) as r:
                doc = await r.json()
            rows = [dict(zip(doc["columns"], row, strict=True)) for row in doc["rows"]]
            counts = Counter(row["type"] for row in rows)
            ids = [row["event_id"] for row in rows]
            expected = PIPELINE_EVENTS if up.final == "done" else PIPELINE_EVENTS[:2]
            ok = all(counts[t] == 1 for t in expected) and len(ids) == len(set(ids))
            if ok or time.monotonic() > deadline:
                break
            await asyncio.sleep(1.0)
        if not ok:
            wrong_counts[up.photo_id] = dict(counts)
    async with session.get(f"{analytics}/api/v1/query/dedup_stats") as r:
        doc = await r.json()
    dedup = dict(zip(doc["columns"], doc["rows"][0], strict=True))
    return {"accepted": len(accepted), "not_terminal": missing_terminal, "events_not_once": wrong_counts,
            "dedup_stats": dedup}


def pct(values: list[float], q: int) -> float:
    """The q-th percentile (inclusive method), NaN for no values."""
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def phase_rows(run: Run) -> list[str]:
    rows = []
    for phase in ("baseline", "spike", "after"):
        ups = [u for u in run.uploads if u.phase == phase]
        if not ups:
            continue
        statuses = Counter(u.status for u in ups)
        codes = Counter(u.code for u in ups if u.status == 503)
        ttr = sorted(u.time_to_result_s for u in ups if u.final)
        shed = ", ".join(f"{k}={v}" for k, v in sorted(codes.items())) or "-"
        other = sum(v for k, v in statuses.items() if k not in (202, 503, 429))
        rows.append(
            f"| {phase} | {len(ups)} | {statuses[202]} | {statuses[503]} ({shed}) | {statuses[429]} | {other} | "
            f"{pct(ttr, 50):.1f} | {pct(ttr, 95):.1f} | {pct(ttr, 99):.1f} |"
        )
    return rows


async def main_async(args: argparse.Namespace) -> int:
    jpeg = sample_jpeg()
    with tempfile.TemporaryDirectory(prefix="howhot-spike-") as tmp:
        stack = build_stack(Path(tmp), args.max_backlog)
        t0 = time.monotonic()
        await asyncio.to_thread(stack.start)  # start() runs its own event loop for topic creation
        started_s = time.monotonic() - t0
        urls = stack.urls()
        run = Run()
        try:
            timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
            async with aiohttp.ClientSession(timeout=timeout) as session:
                warmup_s = await warm_up(session, urls["upload"], jpeg)
                stop = asyncio.Event()
                poller = asyncio.create_task(poll_results(session, run, stop, DRAIN_TIMEOUT_S, args.poll_s))
                budget = [MAX_REQUESTS]
                slots = asyncio.Semaphore(MAX_CONCURRENT_POSTS)
                phase_s = min(args.phase_s, MAX_RUN_S / 3)
                load_start = time.monotonic()
                await send_phase(session, urls["upload"], jpeg, run, "baseline", args.base_rate, phase_s, budget, slots)
                await send_phase(session, urls["upload"], jpeg, run, "spike", args.base_rate * args.spike_factor,
                                 phase_s, budget, slots)
                await send_phase(session, urls["upload"], jpeg, run, "after", args.base_rate, phase_s, budget, slots)
                load_s = time.monotonic() - load_start
                stop.set()
                drain_start = time.monotonic()
                await poller
                drain_s = time.monotonic() - drain_start
                recon = await reconcile(session, urls["analytics"], run)
        finally:
            await asyncio.to_thread(stack.stop)
    write_report(args, run, recon, started_s + warmup_s, load_s, drain_s)
    ok = not recon["not_terminal"] and not recon["events_not_once"]
    return 0 if ok else 1


def write_report(args, run: Run, recon: dict, started_s: float, load_s: float, drain_s: float) -> None:
    command = " ".join(["    .venv/bin/python benchmarks/load_spike.py", *sys.argv[1:]])
    lines = [
        "# Load spike: baseline, 10× spike, baseline again — admission control and reconciliation",
        "",
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {platform.node()} ({os.cpu_count()} cores, shared with other "
        "engineers; client, broker, chDB and all five services on the same machine, loopback only).",
        "",
        command,
        "",
        f"Settings: base rate {args.base_rate}/s, spike ×{args.spike_factor}, {args.phase_s} s per phase, "
        f"HOWHOT_UPLOAD_MAX_BACKLOG={args.max_backlog} (lowered so a modest spike crosses it), rate limiting off "
        "(every simulated visitor is 127.0.0.1). Stack start-up and warm-up (photos one at a time until one completes "
        f"within {WARM_TTR_S:.0f} s; not counted) "
        f"{started_s:.0f} s, load {load_s:.0f} s, drain {drain_s:.0f} s.",
        "",
        "| phase | sent | accepted 202 | shed 503 (codes) | 429 | other | ttr p50 s | ttr p95 s | ttr p99 s |",
        "|---|---|---|---|---|---|---|---|---|",
        *phase_rows(run),
        "",
        "Time-to-result (ttr): POST sent → status first seen terminal (polled every "
        f"{args.poll_s} s, one photo after another, so ±{args.poll_s} s or a little more under load).",
        "",
        "## Reconciliation",
        "",
        f"- accepted photos: {recon['accepted']}; not terminal after drain: {len(recon['not_terminal'])}",
        f"- photos whose pipeline events are not each present exactly once (photo_events, FINAL): "
        f"{len(recon['events_not_once'])}",
        f"- dedup_stats over the whole run: {recon['dedup_stats']} (duplicates = stored rows not yet merged away by "
        "ReplacingMergeTree; readers deduplicate by event_id)",
        f"- final statuses: {dict(Counter(u.final for u in run.uploads if u.status == 202))}",
        "",
    ]
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-rate", type=float, default=0.5, help="uploads/s in the baseline phases")
    parser.add_argument("--spike-factor", type=float, default=10.0)
    parser.add_argument("--phase-s", type=float, default=20.0, help="seconds per phase (capped at MAX_RUN_S/3)")
    parser.add_argument("--max-backlog", type=int, default=15, help="HOWHOT_UPLOAD_MAX_BACKLOG for this run")
    parser.add_argument("--poll-s", type=float, default=0.25, help="status poll interval: time-to-result resolution")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where the Markdown report goes")
    return asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    raise SystemExit(main())
