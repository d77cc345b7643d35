"""Does the terminal app browse and purge a big Redis quickly, with SCAN and never KEYS?

Run: ``.venv/bin/python -m bench.redis_browse [--keys 1000000] [--cluster]``.

Starts a real ``redis-server`` (or, with ``--cluster``, a cluster of three primaries) on
free loopback ports with the helpers of ``tests/redis_servers.py``, seeds it through
``redis-cli --pipe`` with real cache entries (about 500 bytes each, namespaces ``team-a``,
``team-b``, ``team-c:batch`` and none, mixed TTLs), then runs the real app headless
(Textual's Pilot, 120x36) on a ``type: redis`` config and drives it as a person would:
open the browser (first page of rows), load more, filter ``team-a:*``, and purge
``team-b:*`` through the purge dialog.

The baseline, measured in the same run with plain redis-py, is what one page of the
browser fundamentally costs: one ``SCAN 0 COUNT 500`` plus reading the values of its keys
(``MGET``; on a cluster, pipelined GETs to the scanned primary, as MGET cannot cross
slots). Every phase's duration is shown as a ratio to it. The event-loop lag probe and the
phase machinery are those of ``bench/tui_responsiveness.py``.

Afterwards every key is counted with redis-py (team-b must be gone, the rest untouched)
and ``INFO commandstats`` of every primary, read before and after the app ran, must show no
``KEYS`` call. "First page in about a second" and "the purge shows progress" are printed
as PASS/MISS for information; the exit code is 1 only if the run failed or a check did.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from redis.crc import key_slot
from textual.widgets import Label

from bench.tui_responsiveness import (
    IDLE_PHASE,
    LAG_TARGET_MS,
    MODELS,
    PHASE_TAIL,
    PROBE_INTERVAL,
    SCREEN_SIZE,
    TEXT,
    TTLS,
    Bench,
    BenchError,
    KeyProbe,
    LagProbe,
    Mark,
    Phase,
    Seeded,
    browser_busy,
    check_counts,
    filter_keys,
    idle,
    key_of,
    label_of,
    load_more,
    percentile,
    print_seeding,
    send_key,
    wait_until,
)
from llmcache_tui.app import LLMCacheApp
from llmcache_tui.cache.browse import PURGE_BATCH, PurgeProgress
from llmcache_tui.cache.entry import CacheEntry
from llmcache_tui.config import parse_settings
from llmcache_tui.screens.browser import SCAN_COUNT
from llmcache_tui.screens.purge import PurgeScreen
from llmcache_tui.session import Session
from tests.redis_servers import CLUSTER_SLOTS, REDIS_CLI, RedisClusterNodes, RedisProcess

DEFAULT_KEYS = 1_000_000
MIN_KEYS = 10_000
CLUSTER_PRIMARIES = 3
MAX_MEMORY = "6gb"  # per server, noeviction: a runaway seed fails instead of eating RAM
SEED_CHUNK = 2_000  # commands per write into redis-cli --pipe
SEED_TIMEOUT = 600.0  # seconds redis-cli may take to finish after the last command
ANSWER_CHARS = 90  # the cached answer's text; the whole entry is about 500 bytes
BASELINE_REPEATS = 9  # the raw page is timed this often; the median is the baseline
COUNT_SCAN = 10_000  # COUNT of the verification scan (not the app's)
FIRST_PAGE_TARGET = 1.0  # seconds: "shows its first page in about a second"
PROGRESS_GAP_TARGET = 1.0  # seconds: the purge label must change at least this often
SERVER_CPU_INTERVAL = 0.05  # seconds between two readings of the servers' CPU time
PURGE_NAMESPACE = "team-b"
RAW_PURGE_NAMESPACE = "team-c:batch"  # purged by hand at the end, as the purge baseline
FILTER_PATTERN = "team-a:*"
WATCHED_COMMANDS = ("keys", "scan", "dbsize", "mget", "pttl", "memory|usage", "unlink")


# -- the servers -----------------------------------------------------------------------------------
@dataclass(slots=True)
class Target:
    """The Redis under test: one server, or a cluster of primaries."""

    directory: Path
    server: RedisProcess | None = None
    cluster: RedisClusterNodes | None = None

    @property
    def primaries(self) -> list[RedisProcess]:
        """The data nodes, in the order the backend walks them (by ``host:port``)."""
        nodes = self.cluster.nodes if self.cluster else [self.server] if self.server else []
        return sorted(nodes, key=lambda node: f"{node.host}:{node.port}")

    def cache_params(self) -> dict[str, Any]:
        """``litellm_settings.cache_params`` for the app, as a user would write them."""
        if self.cluster is not None:
            return {"type": "redis", "redis_startup_nodes": self.cluster.startup_nodes}
        (node,) = self.primaries
        return {"type": "redis", "host": node.host, "port": node.port}

    def describe(self) -> str:
        ports = ", ".join(str(node.port) for node in self.primaries)
        kind = f"cluster of {len(self.primaries)} primaries" if self.cluster else "redis-server"
        return f"{kind} on 127.0.0.1 port {ports}"


def memory_config() -> list[tuple[str, ...]]:
    return [("maxmemory", MAX_MEMORY), ("maxmemory-policy", "noeviction")]


@contextlib.contextmanager
def running_target(directory: Path, *, cluster: bool) -> Iterator[Target]:
    """Start the server(s), bounded by the helpers' timeouts; always stop them."""
    target = Target(directory)
    servers: RedisClusterNodes | RedisProcess
    if cluster:
        servers = target.cluster = RedisClusterNodes(directory / "cluster", size=CLUSTER_PRIMARIES)
        for node in servers.nodes:
            node.config += memory_config()
    else:
        servers = target.server = RedisProcess(directory / "server", memory_config())
    try:
        servers.start()
        yield target
    finally:
        servers.stop()


