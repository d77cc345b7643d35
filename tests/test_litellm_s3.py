"""Our proxy sharing an S3 bucket with LiteLLM (``key_format: litellm``), on moto's server.

The objects LiteLLM 1.108 wrote to a bucket (``s3`` in tests/data/litellm_reference.json)
are put into the bucket under the names LiteLLM gave them, with the headers it gave them;
our proxy must serve them as hits without calling upstream. What our proxy writes must have
LiteLLM's names, headers and body shape, and its ``Expires`` must be honoured both ways.
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import pytest

from llmcache_tui.cache.backends.s3 import EXPIRES_AT, S3Backend
from tests.conftest import ProxyFactory
from tests.fake_upstream import FakeUpstreamServer
from tests.redis_support import HIT, MISS_STORED
from tests.s3_server import ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY, S3Bucket
from tests.servers import RunningProxy
from tests.test_litellm_keys import NAMESPACE, REFERENCE

pytestmark = pytest.mark.usefixtures("no_aws_env")

S3 = REFERENCE["s3"]
MODELS = {"fake": "openai/fake-model", "fake-instruct": "openai/gpt-3.5-turbo-instruct",
          "fake-embed": "openai/text-embedding-3-small"}  # fmt: skip
# Run name -> the cache_params LiteLLM had (tests/data/make_litellm_reference.py: S3_RUNS).
RUN_PARAMS: dict[str, dict[str, Any]] = {
    "plain": {},
    "namespace_path_ttl": {"namespace": NAMESPACE, "s3_path": S3["s3_path"], "ttl": 600},
}
HEADERS = ("content-type", "cache-control", "content-language", "content-disposition")
SHARED = ["chat_plain", "chat_request_namespace", "chat_stream", "text_completion",
          "chat_request_ttl", "chat_namespace_with_colons"]  # fmt: skip


def case(run: str, name: str) -> dict[str, Any]:
    return next(c for c in S3["runs"][run] if c["name"] == name)


def cases(*names: str) -> list[Any]:
    return [pytest.param(run, name, id=f"{run}-{name}") for run in RUN_PARAMS for name in names]


def shared_proxy(make_proxy: ProxyFactory, bucket: S3Bucket, run: str) -> RunningProxy:
    params = bucket.params(**RUN_PARAMS[run], key_format="litellm")
    return make_proxy(params, cache_type="s3", models=MODELS)


def put_litellms(bucket: S3Bucket, recorded: dict[str, Any], expires_in: float | None) -> None:
    """Put LiteLLM's objects of a case into the bucket as LiteLLM's S3Cache writes them,
    written now; ``expires_in`` seconds from now is the Expires header (None: none)."""
    for name, stored in recorded["objects"].items():
        document = json.loads(stored["body"])
        document["timestamp"] = time.time()
        fields: dict[str, Any] = {
            "ContentType": stored["content-type"],
            "CacheControl": stored["cache-control"],
            "ContentLanguage": stored["content-language"],
            "ContentDisposition": stored["content-disposition"],
        }
        if expires_in is not None:
            fields["Expires"] = datetime.fromtimestamp(time.time() + expires_in, tz=UTC)
        bucket.client.put_object(Bucket=bucket.name, Key=name, Body=json.dumps(document), **fields)


def recorded_ttl(stored: dict[str, Any]) -> float | None:
    """The ttl LiteLLM gave an object, from its Cache-Control (None: it has no Expires)."""
    if stored["expires"] is None:
        return None
    return float(stored["cache-control"].split("max-age=")[1].split(",")[0])


def send(http: httpx.Client, recorded: dict[str, Any]) -> httpx.Response:
    return http.post(recorded["path"], content=recorded["body"],
                     headers={"content-type": "application/json"})  # fmt: skip


def expires(head: dict[str, Any]) -> float | None:
    value = head["ResponseMetadata"]["HTTPHeaders"].get("expires")
    return None if value is None else parsedate_to_datetime(value).timestamp()


# ----------------------------------------------------------------------- LiteLLM's -> ours


@pytest.mark.parametrize(("run", "name"), cases(*SHARED))
def test_litellms_objects_are_hits_for_our_proxy(
    run: str, name: str, s3_bucket: S3Bucket, make_proxy: ProxyFactory,
    upstream: FakeUpstreamServer,
) -> None:  # fmt: skip
    recorded = case(run, name)
    put_litellms(s3_bucket, recorded, recorded_ttl(next(iter(recorded["objects"].values()))))
    proxy = shared_proxy(make_proxy, s3_bucket, run)
    with proxy.http() as http:
        reply = send(http, recorded)
        assert reply.status_code == 200, reply.text
        assert reply.headers["cache-status"] == HIT
        # The key LiteLLM named in its own hit, for the object it wrote.
        assert (
            reply.headers["x-litellm-cache-key"]
            == recorded["second"]["headers"]["x-litellm-cache-key"]
        )
        if "stream" not in recorded["body"]:
            (stored,) = recorded["objects"].values()
            answer = json.loads(json.loads(stored["body"])["response"])
            assert reply.json() == answer
    assert upstream.app.call_count() == 0
    assert len(s3_bucket.names()) == 1  # read, not rewritten beside


def test_a_litellm_object_past_its_expires_header_is_a_miss(
    s3_bucket: S3Bucket, make_proxy: ProxyFactory, upstream: FakeUpstreamServer
) -> None:
    recorded = case("plain", "chat_request_ttl")
    (name,) = recorded["objects"]
    put_litellms(s3_bucket, recorded, expires_in=-5)
    proxy = shared_proxy(make_proxy, s3_bucket, "plain")
    with proxy.http() as http:
        assert send(http, recorded).headers["cache-status"] == MISS_STORED
        assert send(http, recorded).headers["cache-status"] == HIT
    assert upstream.app.call_count("chat/completions") == 1
    assert s3_bucket.names() == [name]  # stored again under LiteLLM's name
    head = s3_bucket.head(name)
    assert head is not None
    assert (expires(head) or 0) > time.time()


@pytest.mark.parametrize("run", list(RUN_PARAMS))
def test_litellms_whole_embedding_answer_is_a_hit(
    run: str, s3_bucket: S3Bucket, make_proxy: ProxyFactory, upstream: FakeUpstreamServer
) -> None:
    """On S3 LiteLLM keeps an embedding answer whole, under the whole request's key (not
    one entry per input, as on Redis): that one object answers the request."""
    recorded = case(run, "embedding_many")
    ((name, stored),) = recorded["objects"].items()
    put_litellms(s3_bucket, recorded, recorded_ttl(stored))
    proxy = shared_proxy(make_proxy, s3_bucket, run)
    with proxy.http() as http:
        reply = send(http, recorded)
        assert reply.status_code == 200, reply.text
        assert reply.headers["cache-status"] == HIT
        assert reply.headers["x-litellm-cache-key"] == name.removeprefix(
            RUN_PARAMS[run].get("s3_path", "")
        ).replace("/", ":")
        answer = json.loads(json.loads(stored["body"])["response"])
        assert reply.json()["data"] == answer["data"]
    assert upstream.app.call_count() == 0


# ----------------------------------------------------------------------- ours -> LiteLLM's


@pytest.mark.parametrize(
    ("run", "name"),
    cases("chat_plain", "chat_request_namespace", "chat_request_ttl",
          "chat_namespace_with_colons", "text_completion", "embedding_many"),
)  # fmt: skip
def test_what_our_proxy_writes_is_what_litellm_writes(
    run: str, name: str, s3_bucket: S3Bucket, make_proxy: ProxyFactory
) -> None:
    recorded = case(run, name)
    ((object_name, theirs),) = recorded["objects"].items()
    proxy = shared_proxy(make_proxy, s3_bucket, run)
    with proxy.http() as http:
        before = time.time()
        assert send(http, recorded).headers["cache-status"] == MISS_STORED
        after = time.time()
        assert send(http, recorded).headers["cache-status"] == HIT
    assert s3_bucket.names() == [object_name]
    head = s3_bucket.head(object_name)
    assert head is not None
    sent = head["ResponseMetadata"]["HTTPHeaders"]
    assert {field: sent.get(field) for field in HEADERS} == {f: theirs[f] for f in HEADERS}
    assert head["Metadata"] == theirs["metadata"] == {}
    ttl = recorded_ttl(theirs)
    if ttl is None:
        assert expires(head) is None
    else:  # an HTTP date holds whole seconds
        assert before + ttl - 1 <= (expires(head) or 0) <= after + ttl
    mine = json.loads(s3_bucket.body(object_name))
    their = json.loads(theirs["body"])
    assert list(mine) == list(their) == ["timestamp", "response"]
    answer, reference = json.loads(mine["response"]), json.loads(their["response"])
    assert answer["object"] == reference["object"]
    if "data" in reference:  # an embedding answer, whole
        assert answer["data"] == reference["data"]
    else:
        assert answer["choices"][0]["finish_reason"] == reference["choices"][0]["finish_reason"]


def test_the_default_format_is_unchanged_on_the_same_bucket(
    s3_bucket: S3Bucket, make_proxy: ProxyFactory
) -> None:
    recorded = case("namespace_path_ttl", "chat_plain")
    params = s3_bucket.params(**RUN_PARAMS["namespace_path_ttl"])
    proxy = make_proxy(params, cache_type="s3", models=MODELS)
    with proxy.http() as http:
        key = send(http, recorded).headers["x-litellm-cache-key"]
    assert key.startswith(NAMESPACE + ":")
    name = f"{S3['s3_path']}{key}"
    assert s3_bucket.names() == [name]  # ":" kept, no LiteLLM headers, expiry in metadata
    head = s3_bucket.head(name)
    assert head is not None
    assert expires(head) is None
    assert EXPIRES_AT in head["Metadata"]
    assert "cache-control" not in head["ResponseMetadata"]["HTTPHeaders"]


# ---------------------------------------------------------------- the backend, for the browser


def litellm_backend(bucket: S3Bucket, prefix: str = "", **kwargs: Any) -> S3Backend:
    options = {
        "endpoint_url": bucket.server.endpoint_url,
        "region_name": REGION,
        "aws_access_key_id": ACCESS_KEY_ID,
        "aws_secret_access_key": SECRET_ACCESS_KEY,
    }
    return S3Backend(
        bucket=bucket.name, prefix=prefix, client_options=options, key_format="litellm",
        **kwargs,
    )  # fmt: skip


def test_litellms_objects_browse_as_colon_keys_with_namespaces_and_ttls(
    s3_bucket: S3Bucket,
) -> None:
    for recorded in S3["runs"]["namespace_path_ttl"]:
        put_litellms(s3_bucket, recorded, recorded_ttl(next(iter(recorded["objects"].values()))))
    backend = litellm_backend(s3_bucket, prefix=S3["s3_path"])

    async def look() -> None:
        try:
            names = {n.removeprefix(S3["s3_path"]) for n in s3_bucket.names()}
            page = await backend.scan("*", None, 100)
            keys = {info.key for info in page.keys}
            assert keys == {name.replace("/", ":") for name in names}
            assert "team:a:bbead14c809de455ff5969be952ee11263c6eab371f346878c7e43b261a1ec3c" in keys
            assert sorted(await backend.list_namespaces(None) or []) == sorted(
                [NAMESPACE, "team", "team-a"]
            )
            assert await backend.list_namespaces("team") == ["team:a"]
            scoped = await backend.scan(f"{NAMESPACE}:*", None, 100)
            assert {info.key.split(":")[0] for info in scoped.keys} == {NAMESPACE}
            ttls = {info.key: info.ttl for info in page.keys}
            assert all(ttl is not None and 0 < ttl <= 600 for ttl in ttls.values())
            key = next(k for k in keys if k.startswith("team-a:"))
            raw = await backend.get(key)
            assert raw is not None and json.loads(raw)["response"].startswith("{")
        finally:
            await backend.close()

    asyncio.run(look())


def test_the_backend_reads_and_writes_expires_on_its_clock(s3_bucket: S3Bucket) -> None:
    now = [time.time()]
    backend = litellm_backend(s3_bucket, prefix="/cache", clock=lambda: now[0])
    name = "/cache/team/a/" + "0" * 64  # LiteLLM keeps a leading slash of s3_path

    async def run() -> None:
        try:
            await backend.set("team:a:" + "0" * 64, b'{"timestamp": 1, "response": "{}"}', 120)
            assert s3_bucket.names() == [name]
            ttl = await backend.ttl("team:a:" + "0" * 64)
            assert ttl is not None and 119 <= ttl <= 120
            assert await backend.expire("team:a:" + "0" * 64, None)
            head = s3_bucket.head(name)
            assert head is not None and expires(head) is None
            assert head["CacheControl"] == "immutable, max-age=31536000, s-maxage=31536000"
            assert await backend.expire("team:a:" + "0" * 64, 30)
            now[0] += 31
            assert await backend.get("team:a:" + "0" * 64) is None
            assert s3_bucket.names() == []  # an expired object is removed, as ours are
        finally:
            await backend.close()

    asyncio.run(run())
