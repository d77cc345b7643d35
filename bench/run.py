"""One command for the proxy benchmark: ``python -m bench.run [--duration S] [--connections N]``.

Starts the fake OpenAI upstream, the proxy (local and disk cache) and the floor app,
loads each with wrk (same client, same concurrency), and prints throughput and latency
with ratios against baselines measured in the same run:

* cache hits against the floor (a bare ASGI app on the proxy's server stack);
* the miss overhead: proxy p50 minus fake-upstream p50, both at one connection.

With ``--soak`` it then runs the memory soak of ``bench/soak.py`` (RSS under many
distinct entries, against the cache's byte bound and the proxy's RSS at start). With
``--semantic`` it then runs ``bench/semantic.py``: the local embedder, vector-store lookup
latency without embedding, and semantic hits and misses against an exact hit.

Servers share CPU 0 and wrk runs on CPU 1 (one thread), so each number is one server
process on one core. Targets are reported as PASS/MISS only; the exit code is 0 unless
something failed to run or a check showed a run did not measure what it claims.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import shutil
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import orjson

from bench import loadgen, semantic, servers, soak, sysload
from bench.loadgen import Load, LoadError, LoadResult
from bench.servers import Server, ServerError
from bench.soak import SoakFailure

MODEL = "gpt-4o-mini"
CHAT_PATH = "/v1/chat/completions"
QUESTION = "What is the capital of France? Answer in one short sentence."
HIT_TARGET = 0.50  # local-cache hit throughput as a fraction of the floor's
OVERHEAD_TARGET_MS = 1.0  # miss overhead at p50

UPSTREAM, FLOOR, LOCAL, DISK = "upstream", "floor", "proxy-local", "proxy-disk"
EMBEDDED = "embedded-local"  # the terminal app's proxy: asyncio's own loop, local cache


class BenchFailure(RuntimeError):
    """A run that did not measure what it claims (wrong cache outcome, HTTP errors)."""


@dataclass(frozen=True, slots=True)
class Scenario:
    """One measured run: which server, which body, how many connections."""

    key: str
    label: str
    server: str
    body: str  # "fixed", "bypass", "unique" or "stream" (see _bodies)
    connections: int
    expect: str | None = None  # proxy counter every request must land in


@dataclass(slots=True)
class Outcome:
    """A scenario's result and, for the proxy, how its requests were answered."""

    scenario: Scenario
    result: LoadResult
    server_cpu_us: float  # the loaded server process's CPU time per request
    other_load: float  # CPUs used by unrelated processes during the run (0.25: a quarter)
    client_load: float  # CPUs used by wrk (near 1.0: the client, not the server, was the limit)
    counters: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "label": self.scenario.label,
            "server": self.scenario.server,
            "connections": self.scenario.connections,
            **self.result.as_dict(),
            "server_cpu_us_per_request": self.server_cpu_us,
            "other_load_cpus": self.other_load,
            "wrk_load_cpus": self.client_load,
            "proxy_counters": self.counters,
        }


def scenarios(connections: int) -> tuple[list[Scenario], list[Scenario]]:
    """The throughput runs (at ``connections``) and the latency runs (one connection)."""
    loaded = [
        Scenario("floor", "floor (bare ASGI app)", FLOOR, "fixed", connections),
        Scenario("local_hit", "proxy, local cache hit", LOCAL, "fixed", connections, "hits"),
        Scenario("disk_hit", "proxy, disk cache hit", DISK, "fixed", connections, "hits"),
        Scenario(
            "embedded_hit", "embedded, local cache hit", EMBEDDED, "fixed", connections, "hits"
        ),
        Scenario("stream_hit", "proxy, local streamed hit", LOCAL, "stream", connections, "hits"),
        Scenario("proxy_miss", "proxy, miss (no-cache)", LOCAL, "bypass", connections, "bypassed"),
        Scenario("upstream", "fake upstream direct", UPSTREAM, "fixed", connections),
    ]
    single = [
        Scenario("upstream_c1", "fake upstream direct", UPSTREAM, "fixed", 1),
        Scenario("proxy_miss_c1", "proxy, miss (no-cache)", LOCAL, "bypass", 1, "bypassed"),
        Scenario("proxy_store_c1", "proxy, miss + store", LOCAL, "unique", 1, "misses"),
        Scenario("floor_c1", "floor (bare ASGI app)", FLOOR, "fixed", 1),
        Scenario("local_hit_c1", "proxy, local cache hit", LOCAL, "fixed", 1, "hits"),
        Scenario("embedded_hit_c1", "embedded, local cache hit", EMBEDDED, "fixed", 1, "hits"),
        Scenario("stream_hit_c1", "proxy, local streamed hit", LOCAL, "stream", 1, "hits"),
    ]
    return loaded, single


