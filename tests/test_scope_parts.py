"""The scope's parts a vector record keeps, and the probe's reasons drawn from them."""

from __future__ import annotations

import json
from typing import Any

import pytest

from llmcache_tui.cache.semantic.scope import SemanticQuery, semantic_query
from llmcache_tui.cache.semantic.scope_parts import (
    MAX_PARAMS,
    PART_DIGITS,
    PART_NAMES,
    decode_parts,
    differences,
)

SWEDEN = "What is the capital of Sweden?"
TOOLS = [{"type": "function", "function": {"name": "lookup"}}]


def body(**params: Any) -> dict[str, Any]:
    system = params.pop("system", None)
    messages = [{"role": "system", "content": system}] if system else []
    return {
        "model": "gpt-4o",
        "messages": [*messages, {"role": "user", "content": SWEDEN}],
        **params,
    }


def query(
    params: dict[str, Any] | None = None,
    *,
    model: str = "gpt-4o",
    namespace: str | None = None,
    tenant: str | None = None,
) -> SemanticQuery:
    found = semantic_query("chat", model, body(**(params or {})), namespace, tenant)
    assert found is not None and found.parts is not None
    return found


def parts_of(found: SemanticQuery) -> dict[str, Any]:
    assert found.parts is not None
    decoded: dict[str, Any] = json.loads(found.parts.json())
    return decoded


def test_the_scope_digest_is_unchanged() -> None:
    """Pinned from before the parts were kept: the filter of every stored vector."""
    pinned = semantic_query(
        "chat",
        "gpt-4o",
        {
            "model": "gpt-4o",
            "temperature": 0.2,
            "tools": [{"type": "function", "function": {"name": "f"}}],
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": SWEDEN},
            ],
        },
        "eu",
        "acme",
    )
    completion = semantic_query(
        "text_completion",
        "gpt-3.5-turbo-instruct",
        {"model": "gpt-3.5-turbo-instruct", "prompt": "Say hi"},
        None,
    )
    assert pinned is not None and completion is not None
    assert pinned.scope == "79ac43d65942f8b5d8d246c34126920c9e087c60e22b606ef65e4bd25ecdd310"
    assert completion.scope == "4ae36b3550037b00f06b8e4a4fa9442cb3fccf2ccdb9045f6df89637ea8fdb10"


def test_parts_hold_a_short_digest_of_each_part_and_the_plain_names() -> None:
    parts = parts_of(query({"temperature": 0.2, "tools": TOOLS}, namespace="eu", tenant="acme"))

    assert set(parts["d"]) == set(PART_NAMES)
    assert all(len(digest) == PART_DIGITS for digest in parts["d"].values())
    assert (parts["ns"], parts["rt"], parts["md"]) == ("eu", "chat", "gpt-4o")
    assert parts["p"]["temperature"] == 0.2  # a scalar, as it is
    assert parts["p"]["tools"].startswith("#")  # anything else, as a short digest
    assert "acme" not in json.dumps(parts)  # the tenant, as a digest only


def test_the_same_scope_has_the_same_parts_and_one_change_one_digest() -> None:
    base = parts_of(query({"temperature": 0.2}))
    assert parts_of(query({"temperature": 0.2})) == base
    changed = {
        "model": parts_of(query({"temperature": 0.2}, model="gpt-4o-mini")),
        "namespace": parts_of(query({"temperature": 0.2}, namespace="eu")),
        "tenant": parts_of(query({"temperature": 0.2}, tenant="acme")),
        "params": parts_of(query({"temperature": 0.7})),
        "context": parts_of(query({"temperature": 0.2, "system": "Be brief."})),
    }
    for part, parts in changed.items():
        assert {k for k in PART_NAMES if parts["d"][k] != base["d"][k]} == {part}


def test_many_parameters_keep_only_their_digest() -> None:
    parts = parts_of(query({f"x{i}": i for i in range(MAX_PARAMS + 1)}))
    assert "p" not in parts and "params" in parts["d"]


def test_parts_are_written_once_and_only_when_asked() -> None:
    found = query({"temperature": 0.2})
    assert found.parts is not None
    assert found.parts.json() is found.parts.json()
    assert (found.parts.model, found.parts.namespace) == ("gpt-4o", "")


def why(mine: SemanticQuery, theirs: SemanticQuery) -> list[str] | None:
    assert theirs.parts is not None
    found = differences(mine.parts, theirs.parts.json())
    return None if found is None else [phrase for _, phrase in found]


@pytest.mark.parametrize(
    ("theirs", "expected"),
    [
        (query({"temperature": 0.2}, model="gpt-4o-mini"), ["another model (gpt-4o-mini)"]),
        (query({"temperature": 0.2}, namespace="eu"), ["another namespace (eu)"]),
        (query({"temperature": 0.2}, tenant="acme"), ["another tenant"]),
        (query({"temperature": 0.7}), ["other parameters (temperature 0.2 vs 0.7)"]),
        (query({"temperature": 0.2, "seed": 1}), ["other parameters (seed only there)"]),
        (query({}), ["other parameters (temperature only here)"]),
        (query({"temperature": 0.2, "tools": TOOLS}), ["other parameters (tools only there)"]),
        (query({"temperature": True}), ["other parameters (temperature 0.2 vs true)"]),
        (
            query({"temperature": 0.2, "system": "Be brief."}),
            ["another conversation (system prompt or earlier turns differ)"],
        ),
        (
            query({"temperature": 0.7}, model="gpt-4o-mini", namespace="eu"),
            [
                "another model (gpt-4o-mini)",
                "another namespace (eu)",
                "other parameters (temperature 0.2 vs 0.7)",
            ],
        ),
        (query({"temperature": 0.2}), None),  # the same scope: nothing to say
    ],
)
def test_differences_name_every_part_that_differs(
    theirs: SemanticQuery, expected: list[str] | None
) -> None:
    assert why(query({"temperature": 0.2}), theirs) == expected


def test_a_differing_non_scalar_parameter_is_named_without_its_value() -> None:
    mine = query({"tools": TOOLS})
    theirs = query({"tools": [{"type": "function", "function": {"name": "other"}}]})
    assert why(mine, theirs) == ["other parameters (tools)"]


def test_another_route_is_named() -> None:
    prompt = semantic_query(
        "text_completion", "gpt-4o", {"model": "gpt-4o", "prompt": SWEDEN}, None
    )
    assert prompt is not None
    found = why(query(), prompt)
    assert found is not None and "another route (text completion)" in found


@pytest.mark.parametrize("stored", [None, "", "not json", "[]", '{"d": 1}', b'{"x": 1}'])
def test_records_without_readable_parts_give_no_reason(stored: Any) -> None:
    assert decode_parts(stored) is None
    assert differences(query().parts, stored) is None
    assert differences(None, query().parts.json()) is None  # type: ignore[union-attr]
