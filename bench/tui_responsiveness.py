"""Does the terminal app stay responsive over a big disk cache?

Run: ``python -m bench.tui_responsiveness [--entries 200000]``.

Seeds a diskcache directory with real cache entries (default 200,000) spread over a few
namespaces, runs the real app headless (Textual's Pilot) on it and drives it the way a
person would: open the browser, load more, filter, purge a namespace, start a second
purge and cancel it with Esc. Every backend call must run off the event loop, so the UI
should keep responding throughout. Measured on the app's own loop, as a user feels it:

* loop lag: a probe task sleeps 10 ms over and over and records how late it wakes up;
  the lateness is time during which the UI could not react to anything;
* key latency: a real key press (cursor down/up in the key table) every 100 ms, timed
  from posting until the cursor moved. Each press also repaints the row and loads the
  entry pane, which costs loop time of its own, so key latency is measured in a separate
  read-only pass and the lag table comes from a pass without the key probe.

The baseline is the idle app on the browser screen, measured in each pass; max lag is
shown as a ratio to it. The criterion (max lag under 100 ms) is informational: PASS/MISS,
never the exit code, which is non-zero only when the run could not do what it claims (a
phase timed out, a purge left keys behind or deleted keys it should not have).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import math
import os
import platform
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import diskcache
from textual import events
from textual.app import App
from textual.message_pump import MessagePump
from textual.pilot import Pilot
from textual.widgets import DataTable, Input

from llmcache_tui.app import LLMCacheApp
from llmcache_tui.cache.backends.disk import DiskBackend
from llmcache_tui.cache.browse import PurgeProgress
from llmcache_tui.cache.entry import CacheEntry
from llmcache_tui.config import parse_settings
from llmcache_tui.screens.browser import BrowserScreen
from llmcache_tui.screens.confirm import ConfirmScreen
from llmcache_tui.screens.purge import PurgeScreen
from llmcache_tui.session import Session

DEFAULT_ENTRIES = 200_000
MIN_ENTRIES = 20_000  # team-a must outlast CANCEL_AFTER_DELETED deletes by far
SCREEN_SIZE = (120, 36)
PROBE_INTERVAL = 0.010  # the lag probe's sleep
KEY_PROBE_INTERVAL = 0.10  # between two timed key presses
POLL_INTERVAL = 0.002  # how often the bench looks for a phase's end
IDLE_SECONDS = 3.0  # length of the idle baseline
PHASE_TAIL = 0.03  # lag samples taken just after a phase still count for it
PHASE_TIMEOUT = 120.0
LOAD_MORE_PRESSES = 3
CANCEL_AFTER_DELETED = 2_000  # the cancelled purge is stopped once it deleted this many
LAG_TARGET_MS = 100.0
IDLE_PHASE = "idle baseline"
SEED_BATCH = 5_000  # entries per diskcache transaction

# (namespace, share in percent); None is un-namespaced. Keys are interleaved, as written
# by several teams at once.
NAMESPACE_SHARES: tuple[tuple[str | None, int], ...] = (
    ("team-a", 40),
    ("team-b", 35),
    ("team-c:batch", 10),
    (None, 15),
)
NO_NAMESPACE = "(none)"
TTLS: tuple[float | None, ...] = (None, 3_600.0, 86_400.0, 7 * 86_400.0)
MODELS = ("gpt-4o-mini", "gpt-4o", "claude-3-5-haiku", "llama-3.1-70b")
PARAGRAPH = (
    "The cache answers repeated questions quickly, so upstream calls and their cost drop"
    " while answers stay exactly what the model said the first time it was asked about"
    " this topic, which matters for evaluation runs, agents and batch jobs alike. "
)
TEXT = PARAGRAPH * 8
RESPONSE_CHARS = 480
BROWSER_GROUPS = frozenset({"browser-scan", "browser-explore", "browser-detail"})
KEY_CHARS = {"enter": "\r", "escape": "\x1b", "slash": "/"}


class BenchError(RuntimeError):
    """The run did not do what it claims (timeout, wrong purge result)."""


# -- seeding ------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Seeded:
    """What was written, per namespace, and how long it took."""

    directory: Path
    counts: dict[str, int]
    seconds: float
    entry_bytes: int

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def namespace_of(index: int) -> str | None:
    slot = index % 100
    for namespace, share in NAMESPACE_SHARES:
        if slot < share:
            return namespace
        slot -= share
    return None


def key_of(index: int) -> tuple[str, str]:
    """The stored key of entry ``index`` and its namespace label."""
    digest = hashlib.sha256(f"request-{index}".encode()).hexdigest()
    namespace = namespace_of(index)
    if namespace is None:
        return digest, NO_NAMESPACE
    return f"{namespace}:{digest}", namespace


def response_text(index: int) -> str:
    """About RESPONSE_CHARS of prose; a different slice for each index."""
    start = index * 37 % (len(TEXT) - RESPONSE_CHARS)
    return f"Answer {index}: {TEXT[start : start + RESPONSE_CHARS]}"


def entry_bytes(index: int, now: float, ttl: float | None) -> bytes:
    """A chat-completion entry as the proxy stores it, about 500 bytes of answer."""
    model = MODELS[index % len(MODELS)]
    usage = {"prompt_tokens": 20 + index % 50, "completion_tokens": 110, "total_tokens": 0}
    usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
    response = {
        "id": f"chatcmpl-{index:09d}",
        "object": "chat.completion",
        "created": int(now) - index % 86_400,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": response_text(index)},
                "finish_reason": "stop",
            }
        ],
        "usage": usage,
    }
    entry = CacheEntry(
        response=response,
        route="chat",
        model=model,
        prompt_preview=f"Question {index}: summarise ticket #{index % 9_973} for the weekly report",
        created_at=now - index % 86_400,
        ttl=ttl,
        usage=usage,
    )
    return entry.encode()


def seed(directory: Path, entries: int) -> Seeded:
    """Write ``entries`` entries with diskcache itself, in transactions of SEED_BATCH."""
    counts: Counter[str] = Counter()
    size = 0
    now = time.time()
    started = time.perf_counter()
    with diskcache.Cache(str(directory)) as cache:
        for first in range(0, entries, SEED_BATCH):
            with cache.transact():
                for index in range(first, min(entries, first + SEED_BATCH)):
                    key, label = key_of(index)
                    ttl = TTLS[index % len(TTLS)]
                    value = entry_bytes(index, now, ttl)
                    cache.set(key, value, expire=ttl)
                    counts[label] += 1
                    size += len(value)
    seconds = time.perf_counter() - started
    return Seeded(directory, dict(counts), seconds, size // max(1, entries))


async def count_keys(directory: Path) -> Counter[str]:
    """Count the live keys per namespace label through the app's own backend class."""
    backend = DiskBackend(directory)
    counts: Counter[str] = Counter()
    cursor: str | None = None
    try:
        while True:
            page = await backend.scan("*", cursor, 10_000)
            for info in page.keys:
                counts[label_of(info.key)] += 1
            cursor = page.cursor
            if cursor is None:
                return counts
    finally:
        await backend.close()


