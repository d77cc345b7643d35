"""The cache key (what makes two requests the same) and the per-request cache decision."""

from __future__ import annotations

import math
import re
from typing import Any

import pytest

from llmcache_tui.cache.keys import (
    MAX_JSON_DEPTH,
    UnwritableBody,
    request_digest,
    storage_key,
)
from llmcache_tui.cache.policy import (
    BYPASS,
    NO_CONTROLS,
    CacheControls,
    InvalidControls,
    decide,
    parse_controls,
)
from llmcache_tui.config import MAX_TTL_SECONDS, CacheSettings, parse_settings

CHAT: dict[str, Any] = {
    "model": "gpt-3.5-turbo",
    "messages": [
        {"role": "system", "content": "be terse"},
        {"role": "user", "content": [{"type": "text", "text": "hello"}]},
    ],
    "temperature": 0.7,
    "response_format": {"type": "json_schema", "json_schema": {"name": "x", "strict": True}},
}


def _reversed(value: Any) -> Any:
    """The same JSON value with every object's keys in reverse order."""
    if isinstance(value, dict):
        return {k: _reversed(value[k]) for k in reversed(list(value))}
    if isinstance(value, list):
        return [_reversed(v) for v in value]
    return value


# ---------------------------------------------------------------------------------- keys


def test_digest_is_sha256_hex() -> None:
    assert re.fullmatch(r"[0-9a-f]{64}", request_digest("chat", CHAT))


def test_digest_is_deterministic() -> None:
    assert request_digest("chat", CHAT) == request_digest("chat", dict(CHAT))


def test_field_order_never_changes_key() -> None:
    reordered = _reversed(CHAT)
    assert list(reordered) != list(CHAT)
    assert list(reordered["messages"][0]) != list(CHAT["messages"][0])
    assert request_digest("chat", reordered) == request_digest("chat", CHAT)


def test_nested_field_order_never_changes_key() -> None:
    a = {
        "model": "m",
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {"a": 1, "b": 2}}}],
    }
    b = {
        "tools": [{"function": {"parameters": {"b": 2, "a": 1}, "name": "f"}, "type": "function"}],
        "model": "m",
    }
    assert request_digest("chat", a) == request_digest("chat", b)


@pytest.mark.parametrize(
    "extra",
    [
        {"cache": {"ttl": 300}},
        {"cache": {"no-cache": True, "namespace": "x"}},
        {"metadata": {"user": "alice", "trace": 1}},
        {"stream": True},
        {"stream": False},
        {"stream_options": {"include_usage": True}},
        {"stream": True, "stream_options": {"include_usage": True}, "cache": {}, "metadata": {}},
    ],
)
def test_ignored_params_do_not_change_key(extra: dict[str, Any]) -> None:
    assert request_digest("chat", {**CHAT, **extra}) == request_digest("chat", CHAT)


def test_ignoring_params_does_not_mutate_body() -> None:
    body = {**CHAT, "cache": {"ttl": 1}, "stream": True}
    request_digest("chat", body)
    assert body["cache"] == {"ttl": 1}
    assert body["stream"] is True


def test_route_is_part_of_key() -> None:
    body = {"model": "m", "input": "hello"}
    digests = {request_digest(route, body) for route in ("chat", "text_completion", "embedding")}
    assert len(digests) == 3


@pytest.mark.parametrize(
    "change",
    [
        {"model": "gpt-4o"},
        {"temperature": 0.8},
        {"temperature": 0},
        {"user": "bob"},
        {"n": 2},
        {"seed": 1},
        {"tools": []},
        {"response_format": {"type": "json_object"}},
        {"messages": [{"role": "user", "content": "hello"}]},
        {"messages": [*CHAT["messages"], {"role": "user", "content": "more"}]},
    ],
)
def test_any_other_param_changes_key(change: dict[str, Any]) -> None:
    assert request_digest("chat", {**CHAT, **change}) != request_digest("chat", CHAT)


def test_missing_param_differs_from_null_param() -> None:
    body = {"model": "m", "input": "x"}
    assert request_digest("embedding", {**body, "user": None}) != request_digest("embedding", body)