# -- set-up ------------------------------------------------------------------------------
def _chat_body(question: str, controls: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": MODEL,
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": question},
        ],
        "temperature": 0,
    }
    if controls is not None:
        body["cache"] = controls
    return body


def _bodies(workdir: Path) -> dict[str, Path]:
    """Body files for wrk: one fixed question, the same with caching off or streamed, and a
    unique one."""
    documents = {
        "fixed": _chat_body(QUESTION),
        "stream": {**_chat_body(QUESTION), "stream": True},
        "bypass": _chat_body(QUESTION, {"no-cache": True, "no-store": True}),
        "unique": _chat_body(f"Question BENCH_N: {QUESTION}"),
    }
    paths = {}
    for name, document in documents.items():
        path = workdir / f"body-{name}.json"
        path.write_bytes(orjson.dumps(document))
        paths[name] = path
    return paths


def _proxy_config(workdir: Path, cache_type: str, upstream_port: int) -> Path:
    """A proxy config (JSON is valid YAML) routing MODEL to the fake upstream."""
    params: dict[str, Any] = {"type": cache_type}
    if cache_type == "disk":
        params["disk_cache_dir"] = str(workdir / "disk-cache")
    config = {
        "model_list": [
            {
                "model_name": MODEL,
                "litellm_params": {
                    "model": f"openai/{MODEL}",
                    "api_base": f"http://{servers.HOST}:{upstream_port}/v1",
                    "api_key": "sk-bench",
                },
            }
        ],
        "litellm_settings": {"cache": True, "cache_params": params},
    }
    path = workdir / f"config-{cache_type}.yaml"
    path.write_bytes(orjson.dumps(config, option=orjson.OPT_INDENT_2))
    return path


@contextlib.contextmanager
def running_servers(workdir: Path, cpu: int | None) -> Iterator[dict[str, Server]]:
    """Start upstream, floor and both proxies; stop every one that started, always."""
    started: dict[str, Server] = {}
    try:
        port = servers.free_port()
        cmd = servers.upstream_command(port)
        started[UPSTREAM] = servers.start(UPSTREAM, cmd, port, "/v1/models", cpu, workdir)
        port = servers.free_port()
        cmd = servers.floor_command(port)
        started[FLOOR] = servers.start(FLOOR, cmd, port, "/", cpu, workdir)
        for name, cache_type in ((LOCAL, "local"), (DISK, "disk")):
            config = _proxy_config(workdir, cache_type, started[UPSTREAM].port)
            port = servers.free_port()
            cmd = servers.proxy_command(config, port)
            started[name] = servers.start(name, cmd, port, "/health/liveliness", cpu, workdir)
        config = _proxy_config(workdir, "local", started[UPSTREAM].port)
        port = servers.free_port()
        cmd = servers.embedded_command(config, port)
        started[EMBEDDED] = servers.start(EMBEDDED, cmd, port, "/health/liveliness", cpu, workdir)
        yield started
    finally:
        for server in reversed(list(started.values())):
            servers.stop(server)