def label_of(key: str) -> str:
    for namespace, _share in NAMESPACE_SHARES:
        if namespace is not None and key.startswith(f"{namespace}:"):
            return namespace
    return NO_NAMESPACE


# -- probes ---------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class LagSample:
    """One wake-up of the lag probe."""

    woke: float  # perf_counter time
    lag: float  # seconds later than asked
    cpu: float  # CPU seconds the loop's thread used meanwhile

    @property
    def busy(self) -> float:
        """Share of the interval the loop's thread ran: ~1 when it was working itself,
        lower when it waited for a CPU (other processes) or the GIL (worker threads)."""
        return min(1.0, self.cpu / (PROBE_INTERVAL + self.lag))


class LagProbe:
    """Sleeps PROBE_INTERVAL in a loop and records how late each wake-up is."""

    def __init__(self) -> None:
        self.samples: list[LagSample] = []

    async def run(self) -> None:
        while True:
            expected = time.perf_counter() + PROBE_INTERVAL
            cpu = time.thread_time()
            await asyncio.sleep(PROBE_INTERVAL)
            woke = time.perf_counter()
            lag = max(0.0, woke - expected)
            self.samples.append(LagSample(woke, lag, time.thread_time() - cpu))

    def between(self, start: float, end: float) -> list[LagSample]:
        return [sample for sample in self.samples if start < sample.woke <= end]