def test_value_types_matter() -> None:
    body = {"model": "m", "input": "x"}
    assert request_digest("embedding", {**body, "dimensions": 1}) != request_digest(
        "embedding", {**body, "dimensions": "1"}
    )


def test_route_marker_cannot_be_forged_by_body() -> None:
    """A body field can never make one route's key equal another route's key."""
    body = {"model": "m", "prompt": "x"}
    chat = request_digest("chat", body)
    forged = request_digest("text_completion", {**body, "~route": "chat"})
    assert forged != chat


def test_storage_key_namespace() -> None:
    digest = request_digest("chat", CHAT)
    assert storage_key(digest, None) == digest
    assert storage_key(digest, "") == digest
    assert storage_key(digest, "litellm.caching.caching") == f"litellm.caching.caching:{digest}"


# ------------------------------------------------------------------------------ controls


def test_no_cache_object_means_no_controls() -> None:
    assert parse_controls(None) is NO_CONTROLS
    assert parse_controls({}) == CacheControls()


def test_documented_controls_parse() -> None:
    controls = parse_controls(
        {
            "ttl": 300,
            "s-maxage": 600,
            "no-cache": True,
            "no-store": False,
            "namespace": "my-custom-namespace",
            "use-cache": True,
        }
    )
    assert controls == CacheControls(
        ttl=300.0,
        s_maxage=600.0,
        no_cache=True,
        no_store=False,
        namespace="my-custom-namespace",
        use_cache=True,
    )


def test_each_docs_example_control_parses_alone() -> None:
    assert parse_controls({"ttl": 300}).ttl == 300
    assert parse_controls({"s-maxage": 600}).s_maxage == 600
    assert parse_controls({"no-cache": True}).no_cache is True
    assert parse_controls({"no-store": True}).no_store is True
    assert parse_controls({"namespace": "my-custom-namespace"}).namespace == "my-custom-namespace"
    assert parse_controls({"use-cache": True}).use_cache is True
    assert parse_controls({"use-cache": False}).use_cache is False


def test_fractional_seconds_and_nulls_accepted() -> None:
    controls = parse_controls({"ttl": 0.5, "s-maxage": None, "no-cache": None, "namespace": None})
    assert controls.ttl == 0.5
    assert controls.s_maxage is None
    assert controls.no_cache is False
    assert controls.namespace is None


def test_ttl_zero_means_do_not_store() -> None:
    controls = parse_controls({"ttl": 0})
    assert controls.no_store is True


@pytest.mark.parametrize(
    ("raw", "param"),
    [
        ({"ttl": "300"}, "cache.ttl"),
        ({"ttl": True}, "cache.ttl"),
        ({"ttl": [1]}, "cache.ttl"),
        ({"ttl": -1}, "cache.ttl"),
        ({"s-maxage": -0.5}, "cache.s-maxage"),
        ({"s-maxage": "10"}, "cache.s-maxage"),
        ({"no-cache": "yes"}, "cache.no-cache"),
        ({"no-cache": 1}, "cache.no-cache"),
        ({"no-store": "true"}, "cache.no-store"),
        ({"use-cache": 0}, "cache.use-cache"),
        ({"namespace": ""}, "cache.namespace"),
        ({"namespace": "   "}, "cache.namespace"),
        ({"namespace": 7}, "cache.namespace"),
        ({"namespace": "a b"}, "cache.namespace"),
        ({"namespace": "team*"}, "cache.namespace"),
        ({"namespace": "t?"}, "cache.namespace"),
        ({"namespace": "[ab]"}, "cache.namespace"),
        ({"ttl": 1, "maxage": 5}, "cache.maxage"),
        ({"no_cache": True}, "cache.no_cache"),
        ({"ttl": 1e300}, "cache.ttl"),
        ({"ttl": math.nan}, "cache.ttl"),
        ({"ttl": math.inf}, "cache.ttl"),
        ({"ttl": MAX_TTL_SECONDS + 1}, "cache.ttl"),
        ({"ttl": 2**64}, "cache.ttl"),
        ({"s-maxage": math.nan}, "cache.s-maxage"),
        ({"s-maxage": math.inf}, "cache.s-maxage"),
        ({"s-maxage": 1e300}, "cache.s-maxage"),
    ],
)
def test_bad_controls_name_the_param(raw: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidControls) as caught:
        parse_controls(raw)
    assert caught.value.param == param
    assert f"'{param}'" in str(caught.value)