# -- checks ------------------------------------------------------------------------------
def _cache_status(client: httpx.Client, server: Server, body: dict[str, Any]) -> str:
    response = client.post(server.base_url + CHAT_PATH, json=body)
    if response.status_code != 200:
        raise BenchFailure(f"{server.name}: HTTP {response.status_code}: {response.text[:300]}")
    return str(response.headers.get("cache-status", ""))


def verify(started: dict[str, Server]) -> list[str]:
    """Prime the caches and check each proxy answers as the scenarios assume."""
    lines = []
    fixed = _chat_body(QUESTION)
    with httpx.Client(trust_env=False, timeout=10.0) as client:
        for name in (UPSTREAM, FLOOR):
            _cache_status(client, started[name], fixed)
        for name in (LOCAL, DISK, EMBEDDED):
            first = _cache_status(client, started[name], fixed)
            second = _cache_status(client, started[name], fixed)
            _expect(name, "repeat", second, "llmcache; hit")
            lines.append(f"{name}: first {first!r}, then {second!r}")
        bypass = _chat_body(QUESTION, {"no-cache": True, "no-store": True})
        status = _cache_status(client, started[LOCAL], {**fixed, "stream": True})
        _expect(LOCAL, "streamed repeat", status, "llmcache; hit")
        lines.append(f"{LOCAL} streamed repeat of a plain entry: {status!r}")
        status = _cache_status(client, started[LOCAL], bypass)
        _expect(LOCAL, "no-cache", status, "llmcache; fwd=request")
        lines.append(f"{LOCAL} with cache no-cache/no-store: {status!r}")
        status = _cache_status(client, started[LOCAL], _chat_body(f"Question 0: {QUESTION}"))
        _expect(LOCAL, "new question", status, "llmcache; fwd=miss; stored")
        lines.append(f"{LOCAL} new question: {status!r}")
    return lines


def _expect(name: str, what: str, got: str, wanted: str) -> None:
    if got != wanted:
        raise BenchFailure(f"{name}: {what} request answered Cache-Status {got!r}, not {wanted!r}")


def proxy_counters(client: httpx.Client, server: Server) -> dict[str, int]:
    """The proxy's /metrics counters, e.g. {"requests": 10, "hits": 9, ...}."""
    text = client.get(server.base_url + "/metrics").text
    counters = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name.startswith("llmcache_") and name.endswith("_total"):
            counters[name.removeprefix("llmcache_").removesuffix("_total")] = int(float(value))
    return counters


# -- runs --------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Runner:
    """Everything a run needs besides the scenario."""

    wrk: str
    started: dict[str, Server]
    bodies: dict[str, Path]
    duration: float
    warmup: float
    client_cpu: int | None

    def run(self, scenario: Scenario) -> Outcome:
        server = self.started[scenario.server]
        url = server.base_url + CHAT_PATH
        body = self.bodies[scenario.body]
        unique = scenario.body == "unique"
        if self.warmup > 0:
            warm = Load(url, body, scenario.connections, self.warmup, unique)
            loadgen.run_load(self.wrk, warm, self.client_cpu)
        load = Load(url, body, scenario.connections, self.duration, unique)
        outcome = self._measure(scenario, server, load)
        _check(outcome)
        return outcome

    def _measure(self, scenario: Scenario, server: Server, load: Load) -> Outcome:
        """One wrk run, with the proxy's counters and CPU use read around it."""
        pids = [started.process.pid for started in self.started.values()]
        with httpx.Client(trust_env=False, timeout=10.0) as client:
            before = proxy_counters(client, server) if scenario.expect else {}
            cpu_before = sysload.snapshot(pids)
            result = loadgen.run_load(self.wrk, load, self.client_cpu)
            cpu = sysload.used(cpu_before, sysload.snapshot(pids))
            after = proxy_counters(client, server) if scenario.expect else {}
        counters = {name: after[name] - before.get(name, 0) for name in after}
        server_cpu = cpu.servers[server.process.pid]
        return Outcome(
            scenario,
            result,
            server_cpu_us=server_cpu / max(1, result.requests) * 1e6,
            other_load=cpu.others / result.seconds if result.seconds else 0.0,
            client_load=cpu.children / result.seconds if result.seconds else 0.0,
            counters=counters,
        )