class KeyProbe:
    """Moves the key table's cursor (down, or up from the last row) now and then.

    Each press is timed from the moment it is posted until the cursor has moved: the time
    the app took to handle it. The bench's own key presses hold ``lock`` so that a probe
    key never lands in a text field or in a dialog opened by the bench.
    """

    def __init__(self, app: App[Any], *, enabled: bool) -> None:
        self.app = app
        self.enabled = enabled
        self.lock = asyncio.Lock()
        self.samples: list[tuple[float, float]] = []  # (pressed at, latency), seconds

    async def run(self) -> None:
        while self.enabled:
            await asyncio.sleep(KEY_PROBE_INTERVAL)
            async with self.lock:
                table = self._table()
                if table is not None:
                    await self._move(table)

    def _table(self) -> DataTable[Any] | None:
        screen = self.app.screen
        if not isinstance(screen, BrowserScreen):
            return None
        table = screen.query_one("#keys", DataTable)
        return table if self.app.focused is table and table.row_count > 1 else None

    async def _move(self, table: DataTable[Any]) -> None:
        row = table.cursor_row
        pressed = time.perf_counter()
        send_key(self.app, "up" if row == table.row_count - 1 else "down")
        await wait_until(lambda: table.cursor_row != row, "the cursor to move")
        self.samples.append((pressed, time.perf_counter() - pressed))

    def between(self, start: float, end: float) -> list[float]:
        return [latency for pressed, latency in self.samples if start < pressed <= end]


# -- driving the app ----------------------------------------------------------------------
def cpu_seconds() -> tuple[float, float] | None:
    """Busy CPU seconds so far of the whole machine and of this process; None off Linux."""
    try:
        ticks = [int(value) for value in Path("/proc/stat").read_text().split()[1:9]]
    except (OSError, ValueError):
        return None
    idle = ticks[3] + ticks[4]  # idle, iowait
    own = os.times()
    return (sum(ticks) - idle) / os.sysconf("SC_CLK_TCK"), own.user + own.system


@dataclass(frozen=True, slots=True)
class Mark:
    """The start of a phase: the time, and the CPU counters to see what else ran."""

    at: float
    cpu: tuple[float, float] | None

    @classmethod
    def now(cls) -> Mark:
        return cls(time.perf_counter(), cpu_seconds())

    def elapsed(self) -> float:
        return time.perf_counter() - self.at

    def other_cpus(self) -> float | None:
        """CPUs that other processes kept busy since this mark, on average."""
        now = cpu_seconds()
        if self.cpu is None or now is None:
            return None
        machine, own = now[0] - self.cpu[0], now[1] - self.cpu[1]
        return max(0.0, machine - own) / max(self.elapsed(), 1e-9)


def send_key(app: App[Any], key: str) -> None:
    """Post a key event as the terminal driver does; unlike Pilot.press, do not wait."""
    char = KEY_CHARS.get(key, key if len(key) == 1 else None)
    app.post_message(events.Key(key, char))


async def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.perf_counter() + PHASE_TIMEOUT
    while not condition():
        if time.perf_counter() > deadline:
            raise BenchError(f"timed out after {PHASE_TIMEOUT:.0f}s waiting for {what}")
        await asyncio.sleep(POLL_INTERVAL)


