"""The S3 settings of the LiteLLM caching docs, from ``cache_params`` (with ``os.environ/``
values) or the usual ``AWS_*`` variables, reach the boto3 client; bad settings are config
errors naming the key or variable; secrets never show.

Where a setting has an effect on the wire (the key id and region in the signature, the
session token header, the endpoint), the request is sent to moto's server and the headers
boto3 signed are read from the client's own ``before-send`` event. The rest is read from
the client itself (``client.meta``, its HTTP session's ``verify``, its credentials). The
developer's own ``AWS_*`` variables and ~/.aws files are hidden for every test
(``no_aws_env``).
"""

from __future__ import annotations

import datetime
import re
from typing import Any

import pytest
import yaml

from llmcache_tui.cache.backends import CacheBackend, build_backend
from llmcache_tui.cache.backends.s3 import S3Backend
from llmcache_tui.cache.health import probe_backend
from llmcache_tui.config import ConfigError, parse_settings
from llmcache_tui.redact import MASK
from tests.redis_support import build, cache_settings
from tests.s3_server import (
    ACCESS_KEY_ID,
    REGION,
    SECRET_ACCESS_KEY,
    SECRETS,
    SESSION_TOKEN,
    ApiCalls,
    ClosedPort,
    S3Bucket,
)
from tests.test_config import DOCS_S3

pytestmark = pytest.mark.usefixtures("no_aws_env")

#: "Step 1: Add cache to the config.yaml" of the docs' s3 section, as written there.
DOCS_QUICK_START = DOCS_S3

#: The "S3 cache parameters" of the docs' list of supported cache_params, with their values.
DOCS_REFERENCE = """
litellm_settings:
  cache: true
  cache_params:
    type: s3
    s3_bucket_name: your_s3_bucket_name  # Name of the S3 bucket
    s3_region_name: us-west-2  # AWS region of the S3 bucket
    s3_api_version: 2006-03-01  # AWS S3 API version
    s3_use_ssl: true  # Use SSL for S3 connections (options: true, false)
    s3_verify: true  # SSL certificate verification for S3 connections (options: true, false)
    s3_endpoint_url: https://s3.amazonaws.com  # S3 endpoint URL
    s3_aws_access_key_id: your_access_key  # AWS Access Key ID for S3
    s3_aws_secret_access_key: your_secret_key  # AWS Secret Access Key for S3
    s3_aws_session_token: your_session_token  # AWS Session Token for temporary credentials
"""
DOCS_SECRETS = ("your_access_key", "your_secret_key", "your_session_token")


def _s3(backend: CacheBackend) -> S3Backend:
    assert isinstance(backend, S3Backend)
    return backend


def _client(backend: CacheBackend) -> Any:
    return _s3(backend)._client


def _credentials(backend: CacheBackend) -> tuple[str, str, str | None] | None:
    credentials = _client(backend)._request_signer._credentials
    if credentials is None:
        return None
    frozen = credentials.get_frozen_credentials()
    return frozen.access_key, frozen.secret_key, frozen.token


def _verify(backend: CacheBackend) -> Any:
    return _client(backend)._endpoint.http_session._verify


def _assert_masked(*texts: str, secrets: tuple[str, ...] = SECRETS) -> None:
    for text in texts:
        for secret in secrets:
            assert secret not in text, f"a secret shows in: {text}"


async def _probe_and_close(backend: CacheBackend) -> ApiCalls:
    """Probe ``backend`` (ping, write, read back, delete) and return what it sent."""
    try:
        with ApiCalls(_client(backend)) as calls:
            result = await probe_backend(backend)
    finally:
        await backend.close()
    assert result.healthy, result.error
    return calls


def _signed_with(calls: ApiCalls) -> tuple[str, str]:
    """(access key id, region) of the SigV4 signature of every request sent."""
    scopes = set()
    for sent in calls.sent:
        match = re.search(
            r"Credential=([^/]+)/\d{8}/([^/]+)/s3/aws4_request", sent["authorization"]
        )
        assert match is not None, sent["authorization"]
        scopes.add(match.groups())
    assert len(scopes) == 1, scopes
    key_id, region = scopes.pop()
    return key_id, region