def _check(outcome: Outcome) -> None:
    """Fail a run with HTTP errors, or whose proxy requests were not all the expected kind."""
    scenario, result = outcome.scenario, outcome.result
    if result.error_count:
        raise BenchFailure(f"{scenario.label}: wrk reported errors {result.errors}")
    if scenario.expect is None:
        return
    counters = outcome.counters
    served = counters.get(scenario.expect, 0)
    if served != counters.get("requests", 0) or served < result.requests:
        raise BenchFailure(
            f"{scenario.label}: expected every request to be {scenario.expect},"
            f" proxy counted {counters}"
        )
    if scenario.expect == "misses" and counters.get("stored", 0) != served:
        raise BenchFailure(f"{scenario.label}: not every miss was stored: {counters}")


# -- report ------------------------------------------------------------------------------
NOISY_LOAD = 0.10  # other processes using more than this many CPUs mark a run "*"
COLUMNS = f"{'scenario':<28} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'CPU us/req':>11}"


def _row(outcome: Outcome) -> str:
    result = outcome.result
    noisy = "*" if outcome.other_load > NOISY_LOAD else " "
    return (
        f"{outcome.scenario.label:<28} {result.rps:9.0f} {result.p50_ms:8.3f}"
        f" {result.p99_ms:8.3f} {outcome.server_cpu_us:11.1f}{noisy}"
    )


def loaded_table(outcomes: Sequence[Outcome], floor: Outcome) -> list[str]:
    """Rows with throughput, and CPU per request, as a share of the floor's."""
    lines = [f"{COLUMNS}  {'req/s vs floor':>14} {'CPU vs floor':>12}"]
    for outcome in outcomes:
        rps_ratio = outcome.result.rps / floor.result.rps
        cpu_ratio = floor.server_cpu_us / outcome.server_cpu_us if outcome.server_cpu_us else 0
        lines.append(f"{_row(outcome)} {rps_ratio:14.1%} {cpu_ratio:12.1%}")
    return lines


def single_table(outcomes: Sequence[Outcome], direct_p50: float) -> list[str]:
    lines = [f"{COLUMNS}  {'p50 - direct':>12}"]
    for outcome in outcomes:
        lines.append(f"{_row(outcome)} {outcome.result.p50_ms - direct_p50:+12.3f}")
    return lines


def targets(by_key: dict[str, Outcome]) -> list[dict[str, Any]]:
    """Each target's value and verdict; ``noisy`` when a run it uses was disturbed."""
    floor, hit = by_key["floor"], by_key["local_hit"]
    direct, miss = by_key["upstream_c1"], by_key["proxy_miss_c1"]
    hit_ratio = hit.result.rps / floor.result.rps
    cpu_ratio = floor.server_cpu_us / hit.server_cpu_us
    overhead = miss.result.p50_ms - direct.result.p50_ms
    return [
        {
            "target": f"local-cache hit throughput >= {HIT_TARGET:.0%} of the floor",
            "value": f"{hit_ratio:.1%} (by CPU per request: {cpu_ratio:.1%})",
            "met": hit_ratio >= HIT_TARGET,
            "noisy": _noisy(floor, hit),
        },
        {
            "target": f"miss overhead < {OVERHEAD_TARGET_MS:g} ms at p50",
            "value": f"{overhead:.3f} ms",
            "met": overhead < OVERHEAD_TARGET_MS,
            "noisy": _noisy(direct, miss),
        },
    ]


def _noisy(*outcomes: Outcome) -> bool:
    return any(outcome.other_load > NOISY_LOAD for outcome in outcomes)


def pinning() -> tuple[int | None, int | None, str]:
    """(server CPU, wrk CPU, description); no pinning with fewer than two CPUs."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None, None, "not pinned (fewer than two CPUs available)"
    if shutil.which("taskset") is None:
        return None, None, "not pinned (taskset is not installed)"
    server_cpu, client_cpu = cpus[0], cpus[1]
    text = (
        f"every server process pinned to CPU {server_cpu}, wrk (1 thread) to CPU {client_cpu}"
        " with taskset: each number is one server process on one core"
    )
    return server_cpu, client_cpu, text


# -- main --------------------------------------------------------------------------------
def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per run (5)")
    parser.add_argument("--warmup", type=float, default=1.0, help="warm-up seconds per run (1)")
    parser.add_argument("--connections", type=int, default=50, help="concurrency (50)")
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="measure every scenario this many times and keep, per scenario, the round least"
        " disturbed by other processes (1)",
    )
    parser.add_argument(
        "--soak",
        action="store_true",
        help="then run the memory soak (bench/soak.py) with its defaults",
    )
    parser.add_argument(
        "--semantic",
        action="store_true",
        help="then run the semantic benchmark (bench/semantic.py: embedder, lookup latency,"
        " throughput) with its defaults",
    )
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = parser.parse_args(argv)
    if args.duration < 1 or args.connections < 1 or args.warmup < 0 or args.rounds < 1:
        parser.error("--duration must be >= 1, --connections >= 1, --rounds >= 1, --warmup >= 0")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    wrk = loadgen.wrk_path()
    if wrk is None:
        print("wrk is not installed: apt-get install -y wrk", file=sys.stderr)
        return 2
    try:
        report = measure(args, wrk)
        if args.soak:
            print()
            report["soak"] = soak.soak(soak.defaults(), pinning()[0])
        if args.semantic:
            print()
            report["semantic"] = semantic.all_parts(semantic.defaults())
    except (
        BenchFailure,
        LoadError,
        ServerError,
        SoakFailure,
        semantic.EmbedderUnavailable,
        aiohttp.ClientError,
        httpx.HTTPError,
        OSError,
    ) as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1
    if args.json:
        Path(args.json).write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
        print(f"\nresults written to {args.json}")
    return 0


def measure(args: argparse.Namespace, wrk: str) -> dict[str, Any]:
    """Run every scenario, print the report, and return it as a JSON-able dict."""
    server_cpu, client_cpu, pin_text = pinning()
    loaded, single = scenarios(args.connections)
    setup = {
        "python": platform.python_version(),
        "wrk": loadgen.wrk_version(wrk),
        "server_stack": "uvicorn, loop uvloop, http httptools, access log off, no server header",
        "pinning": pin_text,
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "connections": args.connections,
        "rounds": args.rounds,
    }
    print("llmcache-tui proxy benchmark")
    for name, value in setup.items():
        print(f"  {name}: {value}")
    with tempfile.TemporaryDirectory(prefix="llmcache-bench-") as tmp:
        workdir = Path(tmp)
        with running_servers(workdir, server_cpu) as started:
            checks = verify(started)
            print("cache checks before loading:")
            for line in checks:
                print(f"  {line}")
            runner = Runner(wrk, started, _bodies(workdir), args.duration, args.warmup, client_cpu)
            rounds = [_run_round(runner, [*loaded, *single], n) for n in range(args.rounds)]
    best = {
        scenario.key: min((done[scenario.key] for done in rounds), key=lambda o: o.other_load)
        for scenario in [*loaded, *single]
    }
    return _report(setup, [best[s.key] for s in loaded], [best[s.key] for s in single])


def _run_round(runner: Runner, todo: list[Scenario], number: int) -> dict[str, Outcome]:
    done = {}
    for scenario in todo:
        print(
            f"  round {number + 1}: {scenario.label}, {scenario.connections} connection(s) ...",
            flush=True,
        )
        done[scenario.key] = runner.run(scenario)
    return done


def _report(setup: dict[str, Any], loaded: list[Outcome], single: list[Outcome]) -> dict[str, Any]:
    by_key = {outcome.scenario.key: outcome for outcome in [*loaded, *single]}
    floor = by_key["floor"]
    direct_p50 = by_key["upstream_c1"].result.p50_ms
    overhead = by_key["proxy_miss_c1"].result.p50_ms - direct_p50
    store_overhead = by_key["proxy_store_c1"].result.p50_ms - direct_p50
    print(f"\nthroughput at {setup['connections']} connections (wrk -t1):")
    print("\n".join(f"  {line}" for line in loaded_table(loaded, floor)))
    print("\nlatency at 1 connection (wrk -t1 -c1):")
    print("\n".join(f"  {line}" for line in single_table(single, direct_p50)))
    _print_notes(loaded, single)
    print(
        f"\nmiss overhead (p50 proxy no-cache - p50 fake upstream direct, 1 connection):"
        f" {overhead:.3f} ms"
    )
    print(f"miss + store overhead (a new question per request, info): {store_overhead:.3f} ms")
    ttfb = by_key["stream_hit_c1"].result.p50_ms
    print(
        f"streamed hit, time to first byte at 1 connection (p50): {ttfb:.3f} ms"
        f" (floor's whole response: {by_key['floor_c1'].result.p50_ms:.3f} ms); an instant"
        " replay is one write, so its first byte arrives with its last"
    )
    embedded, headless = by_key["embedded_hit"], by_key["local_hit"]
    embedded_c1, headless_c1 = by_key["embedded_hit_c1"], by_key["local_hit_c1"]
    print(
        f"embedded proxy (asyncio loop) vs headless (uvloop), local hit:"
        f" {embedded.result.rps / headless.result.rps:.1%} of its req/s at"
        f" {setup['connections']} connections; p50 at 1 connection"
        f" {embedded_c1.result.p50_ms:.3f} ms vs {headless_c1.result.p50_ms:.3f} ms"
        f" ({embedded_c1.result.p50_ms / headless_c1.result.p50_ms:.2f}x)"
    )
    for key in ("local_hit", "disk_hit", "stream_hit"):
        outcome = by_key[key]
        print(
            f"{outcome.scenario.label}: {outcome.result.rps / floor.result.rps:.1%} of the"
            f" floor's req/s; CPU per request {outcome.server_cpu_us:.1f} us vs the floor's"
            f" {floor.server_cpu_us:.1f} us"
        )
    checked = targets(by_key)
    print("targets (informational):")
    for target in checked:
        verdict = "PASS" if target["met"] else "MISS"
        caveat = (
            " (* measured under other load: rerun on a quiet machine)" if target["noisy"] else ""
        )
        print(f"  [{verdict}] {target['target']}: {target['value']}{caveat}")
    return {
        "setup": setup,
        "results": {key: outcome.as_dict() for key, outcome in by_key.items()},
        "ratios_to_floor": {
            outcome.scenario.key: outcome.result.rps / floor.result.rps for outcome in loaded
        },
        "embedded_vs_headless_hit_rps": embedded.result.rps / headless.result.rps,
        "embedded_vs_headless_hit_p50_c1": embedded_c1.result.p50_ms / headless_c1.result.p50_ms,
        "miss_overhead_p50_ms": overhead,
        "miss_store_overhead_p50_ms": store_overhead,
        "targets": checked,
    }


def _print_notes(loaded: list[Outcome], single: list[Outcome]) -> None:
    print(
        "  CPU us/req: CPU time of the loaded server process per request (the proxy's alone"
        " in proxy rows); 'CPU vs floor' = floor's CPU/req / this row's"
    )
    busiest = max(outcome.client_load for outcome in [*loaded, *single])
    print(f"  wrk used at most {busiest:.0%} of its CPU (near 100%: the client was the limit)")
    noisy = [outcome for outcome in [*loaded, *single] if outcome.other_load > NOISY_LOAD]
    if noisy:
        worst = max(outcome.other_load for outcome in noisy)
        print(
            f"  * other processes on this machine used up to {worst:.2f} CPUs during these"
            " runs: their req/s and latency are noisy (CPU us/req is less affected)"
        )


if __name__ == "__main__":
    sys.exit(main())