async def settle(pump: MessagePump) -> None:
    """Wait until everything already queued on ``pump`` has been handled."""
    handled = asyncio.Event()
    pump.call_later(handled.set)
    await handled.wait()


def browser_busy(app: App[Any]) -> bool:
    return any(w.group in BROWSER_GROUPS and not w.is_finished for w in app.workers)


@dataclass(slots=True)
class Phase:
    """One measured step: how long it took, the loop lags and key latencies inside it."""

    name: str
    seconds: float
    samples: list[LagSample]
    keys: list[float]
    note: str = ""
    other_cpus: float | None = None  # CPUs used by other processes meanwhile, on average

    @property
    def lags(self) -> list[float]:
        return [sample.lag for sample in self.samples]

    @property
    def worst(self) -> LagSample | None:
        return max(self.samples, key=lambda sample: sample.lag, default=None)


@dataclass(slots=True)
class Bench:
    """The running app, its probes, and the phases measured so far."""

    app: LLMCacheApp
    pilot: Pilot[None]
    lag: LagProbe
    keys: KeyProbe
    phases: list[Phase] = field(default_factory=list)
    deleted: Counter[str] = field(default_factory=Counter)

    @property
    def browser(self) -> BrowserScreen:
        for screen in reversed(self.app.screen_stack):
            if isinstance(screen, BrowserScreen):
                return screen
        raise BenchError("the browser screen is not open")

    @property
    def table(self) -> DataTable[Any]:
        return self.browser.query_one("#keys", DataTable)

    async def finish(self, name: str, start: Mark, note: str = "") -> Phase:
        seconds = start.elapsed()
        others = start.other_cpus()
        await asyncio.sleep(PHASE_TAIL)
        end = time.perf_counter()
        samples, keys = self.lag.between(start.at, end), self.keys.between(start.at, end)
        phase = Phase(name, seconds, samples, keys, note, others)
        self.phases.append(phase)
        print(f"  {name}: {seconds * 1000:,.0f} ms {note}", flush=True)
        return phase

    async def set_filter(self, text: str) -> Mark:
        """Focus the filter, type ``text``, press Enter; return when Enter was sent."""
        async with self.keys.lock:
            send_key(self.app, "slash")
            await wait_until(lambda: isinstance(self.app.focused, Input), "the filter focus")
            await self.pilot.press(*text)  # the focused filter's text is selected: replaced
            field_ = self.app.focused
            if not isinstance(field_, Input) or field_.value != text:
                raise BenchError(f"typing {text!r} in the filter did not work")
            entered = Mark.now()
            send_key(self.app, "enter")
            await wait_until(lambda: self.browser.pattern == text, "the filter to apply")
        return entered

    async def start_purge(self) -> PurgeScreen:
        """Press P, confirm with y; return the purge dialog once it shows."""
        async with self.keys.lock:
            send_key(self.app, "P")
            await wait_until(lambda: isinstance(self.app.screen, ConfirmScreen), "the question")
            send_key(self.app, "y")
            await wait_until(lambda: isinstance(self.app.screen, PurgeScreen), "the dialog")
        dialog = self.app.screen
        assert isinstance(dialog, PurgeScreen)
        return dialog

    async def purge_closed(self, dialog: PurgeScreen) -> PurgeProgress:
        """Wait for the dialog to go and the browser to finish reloading after it."""
        await wait_until(lambda: dialog not in self.app.screen_stack, "the purge to end")
        progress = dialog.progress
        self.deleted[label_of(dialog.pattern.rstrip("*"))] += progress.deleted
        await settle(self.browser)  # the dismiss callback (notify, reload) runs first
        await wait_until(lambda: not browser_busy(self.app), "the reload after the purge")
        return progress