# -- seeding ---------------------------------------------------------------------------------------
def entry_value(index: int, now: float, ttl: float | None) -> bytes:
    """A chat-completion entry as the proxy stores it (about 500 bytes)."""
    model = MODELS[index % len(MODELS)]
    start = index * 37 % (len(TEXT) - ANSWER_CHARS)
    usage = {"prompt_tokens": 20 + index % 50, "completion_tokens": 40}
    response = {
        "id": f"chatcmpl-{index:09d}",
        "object": "chat.completion",
        "created": int(now) - index % 86_400,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": TEXT[start : start + ANSWER_CHARS]},
                "finish_reason": "stop",
            }
        ],
    }
    entry = CacheEntry(
        response=response,
        route="chat",
        model=model,
        prompt_preview=f"Question {index}: summarise ticket #{index % 9_973}",
        created_at=now - index % 86_400,
        ttl=ttl,
        usage=usage,
    )
    return entry.encode()


def resp(parts: Sequence[bytes]) -> bytes:
    """One command in the Redis protocol, as ``redis-cli --pipe`` reads it."""
    pieces = [b"*%d\r\n" % len(parts)]
    for part in parts:
        pieces.append(b"$%d\r\n%s\r\n" % (len(part), part))
    return b"".join(pieces)


def set_command(key: bytes, value: bytes, ttl: float | None) -> bytes:
    parts = [b"SET", key, value]
    if ttl is not None:
        parts += [b"PX", b"%d" % int(ttl * 1000)]
    return resp(parts)