# --------------------------------------------------------------------------- the docs


async def test_the_docs_quick_start_config_loads_and_builds(
    no_aws_env: pytest.MonkeyPatch,
) -> None:
    no_aws_env.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID)
    no_aws_env.setenv("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY)
    settings = parse_settings(DOCS_QUICK_START, "docs.yaml")
    assert settings.warnings == ()
    assert settings.cache is not None
    backend = build_backend(settings.cache)
    try:
        s3 = _s3(backend)
        assert s3.bucket == "cache-bucket-litellm"
        assert s3.prefix == ""
        assert _client(backend).meta.endpoint_url == "https://s3.amazonaws.com"
        assert _client(backend).meta.region_name == "us-west-2"
        assert _credentials(backend) == (ACCESS_KEY_ID, SECRET_ACCESS_KEY, None)
        shown = backend.describe()
        assert shown == {
            "s3_bucket_name": "cache-bucket-litellm",
            "s3_region_name": "us-west-2",
            "s3_aws_access_key_id": MASK,  # given in cache_params (from os.environ/)
            "s3_aws_secret_access_key": MASK,
            "s3_endpoint_url": "https://s3.amazonaws.com",
        }
        _assert_masked(repr(shown), repr(settings.masked()))
    finally:
        await backend.close()


async def test_the_docs_quick_start_config_works_against_the_server(
    s3_bucket: S3Bucket, no_aws_env: pytest.MonkeyPatch
) -> None:
    """The same file with only the endpoint changed (to moto), and its bucket name."""
    s3_bucket.client.create_bucket(Bucket="cache-bucket-litellm")
    no_aws_env.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID)
    no_aws_env.setenv("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY)
    text = DOCS_QUICK_START.replace("https://s3.amazonaws.com", s3_bucket.server.endpoint_url)
    settings = parse_settings(text, "docs.yaml")
    assert settings.cache is not None
    calls = await _probe_and_close(build_backend(settings.cache))
    assert _signed_with(calls) == (ACCESS_KEY_ID, "us-west-2")
    assert all(sent["url"].startswith(s3_bucket.server.endpoint_url) for sent in calls.sent)


async def test_os_environ_values_under_any_variable_name(
    s3_bucket: S3Bucket, no_aws_env: pytest.MonkeyPatch
) -> None:
    """Not the AWS_* names boto3 would read anyway: only ``os.environ/`` can bring these."""
    for name, value in [
        ("CACHE_BUCKET", s3_bucket.name),
        ("CACHE_S3_ENDPOINT", s3_bucket.server.endpoint_url),
        ("CACHE_S3_REGION", "eu-central-1"),
        ("CACHE_S3_KEY", ACCESS_KEY_ID),
        ("CACHE_S3_SECRET", SECRET_ACCESS_KEY),
        ("CACHE_S3_TOKEN", SESSION_TOKEN),
    ]:
        no_aws_env.setenv(name, value)
    params = {
        "type": "s3",
        "s3_bucket_name": "os.environ/CACHE_BUCKET",
        "s3_endpoint_url": "os.environ/CACHE_S3_ENDPOINT",
        "s3_region_name": "os.environ/CACHE_S3_REGION",
        "s3_aws_access_key_id": "os.environ/CACHE_S3_KEY",
        "s3_aws_secret_access_key": "os.environ/CACHE_S3_SECRET",
        "s3_aws_session_token": "os.environ/CACHE_S3_TOKEN",
    }
    backend = build(params)
    assert _credentials(backend) == (ACCESS_KEY_ID, SECRET_ACCESS_KEY, SESSION_TOKEN)
    calls = await _probe_and_close(backend)
    assert _signed_with(calls) == (ACCESS_KEY_ID, "eu-central-1")
    assert {sent["x-amz-security-token"] for sent in calls.sent} == {SESSION_TOKEN}


async def test_every_s3_param_of_the_docs_reaches_the_client() -> None:
    settings = parse_settings(DOCS_REFERENCE, "reference.yaml")
    assert settings.warnings == ()
    assert settings.cache is not None
    assert settings.cache.extra("s3_api_version") == datetime.date(2006, 3, 1)  # YAML's reading
    backend = build_backend(settings.cache)
    try:
        client = _client(backend)
        assert _s3(backend).bucket == "your_s3_bucket_name"
        assert client.meta.region_name == "us-west-2"
        assert client.meta.service_model.api_version == "2006-03-01"
        assert client.meta.endpoint_url == "https://s3.amazonaws.com"
        assert _verify(backend) is True
        assert _credentials(backend) == ("your_access_key", "your_secret_key", "your_session_token")
        shown = backend.describe()
        assert shown["s3_api_version"] == "2006-03-01"
        assert (shown["s3_use_ssl"], shown["s3_verify"]) == (True, True)
        for secret in ("s3_aws_access_key_id", "s3_aws_secret_access_key", "s3_aws_session_token"):
            assert shown[secret] == MASK
        _assert_masked(repr(shown), repr(settings.masked()), secrets=DOCS_SECRETS)
    finally:
        await backend.close()


async def test_every_s3_param_reaches_the_wire(s3_bucket: S3Bucket) -> None:
    """The reference's parameters with this server's endpoint and the test credentials: the
    signature carries the key id and region, the token travels as its header."""
    document = yaml.safe_load(DOCS_REFERENCE)
    params = document["litellm_settings"]["cache_params"]
    params.update(
        s3_bucket_name=s3_bucket.name,
        s3_region_name="ap-southeast-2",
        s3_endpoint_url=s3_bucket.server.endpoint_url,
        s3_aws_access_key_id=ACCESS_KEY_ID,
        s3_aws_secret_access_key=SECRET_ACCESS_KEY,
        s3_aws_session_token=SESSION_TOKEN,
        s3_path="litellm",
        namespace="litellm.caching.caching",
    )
    calls = await _probe_and_close(build(params))
    assert _signed_with(calls) == (ACCESS_KEY_ID, "ap-southeast-2")
    assert {sent["x-amz-security-token"] for sent in calls.sent} == {SESSION_TOKEN}
    written = [sent["url"] for sent in calls.sent if "/litellm/" in sent["url"]]
    assert written  # the probe object went under s3_path
    assert s3_bucket.names() == []


# --------------------------------------------------------------------------- values


@pytest.mark.parametrize(
    ("value", "scheme"),
    [(True, "https"), ("true", "https"), (False, "http"), ("False", "http")],
)
async def test_s3_use_ssl_picks_the_scheme_of_the_aws_endpoint(value: Any, scheme: str) -> None:
    backend = build(
        {"type": "s3", "s3_bucket_name": "b", "s3_region_name": "eu-west-1", "s3_use_ssl": value}
    )
    try:
        assert _client(backend).meta.endpoint_url == f"{scheme}://s3.eu-west-1.amazonaws.com"
    finally:
        await backend.close()


@pytest.mark.parametrize(
    ("value", "verify"),
    [
        (True, True),
        ("TRUE", True),
        (False, False),
        ("false", False),
        ("/etc/ca.pem", "/etc/ca.pem"),
    ],
)
async def test_s3_verify_is_a_flag_or_a_ca_bundle(value: Any, verify: Any) -> None:
    backend = build({"type": "s3", "s3_bucket_name": "b", "s3_verify": value})
    try:
        assert _verify(backend) == verify
        assert backend.describe()["s3_verify"] == verify
    finally:
        await backend.close()


async def test_s3_api_version_written_as_a_date_or_a_string() -> None:
    for text in ("2006-03-01", "'2006-03-01'"):
        document = "litellm_settings:\n  cache: true\n  cache_params:\n    type: s3\n"
        document += f"    s3_bucket_name: b\n    s3_api_version: {text}\n"
        settings = parse_settings(document)
        assert settings.cache is not None
        backend = build_backend(settings.cache)
        try:
            assert _client(backend).meta.service_model.api_version == "2006-03-01"
        finally:
            await backend.close()


# --------------------------------------------------------------------------- AWS_* variables


@pytest.mark.parametrize(
    ("region_variable", "endpoint_variable"),
    [("AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL_S3"), ("AWS_REGION", "AWS_ENDPOINT_URL")],
)
async def test_aws_variables_fill_in_what_cache_params_leave_out(
    s3_bucket: S3Bucket,
    no_aws_env: pytest.MonkeyPatch,
    region_variable: str,
    endpoint_variable: str,
) -> None:
    no_aws_env.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID)
    no_aws_env.setenv("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY)
    no_aws_env.setenv("AWS_SESSION_TOKEN", SESSION_TOKEN)
    no_aws_env.setenv(region_variable, "sa-east-1")
    no_aws_env.setenv(endpoint_variable, s3_bucket.server.endpoint_url)
    backend = build({"type": "s3", "s3_bucket_name": s3_bucket.name})
    assert _client(backend).meta.endpoint_url == s3_bucket.server.endpoint_url
    assert _client(backend).meta.region_name == "sa-east-1"
    assert _credentials(backend) == (ACCESS_KEY_ID, SECRET_ACCESS_KEY, SESSION_TOKEN)
    _assert_masked(repr(backend.describe()))
    calls = await _probe_and_close(backend)
    assert _signed_with(calls) == (ACCESS_KEY_ID, "sa-east-1")
    assert {sent["x-amz-security-token"] for sent in calls.sent} == {SESSION_TOKEN}


async def test_cache_params_win_over_aws_variables(
    s3_bucket: S3Bucket, s3_unreachable: ClosedPort, no_aws_env: pytest.MonkeyPatch
) -> None:
    no_aws_env.setenv("AWS_ACCESS_KEY_ID", "AKIAFROMTHEENVIRONMENT")
    no_aws_env.setenv("AWS_SECRET_ACCESS_KEY", "from-the-environment")
    no_aws_env.setenv("AWS_DEFAULT_REGION", "eu-north-1")
    no_aws_env.setenv("AWS_ENDPOINT_URL_S3", s3_unreachable.endpoint_url)
    calls = await _probe_and_close(build(s3_bucket.params()))
    assert _signed_with(calls) == (ACCESS_KEY_ID, REGION)


async def test_the_more_specific_aws_variables_win(
    s3_bucket: S3Bucket, s3_unreachable: ClosedPort, no_aws_env: pytest.MonkeyPatch
) -> None:
    """AWS_ENDPOINT_URL_S3 over AWS_ENDPOINT_URL (boto3); AWS_DEFAULT_REGION, which boto3
    reads, over AWS_REGION, which only the other AWS SDKs read."""
    no_aws_env.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID)
    no_aws_env.setenv("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY)
    no_aws_env.setenv("AWS_ENDPOINT_URL", s3_unreachable.endpoint_url)
    no_aws_env.setenv("AWS_ENDPOINT_URL_S3", s3_bucket.server.endpoint_url)
    no_aws_env.setenv("AWS_REGION", "eu-north-1")
    no_aws_env.setenv("AWS_DEFAULT_REGION", "ca-central-1")
    calls = await _probe_and_close(build({"type": "s3", "s3_bucket_name": s3_bucket.name}))
    assert _signed_with(calls) == (ACCESS_KEY_ID, "ca-central-1")


# --------------------------------------------------------------------------- config errors

BUCKET_REQUIRED = "litellm_settings.cache_params.s3_bucket_name: required for type s3"


@pytest.mark.parametrize("bucket", [None, "", "os.environ/LLMCACHE_TEST_UNSET_BUCKET"])
def test_a_missing_bucket_name_is_a_config_error_naming_the_key(bucket: str | None) -> None:
    params: dict[str, Any] = {"type": "s3", "s3_region_name": "us-west-2"}
    if bucket is not None:
        params["s3_bucket_name"] = bucket
    with pytest.raises(ConfigError) as caught:
        build_backend(cache_settings(params))
    assert str(caught.value) == BUCKET_REQUIRED


def test_an_unset_variable_for_the_bucket_is_also_a_warning() -> None:
    text = yaml.safe_dump(
        {
            "litellm_settings": {
                "cache": True,
                "cache_params": {"type": "s3", "s3_bucket_name": "os.environ/NO_SUCH_BUCKET_VAR"},
            }
        }
    )
    settings = parse_settings(text)
    assert settings.warnings == (
        "litellm_settings.cache_params.s3_bucket_name: environment variable NO_SUCH_BUCKET_VAR"
        " is not set",
    )


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (
            {"s3_use_ssl": "maybe"},
            "litellm_settings.cache_params.s3_use_ssl: expected true or false, got 'maybe'",
        ),
        (
            {"s3_use_ssl": 1},
            "litellm_settings.cache_params.s3_use_ssl: expected true or false, got 1",
        ),
        (
            {"s3_endpoint_url": "not a url"},
            "litellm_settings.cache_params.s3_endpoint_url: Invalid endpoint: not a url",
        ),
        (
            {"s3_region_name": "us west 2"},
            "litellm_settings.cache_params.s3_region_name: Provided region_name 'us west 2'"
            " doesn't match a supported format.",
        ),
        (
            {"s3_api_version": "2020-01-01"},
            "litellm_settings.cache_params.s3_api_version: Unable to load data for:"
            " s3/2020-01-01/service-2",
        ),
        (
            {"s3_aws_access_key_id": ACCESS_KEY_ID},
            "litellm_settings.cache_params.s3_aws_secret_access_key: required with"
            " s3_aws_access_key_id",
        ),
        (
            {"s3_aws_secret_access_key": SECRET_ACCESS_KEY},
            "litellm_settings.cache_params.s3_aws_access_key_id: required with"
            " s3_aws_secret_access_key",
        ),
    ],
    ids=["use-ssl-maybe", "use-ssl-1", "endpoint", "region", "api-version", "no-secret", "no-key"],
)
def test_bad_values_are_config_errors_naming_the_key(params: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        build({"type": "s3", "s3_bucket_name": "b", **params})
    assert str(caught.value) == message
    _assert_masked(str(caught.value))


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        (
            "AWS_ENDPOINT_URL_S3",
            "not a url",
            "AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL: Invalid endpoint: not a url",
        ),
        (
            "AWS_REGION",
            "nowhere at all",
            "AWS_DEFAULT_REGION / AWS_REGION: Provided region_name 'nowhere at all' doesn't"
            " match a supported format.",
        ),
        (
            "AWS_ACCESS_KEY_ID",
            ACCESS_KEY_ID,
            "AWS credentials from the environment: Partial credentials found in env,"
            " missing: AWS_SECRET_ACCESS_KEY",
        ),
    ],
)
def test_bad_aws_variables_are_config_errors_naming_the_variable(
    no_aws_env: pytest.MonkeyPatch, variable: str, value: str, message: str
) -> None:
    no_aws_env.setenv(variable, value)
    with pytest.raises(ConfigError) as caught:
        build({"type": "s3", "s3_bucket_name": "b"})
    assert str(caught.value) == message


async def test_an_endpoint_with_a_password_is_masked(s3_bucket: S3Bucket) -> None:
    endpoint = s3_bucket.server.endpoint_url.replace("http://", "http://user:hunter2@")
    backend = build(s3_bucket.params(s3_endpoint_url=endpoint))
    try:
        shown = backend.describe()
        assert shown["s3_endpoint_url"] == endpoint.replace("hunter2", MASK)
        _assert_masked(repr(shown))
        assert "hunter2" not in repr(shown)
    finally:
        await backend.close()