# -- phases -----------------------------------------------------------------------------------
async def open_browser(bench: Bench) -> None:
    app = bench.app
    start = Mark.now()
    async with bench.keys.lock:
        send_key(app, "2")
        await wait_until(lambda: bool(app.screen.query("#keys")), "the browser")
    table = bench.table
    await wait_until(lambda: table.row_count > 0, "the first page of keys")
    first_page = start.elapsed()
    await wait_until(lambda: not browser_busy(app), "the browser's workers")
    note = f"first page in {first_page * 1000:,.0f} ms; {table.row_count:,} rows"
    await bench.finish("open browser (2)", start, note)


async def idle(bench: Bench) -> None:
    start = Mark.now()
    await asyncio.sleep(IDLE_SECONDS)
    await bench.finish(IDLE_PHASE, start, f"{IDLE_SECONDS:.0f} s on the browser")


async def load_once(bench: Bench) -> float:
    """Press l; return how long until the rows were added and the scan ended."""
    table, browser = bench.table, bench.browser
    before, pressed = table.row_count, time.perf_counter()
    send_key(bench.app, "l")
    await wait_until(lambda: table.row_count > before or browser.exhausted, "more rows")
    await wait_until(lambda: not browser_busy(bench.app), "load more to finish")
    return time.perf_counter() - pressed


async def load_more(bench: Bench) -> None:
    start = Mark.now()
    each = [await load_once(bench) for _ in range(LOAD_MORE_PRESSES)]
    times = " / ".join(f"{seconds * 1000:,.0f}" for seconds in each)
    note = f"{LOAD_MORE_PRESSES} presses ({times} ms); {bench.table.row_count:,} rows"
    await bench.finish(f"load more (l) x{LOAD_MORE_PRESSES}", start, note)


async def filter_keys(bench: Bench, pattern: str, name: str) -> None:
    prefix = pattern.rstrip("*")
    table, browser = bench.table, bench.browser
    start = await bench.set_filter(pattern)

    def filtered_rows() -> bool:
        keys = list(browser.rows)
        return bool(keys) and all(key.startswith(prefix) for key in keys)

    await wait_until(lambda: filtered_rows() or not browser_busy(bench.app), "the filter scan")
    while not filtered_rows() and not browser.exhausted:
        await load_once(bench)  # none in the first scan budget: load more, as a person would
    if not filtered_rows():
        raise BenchError(f"no keys match {pattern}")
    first_rows = start.elapsed()
    await wait_until(lambda: not browser_busy(bench.app), "the filtered scan")
    note = f"first rows in {first_rows * 1000:,.0f} ms; {table.row_count:,} rows"
    await bench.finish(name, start, note)


async def purge_namespace(bench: Bench) -> None:
    await filter_keys(bench, "team-b:*", "filter team-b:* (setup)")
    start = Mark.now()
    dialog = await bench.start_purge()
    await wait_until(lambda: dialog not in bench.app.screen_stack, "the purge to end")
    purge_seconds = start.elapsed()
    progress = await bench.purge_closed(dialog)
    if not progress.done:
        raise BenchError(f"the team-b purge stopped early: {progress}")
    rate = progress.deleted / purge_seconds if purge_seconds else 0.0
    note = (
        f"deleted {progress.deleted:,} of {progress.scanned:,} scanned in"
        f" {purge_seconds:,.1f} s = {rate:,.0f} keys/s; then reload"
    )
    await bench.finish("purge team-b (P, y)", start, note)


async def cancel_purge(bench: Bench) -> None:
    await filter_keys(bench, "team-a:*", "filter team-a:* (setup)")
    start = Mark.now()
    dialog = await bench.start_purge()
    await wait_until(lambda: dialog.progress.deleted >= CANCEL_AFTER_DELETED, "some deletes")
    pressed = time.perf_counter()
    send_key(bench.app, "escape")
    await wait_until(lambda: dialog.cancel_requested, "Esc to be handled")
    handled = time.perf_counter() - pressed
    await wait_until(lambda: dialog not in bench.app.screen_stack, "the purge to stop")
    stopped = time.perf_counter() - pressed
    progress = await bench.purge_closed(dialog)
    if progress.done:
        raise BenchError("the purge finished although it was cancelled")
    note = (
        f"Esc after {pressed - start.at:,.1f} s, handled in {handled * 1000:,.0f} ms, dialog"
        f" closed {stopped * 1000:,.0f} ms after Esc; {progress.deleted:,} deleted"
    )
    await bench.finish("purge team-a, cancel (Esc)", start, note)


