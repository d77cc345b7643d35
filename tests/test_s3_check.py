"""``llmcache-tui --check`` (the real CLI, in a subprocess) and ``/cache/ping`` on S3.

Healthy: the bucket answers, a probe object is written, read back and deleted, and the
parameters show with every key, secret and token masked. Unhealthy (``--check`` exits 1,
``/cache/ping`` answers 503, requests are still answered) with the reason: a bucket that
does not exist, an endpoint nothing listens on, no credentials at all, and, with moto's
IAM checks on, an access key id it does not know and a wrong secret. Bad S3 settings are
config errors (exit 2) naming the key or variable; the proxy then serves without a cache.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from llmcache_tui.redact import MASK
from tests.conftest import ProxyFactory
from tests.redis_support import CACHE_ERROR, DOCS_NAMESPACE, chat, run_check, write_config
from tests.s3_server import BUCKET, SECRETS, SESSION_TOKEN, ClosedPort, S3Bucket, S3Server

pytestmark = pytest.mark.usefixtures("no_aws_env")

REFUSED = f"access to bucket '{BUCKET}' was refused (403): check the credentials"


def _ping(http: httpx.Client) -> tuple[int, dict[str, Any], str]:
    reply = http.get("/cache/ping")
    return reply.status_code, reply.json(), reply.text


def _assert_no_secret(*texts: str, also: tuple[str, ...] = ()) -> None:
    for text in texts:
        for secret in (*SECRETS, *also):
            assert secret not in text, f"a secret shows in: {text}"
        assert "Traceback" not in text


# --------------------------------------------------------------------------- healthy


def test_check_and_ping_write_read_delete_with_masked_params(
    s3_bucket: S3Bucket, tmp_path: Path, make_proxy: ProxyFactory
) -> None:
    params = s3_bucket.params(
        s3_aws_session_token=SESSION_TOKEN, s3_path="litellm/", namespace=DOCS_NAMESPACE
    )
    shown = {
        "namespace": DOCS_NAMESPACE,
        "s3_bucket_name": BUCKET,
        "s3_path": "litellm/",
        "s3_region_name": "us-east-1",
        "s3_endpoint_url": s3_bucket.server.endpoint_url,
        "s3_aws_access_key_id": MASK,
        "s3_aws_secret_access_key": MASK,
        "s3_aws_session_token": MASK,
    }
    run = run_check(write_config(tmp_path, params))
    assert run.code == 0, run.stdout
    report = run.report
    assert (report["status"], report["cache_type"]) == ("healthy", "s3")
    assert (report["ping"], report["write"], report["read_back"], report["delete"]) == (
        True,
        True,
        True,
        True,
    )
    assert report["params"] == shown
    assert "error" not in report
    _assert_no_secret(run.stdout, run.stderr)

    text = run_check(write_config(tmp_path, params), as_json=False)
    assert text.code == 0
    assert text.stdout.startswith("healthy: cache s3 (config: ")
    for name in ("ping", "write", "read_back", "delete"):
        assert re.search(rf"^  {name} +ok$", text.stdout, re.MULTILINE), text.stdout
    assert f"s3_bucket_name={BUCKET}, s3_path=litellm/, s3_region_name=us-east-1" in text.stdout
    assert f"s3_aws_secret_access_key={MASK}, s3_aws_session_token={MASK}" in text.stdout
    _assert_no_secret(text.stdout, text.stderr)

    proxy = make_proxy(params, cache_type="s3")
    with proxy.http() as http:
        status, document, raw = _ping(http)
    assert status == 200, raw
    assert document["status"] == "healthy"
    assert document["cache_type"] == "s3"
    assert document["ping_response"] is True
    assert document["set_cache_response"] == "success"
    assert document["litellm_cache_params"]["type"] == "s3"
    assert document["litellm_cache_params"]["namespace"] == DOCS_NAMESPACE
    assert document["s3_cache_params"] == shown
    assert "error" not in document
    _assert_no_secret(raw)
    assert s3_bucket.names() == []  # every probe cleaned up after itself


def test_check_with_aws_variables_only(
    s3_bucket: S3Bucket, tmp_path: Path, no_aws_env: pytest.MonkeyPatch
) -> None:
    env = {
        "AWS_ACCESS_KEY_ID": SECRETS[0],
        "AWS_SECRET_ACCESS_KEY": SECRETS[1],
        "AWS_SESSION_TOKEN": SESSION_TOKEN,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL_S3": s3_bucket.server.endpoint_url,
    }
    run = run_check(write_config(tmp_path, {"type": "s3", "s3_bucket_name": BUCKET}), env)
    assert run.code == 0, run.stdout
    # Nothing else was configured.
    assert run.report["params"] == {"namespace": None, "s3_bucket_name": BUCKET}
    _assert_no_secret(run.stdout, run.stderr)


# --------------------------------------------------------------------------- unhealthy


def _assert_unhealthy(
    params: dict[str, Any],
    reason: str,
    tmp_path: Path,
    make_proxy: ProxyFactory,
    *,
    check: bool = True,
    text_too: bool = False,
) -> None:
    """``--check`` exits 1 and ``/cache/ping`` answers 503, both with ``reason`` (a regex);
    a chat completion is still answered, from upstream. A ``--check`` subprocess costs half
    a second: ``check=False`` leaves it out, ``text_too`` adds the run without ``--json``."""
    if check:
        run = run_check(write_config(tmp_path, params))
        assert run.code == 1, run.stdout
        assert run.report["status"] == "unhealthy"
        assert run.report["ping"] is False
        assert re.fullmatch(reason, run.report["error"]), run.report["error"]
        _assert_no_secret(run.stdout, run.stderr)
    if text_too:
        text = run_check(write_config(tmp_path, params), as_json=False)
        assert text.code == 1
        assert text.stdout.startswith("unhealthy: cache s3")
        assert re.search(r"^  error: " + reason + "$", text.stdout, re.MULTILINE), text.stdout
        assert re.search(r"^  ping +FAILED$", text.stdout, re.MULTILINE), text.stdout
        _assert_no_secret(text.stdout, text.stderr)

    proxy = make_proxy(params, cache_type="s3")
    with proxy.http() as http:
        status, document, raw = _ping(http)
        answered = chat(http, "still answered")
    assert status == 503
    assert document["status"] == "unhealthy"
    assert document["ping_response"] is False
    assert document["set_cache_response"] == "failed"
    assert re.fullmatch(reason, document["error"]), document["error"]
    _assert_no_secret(raw)
    assert CACHE_ERROR in answered.headers["cache-status"]
    assert answered.json()["choices"][0]["message"]["content"] == "echo: still answered"


def _missing_bucket(bucket: S3Bucket, closed: ClosedPort) -> dict[str, Any]:
    return bucket.params(s3_bucket_name="no-such-bucket")


def _unreachable(bucket: S3Bucket, closed: ClosedPort) -> dict[str, Any]:
    return bucket.params(s3_endpoint_url=closed.endpoint_url)


def _no_credentials(bucket: S3Bucket, closed: ClosedPort) -> dict[str, Any]:
    params = bucket.params()
    del params["s3_aws_access_key_id"], params["s3_aws_secret_access_key"]
    return params


@pytest.mark.parametrize(
    ("setup", "reason"),
    [
        (_missing_bucket, r"s3 ping failed: bucket 'no-such-bucket' does not exist"),
        (
            _unreachable,
            rf"s3 ping failed: cannot reach S3 for bucket '{BUCKET}': Could not connect to the"
            rf' endpoint URL: "http://127\.0\.0\.1:\d+/{BUCKET}"',
        ),
        (
            _no_credentials,
            rf"s3 ping failed: no AWS credentials for bucket '{BUCKET}': set"
            r" s3_aws_access_key_id and s3_aws_secret_access_key, or AWS_ACCESS_KEY_ID and"
            r" AWS_SECRET_ACCESS_KEY",
        ),
    ],
    ids=["missing-bucket", "unreachable-endpoint", "no-credentials"],
)
def test_unhealthy_check_exits_1_and_ping_answers_503_with_the_reason(
    s3_bucket: S3Bucket,
    s3_unreachable: ClosedPort,
    tmp_path: Path,
    make_proxy: ProxyFactory,
    setup: Callable[[S3Bucket, ClosedPort], dict[str, Any]],
    reason: str,
) -> None:
    text_too = setup is _unreachable
    _assert_unhealthy(
        setup(s3_bucket, s3_unreachable), reason, tmp_path, make_proxy, text_too=text_too
    )


def test_bad_credentials_are_refused_with_the_reason(
    s3_server: S3Server, s3_bucket: S3Bucket, tmp_path: Path, make_proxy: ProxyFactory
) -> None:
    """moto with IAM checks on: the IAM user's keys work (the control), an unknown key id
    and a wrong secret are refused (403; HeadBucket has no body, so no finer code). The
    wrong secret is checked through ``/cache/ping`` only: ``--check`` says the same."""
    with s3_server.signatures_required() as iam_user:
        good = s3_bucket.params(
            s3_aws_access_key_id=iam_user["aws_access_key_id"],
            s3_aws_secret_access_key=iam_user["aws_secret_access_key"],
        )
        run = run_check(write_config(tmp_path, good))
        assert run.code == 0, run.stdout
        _assert_no_secret(run.stdout, also=(iam_user["aws_secret_access_key"],))

        unknown_key = {**good, "s3_aws_access_key_id": "AKIANOTKNOWNTOMOTO00"}
        _assert_unhealthy(
            unknown_key, re.escape(f"s3 ping failed: {REFUSED}"), tmp_path, make_proxy
        )
        wrong_secret = {**good, "s3_aws_secret_access_key": "not-the-secret-access-key"}
        _assert_unhealthy(
            wrong_secret, re.escape(f"s3 ping failed: {REFUSED}"), tmp_path, make_proxy, check=False
        )


# --------------------------------------------------------------------------- config errors


@pytest.mark.parametrize(
    ("params", "env", "named"),
    [
        ({}, {}, "litellm_settings.cache_params.s3_bucket_name: required for type s3"),
        (
            {"s3_bucket_name": BUCKET, "s3_use_ssl": "maybe"},
            {},
            "litellm_settings.cache_params.s3_use_ssl: expected true or false, got 'maybe'",
        ),
        (
            {"s3_bucket_name": BUCKET, "s3_endpoint_url": "not a url"},
            {},
            "litellm_settings.cache_params.s3_endpoint_url: Invalid endpoint: not a url",
        ),
        (
            {"s3_bucket_name": BUCKET},
            {"AWS_ENDPOINT_URL_S3": "not a url"},
            "AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL: Invalid endpoint: not a url",
        ),
    ],
    ids=["no-bucket-name", "use-ssl-maybe", "bad-endpoint", "bad-endpoint-variable"],
)
def test_bad_s3_settings_are_config_errors(
    tmp_path: Path,
    make_proxy: ProxyFactory,
    no_aws_env: pytest.MonkeyPatch,
    params: dict[str, Any],
    env: dict[str, str],
    named: str,
) -> None:
    config = write_config(tmp_path, {"type": "s3", **params})
    if "s3_use_ssl" not in params:  # a subprocess costs half a second: the others cover it
        run = run_check(config, env)
        assert run.code == 2, run.stdout
        assert (run.report["status"], run.report["error"]) == ("config_error", named)
    if not params:
        text = run_check(config, env, as_json=False)
        assert (text.code, text.stdout) == (2, f"config error: {named}\n")

    for name, value in env.items():
        no_aws_env.setenv(name, value)  # the proxy runs in this process
    proxy = make_proxy(params, cache_type="s3")
    with proxy.http() as http:
        status, document, _ = _ping(http)
        answered = chat(http, "served without a cache")
    assert status == 503
    assert document["error"] == named
    assert "detail=cache-unavailable" in answered.headers["cache-status"]