class PipeFeed:
    """``redis-cli --pipe`` into one node: commands in on stdin, a summary out at the end."""

    def __init__(self, node: RedisProcess) -> None:
        self.node = node
        command = [REDIS_CLI, "-h", node.host, "-p", str(node.port), "--pipe"]
        self.proc = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        self.pending: list[bytes] = []
        self.commands = 0

    def add(self, command: bytes) -> None:
        self.pending.append(command)
        if len(self.pending) >= SEED_CHUNK:
            self.flush()

    def flush(self) -> None:
        if self.pending and self.proc.stdin is not None:
            self.proc.stdin.write(b"".join(self.pending))
            self.commands += len(self.pending)
            self.pending.clear()

    def finish(self) -> None:
        """Close stdin, wait for the replies; raise BenchError unless all were OK."""
        self.flush()
        output, _ = self.proc.communicate(timeout=SEED_TIMEOUT)
        text = output.decode(errors="replace")
        found = re.search(r"errors: (\d+), replies: (\d+)", text)
        if found is None or int(found[1]) or int(found[2]) != self.commands:
            raise BenchError(f"redis-cli --pipe into port {self.node.port} failed:\n{text}")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def slot_owners(target: Target, feeds: list[PipeFeed]) -> list[PipeFeed]:
    """The feed of the primary serving each hash slot (from CLUSTER SLOTS)."""
    if target.cluster is None:
        return feeds * CLUSTER_SLOTS
    by_port = {feed.node.port: feed for feed in feeds}
    owners: list[PipeFeed | None] = [None] * CLUSTER_SLOTS
    with target.primaries[0].probe() as probe:
        # [[first slot, last slot, [primary host, primary port, id, ...], replicas...], ...]
        ranges: list[list[Any]] = probe.execute_command("CLUSTER SLOTS")
    for first, last, primary, *_replicas in ranges:
        feed = by_port[int(primary[1])]
        owners[first : last + 1] = [feed] * (last - first + 1)
    if any(owner is None for owner in owners):
        raise BenchError("CLUSTER SLOTS does not cover every slot")
    return [owner for owner in owners if owner is not None]


