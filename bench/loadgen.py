"""Drive ``wrk`` with ``bench/wrk.lua`` and read back its JSON summary."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson

SCRIPT = Path(__file__).with_name("wrk.lua")
RESULT_MARKER = "BENCH_RESULT "


class LoadError(RuntimeError):
    """wrk could not run, or produced no result."""


@dataclass(frozen=True, slots=True)
class Load:
    """What to send: target URL, JSON body file, concurrency and duration."""

    url: str
    body_file: Path
    connections: int
    duration: float
    unique: bool = False  # every request a new prompt (see wrk.lua)


@dataclass(frozen=True, slots=True)
class LoadResult:
    """One wrk run; latencies in milliseconds."""

    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float
    errors: dict[str, int]

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def wrk_path() -> str | None:
    """The wrk executable, or None when it is not installed."""
    return shutil.which("wrk")


def wrk_version(wrk: str) -> str:
    """wrk's version banner, e.g. ``wrk debian/4.1.0-3+b2 [epoll]``."""
    done = subprocess.run([wrk, "--version"], capture_output=True, text=True, timeout=10)
    return (done.stdout or done.stderr).splitlines()[0].split(" Copyright")[0].strip()


def run_load(wrk: str, load: Load, cpu: int | None) -> LoadResult:
    """Run wrk with one thread (pinned to ``cpu`` when given) and return its summary."""
    command = _command(wrk, load, cpu)
    env = {
        **os.environ,
        "BENCH_BODY_FILE": str(load.body_file),
        "BENCH_UNIQUE": "1" if load.unique else "0",
        "BENCH_SEED": str(time.time_ns()),
    }
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, env=env, timeout=load.duration + 60
        )
    except subprocess.TimeoutExpired as exc:
        raise LoadError(f"wrk did not finish: {' '.join(command)}") from exc
    if done.returncode != 0:
        raise LoadError(f"wrk failed ({done.returncode}): {done.stderr.strip() or done.stdout}")
    return parse_output(done.stdout)


def _command(wrk: str, load: Load, cpu: int | None) -> list[str]:
    pin = ["taskset", "-c", str(cpu)] if cpu is not None else []
    return [
        *pin,
        wrk,
        "-t1",
        f"-c{load.connections}",
        f"-d{max(1, round(load.duration))}s",
        "--timeout",
        "5s",
        "--latency",
        "-s",
        str(SCRIPT),
        load.url,
    ]


def parse_output(stdout: str) -> LoadResult:
    """Read the ``BENCH_RESULT`` line that wrk.lua's done() prints."""
    for line in stdout.splitlines():
        if line.startswith(RESULT_MARKER):
            data = orjson.loads(line[len(RESULT_MARKER) :])
            break
    else:
        raise LoadError(f"no {RESULT_MARKER.strip()} line in wrk output:\n{stdout}")
    seconds = data["duration_us"] / 1e6
    return LoadResult(
        requests=data["requests"],
        seconds=seconds,
        rps=data["requests"] / seconds if seconds > 0 else 0.0,
        p50_ms=data["p50_us"] / 1000,
        p90_ms=data["p90_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        mean_ms=data["mean_us"] / 1000,
        max_ms=data["max_us"] / 1000,
        errors={str(k): int(v) for k, v in data["errors"].items()},
    )
