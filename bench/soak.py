"""Memory soak: ``python -m bench.soak [--requests N] [--answer-kb K] [--max-mib M]``.

Starts the fake OpenAI upstream and the proxy (``type: local`` with a small byte bound),
sends ``--requests`` distinct chat questions whose answers are about ``--answer-kb`` KB
each, so the cache fills and then evicts for most of the run, and samples the proxy's
resident memory (``VmRSS`` in ``/proc/<pid>/status``) as it goes. RSS is printed against
the configured bound and against a baseline from the same run: the proxy's RSS after start
and one request. Targets (RSS at most the bound plus 100 MiB; growth over the baseline at
most the bound plus a small allowance) are informational; the exit code is 1 only when a
request failed or was not stored.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from bench import servers
from bench.servers import Server, ServerError

MIB = 1024 * 1024
MODEL = "gpt-4o-mini"
CHAT_PATH = "/v1/chat/completions"
RSS_MARGIN_MIB = 100  # the target: RSS within the bound plus this much
GROWTH_MARGIN_MIB = 32  # growth over the baseline beyond the bound that still passes
ECHO_PREFIX = "echo: "  # the fake upstream answers "echo: <question>"


class SoakFailure(RuntimeError):
    """A request failed, or the proxy did not store what the soak assumes."""


@dataclass(frozen=True, slots=True)
class Sample:
    """The proxy's memory after ``sent`` requests."""

    sent: int
    seconds: float
    rss: int  # bytes


def proxy_config(workdir: Path, upstream_port: int, max_bytes: int, max_entries: int) -> Path:
    """A ``type: local`` config with the given bounds, routing MODEL to the fake upstream."""
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
        "litellm_settings": {
            "cache": True,
            "cache_params": {
                "type": "local",
                "max_size_in_memory": max_entries,
                "max_bytes_in_memory": max_bytes,
                "ttl": 86_400,  # nothing expires during the run: only the bounds evict
            },
        },
    }
    path = workdir / "config-soak.yaml"
    path.write_bytes(orjson.dumps(config, option=orjson.OPT_INDENT_2))
    return path


