"""The S3 backend: a durable cache in a bucket (AWS, or any S3-compatible endpoint).

Each entry is one object, its expiry in the object's metadata (``expires-at``). Reads look
at the expiry: an expired object is a miss and is removed. boto3 is synchronous, so
calls run in a bounded thread pool with one shared client (connection reuse, short
timeouts). Keys become ``<s3_path>/<key>``; the ``:``-separated namespaces in keys are
listed with a delimiter, so the terminal app browses them as prefixes.

With ``key_format: litellm`` objects are laid out as LiteLLM's S3 cache lays them out, so
both proxies share a bucket: every ``:`` of a key becomes ``/`` in the object's name
(``<s3_path>/<namespace>/<hash>``), and the expiry is the object's ``Expires`` header (HTTP
date, to the second), with the ``Cache-Control``, ``Content-Language`` and
``Content-Disposition`` LiteLLM writes beside it. Keys stay ``:``-separated above this
module, so the rest of the proxy and the terminal app see the same keys on every backend.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Container, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    DataNotFoundError,
    InvalidRegionError,
    NoCredentialsError,
    ParamValidationError,
    PartialCredentialsError,
)

from llmcache_tui.cache.backends.base import (
    BackendStats,
    CacheBackend,
    KeyInfo,
    ScanPage,
    glob_matcher,
)
from llmcache_tui.cache.backends.breaker import CircuitBreaker
from llmcache_tui.cache.keys import NAMESPACE_SEPARATOR
from llmcache_tui.redact import mask_secrets, mask_url

T = TypeVar("T")
EXPIRES_AT = "expires-at"  # object metadata: Unix time after which the entry is a miss
DELETE_BATCH = 1000  # the most keys one DeleteObjects call takes
COUNTED_DELETE = 100  # deletes of up to this many keys count what existed
POOL_THREADS = 16
# LiteLLM's Cache-Control for an entry without a ttl: a year.
LITELLM_NO_TTL_MAX_AGE = 31536000
MISSING_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
_GLOB = "*?[\\"
# Error codes S3 gives for one request's own data (its key, metadata or body). Every other
# failure (unreachable, timing out, slowing down, a missing bucket, refused credentials)
# concerns all requests and opens the breaker.
REQUEST_FAULT_CODES = frozenset(
    {
        "InvalidArgument",
        "InvalidRequest",
        "KeyTooLongError",
        "MetadataTooLarge",
        "EntityTooLarge",
        "EntityTooSmall",
        "InvalidDigest",
        "BadDigest",
        "InvalidObjectState",
    }
)


class S3Backend(CacheBackend):
    """Entries as objects in one bucket under an optional prefix."""

    cache_type = "s3"
    purge_batch = DELETE_BATCH
    # Reading the start of each object would cost a request per object (a purge deletes a
    # thousand in one call): every object under the prefix is taken to be a cache entry.
    purge_reads_values = False

    def __init__(
        self,
        *,
        bucket: str,
        prefix: str = "",
        client_options: dict[str, Any],
        default_ttl: float | None = None,
        clock: Callable[[], float] = time.time,
        key_format: str = "llmcache",
    ) -> None:
        super().__init__(default_ttl=default_ttl)
        self.bucket = bucket
        self.litellm = key_format == "litellm"
        if self.litellm:
            # LiteLLM strips only the trailing slashes: "/cache" names "/cache/<key>".
            self.prefix = f"{prefix.rstrip('/')}/" if prefix else ""
        else:
            self.prefix = f"{prefix.strip('/')}/" if prefix.strip("/") else ""
        # What separates namespaces in object names (keys always use NAMESPACE_SEPARATOR).
        self.separator = "/" if self.litellm else NAMESPACE_SEPARATOR
        self.clock = clock
        self.breaker = CircuitBreaker()
        self._options = client_options
        config = Config(
            max_pool_connections=POOL_THREADS,
            connect_timeout=2,
            read_timeout=5,
            retries={"max_attempts": 2, "mode": "standard"},
        )
        self._client = boto3.session.Session().client("s3", config=config, **client_options)
        self._pool = ThreadPoolExecutor(max_workers=POOL_THREADS, thread_name_prefix="llmcache-s3")

    async def _run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, lambda: fn(*args, **kwargs))

    def _object(self, key: str) -> str:
        return self.prefix + self._named(key)

    def _named(self, key: str) -> str:
        """``key`` (or the start of one) as it appears in object names."""
        return key.replace(NAMESPACE_SEPARATOR, self.separator) if self.litellm else key

    def _key(self, name: str) -> str:
        rest = name[len(self.prefix) :]
        # LiteLLM's names hold no ":" of a key any more: each "/" was one. A "/" inside a
        # namespace reads as ":" too, and the key names the same object either way.
        return rest.replace(self.separator, NAMESPACE_SEPARATOR) if self.litellm else rest

    # -- primitives -------------------------------------------------------------------
    async def _get(self, key: str) -> bytes | None:
        return await self._run(self._get_sync, key)

    def _get_sync(self, key: str) -> bytes | None:
        try:
            answer = self._client.get_object(Bucket=self.bucket, Key=self._object(key))
        except ClientError as exc:
            if _code(exc) in MISSING_CODES:
                return None
            raise
        expires_at = self._expiry(answer)
        if expires_at is not None and expires_at <= self.clock():
            answer["Body"].close()
            self._client.delete_object(Bucket=self.bucket, Key=self._object(key))
            return None
        body: bytes = answer["Body"].read()
        return body

    async def _get_many(self, keys: list[str]) -> list[bytes | None]:
        return list(await asyncio.gather(*(self._get(key) for key in keys)))

    async def _set(self, key: str, value: bytes, ttl: float | None) -> None:
        name = self._object(key)
        await self._run(
            self._client.put_object,
            Bucket=self.bucket,
            Key=name,
            Body=value,
            **self._expiry_fields(name, ttl),
        )

    def _expiry_fields(self, name: str, ttl: float | None) -> dict[str, Any]:
        """PutObject/CopyObject arguments for the content type and the expiry."""
        if not self.litellm:
            metadata = {} if ttl is None else {EXPIRES_AT: f"{self.clock() + ttl:.3f}"}
            return {"ContentType": "application/json", "Metadata": metadata}
        age = LITELLM_NO_TTL_MAX_AGE if ttl is None else _seconds(ttl)
        fields: dict[str, Any] = {
            "ContentType": "application/json",
            "CacheControl": f"immutable, max-age={age}, s-maxage={age}",
            "ContentLanguage": "en",
        }
        if ttl is not None:
            fields["Expires"] = datetime.fromtimestamp(self.clock() + ttl, tz=UTC)
        if name.isascii() and name.isprintable() and '"' not in name and "\\" not in name:
            fields["ContentDisposition"] = f'inline; filename="{name}.json"'
        return fields

    def _expiry(self, answer: Mapping[str, Any]) -> float | None:
        """The Unix time a GetObject/HeadObject answer's object expires at, if it does."""
        if self.litellm:
            return _http_expiry(answer)
        return _expiry(answer.get("Metadata") or {})

    async def _delete(self, keys: list[str]) -> int:
        # DeleteObjects reports every key it is given as deleted, existing or not. For the
        # few keys a person or /cache/delete names, look first so the count is true; a
        # purge deletes keys it has just listed and skips that cost.
        existing = None
        if len(keys) <= COUNTED_DELETE:
            heads = await asyncio.gather(*(self._head(key) for key in keys))
            existing = sum(1 for found, _ in heads if found)
        deleted = 0
        for start in range(0, len(keys), DELETE_BATCH):
            batch = [{"Key": self._object(key)} for key in keys[start : start + DELETE_BATCH]]
            answer = await self._run(
                self._client.delete_objects,
                Bucket=self.bucket,
                Delete={"Objects": batch, "Quiet": False},
            )
            if answer.get("Errors"):
                error = answer["Errors"][0]
                raise ClientError({"Error": error}, "DeleteObjects")
            deleted += len(answer.get("Deleted") or [])
        return deleted if existing is None else existing

    async def _ping(self) -> bool:
        await self._run(self._client.head_bucket, Bucket=self.bucket)
        return True

    async def _scan(self, match: str, cursor: str | None, count: int) -> ScanPage:
        page = await self._scan_names(match, cursor, count)
        heads = await asyncio.gather(*(self._head(info.key) for info in page.keys))
        infos = [
            KeyInfo(info.key, ttl, info.size)
            for info, (found, ttl) in zip(page.keys, heads, strict=True)
            if found
        ]
        return ScanPage(infos, page.cursor, scanned=page.scanned, total=page.total)

    async def _scan_names(self, match: str, cursor: str | None, count: int) -> ScanPage:
        request: dict[str, Any] = {
            "Bucket": self.bucket,
            "Prefix": self.prefix + self._named(_literal_prefix(match)),
            "MaxKeys": min(count, 1000),
        }
        if cursor:
            request["ContinuationToken"] = cursor
        answer = await self._run(self._client.list_objects_v2, **request)
        matcher = glob_matcher(match)
        objects = answer.get("Contents") or []
        infos = [
            KeyInfo(self._key(item["Key"]), None, int(item.get("Size", 0)))
            for item in objects
            if matcher.match(self._key(item["Key"]))
        ]
        next_cursor = answer.get("NextContinuationToken") if answer.get("IsTruncated") else None
        return ScanPage(infos, next_cursor, scanned=len(objects), total=None)

    async def _list_namespaces(self, parent: str | None) -> list[str] | None:
        """The namespaces directly under ``parent``: S3 common prefixes on ``:`` (on ``/``
        in LiteLLM's layout)."""
        base = self._named(f"{parent}{NAMESPACE_SEPARATOR}") if parent else ""
        found: list[str] = []
        token: str | None = None
        while True:
            request: dict[str, Any] = {
                "Bucket": self.bucket,
                "Prefix": self.prefix + base,
                "Delimiter": self.separator,
            }
            if token:
                request["ContinuationToken"] = token
            answer = await self._run(self._client.list_objects_v2, **request)
            for common in answer.get("CommonPrefixes") or []:
                # Only the delimiter itself: "a::" is the namespace "a:" (an empty segment).
                found.append(self._key(common["Prefix"]).removesuffix(NAMESPACE_SEPARATOR))
            token = answer.get("NextContinuationToken") if answer.get("IsTruncated") else None
            if token is None:
                return found

    async def _head(self, key: str) -> tuple[bool, float | None]:
        """(exists, remaining TTL) of one object."""
        try:
            answer = await self._run(
                self._client.head_object, Bucket=self.bucket, Key=self._object(key)
            )
        except ClientError as exc:
            if _code(exc) in MISSING_CODES:
                return False, None
            raise
        expires_at = self._expiry(answer)
        if expires_at is None:
            return True, None
        remaining = expires_at - self.clock()
        return remaining > 0, max(0.0, remaining)

    async def _ttl(self, key: str) -> float | None:
        found, ttl = await self._head(key)
        if not found:
            raise KeyError(key)
        return ttl

    async def _expire(self, key: str, ttl: float | None) -> bool:
        found, _ = await self._head(key)
        if not found:
            return False
        name = self._object(key)
        # S3 metadata cannot be edited in place: copy the object onto itself with new metadata.
        await self._run(
            self._client.copy_object,
            Bucket=self.bucket,
            Key=name,
            CopySource={"Bucket": self.bucket, "Key": name},
            MetadataDirective="REPLACE",
            **self._expiry_fields(name, ttl),
        )
        return True

    async def _stats(self) -> BackendStats:
        # S3 keeps no object count; counting would mean listing the whole bucket.
        return BackendStats(details={"bucket": self.bucket, "prefix": self.prefix or None})

    def describe(self) -> dict[str, Any]:
        shown = {"s3_bucket_name": self.bucket, "s3_path": self.prefix or None}
        for name, value in self._options.items():
            shown[f"s3_{name}"] = value
        masked: dict[str, Any] = mask_secrets({k: v for k, v in shown.items() if v is not None})
        return masked

    async def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._client.close()

    def _outage(self, exc: Exception) -> bool:
        if isinstance(exc, ClientError):
            return _code(exc) not in REQUEST_FAULT_CODES
        # botocore checks parameters before sending anything: a bad one is this call's.
        return not isinstance(exc, ParamValidationError | TypeError | ValueError)

    def _explain(self, exc: Exception) -> str:
        where = f"bucket {self.bucket!r}"
        if isinstance(exc, ClientError):
            code = _code(exc)
            if code in ("NoSuchBucket", "404") or (
                code == "NotFound" and exc.operation_name == "HeadBucket"
            ):
                return f"{where} does not exist"
            if code in ("AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
                return f"access to {where} was refused ({code}): check the credentials"
            return f"S3 refused the request on {where}: {code}"
        if isinstance(exc, NoCredentialsError):
            return (
                f"no AWS credentials for {where}: set s3_aws_access_key_id and"
                " s3_aws_secret_access_key, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
            )
        if isinstance(exc, BotoCoreError):
            return f"cannot reach S3 for {where}: {exc}"
        return f"{type(exc).__name__}: {exc}"


def client_problem(exc: Exception, configured: Container[str]) -> str | None:
    """The setting at fault, for an error boto3 raised while building the client
    (``configured``: the client arguments cache_params gave, the rest came from the
    environment); ``None`` if the error is not about the settings."""
    if isinstance(exc, PartialCredentialsError):
        missing = str(exc.kwargs.get("cred_var", ""))
        if exc.kwargs.get("provider") == "explicit":
            given = "secret_access_key" if missing == "aws_access_key_id" else "access_key_id"
            return f"litellm_settings.cache_params.s3_{missing}: required with s3_aws_{given}"
        return f"AWS credentials from the environment: {exc}"
    if isinstance(exc, InvalidRegionError):
        argument, fallback = "region_name", "AWS_DEFAULT_REGION / AWS_REGION"
    elif isinstance(exc, DataNotFoundError):
        argument, fallback = "api_version", "s3_api_version"
    elif isinstance(exc, ValueError) and str(exc).startswith("Invalid endpoint"):
        argument, fallback = "endpoint_url", "AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL"
    else:
        return None
    where = f"litellm_settings.cache_params.s3_{argument}" if argument in configured else fallback
    return f"{where}: {mask_url(str(exc))}"


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _expiry(metadata: dict[str, str]) -> float | None:
    value = metadata.get(EXPIRES_AT)
    try:
        return None if value is None else float(value)
    except ValueError:
        return None


def _http_expiry(answer: Mapping[str, Any]) -> float | None:
    """The ``Expires`` header of an object as Unix time (LiteLLM's expiry)."""
    headers = (answer.get("ResponseMetadata") or {}).get("HTTPHeaders") or {}
    value = headers.get("expires")
    if isinstance(value, str):
        try:
            return parsedate_to_datetime(value).timestamp()
        except (TypeError, ValueError):
            return None  # an unreadable date: LiteLLM too keeps the object
    parsed = answer.get("Expires")
    return parsed.timestamp() if isinstance(parsed, datetime) else None


def _seconds(ttl: float) -> int | float:
    """A ttl as LiteLLM writes it into Cache-Control: whole seconds without a fraction."""
    return int(ttl) if float(ttl).is_integer() else ttl


def _literal_prefix(match: str) -> str:
    """The part of a glob before its first wildcard: a prefix S3 can filter on."""
    for index, char in enumerate(match):
        if char in _GLOB:
            return match[:index]
    return match
