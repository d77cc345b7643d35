"""The Redis backend: a single server (URL or host/port, TLS), a Cluster, or Sentinel.

Browsing uses SCAN with a bounded COUNT (never KEYS); on a cluster the cursor walks every
primary in turn. Sizes come from MEMORY USAGE and TTLs from PTTL, pipelined per page. A
server may be shared with other applications: a purge reads the first bytes of each value
(GETRANGE, pipelined) to keep to cache entries, and keys of other types are described by
TYPE and their length. redis-py is imported only when this backend is built.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis import exceptions as redis_errors
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import MasterNotFoundError, Sentinel
from redis.backoff import ExponentialBackoff, NoBackoff

from llmcache_tui.cache.backends.base import (
    BackendStats,
    CacheBackend,
    CacheBackendError,
    KeyInfo,
    ScanPage,
    ValueShape,
)
from llmcache_tui.cache.backends.breaker import CircuitBreaker
from llmcache_tui.cache.backends.redis_options import RedisOptions

Client = aioredis.Redis | RedisCluster
T = TypeVar("T")
# What redis-py raises when the server (or the way to it) fails, whatever was asked: a
# lost or refused connection (also a refused password, a server still loading, a pool
# exhausted), a timeout, a cluster that is down or cannot be reached, a primary that is
# now a read-only replica, a reply that is not RESP. Anything else Redis answers (an
# invalid expire time, WRONGTYPE, OOM) is about one command and never opens the breaker.
OUTAGE_ERRORS: tuple[type[BaseException], ...] = (
    redis_errors.ConnectionError,
    redis_errors.TimeoutError,
    redis_errors.ClusterError,
    redis_errors.RedisClusterException,
    redis_errors.ReadOnlyError,
    redis_errors.InvalidResponse,
    OSError,
    TimeoutError,
    CacheBackendError,  # e.g. the GCP token provider's own
)
# What redis-py raises for the first command on a pooled connection to a primary that a
# Sentinel failover has since made a replica; its own retry reconnects to the same address.
STALE_PRIMARY = "The previous master is now a slave"
# The command that gives the length of each Redis type (others, e.g. module types, have none).
LENGTH_COMMANDS = {
    "string": "STRLEN",
    "list": "LLEN",
    "hash": "HLEN",
    "set": "SCARD",
    "zset": "ZCARD",
    "stream": "XLEN",
}
# A purge's check and delete in one call, on the server: a pipeline of GETRANGEs costs the
# client about 14 us per key (a reply read and a timeout per command), more than the deletes
# themselves, and check and delete become one atomic step. One call per page on a single
# server; on a cluster one per hash slot (a script's keys must share one), pipelined.
# ARGV: the last byte of a value's head to read, "delete" or "count", then the Lua patterns
# an entry's head matches. A key of another type fails GETRANGE (caught by pcall): no entry.
SWEEP_SCRIPT = """
local found, deleted = 0, 0
for _, key in ipairs(KEYS) do
  local head = redis.pcall('GETRANGE', key, 0, ARGV[1])
  if type(head) == 'string' then
    for i = 3, #ARGV do
      if string.find(head, ARGV[i]) then
        found = found + 1
        if ARGV[2] == 'delete' then deleted = deleted + redis.call('UNLINK', key) end
        break
      end
    end
  end
