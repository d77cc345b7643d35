"""The stored cache entry: our own format, LiteLLM's format, and prompt previews."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest

from llmcache_tui.cache.entry import (
    ENTRY_HEAD_BYTES,
    FORMAT_VERSION,
    ORIGIN_LITELLM,
    ORIGIN_OURS,
    PREVIEW_CHARS,
    CacheEntry,
    EntryFormatError,
    entry_origin,
    prompt_preview,
)

CHAT_RESPONSE: dict[str, Any] = {
    "id": "chatcmpl-123",
    "object": "chat.completion",
    "created": 1712252235,
    "model": "gpt-3.5-turbo-0125",
    "choices": [
        {
            "index": 0,
            "finish_reason": "stop",
            "message": {"role": "assistant", "content": "I'm sorry, ünïcödé ✓"},
        }
    ],
    "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12},
}
EMBEDDING_RESPONSE: dict[str, Any] = {
    "object": "list",
    "data": [{"object": "embedding", "index": 0, "embedding": [0.1, -0.2, 0.3]}],
    "model": "text-embedding-ada-002",
    "usage": {"prompt_tokens": 4, "total_tokens": 4},
}
TEXT_RESPONSE: dict[str, Any] = {
    "id": "cmpl-1",
    "object": "text_completion",
    "model": "gpt-3.5-turbo-instruct",
    "choices": [{"text": "hi", "index": 0, "finish_reason": "stop"}],
}


def _entry(**overrides: Any) -> CacheEntry:
    fields: dict[str, Any] = {
        "response": CHAT_RESPONSE,
        "route": "chat",
        "model": "gpt-3.5-turbo",
        "prompt_preview": "hello",
        "created_at": 1764150000.25,
        "ttl": 600.0,
        "usage": CHAT_RESPONSE["usage"],
    }
    fields.update(overrides)
    return CacheEntry(**fields)


# --------------------------------------------------------------------------- own format


def test_round_trip() -> None:
    entry = _entry()
    decoded = CacheEntry.decode(entry.encode())
    assert decoded == entry
    assert decoded.foreign is False


def test_round_trip_from_str() -> None:
    entry = _entry(ttl=None, usage=None)
    assert CacheEntry.decode(entry.encode().decode()) == entry


def test_round_trip_text_media_type() -> None:
    entry = _entry(
        route="transcription",
        response="1\n00:00:00,000 --> 00:00:01,000\nhi\n",
        media_type="application/x-subrip",
        usage=None,
    )
    decoded = CacheEntry.decode(entry.encode())
    assert decoded == entry
    assert decoded.response_bytes() == entry.response.encode()


def test_encoded_document_shape() -> None:
    document = orjson.loads(_entry().encode())
    assert document == {
        "v": FORMAT_VERSION,
        "response": CHAT_RESPONSE,
        "call_type": "chat",
        "model": "gpt-3.5-turbo",
        "prompt_preview": "hello",
        "created_at": 1764150000.25,
        "ttl": 600.0,
        "usage": CHAT_RESPONSE["usage"],
    }
    assert "media_type" not in document


def test_response_bytes_is_the_json_body() -> None:
    assert orjson.loads(_entry().response_bytes()) == CHAT_RESPONSE


def test_decode_tolerates_missing_optional_fields() -> None:
    decoded = CacheEntry.decode(orjson.dumps({"v": FORMAT_VERSION, "response": {"a": 1}}))
    assert decoded.response == {"a": 1}
    assert decoded.route == "unknown"
    assert decoded.model == ""
    assert decoded.created_at == 0.0
    assert decoded.ttl is None
    assert not decoded.foreign


# ------------------------------------------------------------------------ LiteLLM format


@pytest.mark.parametrize(
    ("response", "route", "model"),
    [
        (CHAT_RESPONSE, "chat", "gpt-3.5-turbo-0125"),
        (EMBEDDING_RESPONSE, "embedding", "text-embedding-ada-002"),
        (TEXT_RESPONSE, "text_completion", "gpt-3.5-turbo-instruct"),
        ({"text": "a transcription"}, "unknown", ""),
    ],
)
def test_litellm_entry_is_foreign(response: dict[str, Any], route: str, model: str) -> None:
    raw = orjson.dumps({"timestamp": 1712252235.5, "response": orjson.dumps(response).decode()})
    entry = CacheEntry.decode(raw)
    assert entry.foreign is True
    assert entry.response == response
    assert entry.route == route
    assert entry.model == model
    assert entry.created_at == 1712252235.5
    assert entry.prompt_preview == ""


def test_litellm_entry_usage() -> None:
    raw = orjson.dumps({"timestamp": 1.0, "response": orjson.dumps(CHAT_RESPONSE).decode()})
    assert CacheEntry.decode(raw).usage == CHAT_RESPONSE["usage"]


def test_litellm_entry_with_plain_string_response() -> None:
    entry = CacheEntry.decode(orjson.dumps({"timestamp": 5, "response": "just text"}))
    assert entry.foreign
    assert entry.response == "just text"
    assert entry.route == "unknown"
    assert entry.usage is None


def test_litellm_entry_with_object_response() -> None:
    entry = CacheEntry.decode(orjson.dumps({"timestamp": 5, "response": EMBEDDING_RESPONSE}))
    assert entry.foreign
    assert entry.route == "embedding"


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"not json at all",
        b"\x80\x81\x82",
        b"[1, 2, 3]",
        b'"a string"',
        b"42",
        b"null",
        b"{}",
        b'{"response": {}}',
        b'{"timestamp": 1}',
        b'{"v": 99, "response": {}}',
        b'{"v": 1}',
    ],
)
def test_garbage_raises_entry_format_error(raw: bytes) -> None:
    with pytest.raises(EntryFormatError):
        CacheEntry.decode(raw)


@pytest.mark.parametrize(
    "document",
    [
        {"v": FORMAT_VERSION, "response": {}, "created_at": "yesterday"},
        {"v": FORMAT_VERSION, "response": {}, "created_at": [1]},
        {"timestamp": "not a time", "response": "{}"},
        {"timestamp": {"t": 1}, "response": "{}"},
        {"v": FORMAT_VERSION, "response": {}, "created_at": "-inf"},
        {"v": FORMAT_VERSION, "response": {}, "created_at": "nan"},
        {"timestamp": "-Infinity", "response": "{}"},
    ],
)
def test_malformed_fields_raise_entry_format_error(document: dict[str, Any]) -> None:
    """Bad field values are a format error too, never a bare ValueError or TypeError."""
    with pytest.raises(EntryFormatError, match="malformed entry"):
        CacheEntry.decode(orjson.dumps(document))


def test_entry_format_error_is_a_value_error() -> None:
    assert issubclass(EntryFormatError, ValueError)


# ------------------------------------------------------------------------ prompt preview


def test_preview_chat_last_user_message() -> None:
    body = {
        "messages": [
            {"role": "system", "content": "be terse"},
            {"role": "user", "content": "first question"},
            {"role": "assistant", "content": "first answer"},
            {"role": "user", "content": "second question"},
            {"role": "assistant", "content": "prefill"},
        ]
    }
    assert prompt_preview(body) == "second question"


def test_preview_chat_content_parts() -> None:
    body = {
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "what is in"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                    {"type": "text", "text": "this picture?"},
                ],
            }
        ]
    }
    assert prompt_preview(body) == "what is in this picture?"


def test_preview_chat_without_user_message() -> None:
    assert prompt_preview({"messages": [{"role": "system", "content": "s"}]}) == ""
    assert prompt_preview({"messages": []}) == ""
    assert prompt_preview({"messages": ["junk", {"role": "user"}]}) == ""


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [("once upon a time", "once upon a time"), (["a", "b"], "a b"), ([1, 2, 3], "")],
)
def test_preview_completion_prompt(prompt: Any, expected: str) -> None:
    assert prompt_preview({"model": "m", "prompt": prompt}) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("write a litellm poem", "write a litellm poem"),
        (["write a", "litellm poem"], "write a litellm poem"),
        ([[1, 2, 3]], ""),  # token arrays have no text to show
    ],
)
def test_preview_embedding_input(value: Any, expected: str) -> None:
    assert prompt_preview({"model": "m", "input": value}) == expected


def test_preview_transcription_file_name() -> None:
    assert prompt_preview({"model": "whisper-1", "file_name": "talk.mp3"}) == "audio file talk.mp3"


def test_preview_is_bounded() -> None:
    long = "x" * (PREVIEW_CHARS * 3)
    assert prompt_preview({"messages": [{"role": "user", "content": long}]}) == "x" * PREVIEW_CHARS
    assert len(prompt_preview({"input": long})) == PREVIEW_CHARS


def test_preview_of_nothing() -> None:
    assert prompt_preview({"model": "m"}) == ""


# --------------------------------------------------------------------------- entry_origin


def test_our_entries_are_recognised_from_their_first_bytes() -> None:
    for entry in (_entry(), _entry(media_type="text/plain", response="hi"), _entry(usage=None)):
        raw = entry.encode()
        assert entry_origin(raw[:ENTRY_HEAD_BYTES]) == ORIGIN_OURS


@pytest.mark.parametrize(
    "raw",
    [
        # json.dumps, as LiteLLM writes them, and compact writers
        json.dumps({"timestamp": 1764150000.1234567, "response": json.dumps(CHAT_RESPONSE)}),
        json.dumps({"timestamp": 1764150000, "response": "plain text"}),
        orjson.dumps({"timestamp": 5, "response": EMBEDDING_RESPONSE}).decode(),
        '{ "timestamp" : 1.7e9 , "response" : "{}" }',
    ],
)
def test_litellm_entries_are_recognised_from_their_first_bytes(raw: str) -> None:
    assert entry_origin(raw.encode()[:ENTRY_HEAD_BYTES]) == ORIGIN_LITELLM
    assert CacheEntry.decode(raw).foreign  # and the browser reads them


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"session-token-123",
        b"\x80\x81\x82",
        b"42",
        b'"a string"',
        b"[1, 2, 3]",
        b"{}",
        b'{"user": "ada", "response": "x"}',  # JSON, but not an entry
        b'{"response": {}, "v": 1}',  # our fields, but not as we write them
        b'{"v": 2, "response": {}}',  # a format version this app does not write
        b'{"v": "1", "response": {}}',
        b'{"timestamp": "today", "response": "{}"}',
        b'{"timestamp": 1}',
        b'  [{"v":1,"response":{}}]',
    ],
)
def test_other_data_is_not_taken_for_an_entry(raw: bytes) -> None:
    assert entry_origin(raw[:ENTRY_HEAD_BYTES]) is None


def test_a_damaged_entry_is_still_an_entry() -> None:
    """Cut short, it no longer decodes, but it is ours: a purge may delete it."""
    raw = _entry().encode()[:40]
    assert entry_origin(raw) == ORIGIN_OURS
    with pytest.raises(EntryFormatError):
        CacheEntry.decode(raw)


@pytest.mark.parametrize(
    ("usage", "expected"),
    [
        ({"prompt_tokens": 12, "completion_tokens": 5}, (12, 5)),
        ({"prompt_tokens": "12", "completion_tokens": -1}, (0, 0)),
        ({"prompt_tokens": True, "completion_tokens": 3.0}, (0, 0)),
        (["not", "a", "dict"], (0, 0)),
        (None, (0, 0)),
    ],
)
def test_token_counts_come_from_usage_only_when_they_are_counts(
    usage: Any, expected: tuple[int, int]
) -> None:
    entry = CacheEntry(
        response={}, route="chat", model="m", prompt_preview="", created_at=0.0, usage=usage
    )
    assert (entry.prompt_tokens, entry.completion_tokens) == expected
    assert CacheEntry.decode(entry.encode()).prompt_tokens == expected[0]
