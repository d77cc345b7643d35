"""Keys and values in LiteLLM's format against what a real LiteLLM 1.108 proxy wrote.

tests/data/litellm_reference.json was produced once by tests/data/make_litellm_reference.py,
which ran LiteLLM's own proxy on a redis-server and recorded each key, the text LiteLLM
hashed into it, and the raw value it stored. The suite never imports LiteLLM.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from llmcache_tui.cache import litellm_entry
from llmcache_tui.cache.entry import CacheEntry
from llmcache_tui.cache.litellm_keys import (
    embedding_digests,
    litellm_digest,
    litellm_material,
    litellm_storage_key,
)

REFERENCE = json.loads(
    (Path(__file__).parent / "data" / "litellm_reference.json").read_text(encoding="utf-8")
)
NAMESPACE = REFERENCE["namespace"]
ROUTES = {"/v1/chat/completions": "chat", "/v1/completions": "text_completion",
          "/v1/embeddings": "embedding"}  # fmt: skip
CASES = [
    pytest.param(run, case, id=f"{run}-{case['name']}")
    for run, cases in REFERENCE["runs"].items()
    for case in cases
]


def entries(case: dict[str, Any]) -> dict[str, str]:
    """The response cache entries LiteLLM stored (not its spend counters)."""
    return {key: value for key, value in case["stored"].items() if not key.endswith(":tokens")}


def split(case: dict[str, Any]) -> tuple[str, dict[str, Any], str | None]:
    body = json.loads(case["body"])
    controls = body.pop("cache", None) or {}
    return ROUTES[case["path"]], body, controls.get("namespace")


@pytest.mark.parametrize(("run", "case"), CASES)
def test_keys_are_litellms(run: str, case: dict[str, Any]) -> None:
    route, body, namespace = split(case)
    configured = NAMESPACE if run == "namespace" else None
    if route == "embedding":
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        materials = [litellm_material(route, {**body, "input": item}) for item in inputs]
        digests = embedding_digests(body)
    else:
        materials = [litellm_material(route, body)]
        digests = [litellm_digest(route, body)]
    assert [[m, d] for m, d in zip(materials, digests, strict=True)] == case["materials"]
    keys = {litellm_storage_key(d, namespace, configured, True) for d in digests}
    assert keys == set(entries(case))
    if route != "embedding":  # LiteLLM names the key of a hit, without its Redis prefix
        shown = litellm_storage_key(digests[0], namespace, configured, False)
        assert case["second"]["headers"]["x-litellm-cache-key"] == shown


def test_field_order_is_part_of_litellms_key() -> None:
    cases = {case["name"]: case for case in REFERENCE["runs"]["no_namespace"]}
    assert entries(cases["chat_params"]).keys() != entries(cases["chat_params_reordered"]).keys()
    # ... and so is a whole number written as a float: 1.0 and 1 are two keys.
    assert "top_p: 1.0" in cases["chat_params"]["materials"][0][0]
    assert "temperature: 1stream" in cases["chat_whole_float"]["materials"][0][0]


@pytest.mark.parametrize(
    "case",
    [c for c in REFERENCE["runs"]["no_namespace"] if ROUTES[c["path"]] != "embedding"],
    ids=lambda c: c["name"],
)
def test_answers_are_written_and_read_as_litellm_does(case: dict[str, Any]) -> None:
    route, _, _ = split(case)
    (theirs,) = entries(case).values()
    stored = json.loads(theirs)
    answer = json.loads(stored["response"])  # LiteLLM: a JSON string inside the entry

    # Theirs, read by us: the same answer, as old as its timestamp says.
    entry = CacheEntry.decode(theirs)
    assert entry.foreign and entry.created_at == stored["timestamp"]
    served = litellm_entry.answer_for(route, entry)
    assert served is not None
    if route == "chat" or answer["object"] == "text_completion":
        assert served == answer
    else:  # a streamed text completion, which LiteLLM keeps chat-shaped
        assert served["object"] == "text_completion"
        assert served["choices"][0]["text"] == answer["choices"][0]["message"]["content"]
    assert litellm_entry.answer_for("embedding", entry) is None

    # Ours, read by LiteLLM's rules (json.loads, then json.loads of the response string).
    ours = CacheEntry(served, route, "fake", "", created_at=1_800_000_000.5)
    document = json.loads(litellm_entry.encode_answer(ours))
    assert list(document) == list(stored)
    assert isinstance(document["timestamp"], float)
    assert json.loads(document["response"]) == served


@pytest.mark.parametrize(
    "case",
    [c for c in REFERENCE["runs"]["no_namespace"] if ROUTES[c["path"]] == "embedding"],
    ids=lambda c: c["name"],
)
def test_embeddings_are_one_entry_per_input(case: dict[str, Any]) -> None:
    _, body, _ = split(case)
    upstream_answer = json.loads(case["first"]["body"])
    keys = [litellm_storage_key(d, None, None, True) for d in embedding_digests(body)]
    theirs = [json.loads(entries(case)[key]) for key in keys]
    # LiteLLM answers with the model group's name but stores the deployment's model, as it
    # came from upstream; our proxy stores the upstream answer as it came too.
    upstream_answer["model"] = theirs[0]["response"]["model"]

    ours = CacheEntry(upstream_answer, "embedding", body["model"], "", 1_800_000_000.5)
    values = litellm_entry.encode_embeddings(ours, len(keys))
    assert values is not None
    for mine, their in zip(values, theirs, strict=True):
        document = json.loads(mine)
        assert list(document) == list(their)
        assert document["response"] == their["response"]

    items = []
    for raw in entries(case).values():
        item = litellm_entry.embedding_item(CacheEntry.decode(raw))
        assert item is not None
        items.append(item)
    items.sort(key=lambda item: item["index"])
    joined = litellm_entry.join_embeddings(items, body["model"])
    assert [d["embedding"] for d in joined["data"]] == [
        d["embedding"] for d in upstream_answer["data"]
    ]
    assert joined["usage"]["prompt_tokens"] == upstream_answer["usage"]["prompt_tokens"]


def test_an_embedding_answer_without_one_vector_per_input_is_not_stored() -> None:
    answer = {"object": "list", "data": [{"embedding": [0.1], "index": 0}], "model": "m"}
    assert litellm_entry.encode_embeddings(CacheEntry(answer, "embedding", "m", "", 1.0), 2) is None


def test_a_request_namespace_comes_after_the_configured_one_on_redis_only() -> None:
    assert litellm_storage_key("d", "team", "ns", True) == "ns:team:d"
    assert litellm_storage_key("d", "team", "ns", False) == "team:d"
    assert litellm_storage_key("d", None, "ns", True) == "ns:d"
    assert litellm_storage_key("d", None, None, True) == "d"


def test_the_recorded_side_by_side_run_was_all_hits() -> None:
    """In the run of both proxies on one Redis, each answered from the other's entries."""
    shared = REFERENCE["shared"]
    assert {(r["writer"], r["reader"]) for r in shared} == {
        ("llmcache", "litellm"),
        ("litellm", "llmcache"),
    }
    missed = [(r["name"], r["writer"]) for r in shared if r["reader_called_upstream"]]
    assert missed == []
    for record in shared:
        if record["reader"] == "llmcache":
            assert record["reader_headers"]["cache-status"] == "llmcache; hit"