def rss_bytes(pid: int, field: str = "VmRSS") -> int:
    """A process's resident set size (or its peak, ``VmHWM``) from ``/proc``."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024  # reported in kB
    raise SoakFailure(f"no {field} for process {pid}")


def _body(number: int, run: str, filler: str) -> bytes:
    # Every question is new (number, run), and the echo makes the answer as long as it.
    question = f"soak {run}-{number}: {filler}"
    return orjson.dumps(
        {"model": MODEL, "messages": [{"role": "user", "content": question}], "temperature": 0}
    )


async def _send_all(
    server: Server, count: int, concurrency: int, answer_bytes: int, samples: int
) -> list[Sample]:
    """Send ``count`` distinct questions, ``concurrency`` at a time, sampling RSS."""
    filler = "x" * max(0, answer_bytes - 40)
    run = str(time.time_ns())
    url = server.base_url + CHAT_PATH
    pid = server.process.pid
    every = max(1, count // samples)
    taken: list[Sample] = []
    started = time.monotonic()
    next_number = 0
    done = 0

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal next_number, done
        while next_number < count:
            number = next_number
            next_number += 1
            data = _body(number, run, filler)
            headers = {"content-type": "application/json"}
            async with session.post(url, data=data, headers=headers) as response:
                payload = await response.read()
                status = response.headers.get("cache-status", "")
            if response.status != 200:
                raise SoakFailure(f"request {number}: HTTP {response.status}: {payload[:300]!r}")
            if "stored" not in status:
                raise SoakFailure(f"request {number}: not stored (Cache-Status {status!r})")
            done += 1
            if done % every == 0 or done == count:
                taken.append(Sample(done, time.monotonic() - started, rss_bytes(pid)))

    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    return taken


def _mib(value: float) -> str:
    return f"{value / MIB:8.1f}"


def soak(args: argparse.Namespace, cpu: int | None = None) -> dict[str, Any]:
    """Run the soak, print its report and return it as a JSON-able dict."""
    max_bytes = int(args.max_mib * MIB)
    answer_bytes = int(args.answer_kb * 1000)
    print(
        f"memory soak: {args.requests:,} distinct answers of ~{answer_bytes / 1000:g} KB,"
        f" local cache bound {args.max_mib:g} MiB / {args.max_entries:,} entries,"
        f" {args.concurrency} connections"
    )
    with tempfile.TemporaryDirectory(prefix="llmcache-soak-") as tmp:
        workdir = Path(tmp)
        started: list[Server] = []
        try:
            port = servers.free_port()
            upstream = servers.start(
                "upstream", servers.upstream_command(port), port, "/v1/models", cpu, workdir
            )
            started.append(upstream)
            config = proxy_config(workdir, upstream.port, max_bytes, args.max_entries)
            port = servers.free_port()
            cmd = servers.proxy_command(config, port)
            proxy = servers.start("proxy", cmd, port, "/health/liveliness", cpu, workdir)
            started.append(proxy)
            at_start = rss_bytes(proxy.process.pid)
            asyncio.run(_send_all(proxy, 1, 1, answer_bytes, 1))  # first request, imports
            baseline = rss_bytes(proxy.process.pid)
            taken = asyncio.run(
                _send_all(proxy, args.requests, args.concurrency, answer_bytes, args.samples)
            )
            peak = rss_bytes(proxy.process.pid, "VmHWM")
        finally:
            for server in reversed(started):
                servers.stop(server)
    return _report(args, max_bytes, at_start, baseline, taken, peak)


def _report(
    args: argparse.Namespace,
    max_bytes: int,
    at_start: int,
    baseline: int,
    taken: list[Sample],
    peak: int,
) -> dict[str, Any]:
    print(
        f"  proxy RSS at start {_mib(at_start).strip()} MiB, after one request (baseline)"
        f" {_mib(baseline).strip()} MiB"
    )
    print(f"  {'sent':>9} {'s':>7} {'RSS MiB':>8} {'- base':>8} {'/ bound':>8}")
    for sample in taken:
        print(
            f"  {sample.sent:9,} {sample.seconds:7.1f} {_mib(sample.rss)} "
            f"{_mib(sample.rss - baseline)} {sample.rss / max_bytes:8.2f}"
        )
    final = taken[-1].rss
    seconds = taken[-1].seconds
    print(
        f"  {taken[-1].sent:,} requests in {seconds:.1f} s ({taken[-1].sent / seconds:.0f}/s);"
        f" peak RSS (VmHWM) {_mib(peak).strip()} MiB"
    )
    checks = [
        (
            f"peak RSS <= bound + {RSS_MARGIN_MIB} MiB",
            f"{peak / MIB:.1f} MiB vs {max_bytes / MIB + RSS_MARGIN_MIB:.1f} MiB",
            peak <= max_bytes + RSS_MARGIN_MIB * MIB,
        ),
        (
            f"peak RSS - baseline <= bound + {GROWTH_MARGIN_MIB} MiB",
            f"{(peak - baseline) / MIB:.1f} MiB vs {max_bytes / MIB + GROWTH_MARGIN_MIB:.1f} MiB",
            peak - baseline <= max_bytes + GROWTH_MARGIN_MIB * MIB,
        ),
    ]
    print("targets (informational):")
    for name, value, met in checks:
        print(f"  [{'PASS' if met else 'MISS'}] {name}: {value}")
    return {
        "requests": args.requests,
        "answer_bytes": int(args.answer_kb * 1000),
        "max_bytes": max_bytes,
        "max_entries": args.max_entries,
        "rss_at_start": at_start,
        "rss_baseline": baseline,
        "rss_final": final,
        "rss_peak": peak,
        "samples": [{"sent": s.sent, "seconds": s.seconds, "rss": s.rss} for s in taken],
        "targets": [{"target": n, "value": v, "met": m} for n, v, m in checks],
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The soak's options (shared with ``bench.run --soak``)."""
    parser.add_argument(
        "--requests", type=int, default=20_000, help="distinct questions to send (20000)"
    )
    parser.add_argument("--answer-kb", type=float, default=20, help="answer size in KB (20)")
    parser.add_argument(
        "--max-mib", type=float, default=32, help="max_bytes_in_memory, in MiB (32)"
    )
    parser.add_argument(
        "--max-entries", type=int, default=10_000, help="max_size_in_memory (10000)"
    )
    parser.add_argument("--concurrency", type=int, default=8, help="connections (8)")
    parser.add_argument("--samples", type=int, default=10, help="RSS samples during the run (10)")


def defaults() -> argparse.Namespace:
    """The soak's options at their defaults (for ``bench.run --soak``)."""
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args([])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.soak", description=__doc__.split("\n")[0]
    )
    add_arguments(parser)
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = parser.parse_args(argv)
    if args.requests < 1 or args.concurrency < 1 or args.max_mib <= 0 or args.samples < 1:
        parser.error("--requests, --concurrency, --samples must be >= 1, --max-mib > 0")
    try:
        report = soak(args)
    except (SoakFailure, ServerError, aiohttp.ClientError, OSError) as exc:
        print(f"soak failed: {exc}", file=sys.stderr)
        return 1
    if args.json:
        Path(args.json).write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