def seed(target: Target, keys: int) -> Seeded:
    """Write ``keys`` entries, each to the primary owning its slot, via redis-cli --pipe."""
    counts: Counter[str] = Counter()
    size = 0
    now = time.time()
    started = time.perf_counter()
    feeds = [PipeFeed(node) for node in target.primaries]
    try:
        owners = slot_owners(target, feeds)
        for index in range(keys):
            key, label = key_of(index)
            ttl = TTLS[index % len(TTLS)]
            value = entry_value(index, now, ttl)
            raw_key = key.encode()
            owners[key_slot(raw_key)].add(set_command(raw_key, value, ttl))
            counts[label] += 1
            size += len(value)
        for feed in feeds:
            feed.finish()
    finally:
        for feed in feeds:
            feed.kill()
    seconds = time.perf_counter() - started
    return Seeded(target.directory, dict(counts), seconds, size // max(1, keys))


# -- baseline and server-side checks ---------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Baseline:
    """Plain redis-py against the first primary the app scans: what a page costs."""

    page: float  # SCAN 0 COUNT 500 + values of its keys (median)
    page_keys: int
    described: float  # the same plus the PTTL / MEMORY USAGE pipeline the backend sends
    dbsize: int
    dbsize_seconds: float
    how: str


def timed(action: Callable[[], object]) -> float:
    """The median time of BASELINE_REPEATS runs of ``action``."""
    times = []
    for _ in range(BASELINE_REPEATS):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def raw_page(client: redis.Redis, *, cluster: bool, describe: bool) -> int:
    """One browser page by hand: SCAN, (PTTL + MEMORY USAGE,) values. Returns the keys."""
    _, keys = client.scan(cursor=0, count=SCAN_COUNT)
    if describe:
        pipe = client.pipeline(transaction=False)
        for key in keys:
            pipe.pttl(key)
            pipe.memory_usage(key, samples=0)
        pipe.execute()
    if cluster:  # keys of one node span many slots: MGET would be refused (CROSSSLOT)
        pipe = client.pipeline(transaction=False)
        for key in keys:
            pipe.get(key)
        pipe.execute()
    elif keys:
        client.mget(keys)
    return len(keys)


def measure_baseline(target: Target) -> Baseline:
    cluster = target.cluster is not None
    with target.primaries[0].client() as client:
        page_keys = raw_page(client, cluster=cluster, describe=False)  # warm up
        page = timed(lambda: raw_page(client, cluster=cluster, describe=False))
        described = timed(lambda: raw_page(client, cluster=cluster, describe=True))
    started = time.perf_counter()
    dbsize = 0
    for node in target.primaries:
        with node.client() as client:
            dbsize += int(client.dbsize())
    dbsize_seconds = time.perf_counter() - started
    values = "pipelined GETs" if cluster else "MGET"
    how = f"SCAN 0 COUNT {SCAN_COUNT} + {values}, median of {BASELINE_REPEATS}"
    return Baseline(page, page_keys, described, dbsize, dbsize_seconds, how)


def command_calls(target: Target) -> Counter[str]:
    """Calls per command so far, summed over the primaries (``INFO commandstats``)."""
    calls: Counter[str] = Counter()
    for node in target.primaries:
        with node.client() as client:
            stats: dict[str, Any] = client.info("commandstats")
        for name, values in stats.items():
            calls[name.removeprefix("cmdstat_")] += int(values["calls"])
    return calls


def count_labels(target: Target) -> Counter[str]:
    """Keys per namespace label on every primary, counted with SCAN."""
    counts: Counter[str] = Counter()
    for node in target.primaries:
        with node.client() as client:
            for key in client.scan_iter(count=COUNT_SCAN):
                counts[label_of(key.decode())] += 1
    return counts


def used_memory(target: Target) -> int:
    total = 0
    for node in target.primaries:
        with node.client() as client:
            total += int(client.info("memory")["used_memory"])
    return total


@dataclass(frozen=True, slots=True)
class RawPurge:
    """A namespace deleted by hand with redis-py: the purge baseline."""

    seconds: float
    deleted: int
    pages: int

    @property
    def rate(self) -> float:
        return self.deleted / self.seconds if self.seconds else 0.0


def unlink(client: redis.Redis, keys: list[bytes], *, cluster: bool) -> int:
    if not cluster:
        return int(client.unlink(*keys))
    pipe = client.pipeline(transaction=False)  # one node, many slots: no multi-key UNLINK
    for key in keys:
        pipe.unlink(key)
    return sum(int(deleted) for deleted in pipe.execute())


def raw_purge(target: Target, namespace: str) -> RawPurge:
    """Delete ``namespace`` as the app's purge does, minus the app: SCAN MATCH, UNLINK."""
    match = f"{namespace}:*"
    deleted = pages = 0
    started = time.perf_counter()
    for node in target.primaries:
        with node.client() as client:
            cursor = 0
            while True:
                cursor, keys = client.scan(cursor=cursor, match=match, count=PURGE_BATCH)
                pages += 1
                if keys:
                    deleted += unlink(client, keys, cluster=target.cluster is not None)
                if not cursor:
                    break
    return RawPurge(time.perf_counter() - started, deleted, pages)


def process_cpu_seconds(pids: Sequence[int]) -> float:
    """CPU seconds (user + system) used so far by the processes ``pids``; 0 off Linux."""
    ticks = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


class ServerCpuProbe:
    """Samples the CPU time of the Redis servers, to tell their load from other processes'."""

    def __init__(self, target: Target) -> None:
        self.pids = [node.pid for node in target.primaries if node.pid is not None]
        self.samples: list[tuple[float, float]] = []  # (perf_counter, CPU seconds)

    async def run(self) -> None:
        while True:
            self.samples.append((time.perf_counter(), process_cpu_seconds(self.pids)))
            await asyncio.sleep(SERVER_CPU_INTERVAL)

    def cpus(self, phase: Phase) -> float | None:
        """CPUs the servers kept busy during ``phase``, on average (None: unknown)."""
        if not phase.samples:
            return None
        first = phase.samples[0]
        start, end = first.woke - PROBE_INTERVAL - first.lag, phase.samples[-1].woke
        before = [cpu for at, cpu in self.samples if at <= start]
        after = [cpu for at, cpu in self.samples if at >= end]
        if not before or not after or end <= start:
            return None
        return (after[0] - before[-1]) / (end - start)


# -- the app ---------------------------------------------------------------------------------------
class ProgressWatch:
    """Counts the changes of the purge dialog's progress label, with their times.

    Bench instrumentation: while installed, ``PurgeScreen._show`` (the dialog's progress
    callback) is wrapped to read the label after each update.
    """

    def __init__(self) -> None:
        self.changes: list[float] = []  # perf_counter times the label text changed
        self.text = ""

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        original = PurgeScreen._show

        def show(screen: PurgeScreen, progress: PurgeProgress) -> None:
            original(screen, progress)
            self.saw(str(screen.query_one("#purge-status", Label).content))

        PurgeScreen._show = show  # type: ignore[method-assign,assignment]
        try:
            yield
        finally:
            PurgeScreen._show = original  # type: ignore[method-assign]

    def saw(self, text: str) -> None:
        if text != self.text:
            self.text = text
            self.changes.append(time.perf_counter())

    def max_gap(self, start: float, end: float) -> float:
        """The longest time without a change, from ``start`` to ``end``."""
        times = [start, *(t for t in self.changes if start <= t <= end), end]
        return max((b - a for a, b in itertools.pairwise(times)), default=0.0)


@dataclass(slots=True)
class PurgeResult:
    seconds: float
    progress: PurgeProgress
    label_changes: int
    max_gap: float


@dataclass(slots=True)
class AppRun:
    """What the app run measured beyond the phases themselves."""

    server_cpu: ServerCpuProbe
    first_page: Phase | None = None
    purge: PurgeResult | None = None
    watch: ProgressWatch = field(default_factory=ProgressWatch)


async def open_browser(bench: Bench, run: AppRun) -> None:
    """Press 2; time the first page of rows, then the end of every browser scan."""
    app = bench.app
    start = Mark.now()
    send_key(app, "2")
    await wait_until(lambda: bool(app.screen.query("#keys")), "the browser")
    table = bench.table
    await wait_until(lambda: table.row_count > 0, "the first page of keys")
    first, others = start.elapsed(), start.other_cpus()
    rows = table.row_count
    await asyncio.sleep(PHASE_TAIL)
    samples = bench.lag.between(start.at, start.at + first + PHASE_TAIL)
    note = f"{rows:,} rows"
    run.first_page = Phase("first page (2)", first, samples, [], note, others)
    print(f"  first page (2): {first * 1000:,.0f} ms, {rows:,} rows", flush=True)
    await wait_until(lambda: not browser_busy(app), "the browser's workers")
    note = f"load + namespace tree scans; {table.row_count:,} rows"
    await bench.finish("open browser, all scans", start, note)


async def purge_namespace(bench: Bench, run: AppRun) -> None:
    """Filter team-b:*, press P and y, wait for the dialog to finish and the reload."""
    await filter_keys(bench, f"{PURGE_NAMESPACE}:*", f"filter {PURGE_NAMESPACE}:* (setup)")
    start = Mark.now()
    dialog = await bench.start_purge()
    await wait_until(lambda: dialog not in bench.app.screen_stack, "the purge to end")
    seconds = start.elapsed()
    ended = time.perf_counter()
    progress = await bench.purge_closed(dialog)
    if not progress.done:
        raise BenchError(f"the {PURGE_NAMESPACE} purge stopped early: {progress}")
    changes = [t for t in run.watch.changes if start.at <= t <= ended]
    run.purge = PurgeResult(seconds, progress, len(changes), run.watch.max_gap(start.at, ended))
    rate = progress.deleted / seconds if seconds else 0.0
    note = (
        f"deleted {progress.deleted:,} of {progress.scanned:,} scanned = {rate:,.0f} keys/s;"
        f" label changed {len(changes):,}x; duration to the dialog closing"
    )
    await bench.finish(f"purge {PURGE_NAMESPACE}:* (P, y)", start, note)


async def drive(bench: Bench, run: AppRun) -> None:
    await bench.pilot.pause(0.5)  # let the overview screen settle
    await open_browser(bench, run)
    await idle(bench)
    await load_more(bench)
    await filter_keys(bench, FILTER_PATTERN, f"filter {FILTER_PATTERN}")
    await purge_namespace(bench, run)


def settings_yaml(target: Target) -> str:
    config = {"litellm_settings": {"cache": True, "cache_params": target.cache_params()}}
    return json.dumps(config)  # JSON is YAML


async def run_app(target: Target) -> tuple[Bench, AppRun]:
    """Run the app headless with the lag probe on its loop while ``drive`` steers it."""
    settings = parse_settings(settings_yaml(target), "bench.yaml")
    app = LLMCacheApp(Session(settings))
    run = AppRun(ServerCpuProbe(target))
    with run.watch.installed():
        async with app.run_test(size=SCREEN_SIZE) as pilot:
            bench = Bench(app=app, pilot=pilot, lag=LagProbe(), keys=KeyProbe(app, enabled=False))
            probes = [
                asyncio.create_task(bench.lag.run()),
                asyncio.create_task(run.server_cpu.run()),
            ]
            try:
                await drive(bench, run)
                await asyncio.sleep(2 * SERVER_CPU_INTERVAL)  # a CPU reading after the end
            finally:
                for probe in probes:
                    probe.cancel()
                await asyncio.gather(*probes, return_exceptions=True)
    return bench, run


# -- report ----------------------------------------------------------------------------------------
def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.1f}"


