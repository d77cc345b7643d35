"""CPU accounting around a run: the server's CPU per request, and load from other processes.

Both come from Linux ``/proc``: the machine's busy time (``/proc/stat``), each server's
user+system time (``/proc/<pid>/stat``) and wrk's time (this process's reaped children).
"""

from __future__ import annotations

import os
import resource
from collections.abc import Iterable
from dataclasses import dataclass

_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class CpuSnapshot:
    """CPU seconds used so far: machine (user+nice+system), per server, and by children."""

    machine: float
    servers: dict[int, float]
    children: float


@dataclass(frozen=True, slots=True)
class CpuUse:
    """CPU seconds used between two snapshots."""

    machine: float
    servers: dict[int, float]
    children: float

    @property
    def others(self) -> float:
        """Seconds used by processes other than our servers and wrk (never negative)."""
        return max(0.0, self.machine - sum(self.servers.values()) - self.children)


def snapshot(pids: Iterable[int]) -> CpuSnapshot:
    return CpuSnapshot(_machine_busy(), {pid: _process_cpu(pid) for pid in pids}, _children())


def used(before: CpuSnapshot, after: CpuSnapshot) -> CpuUse:
    return CpuUse(
        machine=after.machine - before.machine,
        servers={pid: after.servers[pid] - before.servers[pid] for pid in before.servers},
        children=after.children - before.children,
    )


def _machine_busy() -> float:
    with open("/proc/stat") as stat:
        fields = stat.readline().split()
    user, nice, system = (int(value) for value in fields[1:4])
    return (user + nice + system) / _TICKS


def _process_cpu(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            # The command name may contain spaces; the numeric fields follow its ")".
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICKS


def _children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime
