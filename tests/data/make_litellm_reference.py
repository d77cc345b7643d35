"""Write litellm_reference.json: cache keys and stored values from a real LiteLLM proxy.

Not run by the test suite. It starts a ``redis-server``, the fake upstream of
``tests/fake_upstream.py`` and LiteLLM's own proxy (``litellm --config ...``) configured with
a Redis cache, sends each request of ``CASES`` twice through LiteLLM, and records what LiteLLM
wrote to Redis (key and raw value), the text it hashed into each key, and whether the second
call was a hit. It runs LiteLLM twice: once with no namespace and once with
``cache_params.namespace``. It needs LiteLLM 1.108 in the running interpreter, in a venv of
its own, outside the repository:

    python3 -m venv /tmp/litellm-venv
    /tmp/litellm-venv/bin/pip install 'litellm[proxy]>=1.108,<1.109' httptools
    /tmp/litellm-venv/bin/python tests/data/make_litellm_reference.py

Run it from the repository root (the fake upstream is imported from ``tests``). With
``LLMCACHE_PYTHON`` naming an interpreter that has this project's dependencies, it also runs
our proxy (``key_format: litellm``) beside LiteLLM on one Redis, writes
each case through one and reads it through the other, and records what the reader answered
under ``shared``:

    LLMCACHE_PYTHON=.venv/bin/python /tmp/litellm-venv/bin/python \
        tests/data/make_litellm_reference.py

With ``--s3`` it records LiteLLM's S3 cache instead, on a moto server started from
``MOTO_PYTHON`` (or ``LLMCACHE_PYTHON``), and writes only the file's ``s3`` section: the
objects LiteLLM wrote (name, body, headers) per case, and with ``LLMCACHE_PYTHON`` the
side-by-side run on one bucket:

    LLMCACHE_PYTHON=.venv/bin/python /tmp/litellm-venv/bin/python \
        tests/data/make_litellm_reference.py --s3
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

import httpx
import redis

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from tests.fake_upstream import FakeUpstreamServer  # noqa: E402

OUT = Path(__file__).with_name("litellm_reference.json")
NAMESPACE = "litellm.caching.caching"
MASTER_KEY = "sk-reference-" + "0123456789abcdef" * 3  # a throwaway local proxy's key

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather of a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
]

# (name, path, body as sent: key order matters to LiteLLM)
CASES: list[tuple[str, str, dict[str, Any]]] = [
    (
        "chat_plain",
        "/v1/chat/completions",
        {"model": "fake", "messages": [{"role": "user", "content": "tui alpha"}]},
    ),
    (
        "chat_params",
        "/v1/chat/completions",
        {
            "model": "fake",
            "messages": [{"role": "user", "content": "tui params"}],
            "temperature": 0.2,
            "max_tokens": 50,
            "top_p": 1.0,
            "seed": 7,
            "stop": ["\n\n"],
            "user": "u-1",
            "tools": TOOLS,
            "tool_choice": "auto",
        },
    ),
    (
        "chat_params_reordered",
        "/v1/chat/completions",
        {
            "tool_choice": "auto",
            "tools": TOOLS,
            "user": "u-1",
            "stop": ["\n\n"],
            "seed": 7,
            "top_p": 1.0,
            "max_tokens": 50,
            "temperature": 0.2,
            "messages": [{"role": "user", "content": "tui params"}],
            "model": "fake",
        },
    ),
    (
        "chat_whole_float",
        "/v1/chat/completions",
        {"model": "fake", "messages": [{"role": "user", "content": "tui alpha"}], "temperature": 1},
    ),
    (
        "chat_unicode_system",
        "/v1/chat/completions",
        {
            "model": "fake",
            "messages": [
                {"role": "system", "content": 'Réponds "brièvement" — it\'s 東京\n'},
                {"role": "user", "content": [{"type": "text", "text": "tui ünï"}]},
            ],
            "response_format": {"type": "json_object"},
            "n": 1,
            "logprobs": False,
            "frequency_penalty": 0,
            "metadata": {"trace": "x"},
            "extra_thing": None,
        },
    ),
    (
        "chat_request_namespace",
        "/v1/chat/completions",
        {
            "model": "fake",
            "messages": [{"role": "user", "content": "tui alpha"}],
            "cache": {"namespace": "team-a"},
        },
    ),
    (
        "chat_stream",
        "/v1/chat/completions",
        {
            "model": "fake",
            "messages": [{"role": "user", "content": "tui stream me"}],
            "stream": True,
        },
    ),
    (
        "chat_stream_false_first",
        "/v1/chat/completions",
        {
            "stream": False,
            "temperature": 0.5,
            "model": "fake",
            "messages": [{"role": "user", "content": "tui alpha"}],
        },
    ),
    (
        "chat_stream_options",
        "/v1/chat/completions",
        {
            "model": "fake",
            "messages": [{"role": "user", "content": "tui stream me"}],
            "stream_options": {"include_usage": False},
            "stream": True,
            "temperature": 0.3,
        },
    ),
    (
        "chat_nulls_unknown",
        "/v1/chat/completions",
        {
            "model": "fake",
            "messages": [{"role": "user", "content": "tui alpha"}],
            "temperature": None,
            "extra": "x",
            "user": "u-2",
            "store": False,
        },
    ),
    (
        "text_completion_stream",
        "/v1/completions",
        {"model": "fake-instruct", "prompt": "tui stream text", "stream": True},
    ),
    (
        "embedding_params",
        "/v1/embeddings",
        {"model": "fake-embed", "input": ["tui zeta"], "encoding_format": "float", "dimensions": 8},
    ),
    (
        "text_completion",
        "/v1/completions",
        {"model": "fake-instruct", "prompt": "tui beta", "max_tokens": 16},
    ),
    (
        "text_completion_reordered",
        "/v1/completions",
        {"max_tokens": 16, "stream": False, "prompt": "tui beta", "model": "fake-instruct"},
    ),
    (
        "embedding_reordered",
        "/v1/embeddings",
        {"dimensions": 8, "input": ["tui zeta"], "model": "fake-embed"},
    ),
    ("embedding_one", "/v1/embeddings", {"model": "fake-embed", "input": "tui gamma"}),
    (
        "embedding_many",
        "/v1/embeddings",
        {"model": "fake-embed", "input": ["tui delta", "tui epsilon"]},
    ),
]


def litellm_config(
    upstream: str,
    redis_port: int,
    namespace: str | None,
    shared: bool = False,
    cache_params: dict[str, Any] | None = None,
) -> str:
    params: dict[str, Any] = (
        dict(cache_params)
        if cache_params
        else {"type": "redis", "host": "127.0.0.1", "port": redis_port}
    )
    if namespace:
        params["namespace"] = namespace
    if shared:
        # Ours. LiteLLM hands unknown cache_params to its Redis client, which refuses them,
        # so each proxy has a config file of its own.
        params["key_format"] = "litellm"
    config = {
        "model_list": [
            {
                "model_name": "fake",
                "litellm_params": {
                    "model": "openai/fake-model",
                    "api_base": upstream,
                    "api_key": "sk-fake",
                },
            },
            {
                "model_name": "fake-instruct",
                "litellm_params": {
                    "model": "text-completion-openai/gpt-3.5-turbo-instruct",
                    "api_base": upstream,
                    "api_key": "sk-fake",
                },
            },
            {
                "model_name": "fake-embed",
                "litellm_params": {
                    "model": "openai/text-embedding-3-small",
                    "api_base": upstream,
                    "api_key": "sk-fake",
                },
            },
        ],
        "litellm_settings": {"cache": True, "cache_params": params},
        "general_settings": {"master_key": MASTER_KEY},
    }
    return json.dumps(config)  # JSON is YAML


# Run inside the LiteLLM proxy process: record the text each key is the hash of.
SERVE = """
import json, sys
from litellm.caching.caching import Cache
original = Cache._get_hashed_cache_key
record_to = sys.argv[1]
def recording(material):
    digest = original(material)
    with open(record_to, "a") as out:
        out.write(json.dumps({"digest": digest, "material": material}) + "\\n")
    return digest