def test_ten_years_is_the_longest_ttl_and_age() -> None:
    controls = parse_controls({"ttl": MAX_TTL_SECONDS, "s-maxage": MAX_TTL_SECONDS})
    assert controls.ttl == controls.s_maxage == 10 * 365 * 86400
    with pytest.raises(InvalidControls, match="at most 315360000 seconds"):
        parse_controls({"ttl": MAX_TTL_SECONDS + 0.5})


@pytest.mark.parametrize("raw", ["ttl=300", 300, ["ttl"], True])
def test_cache_must_be_an_object(raw: Any) -> None:
    with pytest.raises(InvalidControls) as caught:
        parse_controls(raw)
    assert caught.value.param == "cache"
    assert "'cache' must be an object" in str(caught.value)


def test_unknown_control_lists_the_allowed_ones() -> None:
    with pytest.raises(InvalidControls) as caught:
        parse_controls({"max-age": 5})
    message = str(caught.value)
    for name in ("ttl", "s-maxage", "no-cache", "no-store", "namespace", "use-cache"):
        assert name in message


# ------------------------------------------------------------------------------ decision


def _cache(params: str = "type: local", *, enabled: bool = True) -> CacheSettings:
    text = f"litellm_settings:\n  cache: {str(enabled).lower()}\n  cache_params:\n"
    text += "".join(f"    {line}\n" for line in params.splitlines())
    settings = parse_settings(text)
    assert settings.cache is not None
    return settings.cache


def test_default_on_reads_and_writes() -> None:
    decision = decide(_cache(), "chat", NO_CONTROLS)
    assert decision.read
    assert decision.write
    assert decision.uses_cache
    assert decision.skip_reason is None
    assert decision.namespace is None
    assert decision.ttl is None
    assert decision.max_age is None


def test_no_cache_config_bypasses() -> None:
    assert decide(None, "chat", NO_CONTROLS) == BYPASS
    assert not BYPASS.uses_cache
    assert BYPASS.skip_reason == "bypass"


def test_default_off_needs_use_cache() -> None:
    cache = _cache("type: local\nmode: default_off")
    assert decide(cache, "chat", NO_CONTROLS) == BYPASS
    assert decide(cache, "chat", parse_controls({"use-cache": False})) == BYPASS
    opted_in = decide(cache, "chat", parse_controls({"use-cache": True}))
    assert opted_in.read
    assert opted_in.write
    assert opted_in.skip_reason is None


def test_default_off_other_controls_do_not_opt_in() -> None:
    cache = _cache("type: local\nmode: default_off")
    assert decide(cache, "chat", parse_controls({"ttl": 30})) == BYPASS


def test_use_cache_false_opts_out_under_default_on() -> None:
    assert decide(_cache(), "chat", parse_controls({"use-cache": False})) == BYPASS


@pytest.mark.parametrize(
    ("call_types", "cached", "not_cached"),
    [
        ("[]", set(), {"chat", "text_completion", "embedding", "transcription"}),
        ('["acompletion"]', {"chat"}, {"text_completion", "embedding", "transcription"}),
        ('["completion", "aembedding"]', {"chat", "embedding"}, {"text_completion"}),
        ('["atext_completion", "transcription"]', {"text_completion", "transcription"}, {"chat"}),
    ],
)
def test_supported_call_types(call_types: str, cached: set[str], not_cached: set[str]) -> None:
    cache = _cache(f"type: local\nsupported_call_types: {call_types}")
    for route in cached:
        assert decide(cache, route, NO_CONTROLS).read, route
    for route in not_cached:
        assert decide(cache, route, NO_CONTROLS) == BYPASS, route