def report_table(baseline: Baseline, phases: list[Phase], cpu: ServerCpuProbe) -> None:
    header = (
        f"{'phase':<32} {'duration ms':>12} {'x raw page':>11} {'max lag ms':>11}"
        f" {'p99 lag ms':>11} {'redis':>6} {'others':>6}"
    )
    print(f"\n{header}\n{'-' * len(header)}")
    fixed = [
        ("raw page (baseline)", baseline.page),
        ("raw page + PTTL/MEMORY USAGE", baseline.described),
        ("DBSIZE (all primaries)", baseline.dbsize_seconds),
    ]
    for name, seconds in fixed:
        print(f"{name:<32} {ms(seconds):>12} {seconds / baseline.page:>10.1f}x")
    for phase in phases:
        worst = max(phase.lags, default=0.0)
        server = cpu.cpus(phase)
        others = None
        if phase.other_cpus is not None and server is not None:
            others = max(0.0, phase.other_cpus - server)
        ratio = "-" if phase.name == IDLE_PHASE else f"{phase.seconds / baseline.page:.1f}x"
        print(
            f"{phase.name:<32} {ms(phase.seconds):>12} {ratio:>11}"
            f" {ms(worst):>11} {ms(percentile(phase.lags, 0.99)):>11}"
            f" {cpus(server):>6} {cpus(others):>6}"
        )
    print(
        f"raw page: {baseline.how}; {baseline.page_keys} keys on the first primary.\n"
        "redis / others: CPUs kept busy by the Redis servers / by every other process during"
        " the phase,\non average; others above ~0.1 make the numbers noisy."
    )
    for phase in phases:
        if phase.note:
            print(f"  {phase.name}: {phase.note}")


