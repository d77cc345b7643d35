"""The process's open-file budget: raise it at start, and split it between connections.

Every client connection is a file descriptor, and a forwarded request may hold a second
one upstream. When the descriptors run out, ``accept`` and upstream connects fail and
clients get empty replies; serving at most as many connections as the budget allows, and
answering 503 beyond that, keeps every reply well-formed.
"""

from __future__ import annotations

import logging

try:
    import resource
except ImportError:  # not on Windows
    resource = None  # type: ignore[assignment]

log = logging.getLogger("llmcache_tui.proxy")

# Descriptors kept back from the connection budget: listening sockets, log and cache
# files, backend connections (Redis pools, S3), the event loop's own.
RESERVED_FILES = 64
# Used when the hard limit is "unlimited", which Linux refuses as a soft limit.
UNLIMITED_CAP = 1 << 20


def raise_open_file_limit() -> int | None:
    """Raise the soft open-file limit to the hard one; return the soft limit now in force.

    None where the platform has no such limit.
    """
    if resource is None:
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = UNLIMITED_CAP if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
        except (ValueError, OSError) as exc:  # e.g. above the kernel's nr_open
            log.debug("cannot raise the open-file limit to %d: %s", wanted, exc)
    return None if soft == resource.RLIM_INFINITY else soft


def open_file_limit() -> int | None:
    """The soft open-file limit, or None where there is none."""
    if resource is None:
        return None
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return None if soft == resource.RLIM_INFINITY else soft


def connection_budget(configured: int | None, open_files: int | None) -> int | None:
    """How many client connections to serve at once; None for no limit.

    A configured number wins. Otherwise half of what the open-file limit leaves after
    :data:`RESERVED_FILES`, since each forwarded request may need an upstream socket too.
    """
    if configured is not None:
        return configured
    if open_files is None:
        return None
    return max(1, (open_files - RESERVED_FILES) // 2)
