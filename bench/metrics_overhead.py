"""What recording metrics costs a cache hit: ``python -m bench.metrics_overhead``.

Two proxy apps on the same config (local cache), one recording everything ``/metrics``
exports (latency histograms, lookups by model, savings, backend timings), one built with
``metrics=False`` (no recording at all), answer the same repeated chat request: every
request a hit. Reported as hit throughput with metrics over without, from the same run.

* **in process** (always): the apps are called directly as ASGI apps, with no server or
  sockets around them, in alternating rounds: the hit path alone, so this gives what
  recording adds to each hit in microseconds of CPU. As a ratio it is far stricter than
  what a client sees (no HTTP parsing, no sockets, no event loop), so it carries no target.
  Throughput is hits per second of this process's CPU time, which other load on the
  machine disturbs less than wall time.
* **cold** (``--cold``): the same two apps in process, but a buffer larger than the CPU
  caches is written over before every request, so each hit starts with the caches as
  a busy server leaves them; hits of the two apps alternate in blocks of 50 and each is
  timed alone. The median per-hit difference is what recording costs when its data and
  code are not in cache, which is what the served ratio mostly measures, without
  sockets or a second process to add noise.
* **served** (``--wrk``, needs wrk): each app under uvicorn as ``--headless serve`` runs it,
  both pinned to the first CPU and loaded at the same time, each by its own ``wrk -t1`` on
  the second CPU. Sharing one core for the same seconds, the two see the same
  disturbance from other processes, which loading them one after the other does not
  (on a busy machine req/s then moves by more than the difference measured). The
  scheduler gives both the same CPU time, so the req/s ratio is the throughput ratio;
  CPU time per request is printed beside it. The target (with metrics at least 97% of
  without) applies here.

The ratio of each round is printed and the median over rounds reported; in process, rounds
alternate which app goes first, so drifting load on the machine favours neither.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import orjson

from bench import loadgen, servers, sysload
from bench.loadgen import Load

MODEL = "gpt-4o-mini"
CHAT_PATH = "/v1/chat/completions"
BODY = {
    "model": MODEL,
    "messages": [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "What is the capital of France? Answer in one sentence."},
    ],
    "temperature": 0,
}
TARGET = 0.97  # hit throughput with metrics, as a share of without


def config_document() -> dict[str, Any]:
    """A local cache in front of a mock deployment: no upstream is needed for hits."""
    return {
        "model_list": [
            {
                "model_name": MODEL,
                "litellm_params": {
                    "model": f"openai/{MODEL}",
                    "mock_response": "Paris is the capital of France.",
                },
            }
        ],
        "litellm_settings": {"cache": True, "cache_params": {"type": "local"}},
    }


def build_app(config: Path, metrics: bool) -> Any:
    from llmcache_tui.config import load_settings
    from llmcache_tui.proxy.app import ProxyApp

    settings = load_settings(config)
    built = ProxyApp.from_settings(settings)  # builds the backend as serve does
    return ProxyApp(settings, built.backend, owns_backend=True, metrics=metrics)


# -- in process --------------------------------------------------------------------------
class _Driver:
    """Calls one app with the same request over and over, as the server would."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.body = orjson.dumps(BODY)
        self.scope = {
            "type": "http",
            "method": "POST",
            "path": CHAT_PATH,
            "headers": [(b"content-type", b"application/json")],
        }
        self.statuses: list[int] = []

    async def receive(self) -> dict[str, Any]:
        return {"type": "http.request", "body": self.body, "more_body": False}

    async def send(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.statuses.append(message["status"])

    async def run(self, requests: int) -> float:
        """CPU seconds for ``requests`` requests."""
        app, scope, receive, send = self.app, self.scope, self.receive, self.send
        started = time.process_time()
        for _ in range(requests):
            await app(scope, receive, send)
        return time.process_time() - started

    async def run_cold(self, requests: int, buffer: bytearray, pattern: bytes) -> list[float]:
        """Seconds of each of ``requests`` requests, ``buffer`` overwritten before each."""
        app, scope, receive, send = self.app, self.scope, self.receive, self.send
        clock = time.perf_counter
        timed = []
        for _ in range(requests):
            buffer[:] = pattern
            started = clock()
            await app(scope, receive, send)
            timed.append(clock() - started)
        return timed


async def in_process(config: Path, rounds: int, requests: int) -> dict[str, Any]:
    recorded, plain = build_app(config, True), build_app(config, False)
    drivers = {"metrics": _Driver(recorded), "no metrics": _Driver(plain)}
    for driver in drivers.values():
        await driver.run(2000)  # the first is a miss (stored); then warm every cache
        driver.statuses.clear()
    pairs = []
    for number in range(rounds):
        order = list(drivers) if number % 2 == 0 else list(reversed(drivers))
        rates = {name: requests / await drivers[name].run(requests) for name in order}
        pairs.append(rates)
        ratio = rates["metrics"] / rates["no metrics"]
        print(
            f"  round {number + 1}: with {rates['metrics']:9.0f} hits/s,"
            f" without {rates['no metrics']:9.0f}, ratio {ratio:.4f}"
        )
    for name, driver in drivers.items():
        if set(driver.statuses) != {200}:
            raise RuntimeError(f"{name}: answers other than 200: {set(driver.statuses)}")
    counted = recorded.stats.snapshot()
    if counted["hits"] != counted["requests"] - 1:
        raise RuntimeError(f"not every request was a hit: {counted}")
    for app in (recorded, plain):
        await app.shutdown()
    return _summary(pairs, "hits/s (CPU time)")


# -- cold --------------------------------------------------------------------------------
COLD_BYTES = 8 << 20  # more than the last-level cache of the machines this ran on
COLD_BLOCK = 50


async def cold(config: Path, blocks: int) -> dict[str, Any]:
    """Median seconds per hit of each app, every hit starting with the caches overwritten."""
    drivers = {
        "metrics": _Driver(build_app(config, True)),
        "no metrics": _Driver(build_app(config, False)),
    }
    for driver in drivers.values():
        await driver.run(500)
    buffer = bytearray(COLD_BYTES)
    pattern = bytes(range(256)) * (COLD_BYTES // 256)
    timed: dict[str, list[float]] = {name: [] for name in drivers}
    for number in range(blocks):
        order = list(drivers) if number % 2 == 0 else list(reversed(drivers))
        for name in order:
            timed[name] += await drivers[name].run_cold(COLD_BLOCK, buffer, pattern)
    for driver in drivers.values():
        await driver.app.shutdown()
    medians = {name: statistics.median(values) * 1e6 for name, values in timed.items()}
    return {
        "hits_per_app": blocks * COLD_BLOCK,
        "us_per_hit": medians,
        "added_us_per_hit": medians["metrics"] - medians["no metrics"],
        "ratio": medians["no metrics"] / medians["metrics"],
    }


# -- served ------------------------------------------------------------------------------
def serve_main(config: str, port: int, metrics: bool) -> int:
    """One server, as ``--headless serve`` runs the proxy (uvloop, httptools, one worker)."""
    import uvicorn

    from llmcache_tui.proxy.limits import raise_open_file_limit
    from llmcache_tui.proxy.protocol import ProxyServerConfig

    raise_open_file_limit()
    app = build_app(Path(config), metrics)
    server_config = ProxyServerConfig(
        app,
        limits=app.settings.connection_limits,
        host=servers.HOST,
        port=port,
        log_level="warning",
        access_log=False,
    )
    uvicorn.Server(server_config).run()
    return 0


@contextlib.contextmanager
def _servers(config: Path, workdir: Path, cpu: int | None) -> Iterator[dict[str, Any]]:
    started: dict[str, servers.Server] = {}
    try:
        for name, flag in (("metrics", []), ("no metrics", ["--no-metrics"])):
            port = servers.free_port()
            command = [
                sys.executable,
                "-m",
                "bench.metrics_overhead",
                "--serve",
                str(config),
                "--port",
                str(port),
                *flag,
            ]
            started[name] = servers.start(name, command, port, "/health/liveliness", cpu, workdir)
        yield started
    finally:
        for server in started.values():
            servers.stop(server)


def served(
    config: Path, workdir: Path, rounds: int, duration: float, connections: int
) -> dict[str, Any]:
    wrk = loadgen.wrk_path()
    if wrk is None:
        raise RuntimeError("wrk is not installed (apt-get install -y wrk)")
    cpus = sorted(os.sched_getaffinity(0))
    server_cpu, client_cpu = (cpus[0], cpus[1]) if len(cpus) >= 2 else (None, None)
    body = workdir / "body.json"
    body.write_bytes(orjson.dumps(BODY))
    with _servers(config, workdir, server_cpu) as started:
        with httpx.Client(trust_env=False, timeout=10.0) as client:
            for server in started.values():
                for expected in ("stored", "llmcache; hit"):
                    reply = client.post(server.base_url + CHAT_PATH, content=body.read_bytes())
                    if expected not in reply.headers.get("cache-status", ""):
                        raise RuntimeError(f"{server.name}: {reply.headers.get('cache-status')}")
        for server in started.values():  # warm-up
            load = Load(server.base_url + CHAT_PATH, body, connections, 1.0)
            loadgen.run_load(wrk, load, client_cpu)
        pairs, cpu_pairs = [], []
        pids = [server.process.pid for server in started.values()]
        for number in range(rounds):
            # Which wrk starts first alternates: the first may get a head start.
            order = list(started) if number % 2 == 0 else list(reversed(started))
            rates, cpu_us = _together(
                wrk,
                {name: started[name] for name in order},
                body,
                connections,
                duration,
                client_cpu,
                pids,
            )
            pairs.append(rates)
            cpu_pairs.append(cpu_us)
            ratio = rates["metrics"] / rates["no metrics"]
            print(
                f"  round {number + 1}: with {rates['metrics']:8.0f} req/s"
                f" ({cpu_us['metrics']:.1f} us CPU/req), without {rates['no metrics']:8.0f}"
                f" ({cpu_us['no metrics']:.1f}), ratio {ratio:.4f}"
            )
    summary = _summary(pairs, "req/s")
    # Higher CPU per request is worse: the throughput it allows is its inverse.
    cpu_ratios = [pair["no metrics"] / pair["metrics"] for pair in cpu_pairs]
    summary["cpu_ratio_median"] = statistics.median(cpu_ratios)
    summary["cpu_us_per_request"] = {
        name: statistics.median(pair[name] for pair in cpu_pairs)
        for name in ("metrics", "no metrics")
    }
    summary["pinned"] = server_cpu is not None
    return summary


def _together(
    wrk: str,
    started: dict[str, servers.Server],
    body: Path,
    connections: int,
    duration: float,
    client_cpu: int | None,
    pids: list[int],
) -> tuple[dict[str, float], dict[str, float]]:
    """Load both servers at once, one wrk each: they share the server core for the same
    seconds, so load from other processes falls on both alike."""
    loads = {
        name: Load(server.base_url + CHAT_PATH, body, connections, duration)
        for name, server in started.items()
    }
    before = sysload.snapshot(pids)
    with ThreadPoolExecutor(len(loads)) as pool:
        running = {
            name: pool.submit(loadgen.run_load, wrk, load, client_cpu)
            for name, load in loads.items()
        }
        results = {name: future.result() for name, future in running.items()}
    used = sysload.used(before, sysload.snapshot(pids))
    rates, cpu_us = {}, {}
    for name, result in results.items():
        if result.error_count:
            raise RuntimeError(f"{name}: wrk reported errors {result.errors}")
        rates[name] = result.rps
        seconds = used.servers[started[name].process.pid]
        cpu_us[name] = seconds / max(1, result.requests) * 1e6
    return rates, cpu_us


# -- report ------------------------------------------------------------------------------
def _summary(pairs: list[dict[str, float]], unit: str) -> dict[str, Any]:
    ratios = [pair["metrics"] / pair["no metrics"] for pair in pairs]
    return {
        "unit": unit,
        "rounds": len(pairs),
        "with_metrics_median": statistics.median(pair["metrics"] for pair in pairs),
        "without_metrics_median": statistics.median(pair["no metrics"] for pair in pairs),
        "ratio_median": statistics.median(ratios),
        "ratio_min": min(ratios),
        "ratio_max": max(ratios),
    }


def _line(name: str, summary: dict[str, Any]) -> str:
    return (
        f"{name}: with metrics {summary['with_metrics_median']:.0f} {summary['unit']},"
        f" without {summary['without_metrics_median']:.0f}; ratio median"
        f" {summary['ratio_median']:.4f} (min {summary['ratio_min']:.4f},"
        f" max {summary['ratio_max']:.4f}, {summary['rounds']} rounds)"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.metrics_overhead")
    parser.add_argument("--rounds", type=int, default=9, help="alternating round pairs")
    parser.add_argument("--requests", type=int, default=20_000, help="in process, per round")
    parser.add_argument("--cold", action="store_true", help="also measure with cold caches")
    parser.add_argument("--cold-blocks", type=int, default=200, help="cold: blocks of 50 hits")
    parser.add_argument("--wrk", action="store_true", help="also measure under uvicorn + wrk")
    parser.add_argument("--duration", type=float, default=3.0, help="wrk seconds per round")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--serve", metavar="CONFIG", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--no-metrics", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        return serve_main(args.serve, args.port, not args.no_metrics)

    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-metrics-") as tmp:
        workdir = Path(tmp)
        config = workdir / "config.yaml"
        config.write_bytes(orjson.dumps(config_document()))  # JSON is valid YAML
        print(f"in process, {args.requests} hits per round:")
        results["in_process"] = asyncio.run(in_process(config, args.rounds, args.requests))
        if args.cold:
            print(f"cold caches, {args.cold_blocks * COLD_BLOCK} hits per app ...")
            results["cold"] = asyncio.run(cold(config, args.cold_blocks))
        if args.wrk:
            print(f"served (uvicorn + wrk -t1 -c{args.connections}, {args.duration:g} s rounds):")
            results["served"] = served(
                config, workdir, args.rounds, args.duration, args.connections
            )
    print()
    inside = results["in_process"]
    added = 1e6 / inside["with_metrics_median"] - 1e6 / inside["without_metrics_median"]
    inside["added_us_per_hit"] = added
    print(_line("in process", inside) + f"; recording adds {added:.2f} us CPU per hit")
    if "cold" in results:
        measured = results["cold"]
        per_hit = measured["us_per_hit"]
        print(
            f"cold caches: with metrics {per_hit['metrics']:.2f} us per hit, without"
            f" {per_hit['no metrics']:.2f} us (medians); recording adds"
            f" {measured['added_us_per_hit']:.2f} us, ratio {measured['ratio']:.4f}"
        )
    if "served" in results:
        served_summary = results["served"]
        print(_line("served", served_summary))
        cpu = served_summary["cpu_us_per_request"]
        ratio = served_summary["ratio_median"]
        verdict = "PASS" if ratio >= TARGET else "MISS"
        print(
            f"served CPU per request: with {cpu['metrics']:.1f} us, without"
            f" {cpu['no metrics']:.1f} us (ratio {served_summary['cpu_ratio_median']:.4f})"
        )
        print(f"served hit throughput ratio {ratio:.4f} -> {verdict} (target >= {TARGET:.2f})")
    if args.json:
        args.json.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
