"""Which requests the semantic tier may answer, what it embeds, and what separates scopes."""

from __future__ import annotations

from typing import Any

import pytest

from llmcache_tui.cache.semantic.scope import MAX_TEXT_CHARS, semantic_query


def chat(*messages: dict[str, Any], **params: Any) -> dict[str, Any]:
    return {"model": "gpt-4o", "messages": list(messages), **params}


def user(text: Any) -> dict[str, Any]:
    return {"role": "user", "content": text}


def scope_of(body: dict[str, Any], **kwargs: Any) -> str:
    query = semantic_query(
        kwargs.pop("route", "chat"), body["model"], body, kwargs.pop("namespace", None), **kwargs
    )
    assert query is not None
    return query.scope


def test_the_last_user_message_is_embedded() -> None:
    body = chat(
        {"role": "system", "content": "Be brief."},
        user("What is the capital of France?"),
    )
    query = semantic_query("chat", "gpt-4o", body, None)
    assert query is not None
    assert query.text == "What is the capital of France?"
    assert query.vector is None


def test_text_parts_are_joined() -> None:
    body = chat(user([{"type": "text", "text": "Hello"}, {"type": "text", "text": "there"}]))
    query = semantic_query("chat", "gpt-4o", body, None)
    assert query is not None and query.text == "Hello\nthere"


@pytest.mark.parametrize(
    "messages",
    [
        [],
        [{"role": "assistant", "content": "prefill"}],
        [user("hi"), {"role": "tool", "tool_call_id": "1", "content": "42"}],
        [user("hi"), {"role": "function", "name": "f", "content": "42"}],
        [user([{"type": "image_url", "image_url": {"url": "https://x/y.png"}}])],
        [
            user([{"type": "image_url", "image_url": {"url": "https://x/y.png"}}]),
            {"role": "assistant", "content": "a cat"},
            user("and what colour is it?"),
        ],
        [user([{"type": "input_audio", "input_audio": {"data": "", "format": "wav"}}])],
        [user("   ")],
        [user(None)],
        [user("x" * (MAX_TEXT_CHARS + 1))],
        ["not a message"],
    ],
)
def test_requests_that_stay_exact_only(messages: list[Any]) -> None:
    assert semantic_query("chat", "gpt-4o", chat(*messages), None) is None


@pytest.mark.parametrize("route", ["embedding", "transcription"])
def test_other_routes_stay_exact_only(route: str) -> None:
    assert semantic_query(route, "m", {"model": "m", "input": "hello"}, None) is None


def test_text_completion_prompts() -> None:
    query = semantic_query("text_completion", "m", {"model": "m", "prompt": "Say hi"}, None)
    assert query is not None and query.text == "Say hi"
    single = semantic_query("text_completion", "m", {"model": "m", "prompt": ["Say hi"]}, None)
    assert single is not None and single.scope == query.scope
    for prompt in (["a", "b"], [1, 2, 3], None):
        assert (
            semantic_query("text_completion", "m", {"model": "m", "prompt": prompt}, None) is None
        )


def test_the_wording_of_the_last_message_is_not_scope() -> None:
    assert scope_of(chat(user("capital of France?"))) == scope_of(
        chat(user("What's the capital city of France?"))
    )


@pytest.mark.parametrize(
    "other",
    [
        chat(user("q"), temperature=0.9),
        chat(user("q"), response_format={"type": "json_object"}),
        chat(user("q"), tools=[{"type": "function", "function": {"name": "f"}}]),
        chat({"role": "system", "content": "Answer in French."}, user("q")),
        chat(user("earlier"), {"role": "assistant", "content": "ok"}, user("q")),
        chat({"role": "user", "content": "q", "name": "alice"}),
        {**chat(user("q")), "model": "gpt-4o-mini"},
    ],
)
def test_anything_but_the_wording_changes_the_scope(other: dict[str, Any]) -> None:
    assert scope_of(chat(user("q"))) != scope_of(other)


def test_namespace_route_and_tenant_change_the_scope() -> None:
    body = chat(user("q"))
    base = scope_of(body)
    assert scope_of(body, namespace="team-a") != base
    assert scope_of(body, tenant="key-1") != base
    prompt = {"model": "gpt-4o", "prompt": "q"}
    assert scope_of(prompt, route="text_completion") != base


def test_controls_and_stream_flags_do_not_change_the_scope() -> None:
    base = scope_of(chat(user("q")))
    assert scope_of(chat(user("q"), stream=True, stream_options={"include_usage": True})) == base
    assert scope_of(chat(user("q"), metadata={"trace": "1"})) == base


def test_whole_floats_scope_as_integers() -> None:
    assert scope_of(chat(user("q"), temperature=1)) == scope_of(chat(user("q"), temperature=1.0))