async def browse(bench: Bench) -> None:
    """The read-only phases: open, idle baseline, load more, filter."""
    await bench.pilot.pause(0.5)  # let the overview screen settle
    await open_browser(bench)
    await idle(bench)
    await load_more(bench)
    await filter_keys(bench, "team-a:*", "filter team-a:*")


async def browse_and_purge(bench: Bench) -> None:
    await browse(bench)
    await purge_namespace(bench)
    await cancel_purge(bench)


def settings_yaml(directory: Path) -> str:
    cache_params = {"type": "disk", "disk_cache_dir": str(directory)}
    config = {"litellm_settings": {"cache": True, "cache_params": cache_params}}
    return json.dumps(config)  # JSON is YAML


async def run_app(seeded: Seeded, drive: Callable[[Bench], Awaitable[None]], keys: bool) -> Bench:
    """Run the app headless with the probes on its loop while ``drive`` steers it."""
    settings = parse_settings(settings_yaml(seeded.directory), "bench.yaml")
    app = LLMCacheApp(Session(settings))
    async with app.run_test(size=SCREEN_SIZE) as pilot:
        bench = Bench(app, pilot, LagProbe(), KeyProbe(app, enabled=keys))
        probes = [asyncio.create_task(bench.lag.run()), asyncio.create_task(bench.keys.run())]
        try:
            await drive(bench)
        finally:
            for task in probes:
                task.cancel()
            await asyncio.gather(*probes, return_exceptions=True)
    return bench


# -- checks and report ----------------------------------------------------------------------
def check_counts(seeded: Seeded, deleted: Counter[str], after: Counter[str]) -> list[str]:
    """What is wrong with the keys left after the purges (empty: all as expected)."""
    problems = []
    for label, written in sorted(seeded.counts.items()):
        expected = 0 if label == "team-b" else written - deleted[label]
        if after[label] != expected:
            problems.append(f"{label}: {after[label]:,} keys left, expected {expected:,}")
    return problems


def percentile(values: Sequence[float], share: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.1f}"


def baseline_max(bench: Bench) -> float:
    idle_phase = next(p for p in bench.phases if p.name == IDLE_PHASE)
    return max(max(idle_phase.lags, default=0.0), 1e-6)


def report_lag(bench: Bench) -> bool:
    """The main table; True when every phase met the responsiveness criterion."""
    base = baseline_max(bench)
    header = (
        f"{'phase':<28} {'duration ms':>12} {'max lag ms':>11} {'p99 lag ms':>11}"
        f" {'max/idle':>9} {'busy':>5} {'others':>6}  criterion"
    )
    print(f"\nevent-loop lag (no key probe)\n{header}\n{'-' * len(header)}")
    passed = True
    for phase in bench.phases:
        worst = phase.worst or LagSample(0.0, 0.0, 0.0)
        met = worst.lag * 1000 < LAG_TARGET_MS
        passed = passed and met
        print(
            f"{phase.name:<28} {phase.seconds * 1000:>12,.0f} {ms(worst.lag):>11}"
            f" {ms(percentile(phase.lags, 0.99)):>11} {worst.lag / base:>8.1f}x"
            f" {worst.busy:>5.0%} {others(phase):>6}  {'PASS' if met else 'MISS'}"
        )
    print(
        "busy: share of the worst interval the loop's thread ran (near 100%: the app's own"
        " work, such as\nrendering; lower: it waited for a CPU or the GIL). others: CPUs kept"
        " busy by other processes\nduring the phase, on average; above ~0.1 the lags are"
        " noisy."
    )
    return passed