end
return {found, deleted}
"""


class RedisBackend(CacheBackend):
    """Entries are Redis strings; TTLs are Redis expiries."""

    cache_type = "redis"

    @property
    def sizes_are_memory(self) -> bool:
        return True  # MEMORY USAGE per key, used_memory for the server

    def __init__(
        self,
        options: RedisOptions,
        *,
        default_ttl: float | None = None,
        credential_provider: Any = None,
    ) -> None:
        super().__init__(default_ttl=default_ttl)
        self.options = options
        self.breaker = CircuitBreaker()
        self._sentinel: Sentinel | None = None
        self.client: Client = self._connect(credential_provider)
        # A server may refuse scripts (ACLs, some managed services): then None, and a purge
        # reads value heads pipelined instead.
        self._sweep_script: Any = self.client.register_script(SWEEP_SCRIPT)

    def _connect(self, credential_provider: Any) -> Client:
        options = self.options
        # One quick retry rides out a dropped connection or a failover; more would only
        # make a dead server slower to give up on.
        kwargs: dict[str, Any] = {
            **options.kwargs,
            "retry": Retry(ExponentialBackoff(cap=0.1, base=0.01), 1),
        }
        if credential_provider is not None:
            kwargs["credential_provider"] = credential_provider
            kwargs.pop("password", None)
            kwargs.pop("username", None)
        if options.mode == "cluster":
            nodes = [ClusterNode(host, port) for host, port in options.startup_nodes]
            kwargs.pop("max_connections", None)  # per node in a cluster: use its default
            return RedisCluster(startup_nodes=nodes, **kwargs)
        if options.mode == "sentinel":
            sentinel_kwargs = {
                "password": options.sentinel_password,
                "socket_timeout": kwargs.get("socket_timeout"),
                "socket_connect_timeout": kwargs.get("socket_connect_timeout"),
                # Ask each sentinel once: discovery moves on to the next by itself, and
                # redis-py's default (3 retries, backoff from 1 s) would spend seconds on
                # one sentinel that is down or refuses the password.
                "retry": Retry(NoBackoff(), 0),
            }
            self._sentinel = Sentinel(  # type: ignore[no-untyped-call]
                options.sentinel_nodes, sentinel_kwargs=sentinel_kwargs, **kwargs
            )
            master: aioredis.Redis = self._sentinel.master_for(options.service_name or "")
            return master
        if options.url:
            return aioredis.Redis.from_url(options.url, **kwargs)
        return aioredis.Redis(**kwargs)

    # -- primitives -----------------------------------------------------------------
    async def _command(self, command: Callable[[], Awaitable[T]]) -> T:
        """Run one idempotent command; under Sentinel, once more after a failover (the
        second attempt takes a connection that asks the sentinels for the new primary)."""
        try:
            return await command()
        except redis_errors.ConnectionError as exc:
            if self._sentinel is None or STALE_PRIMARY not in str(exc):
                raise
        return await command()

    async def _get(self, key: str) -> bytes | None:
        try:
            return _bytes(await self._command(lambda: self.client.get(key)))
        except redis_errors.ResponseError as exc:
            # A list, hash... of another application under this name: no entry of ours,
            # and no fault of the server either (it must not count against the breaker).
            if str(exc).startswith("WRONGTYPE"):
                return None
            raise

    async def _get_many(self, keys: list[str]) -> list[bytes | None]:
        client = self.client
        if isinstance(client, RedisCluster):
            values = await client.mget_nonatomic(keys)
        else:
            values = await self._command(lambda: client.mget(keys))
        return [_bytes(v) for v in values]

    async def _value_heads(self, keys: list[str], size: int) -> list[bytes | None]:
        # GETRANGE answers a key of another type with WRONGTYPE (kept as that key's reply,
        # not raised) and a missing key with "": neither is a value to look at.
        replies = await self._pipelined(
            [("GETRANGE", key, 0, size - 1) for key in keys], raise_on_error=False
        )
        return [
            None if isinstance(reply, Exception) or not reply else _bytes(reply)
            for reply in replies
        ]

    async def _sweep_entries(
        self, keys: list[str], patterns: tuple[str, ...], head_size: int, delete: bool
    ) -> tuple[int, int] | None:
        script = self._sweep_script
        if script is None:
            return None
        args = [head_size - 1, "delete" if delete else "count", *patterns]
        try:
            if isinstance(self.client, RedisCluster):
                return await self._sweep_by_slot(self.client, script, keys, args)
            found, deleted = await self._command(lambda: script(keys=keys, args=args))
        except redis_errors.ResponseError:  # scripts refused here: pipelines from now on
            self._sweep_script = None
            return None
        return int(found), int(deleted)

    async def _sweep_by_slot(
        self, client: RedisCluster, script: Any, keys: list[str], args: list[Any]
    ) -> tuple[int, int]:
        """The sweep script once per hash slot, pipelined to each slot's primary; loaded on
        every primary first when one does not have it yet (a new or restarted node)."""
        groups: dict[int, list[str]] = {}
        for key in keys:
            groups.setdefault(client.keyslot(key), []).append(key)
        pending = list(groups.values())
        found = deleted = 0
        for attempt in range(2):
            pipe = client.pipeline()
            for group in pending:
                pipe.execute_command("EVALSHA", script.sha, len(group), *group, *args)
            unloaded = []
            for group, reply in zip(pending, await pipe.execute(raise_on_error=False), strict=True):
                if isinstance(reply, redis_errors.NoScriptError) and not attempt:
                    unloaded.append(group)
                elif isinstance(reply, Exception):
                    raise reply
                else:
                    found, deleted = found + int(reply[0]), deleted + int(reply[1])
            if not unloaded:
                break
            await client.script_load(script.script)  # sent to every primary
            pending = unloaded
        return found, deleted

    async def _value_shapes(self, keys: list[str]) -> list[ValueShape | None]:
        types = [_text(reply) for reply in await self._pipelined([("TYPE", key) for key in keys])]
        counted = [
            (key, kind) for key, kind in zip(keys, types, strict=True) if kind in LENGTH_COMMANDS
        ]
        lengths = await self._pipelined(
            [(LENGTH_COMMANDS[kind], key) for key, kind in counted], raise_on_error=False
        )
        items = {
            key: int(n) for (key, _), n in zip(counted, lengths, strict=True) if isinstance(n, int)
        }
        return [
            None if kind == "none" else ValueShape(kind, items.get(key))
            for key, kind in zip(keys, types, strict=True)
        ]

    async def _pipelined(
        self, commands: list[tuple[Any, ...]], *, raise_on_error: bool = True
    ) -> list[Any]:
        """Run read commands in one pipeline (per node on a cluster), replies in order."""
        if not commands:
            return []

        async def run() -> list[Any]:
            pipe = self.client.pipeline(transaction=False)  # reads: no MULTI/EXEC needed
            for command in commands:
                pipe.execute_command(*command)
            return await pipe.execute(raise_on_error=raise_on_error)

        return await self._command(run)

    async def _set(self, key: str, value: bytes, ttl: float | None) -> None:
        px = None if ttl is None else max(1, int(ttl * 1000))
        await self._command(lambda: self.client.set(key, value, px=px))

    async def _delete(self, keys: list[str]) -> int:
        if isinstance(self.client, RedisCluster):
            # UNLINK of keys in different slots must go to each key's own node: the cluster
            # pipeline sends every node its keys' UNLINKs in one round trip.
            pipe = self.client.pipeline()
            for key in keys:
                pipe.execute_command("UNLINK", key)  # its unlink() must be awaited to queue
            return sum(int(deleted) for deleted in await pipe.execute())
        return int(await self._command(lambda: self.client.unlink(*keys)))

    async def _ping(self) -> bool:
        return bool(await self._command(lambda: self.client.ping()))

    async def _scan(self, match: str, cursor: str | None, count: int) -> ScanPage:
        page = await self._scan_names(match, cursor, count)
        infos = await self._describe([info.key for info in page.keys])
        return ScanPage(infos, page.cursor, scanned=page.scanned, total=page.total)

    async def _scan_names(self, match: str, cursor: str | None, count: int) -> ScanPage:
        if isinstance(self.client, RedisCluster):
            keys, next_cursor, node_done = await self._scan_cluster(
                self.client, match, cursor, count
            )
        else:
            node_cursor = int(cursor or 0)
            node_cursor, raw_keys = await self.client.scan(
                cursor=node_cursor, match=match, count=count
            )
            keys = [_text(k) for k in raw_keys]
            next_cursor = str(node_cursor) if node_cursor else None
            node_done = next_cursor is None
        # The key count is asked once per scan, not per page (a purge reads many pages).
        total = None if cursor else await self._key_count()
        # SCAN examines about COUNT entries per call whatever MATCH keeps, except the call
        # that finishes a node (on a cluster the cursor then moves on to the next primary).
        scanned = len(keys) if node_done else max(len(keys), count)
        return ScanPage([KeyInfo(key) for key in keys], next_cursor, scanned=scanned, total=total)

    async def _key_count(self) -> int:
        if isinstance(self.client, RedisCluster):
            return sum(await self._per_primary(self.client, "dbsize"))
        return int(await self.client.dbsize())

    async def _scan_cluster(
        self, client: RedisCluster, match: str, cursor: str | None, count: int
    ) -> tuple[list[str], str | None, bool]:
        """SCAN one primary at a time; the cursor is ``<primary index>:<its cursor>``.

        Returns the keys, the next cursor, and whether this call finished its primary."""
        await client.initialize()  # a fresh client knows no nodes until its first command
        primaries = sorted(client.get_primaries(), key=lambda node: node.name)
        index, _, position = (cursor or "0:0").partition(":")
        node_index, node_cursor = int(index), int(position or 0)
        result = await client.scan(
            cursor=node_cursor, match=match, count=count, target_nodes=primaries[node_index]
        )
        # The cluster client answers ({"host:port": next cursor}, keys) for one node.
        cursors, raw_keys = result
        node_cursor = (
            int(next(iter(cursors.values()))) if isinstance(cursors, dict) else int(cursors)
        )
        if node_cursor:
            next_cursor: str | None = f"{node_index}:{node_cursor}"
        elif node_index + 1 < len(primaries):
            next_cursor = f"{node_index + 1}:0"
        else:
            next_cursor = None
        return [_text(k) for k in raw_keys], next_cursor, not node_cursor

    async def _describe(self, keys: list[str]) -> list[KeyInfo]:
        if not keys:
            return []
        pipe = self.client.pipeline(transaction=False)  # reads: no MULTI/EXEC needed
        for key in keys:
            pipe.pttl(key)
            pipe.memory_usage(key, samples=0)
        replies = await pipe.execute()
        infos = []
        for i, key in enumerate(keys):
            pttl, size = replies[2 * i], replies[2 * i + 1]
            if pttl == -2:
                continue  # gone since SCAN saw it
            ttl = None if pttl is None or pttl < 0 else pttl / 1000
            infos.append(KeyInfo(key, ttl, int(size) if size is not None else None))
        return infos

    async def _ttl(self, key: str) -> float | None:
        pttl = int(await self._command(lambda: self.client.pttl(key)))
        if pttl == -2:
            raise KeyError(key)
        return None if pttl < 0 else pttl / 1000

    async def _expire(self, key: str, ttl: float | None) -> bool:
        if ttl is None:
            if not await self.client.exists(key):
                return False
            await self.client.persist(key)
            return True
        milliseconds = max(1, int(ttl * 1000))
        return bool(await self._command(lambda: self.client.pexpire(key, milliseconds)))

    async def _stats(self) -> BackendStats:
        if isinstance(self.client, RedisCluster):
            infos = await self._per_primary(self.client, "info")
        else:
            infos = [await self.client.info()]
        entries = await self._key_count()

        def total(field: str) -> int:
            return sum(int(info.get(field, 0) or 0) for info in infos)

        hits, misses = total("keyspace_hits"), total("keyspace_misses")
        details: dict[str, Any] = {
            "redis_version": infos[0].get("redis_version") if infos else None,
            "nodes": len(infos),
            "used_memory_human": infos[0].get("used_memory_human") if len(infos) == 1 else None,
            "maxmemory": total("maxmemory") or None,
            "evicted_keys": total("evicted_keys"),
            "keyspace_hits": hits,
            "keyspace_misses": misses,
            "hit_rate": round(hits / (hits + misses), 4) if hits + misses else None,
        }
        return BackendStats(entries=entries, bytes_used=total("used_memory"), details=details)

    async def _per_primary(self, client: RedisCluster, command: str) -> list[Any]:
        await client.initialize()  # a fresh client knows no nodes until its first command
        results = []
        for node in client.get_primaries():
            result = await getattr(client, command)(target_nodes=node)
            results.append(_single_node_result(result))
        return results

    async def server_info(self) -> dict[str, Any]:
        if isinstance(self.client, RedisCluster):
            info = (await self._per_primary(self.client, "info"))[0]
        else:
            info = await self.client.info("server")
        return {"redis_version": info.get("redis_version")}

    def describe(self) -> dict[str, Any]:
        return self.options.describe()

    # -- for other users of this connection (the Redis vector stores) ---------------
    async def run(self, command: Callable[[], Awaitable[T]]) -> T:
        """Run one idempotent command (or pipeline) as this backend runs its own."""
        return await self._command(command)

    def explain(self, exc: Exception) -> str:
        """Why a command on this connection failed, in a sentence free of secrets."""
        return self.redactor.scrub(self._explain(exc))

    def location(self) -> str:
        """Where the server is, as it may be shown (no password)."""
        return self._where()

    async def close(self) -> None:
        await self.client.aclose()
        if self._sentinel is not None:
            for sentinel in self._sentinel.sentinels:
                await sentinel.aclose()

    def _outage(self, exc: Exception) -> bool:
        return any(isinstance(error, OUTAGE_ERRORS) for error in _causes(exc))

    def _explain(self, exc: Exception) -> str:
        # The cluster client wraps what went wrong while it connected ("Redis Cluster cannot
        # be connected ...: <cause>"): explain the cause, e.g. a refused password or token.
        chain = _causes(exc)
        for error in chain:
            if isinstance(error, CacheBackendError):  # e.g. the GCP token provider's own
                return str(error)
        for error in chain:
            reason = self._reason(error)
            if reason is not None:
                return reason
        return f"{type(exc).__name__}: {exc}"

    def _reason(self, exc: BaseException) -> str | None:
        where = self._where()
        if isinstance(exc, redis_errors.AuthenticationError):
            return f"authentication failed at {where} (check username and password)"
        if isinstance(exc, redis_errors.ClusterDownError):
            return f"the cluster at {where} is down: {exc}"
        if isinstance(exc, MasterNotFoundError):
            # Its text holds a repr of every sentinel client; keep what each one answered.
            answers = re.findall(r" - \w+:(\w+)", str(exc))
            seen = f" (they answered: {', '.join(answers)})" if answers else ""
            return (
                f"no sentinel named a primary for service {self.options.service_name!r}{seen};"
                " check sentinel_nodes, service_name and sentinel_password"
            )
        if isinstance(exc, redis_errors.TimeoutError):
            return f"{where} did not answer in time ({exc})"
        if isinstance(exc, redis_errors.ConnectionError):
            text = str(exc)
            if isinstance(exc.__cause__, ssl.SSLError) or "SSL" in text or "certificate" in text:
                return f"TLS failed with {where}: {text}"
            if "NOAUTH" in text or "WRONGPASS" in text or "invalid username-password" in text:
                return f"authentication failed at {where} (check username and password)"
            return f"cannot connect to {where}: {text}"
        if isinstance(exc, redis_errors.ResponseError):
            return f"{where} refused the command: {exc}"
        return None

    def _where(self) -> str:
        shown = self.options.describe()
        if "url" in shown:
            return str(shown["url"])
        if "startup_nodes" in shown:
            return "cluster " + ",".join(shown["startup_nodes"])
        if "sentinel_nodes" in shown:
            return f"sentinel service {shown['service_name']}"
        return f"{shown.get('host')}:{shown.get('port')}"


def _causes(exc: BaseException) -> list[BaseException]:
    """``exc`` and the exceptions it was raised from, outermost first."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__
    return chain


def _single_node_result(result: Any) -> Any:
    """redis-py answers a command sent to one cluster node either bare or keyed by node name."""
    if isinstance(result, dict) and len(result) == 1:
        ((name, value),) = result.items()
        if isinstance(name, str) and ":" in name:  # "host:port"
            return value
    return result


def _text(key: Any) -> str:
    return key.decode("utf-8", "surrogateescape") if isinstance(key, bytes) else str(key)


def _bytes(value: Any) -> bytes | None:
    if value is None or isinstance(value, bytes):
        return value
    return str(value).encode()