def test_unsupported_call_type_bypasses_even_with_use_cache() -> None:
    cache = _cache('type: local\nsupported_call_types: ["aembedding"]')
    assert decide(cache, "chat", parse_controls({"use-cache": True})) == BYPASS


def test_no_cache_reads_nothing_but_still_stores() -> None:
    decision = decide(_cache(), "chat", parse_controls({"no-cache": True}))
    assert decision.read is False
    assert decision.write is True
    assert decision.skip_reason == "request"
    assert decision.uses_cache


def test_no_store_reads_but_does_not_write() -> None:
    decision = decide(_cache(), "chat", parse_controls({"no-store": True}))
    assert decision.read is True
    assert decision.write is False
    assert decision.skip_reason is None


def test_no_cache_and_no_store_together() -> None:
    controls = parse_controls({"no-cache": True, "no-store": True})
    decision = decide(_cache(), "chat", controls)
    assert not decision.uses_cache
    assert decision.skip_reason == "request"


def test_ttl_zero_reads_but_does_not_write() -> None:
    decision = decide(_cache(), "chat", parse_controls({"ttl": 0}))
    assert decision.read
    assert not decision.write


def test_default_off_needs_use_cache_whatever_the_request() -> None:
    controls = parse_controls({"ttl": 10})
    assert decide(_cache("type: local\nmode: default_off"), "chat", controls) == BYPASS


def test_ttl_and_max_age_pass_through() -> None:
    controls = parse_controls({"ttl": 300, "s-maxage": 60})
    decision = decide(_cache("type: local\nttl: 900"), "embedding", controls)
    assert decision.ttl == 300
    assert decision.max_age == 60


def test_config_namespace_and_request_override() -> None:
    cache = _cache("type: local\nnamespace: litellm.caching.caching")
    assert decide(cache, "chat", NO_CONTROLS).namespace == "litellm.caching.caching"
    override = decide(cache, "chat", parse_controls({"namespace": "mine"}))
    assert override.namespace == "mine"
    assert decide(_cache(), "chat", parse_controls({"namespace": "x"})).namespace == "x"


@pytest.mark.parametrize("value", [1e300, -1e300, 2.0**64, -(2.0**63) - 4096, 1.8e308])
def test_whole_floats_beyond_64_bits_key_as_floats(value: float) -> None:
    """orjson writes integers of at most 64 bits: a huge whole float must not become one."""
    body = {"model": "m", "messages": [], "seed": value}
    assert request_digest("chat", body) == request_digest("chat", dict(body))
    assert request_digest("chat", body) != request_digest("chat", {**body, "seed": 1.0})


def test_whole_floats_at_the_64_bit_edges_key_like_integers() -> None:
    for whole in (2**63, 2**64 - 2048, -(2**63)):
        body = {"model": "m", "seed": whole}
        assert request_digest("chat", body) == request_digest(
            "chat", {**body, "seed": float(whole)}
        )


@pytest.mark.parametrize("route", ["chat", "embedding"])
def test_too_deep_a_body_is_refused_with_the_reason(route: str) -> None:
    deep: Any = "x"
    for _ in range(MAX_JSON_DEPTH):  # with the body object: one level too many
        deep = [deep]
    with pytest.raises(UnwritableBody, match="more than 254 levels deep"):
        request_digest(route, {"model": "m", "input": deep})
    shallower = {"model": "m", "input": deep[0]}
    assert len(request_digest(route, shallower)) == 64


def test_integral_float_parameters_key_like_integers() -> None:
    as_int = {"model": "m", "messages": [], "temperature": 1, "n": 2}
    as_float = {"model": "m", "messages": [], "temperature": 1.0, "n": 2.0}
    assert request_digest("chat", as_int) == request_digest("chat", as_float)
    assert request_digest("chat", {**as_int, "temperature": 0.5}) != request_digest("chat", as_int)
    assert request_digest("chat", {**as_int, "stop": True}) != request_digest(
        "chat", {**as_int, "stop": 1}
    )