def others(phase: Phase) -> str:
    return "-" if phase.other_cpus is None else f"{phase.other_cpus:.2f}"


def report_keys(bench: Bench) -> None:
    base = baseline_max(bench)
    header = (
        f"{'phase':<28} {'presses':>8} {'key max ms':>11} {'key p50 ms':>11}"
        f" {'max lag ms':>11} {'max/idle':>9} {'others':>6}"
    )
    every = f"every {KEY_PROBE_INTERVAL * 1000:.0f} ms"
    print(f"\nkey latency (cursor down/up {every}, separate pass)\n{header}\n{'-' * len(header)}")
    for phase in bench.phases:
        worst = max(phase.lags, default=0.0)
        print(
            f"{phase.name:<28} {len(phase.keys):>8} {ms(max(phase.keys, default=0.0)):>11}"
            f" {ms(percentile(phase.keys, 0.5)):>11} {ms(worst):>11} {worst / base:>8.1f}x"
            f" {others(phase):>6}"
        )


def report_notes(passes: dict[str, Bench]) -> None:
    print("\nnotes:")
    for label, bench in passes.items():
        for phase in bench.phases:
            if phase.note:
                print(f"  [{label}] {phase.name}: {phase.note}")


def print_seeding(seeded: Seeded) -> None:
    rate = seeded.total / seeded.seconds if seeded.seconds else 0.0
    spread = ", ".join(f"{label} {count:,}" for label, count in sorted(seeded.counts.items()))
    print(
        f"seeded {seeded.total:,} entries (~{seeded.entry_bytes} B each) in"
        f" {seeded.seconds:,.1f} s = {rate:,.0f}/s: {spread}",
        flush=True,
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.tui_responsiveness",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--entries",
        type=int,
        default=DEFAULT_ENTRIES,
        help=f"entries to seed (default {DEFAULT_ENTRIES:,}; at least {MIN_ENTRIES:,})",
    )
    args = parser.parse_args(argv)
    if args.entries < MIN_ENTRIES:
        parser.error(f"--entries must be at least {MIN_ENTRIES:,}: the cancelled purge needs room")
    return args


def measure(seeded: Seeded) -> tuple[Bench, Bench, Counter[str]]:
    """The key-latency pass (read-only), the lag pass (with purges), the keys left."""
    print("pass 1: key latency while browsing", flush=True)
    keys = asyncio.run(run_app(seeded, browse, keys=True))
    print("pass 2: event-loop lag, browsing and purging", flush=True)
    lag = asyncio.run(run_app(seeded, browse_and_purge, keys=False))
    return keys, lag, asyncio.run(count_keys(seeded.directory))


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    print(
        f"llmcache-tui responsiveness | Python {platform.python_version()} |"
        f" {platform.system()} {platform.machine()} | {os.cpu_count()} CPUs",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="llmcache-bench-") as tmp:
        seeded = seed(Path(tmp) / "cache", args.entries)
        print_seeding(seeded)
        try:
            keys, lag, after = measure(seeded)
        except BenchError as exc:
            print(f"FAILED: {exc}", file=sys.stderr)
            return 1
    passed = report_lag(lag)
    report_keys(keys)
    report_notes({"keys pass": keys, "lag pass": lag})
    problems = check_counts(seeded, lag.deleted, after)
    left = ", ".join(f"{label} {count:,}" for label, count in sorted(after.items()))
    print(f"\nkeys left after the purges: {left} ({'as expected' if not problems else 'WRONG'})")
    for problem in problems:
        print(f"CHECK FAILED: {problem}", file=sys.stderr)
    print(
        f"UI responsive (max event-loop lag under {LAG_TARGET_MS:.0f} ms in every phase):"
        f" {'PASS' if passed else 'MISS'} (informational)"
    )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