Cache._get_hashed_cache_key = staticmethod(recording)
from litellm.proxy.proxy_cli import run_server
sys.argv = ["litellm", *sys.argv[2:]]
run_server()
"""


def wait_http(url: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"{url} did not come up")


def run_litellm(
    work: Path, upstream: str, redis_port: int, namespace: str | None, port: int
) -> list[dict[str, Any]]:
    config = work / f"config-{port}.yaml"
    config.write_text(litellm_config(upstream, redis_port, namespace))
    materials = work / f"materials-{port}.jsonl"
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    log = (work / f"litellm-{port}.log").open("w")
    proxy = subprocess.Popen(
        [
            sys.executable,
            "-c",
            SERVE,
            str(materials),
            "--config",
            str(config),
            "--port",
            str(port),
            "--host",
            "127.0.0.1",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    store = redis.Redis(port=redis_port)
    results = []
    try:
        wait_http(f"http://127.0.0.1:{port}/health/liveliness")
        for name, path, body in CASES:
            store.flushall()
            materials.write_text("")
            replies = []
            for _ in range(2):
                reply = httpx.post(
                    f"http://127.0.0.1:{port}{path}",
                    content=json.dumps(body),
                    headers={
                        "content-type": "application/json",
                        "authorization": f"Bearer {MASTER_KEY}",
                    },
                    timeout=60,
                )
                replies.append(reply)
                time.sleep(0.5)  # LiteLLM writes the cache after answering
            stored = {}
            for key in store.scan_iter(count=1000):
                stored[key.decode()] = store.get(key).decode()
            digests = [json.loads(line) for line in materials.read_text().splitlines()]
            results.append(
                {
                    "name": name,
                    "path": path,
                    "body": json.dumps(body),
                    "materials": list({d["material"]: d["digest"] for d in digests}.items()),
                    "stored": stored,
                    "first": {
                        "status": replies[0].status_code,
                        "headers": {
                            k: v
                            for k, v in replies[0].headers.items()
                            if k.startswith("x-litellm-cache")
                        },
                        "body": replies[0].text,
                    },
                    "second": {
                        "status": replies[1].status_code,
                        "headers": {
                            k: v
                            for k, v in replies[1].headers.items()
                            if k.startswith("x-litellm-cache")
                        },
                        "body": replies[1].text,
                    },
                }
            )
    finally:
        proxy.terminate()
        proxy.wait(30)
        log.close()
    return results


def entry_count(store: redis.Redis) -> int:
    """Response cache entries in Redis (LiteLLM also keeps spend counters there)."""
    return sum(1 for key in store.scan_iter(count=1000) if not key.endswith(b":tokens"))


class RedisStore:
    """The shared run's view of Redis: empty it, count its entries."""

    def __init__(self, port: int) -> None:
        self.client = redis.Redis(port=port)

    def flush(self) -> None:
        self.client.flushall()

    def count(self) -> int:
        return entry_count(self.client)


