"""A real S3-compatible server for the S3 tests: moto's standalone server on loopback.

``S3Server`` runs ``moto.server.ThreadedMotoServer`` on a free 127.0.0.1 port and waits until
it answers HTTP. Every request the code under test makes goes to it over HTTP, signed by
boto3 as for AWS. moto keeps its store per process, not per server: every server started
here serves the same buckets, and ``reset()`` (``POST /moto-api/reset``) empties them all.

moto accepts any credentials unless IAM checks are on; ``signatures_required()`` turns them
on for a block (``POST /moto-api/reset-auth``, the server-mode form of moto's
``INITIAL_NO_AUTH_ACTION_COUNT``) and yields the keys of an IAM user allowed ``s3:*``, so a
wrong secret or an unknown key id is refused as AWS would refuse it (403).

``seed()`` writes many objects straight into the running server's store (the objects a
PutObject would create, without paying ~5 ms of HTTP for each): the listing, paging and
batch-delete tests need more than a thousand. What the tests check still goes over HTTP.
"""

from __future__ import annotations

import copy
import http.client
import json
import logging
import socket
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError
from moto.core.models import DEFAULT_ACCOUNT_ID
from moto.server import ThreadedMotoServer

from tests.ports import free_port

HOST = "127.0.0.1"
REGION = "us-east-1"
#: Explicit test credentials: distinctive, so a test can prove none of them is ever shown.
ACCESS_KEY_ID = "AKIALLMCACHETESTKEY1"
SECRET_ACCESS_KEY = "llmcache/Test+Secret/AccessKey0000000001"
SESSION_TOKEN = "llmcache-test-session-token/0001+xyz="
SECRETS = (ACCESS_KEY_ID, SECRET_ACCESS_KEY, SESSION_TOKEN)
BUCKET = "llmcache-test-bucket"
STARTUP_TIMEOUT = 10.0


class S3Server:
    """One moto server on a free loopback port; ``stop()`` then ``start()`` keeps the port."""

    def __init__(self) -> None:
        self.port = 0
        self._server: ThreadedMotoServer | None = None
        self._raw: Any = None  # one boto3 client for the tests' own look: ~65 ms to build

    @property
    def endpoint_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> S3Server:
        if self._server is not None:
            return self
        # moto logs every request through werkzeug at INFO; warnings and errors still show.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        ports = [self.port] if self.port else [free_port() for _ in range(3)]
        for port in ports:
            server = _start_on(port)
            if server is not None:
                self._server, self.port = server, port
                self._wait_until_ready()
                return self
        raise RuntimeError(f"moto's S3 server did not start on {ports}")

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.stop()

    def close(self) -> None:
        """Stop, and close the shared raw client."""
        self.stop()
        if self._raw is not None:
            self._raw.close()
            self._raw = None

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            try:
                status, _ = self._request("GET", "/")  # ListBuckets
            except OSError:
                status = 0
            if status == 200:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"moto's S3 server on port {self.port} never answered")
            time.sleep(0.01)

    def _request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        connection = http.client.HTTPConnection(HOST, self.port, timeout=10)
        try:
            # No form content type: moto reads the reset-auth count from the raw body.
            headers = {"Content-Type": "text/plain"} if body is not None else {}
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    # -- state -------------------------------------------------------------------------
    def reset(self) -> None:
        """Empty the store: no bucket, no IAM user (for every server in this process)."""
        status, body = self._request("POST", "/moto-api/reset", b"")
        assert status == 200, body

    def client(self, service: str = "s3", **credentials: Any) -> Any:
        """A boto3 client for this server with explicit test credentials (no lookups)."""
        options: dict[str, Any] = {
            "aws_access_key_id": ACCESS_KEY_ID,
            "aws_secret_access_key": SECRET_ACCESS_KEY,
            **credentials,
        }
        return boto3.session.Session().client(
            service,
            endpoint_url=self.endpoint_url,
            region_name=REGION,
            config=Config(retries={"max_attempts": 1}),
            **options,
        )

    def bucket(self, name: str = BUCKET) -> S3Bucket:
        """Create ``name`` and return it with a raw client for the test's own checks."""
        if self._raw is None:
            self._raw = self.client()
        self._raw.create_bucket(Bucket=name)
        return S3Bucket(self, name, self._raw)

    @contextmanager
    def signatures_required(self) -> Iterator[dict[str, str]]:
        """IAM checks on for the block: only the yielded keys (an IAM user allowed ``s3:*``)
        are accepted; any other key id or a wrong secret is refused with 403."""
        iam = self.client("iam")
        try:
            iam.create_user(UserName="llmcache")
            policy = {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
            }
            iam.put_user_policy(
                UserName="llmcache", PolicyName="s3", PolicyDocument=json.dumps(policy)
            )
            key = iam.create_access_key(UserName="llmcache")["AccessKey"]
        finally:
            iam.close()
        status, body = self._request("POST", "/moto-api/reset-auth", b"0")
        assert status == 200, body
        try:
            yield {
                "aws_access_key_id": key["AccessKeyId"],
                "aws_secret_access_key": key["SecretAccessKey"],
            }
        finally:
            status, body = self._request("POST", "/moto-api/reset-auth", b"inf")
            assert status == 200, body