def cpus(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def report_purge_rate(run: AppRun, raw: RawPurge) -> None:
    purge = run.purge
    if purge is None:
        return
    rate = purge.progress.deleted / purge.seconds if purge.seconds else 0.0
    print(
        f"\npurge rate: app {rate:,.0f} keys/s ({PURGE_NAMESPACE}, through the dialog) vs raw"
        f" {raw.rate:,.0f} keys/s ({RAW_PURGE_NAMESPACE}: {raw.deleted:,} keys, {raw.pages:,}"
        f" SCAN MATCH COUNT {PURGE_BATCH} pages + UNLINK with redis-py, {raw.seconds:,.1f} s)"
        f" = {rate / raw.rate if raw.rate else 0.0:.2f}x"
    )


def report_commands(before: Counter[str], after: Counter[str]) -> bool:
    """Commands the app sent while it ran; True when KEYS was never called."""
    delta = {name: after[name] - before[name] for name in WATCHED_COMMANDS}
    shown = ", ".join(f"{name} {calls:,}" for name, calls in delta.items())
    print(f"\ncommands during the app run (INFO commandstats, all primaries): {shown}")
    no_keys = delta["keys"] == 0
    print(f"KEYS never called: {'yes' if no_keys else 'NO'} (cmdstat_keys {after['keys']:,})")
    return no_keys


def report_criteria(run: AppRun, phases: list[Phase]) -> None:
    first = run.first_page
    if first is not None:
        met = first.seconds <= FIRST_PAGE_TARGET
        print(
            f"first page in about a second (<= {FIRST_PAGE_TARGET:.0f} s):"
            f" {first.seconds:,.2f} s: {'PASS' if met else 'MISS'} (informational)"
        )
    purge = run.purge
    if purge is not None:
        met = purge.label_changes >= 2 and purge.max_gap <= PROGRESS_GAP_TARGET
        rate = purge.progress.deleted / purge.seconds if purge.seconds else 0.0
        print(
            f"purge shows progress (label changes, never still > {PROGRESS_GAP_TARGET:.0f} s):"
            f" {purge.label_changes:,} changes, longest still {purge.max_gap * 1000:,.0f} ms,"
            f" {rate:,.0f} keys/s: {'PASS' if met else 'MISS'} (informational)"
        )
    worst = max((max(p.lags, default=0.0) for p in phases), default=0.0)
    met = worst * 1000 < LAG_TARGET_MS
    print(
        f"UI responsive (max event-loop lag under {LAG_TARGET_MS:.0f} ms):"
        f" {ms(worst)} ms: {'PASS' if met else 'MISS'} (informational)"
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.redis_browse", description=__doc__)
    parser.add_argument("--keys", type=int, default=DEFAULT_KEYS, help="keys to seed")
    parser.add_argument("--cluster", action="store_true", help="a 3-primary cluster")
    args = parser.parse_args(argv)
    if args.keys < MIN_KEYS:
        parser.error(f"--keys must be at least {MIN_KEYS:,}")
    return args


def measure(target: Target, keys: int) -> int:
    """Seed, take the baseline, drive the app, check; the exit code."""
    seeded = seed(target, keys)
    print_seeding(seeded)
    print(f"server memory: {used_memory(target) / 2**20:,.0f} MiB", flush=True)
    baseline = measure_baseline(target)
    if baseline.dbsize != seeded.total:
        raise BenchError(f"DBSIZE says {baseline.dbsize:,}, {seeded.total:,} were written")
    print(f"baseline: raw page {ms(baseline.page)} ms, DBSIZE {baseline.dbsize:,}", flush=True)
    before = command_calls(target)
    bench, run = asyncio.run(run_app(target))
    after = command_calls(target)
    phases = [run.first_page, *bench.phases] if run.first_page else bench.phases
    report_table(baseline, phases, run.server_cpu)
    no_keys = report_commands(before, after)
    problems = check_counts(seeded, bench.deleted, count_labels(target))
    raw = raw_purge(target, RAW_PURGE_NAMESPACE)
    if raw.deleted != seeded.counts[RAW_PURGE_NAMESPACE]:
        problems.append(f"the raw purge deleted {raw.deleted:,} {RAW_PURGE_NAMESPACE} keys")
    report_purge_rate(run, raw)
    print(f"keys left after the purge: {'as expected' if not problems else 'WRONG'}")
    for problem in problems:
        print(f"CHECK FAILED: {problem}", file=sys.stderr)
    report_criteria(run, phases)
    return 0 if no_keys and not problems else 1


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    print(
        f"llmcache-tui on Redis | {args.keys:,} keys | Python {platform.python_version()} |"
        f" {platform.system()} {platform.machine()} | {os.cpu_count()} CPUs",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="llmcache-redis-bench-") as tmp:
        try:
            with running_target(Path(tmp), cluster=args.cluster) as target:
                print(f"started {target.describe()}", flush=True)
                return measure(target, args.keys)
        except BenchError as exc:
            print(f"FAILED: {exc}", file=sys.stderr)
            return 1


if __name__ == "__main__":
    sys.exit(main())