def run_shared(
    work: Path,
    fake: FakeUpstreamServer,
    redis_port: int,
    port: int,
    ours_port: int,
    ours: str,
    cache_params: dict[str, Any] | None = None,
    store: Any = None,
    cases: list[tuple[str, str, dict[str, Any]]] = CASES,
) -> list[dict[str, Any]]:
    """Both proxies on one Redis (or, with ``cache_params`` and ``store``, one S3 bucket):
    each case written through one and read through the other, both ways, under the
    per-request namespace ``<writer>-writes-<case>``; what the reader answered, and whether
    it called upstream, is recorded."""
    upstream = fake.url
    kind = "s3" if cache_params else "shared"
    config = work / f"config-{kind}-litellm.yaml"
    config.write_text(litellm_config(upstream, redis_port, NAMESPACE, cache_params=cache_params))
    our_config = work / f"config-{kind}-ours.yaml"
    our_config.write_text(
        litellm_config(upstream, redis_port, NAMESPACE, shared=True, cache_params=cache_params)
    )
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    logs = [(work / f"{kind}-{name}.log").open("w") for name in ("litellm", "ours")]
    theirs_proxy = subprocess.Popen(
        [sys.executable, "-c", SERVE, str(work / "shared.jsonl"), "--config", str(config),
         "--port", str(port), "--host", "127.0.0.1"],
        env=env, stdout=logs[0], stderr=subprocess.STDOUT,
    )  # fmt: skip
    ours_proxy = subprocess.Popen(
        [ours, "-m", "llmcache_tui", "--headless", "serve", "--config", str(our_config),
         "--port", str(ours_port)],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=logs[1],
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    proxies = {"litellm": port, "llmcache": ours_port}
    store = store or RedisStore(redis_port)
    results = []
    try:
        wait_http(f"http://127.0.0.1:{port}/health/liveliness")
        wait_http(f"http://127.0.0.1:{ours_port}/health")
        for name, path, body in cases:
            for writer, reader in (("llmcache", "litellm"), ("litellm", "llmcache")):
                # A namespace per case and direction: LiteLLM keeps what it read or wrote
                # in memory (600 s), and would answer a repeated key from there.
                body = {**body, "cache": {"namespace": f"{writer}-writes-{name}"}}
                store.flush()
                replies = []
                calls = 0
                for who in (writer, reader):
                    if who == reader:
                        # LiteLLM writes the cache in the background after answering.
                        wanted = len(body["input"]) if isinstance(body.get("input"), list) else 1
                        deadline = time.monotonic() + 10
                        while store.count() < wanted and time.monotonic() < deadline:
                            time.sleep(0.1)
                        calls = fake.app.call_count()
                    reply = httpx.post(
                        f"http://127.0.0.1:{proxies[who]}{path}",
                        content=json.dumps(body),
                        headers={
                            "content-type": "application/json",
                            "authorization": f"Bearer {MASTER_KEY}",
                        },
                        timeout=60,
                    )
                    replies.append(reply)
                results.append(
                    {
                        "name": name,
                        "writer": writer,
                        "reader": reader,
                        "reader_called_upstream": fake.app.call_count() - calls,
                        "written": replies[0].text,
                        "read": replies[1].text,
                        "reader_headers": {
                            k: v
                            for k, v in replies[1].headers.items()
                            if k.startswith("x-litellm") or k == "cache-status"
                        },
                    }
                )
    finally:
        for proxy in (theirs_proxy, ours_proxy):
            proxy.terminate()
            proxy.wait(30)
        for log in logs:
            log.close()
    return results


# -- S3 ------------------------------------------------------------------------------------
S3_BUCKET = "litellm-reference"
S3_CREDENTIALS = {"s3_aws_access_key_id": "testing", "s3_aws_secret_access_key": "testing"}
S3_PATH = "llm/cache/"
# The S3 runs' cases: some of CASES, and per-request namespaces and ttls.
S3_CASES: list[tuple[str, str, dict[str, Any]]] = [
    case
    for case in CASES
    if case[0] in ("chat_plain", "chat_request_namespace", "chat_stream", "text_completion",
                   "embedding_many")
] + [
    (
        "chat_request_ttl",
        "/v1/chat/completions",
        {"model": "fake", "messages": [{"role": "user", "content": "tui ttl"}],
         "cache": {"ttl": 60}},
    ),
    (
        "chat_namespace_with_colons",
        "/v1/chat/completions",
        {"model": "fake", "messages": [{"role": "user", "content": "tui alpha"}],
         "cache": {"namespace": "team:a"}},
    ),
]  # fmt: skip
# Run name -> cache_params beyond the bucket: with none, and with a namespace, prefix and ttl.
S3_RUNS: dict[str, dict[str, Any]] = {
    "plain": {},
    "namespace_path_ttl": {"namespace": NAMESPACE, "s3_path": S3_PATH, "ttl": 600},
}


class S3Store:
    """One bucket on a moto server: empty it, count and read its objects."""

    def __init__(self, endpoint: str) -> None:
        import boto3

        self.client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        self.client.create_bucket(Bucket=S3_BUCKET)

    def names(self) -> list[str]:
        answer = self.client.list_objects_v2(Bucket=S3_BUCKET)
        return [item["Key"] for item in answer.get("Contents") or []]

    def flush(self) -> None:
        for name in self.names():
            self.client.delete_object(Bucket=S3_BUCKET, Key=name)

    def count(self) -> int:
        return len(self.names())

    def objects(self) -> dict[str, dict[str, Any]]:
        """Each object's body and the headers S3 keeps with it, as S3 sends them."""
        found = {}
        for name in self.names():
            answer = self.client.get_object(Bucket=S3_BUCKET, Key=name)
            headers = answer["ResponseMetadata"]["HTTPHeaders"]
            found[name] = {
                "body": answer["Body"].read().decode(),
                "metadata": answer.get("Metadata") or {},
                **{
                    field: headers.get(field)
                    for field in (
                        "content-type",
                        "cache-control",
                        "expires",
                        "content-language",
                        "content-disposition",
                    )
                },
            }
        return found


def start_moto(python: str, port: int) -> subprocess.Popen[bytes]:
    """moto's S3 server (from the interpreter that has moto) on loopback."""
    server = subprocess.Popen(
        [python, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_http(f"http://127.0.0.1:{port}/")
    return server


def s3_params(endpoint: str, extra: dict[str, Any]) -> dict[str, Any]:
    return {"type": "s3", "s3_bucket_name": S3_BUCKET, "s3_endpoint_url": endpoint,
            "s3_region_name": "us-east-1", **S3_CREDENTIALS, **extra}  # fmt: skip


def run_litellm_s3(
    work: Path, upstream: str, store: S3Store, endpoint: str, run: str, port: int
) -> list[dict[str, Any]]:
    """Each S3 case sent twice through LiteLLM on an empty bucket; the objects it wrote."""
    extra = dict(S3_RUNS[run])
    namespace = extra.pop("namespace", None)
    config = work / f"config-s3-{run}.yaml"
    config.write_text(
        litellm_config(upstream, 0, namespace, cache_params=s3_params(endpoint, extra))
    )
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    log = (work / f"litellm-s3-{run}.log").open("w")
    materials = work / f"materials-s3-{run}.jsonl"
    proxy = subprocess.Popen(
        [sys.executable, "-c", SERVE, str(materials), "--config", str(config),
         "--port", str(port), "--host", "127.0.0.1"],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    results = []
    try:
        wait_http(f"http://127.0.0.1:{port}/health/liveliness")
        for name, path, body in S3_CASES:
            store.flush()
            sent_at = time.time()
            replies = []
            for _ in range(2):
                reply = httpx.post(
                    f"http://127.0.0.1:{port}{path}",
                    content=json.dumps(body),
                    headers={
                        "content-type": "application/json",
                        "authorization": f"Bearer {MASTER_KEY}",
                    },
                    timeout=60,
                )
                replies.append(
                    {
                        "status": reply.status_code,
                        "headers": {
                            k: v for k, v in reply.headers.items()
                            if k.startswith("x-litellm-cache")
                        },
                    }
                )  # fmt: skip
                time.sleep(0.5)  # LiteLLM writes the cache after answering
            results.append(
                {
                    "name": name,
                    "path": path,
                    "body": json.dumps(body),
                    "sent_at": sent_at,
                    "objects": store.objects(),
                    "first": replies[0],
                    "second": replies[1],
                }
            )
    finally:
        proxy.terminate()
        proxy.wait(30)
        log.close()
    return results


def main_s3(ours: str | None) -> None:
    """Add the ``s3`` section to the existing reference file, leaving the rest as it is."""
    moto_python = os.environ.get("MOTO_PYTHON") or ours
    if not moto_python:
        raise SystemExit("--s3 needs MOTO_PYTHON or LLMCACHE_PYTHON: an interpreter with moto")
    document = json.loads(OUT.read_text())
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(os.environ.get("LITELLM_REFERENCE_WORK", tmp))
        moto_port = 16410
        endpoint = f"http://127.0.0.1:{moto_port}"
        moto = start_moto(moto_python, moto_port)
        fake = FakeUpstreamServer().start()
        try:
            store = S3Store(endpoint)
            runs = {
                run: run_litellm_s3(work, fake.url, store, endpoint, run, 16411 + index)
                for index, run in enumerate(S3_RUNS)
            }
            shared = None
            if ours:
                params = s3_params(endpoint, {})
                shared = run_shared(work, fake, 0, 16414, 16415, ours, cache_params=params,
                                    store=store, cases=S3_CASES)  # fmt: skip
        finally:
            fake.stop()
            moto.terminate()
    document["s3"] = {"bucket": S3_BUCKET, "s3_path": S3_PATH, "runs": runs, "shared": shared}
    OUT.write_text(json.dumps(document, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote the s3 section of {OUT}")


def main() -> None:
    if "--s3" in sys.argv[1:]:
        main_s3(os.environ.get("LLMCACHE_PYTHON"))
        return
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(os.environ.get("LITELLM_REFERENCE_WORK", tmp))
        redis_port = 16399
        server = subprocess.Popen(
            ["redis-server", "--port", str(redis_port), "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
        )
        fake = FakeUpstreamServer().start()
        try:
            base = fake.url
            runs = {
                "no_namespace": run_litellm(work, base, redis_port, None, 16400),
                "namespace": run_litellm(work, base, redis_port, NAMESPACE, 16401),
            }
            ours = os.environ.get("LLMCACHE_PYTHON")
            shared = run_shared(work, fake, redis_port, 16402, 16403, ours) if ours else None
        finally:
            fake.stop()
            server.terminate()
    document = {
        "litellm_version": version("litellm"),
        "openai_version": version("openai"),
        "namespace": NAMESPACE,
        "runs": runs,
        "shared": shared,
    }
    OUT.write_text(json.dumps(document, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