@dataclass
class S3Bucket:
    """A bucket of the test's own on ``server``, and a raw boto3 client to look inside
    (the server's, shared: not to be closed)."""

    server: S3Server
    name: str
    client: Any

    def params(self, **extra: Any) -> dict[str, Any]:
        """``cache_params`` reaching this bucket the way the LiteLLM docs write them."""
        return {
            "type": "s3",
            "s3_bucket_name": self.name,
            "s3_region_name": REGION,
            "s3_endpoint_url": self.server.endpoint_url,
            "s3_aws_access_key_id": ACCESS_KEY_ID,
            "s3_aws_secret_access_key": SECRET_ACCESS_KEY,
            **extra,
        }

    def names(self, prefix: str = "") -> list[str]:
        """Every object name under ``prefix``, listed over HTTP (all pages)."""
        names: list[str] = []
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.name, Prefix=prefix
        )
        for page in pages:
            names += [item["Key"] for item in page.get("Contents") or []]
        return names

    def head(self, name: str) -> dict[str, Any] | None:
        """HeadObject's answer, or None if there is no such object."""
        try:
            answer: dict[str, Any] = self.client.head_object(Bucket=self.name, Key=name)
        except ClientError as exc:
            if exc.response["ResponseMetadata"]["HTTPStatusCode"] == 404:
                return None
            raise
        return answer

    def body(self, name: str) -> bytes:
        data: bytes = self.client.get_object(Bucket=self.name, Key=name)["Body"].read()
        return data

    def put(self, name: str, body: bytes, metadata: dict[str, str] | None = None) -> None:
        """PutObject over HTTP, as another process sharing the bucket would."""
        self.client.put_object(Bucket=self.name, Key=name, Body=body, Metadata=metadata or {})

    def seed(self, names: Iterable[str], body: bytes = b"{}") -> int:
        """Write many objects straight into the server's store (see the module docstring)."""
        from moto.s3.models import s3_backends

        store = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]  # the account of every bucket here
        count = 0
        for name in names:
            store.put_object(self.name, name, body)
            count += 1
        return count


def _start_on(port: int) -> ThreadedMotoServer | None:
    """Start moto on ``port``; None if it cannot bind there.

    ``ThreadedMotoServer.start()`` waits for a ready event that a failed bind never sets,
    so it is called from a helper thread that is given up on after a while.
    """
    server = ThreadedMotoServer(ip_address=HOST, port=port, verbose=False)
    starter = threading.Thread(target=server.start, name=f"moto-start-{port}", daemon=True)
    starter.start()
    starter.join(STARTUP_TIMEOUT)
    return None if starter.is_alive() else server


class ClosedPort:
    """A loopback port held by a bound socket that never listens: connecting to it is
    refused at once, and no other process can start listening there meanwhile."""

    def __init__(self) -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.bind((HOST, 0))
        self.port: int = self._socket.getsockname()[1]

    @property
    def endpoint_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def close(self) -> None:
        self._socket.close()


class ApiCalls:
    """The S3 operations one boto3 client calls, with the parameters the code passed, and
    the headers of each HTTP request it sends (signed, as the server receives them).

    Recorded from the client's own events (``before-parameter-build.s3``,
    ``before-send.s3``): nothing is replaced and every call still goes to the server. Use
    as a context manager (unregisters on exit).
    """

    EVENT = "before-parameter-build.s3"
    SEND = "before-send.s3"

    def __init__(self, client: Any) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.sent: list[dict[str, str]] = []
        self._events = client.meta.events
        self._events.register(self.EVENT, self._record)
        self._events.register(self.SEND, self._record_sent)

    def _record(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        self.calls.append((str(model.name), copy.deepcopy(params)))

    def _record_sent(self, request: Any, **_: Any) -> None:
        headers = {name.lower(): _text(value) for name, value in request.headers.items()}
        self.sent.append({"url": request.url, **headers})

    def of(self, operation: str) -> list[dict[str, Any]]:
        """The parameters of every ``operation`` call (e.g. ``"DeleteObjects"``), in order."""
        return [params for name, params in self.calls if name == operation]

    def clear(self) -> None:
        self.calls.clear()
        self.sent.clear()

    def close(self) -> None:
        self._events.unregister(self.EVENT, self._record)
        self._events.unregister(self.SEND, self._record_sent)

    def __enter__(self) -> ApiCalls:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value
