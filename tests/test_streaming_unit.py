"""Unit tests for ``llmcache_tui.proxy.streaming``: SSE capture, assembly and replay.

``StreamRecorder`` is fed the bytes of realistic streams cut into pieces at awkward places
(inside JSON, between ``\\r`` and ``\\n``, inside ``[DONE]``); ``assemble`` rebuilds the
non-streamed completion from chunks (content, tool calls split across deltas, reasoning,
several choices, text completions, usage); ``chunks_from_completion`` is checked to be its
inverse; ``replay_events`` for usage filtering and timing offsets.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from llmcache_tui.proxy.streaming import (
    DONE_EVENT,
    StreamRecorder,
    assemble,
    chunks_from_completion,
    replay_events,
)

BASE: dict[str, Any] = {
    "id": "chatcmpl-1",
    "object": "chat.completion.chunk",
    "created": 1764150000,
    "model": "gpt-4o-mini",
    "system_fingerprint": "fp_1",
}
TEXT_BASE: dict[str, Any] = {**BASE, "id": "cmpl-1", "object": "text_completion"}
USAGE = {"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9}


def chat_chunk(delta: dict[str, Any], finish: str | None = None, index: int = 0) -> dict[str, Any]:
    choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}
    return {**BASE, "choices": [choice]}


def text_chunk(text: str, finish: str | None = None, index: int = 0) -> dict[str, Any]:
    choice = {"index": index, "text": text, "logprobs": None, "finish_reason": finish}
    return {**TEXT_BASE, "choices": [choice]}


def usage_chunk(base: dict[str, Any] = BASE) -> dict[str, Any]:
    return {**base, "choices": [], "usage": USAGE}


CONTENT_CHUNKS: list[dict[str, Any]] = [
    chat_chunk({"role": "assistant", "content": ""}),
    chat_chunk({"content": "Hello"}),
    chat_chunk({"content": ", wörld"}),  # non-ASCII: UTF-8 bytes may be split too
    chat_chunk({"content": "!"}),
    chat_chunk({}, "stop"),
    usage_chunk(),
]


def sse(chunks: list[dict[str, Any]], *, newline: bytes = b"\n", done: bool = True) -> bytes:
    events = [b"data: " + orjson.dumps(chunk) + newline + newline for chunk in chunks]
    if done:
        events.append(b"data: [DONE]" + newline + newline)
    return b"".join(events)


def pieces(data: bytes, size: int) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def record(*parts: bytes) -> StreamRecorder:
    recorder = StreamRecorder()
    for part in parts:
        recorder.feed(part)
    return recorder


class StepClock:
    """Returns the given times one call after another."""

    def __init__(self, *times: float) -> None:
        self._times = iter(times)

    def __call__(self) -> float:
        return next(self._times)


# --------------------------------------------------------------------------- StreamRecorder


@pytest.mark.parametrize("newline", [b"\n", b"\r\n"], ids=["lf", "crlf"])
@pytest.mark.parametrize("size", [1, 2, 3, 7, 64, 10_000])
def test_recorder_reassembles_a_stream_cut_anywhere(newline: bytes, size: int) -> None:
    data = sse(CONTENT_CHUNKS, newline=newline)
    recorder = record(*pieces(data, size))

    assert recorder.chunks == CONTENT_CHUNKS
    assert recorder.done and recorder.finished and not recorder.failed
    assert recorder.complete


def test_recorder_crlf_split_between_cr_and_lf() -> None:
    data = sse(CONTENT_CHUNKS, newline=b"\r\n")
    cuts = [i + 1 for i in range(len(data)) if data[i : i + 2] == b"\r\n"]
    parts = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
    assert all(part.endswith(b"\r") for part in parts[:-1])

    recorder = record(*parts)

    assert recorder.chunks == CONTENT_CHUNKS
    assert recorder.complete


def test_recorder_crlf_split_inside_the_blank_line_after_done() -> None:
    recorder = record(
        sse(CONTENT_CHUNKS, newline=b"\r\n", done=False), b"data: [DONE]\r", b"\n\r\n"
    )

    assert recorder.done
    assert not recorder.failed
    assert recorder.complete


def test_recorder_joins_multi_line_data() -> None:
    chunk = chat_chunk({"content": "two\nlines"}, "stop")
    text = orjson.dumps(chunk, option=orjson.OPT_INDENT_2)
    event = b"".join(b"data: " + line + b"\n" for line in text.split(b"\n")) + b"\n"

    recorder = record(event, b"data: [DONE]\n\n")

    assert recorder.chunks == [chunk]
    assert recorder.complete


def test_recorder_ignores_comments_event_names_and_ids() -> None:
    stream = (
        b": keep-alive\n\n"
        b"event: message\nid: 1\n" + sse([CONTENT_CHUNKS[1]], done=False) + b"retry: 10\n\n"
        b"data:" + orjson.dumps(chat_chunk({}, "stop")) + b"\n\n"  # no space after the colon
        b"data: [DONE]\n\n"
    )
    recorder = record(stream)

    assert recorder.chunks == [CONTENT_CHUNKS[1], chat_chunk({}, "stop")]
    assert recorder.complete


def test_recorder_without_done_is_incomplete() -> None:
    recorder = record(sse(CONTENT_CHUNKS, done=False))

    assert recorder.chunks == CONTENT_CHUNKS
    assert recorder.finished
    assert not recorder.done
    assert not recorder.complete


def test_recorder_done_without_its_blank_line_is_incomplete() -> None:
    recorder = record(sse(CONTENT_CHUNKS, done=False), b"data: [DONE]\n")

    assert not recorder.complete


def test_recorder_without_finish_reason_is_incomplete() -> None:
    recorder = record(sse(CONTENT_CHUNKS[:4]))

    assert recorder.done
    assert not recorder.finished
    assert not recorder.complete


def test_recorder_error_event_fails_the_stream() -> None:
    error = {"error": {"message": "overloaded", "type": "server_error"}}
    recorder = record(sse(CONTENT_CHUNKS[:2], done=False), sse([error]))

    assert recorder.failed
    assert recorder.chunks == CONTENT_CHUNKS[:2]
    assert not recorder.complete


def test_recorder_error_event_after_finish_still_fails() -> None:
    error = {"error": {"message": "late failure"}}
    recorder = record(sse([*CONTENT_CHUNKS, error]))

    assert recorder.failed
    assert not recorder.complete


def test_recorder_data_after_done_fails_the_stream() -> None:
    recorder = record(sse(CONTENT_CHUNKS), sse([chat_chunk({"content": "more"})], done=False))

    assert recorder.failed
    assert not recorder.complete


def test_recorder_a_second_done_is_harmless() -> None:
    recorder = record(sse(CONTENT_CHUNKS), DONE_EVENT)

    assert recorder.complete


@pytest.mark.parametrize("payload", [b"{not json", b"[1, 2]", b'"text"'])
def test_recorder_non_object_data_fails_the_stream(payload: bytes) -> None:
    recorder = record(sse(CONTENT_CHUNKS[:1], done=False), b"data: " + payload + b"\n\n")

    assert recorder.failed
    assert not recorder.complete


def test_recorder_marked_failed_from_outside_is_incomplete() -> None:
    recorder = record(sse(CONTENT_CHUNKS))
    recorder.failed = True  # what the proxy does when the upstream breaks off

    assert not recorder.complete


def test_recorder_offsets_count_from_the_first_byte() -> None:
    # One clock read when the first piece arrives, then one per parsed chunk.
    clock = StepClock(100.0, 100.0, 100.25, 100.5)
    recorder = StreamRecorder(clock=clock)
    first, second, third = (sse([chunk], done=False) for chunk in CONTENT_CHUNKS[:3])

    recorder.feed(first + second[:10])
    recorder.feed(second[10:])
    recorder.feed(third + DONE_EVENT)

    assert recorder.chunks == CONTENT_CHUNKS[:3]
    assert recorder.offsets == [0.0, 0.25, 0.5]


# --------------------------------------------------------------------------- assemble


def test_assemble_chat_content_and_usage() -> None:
    completion = assemble("chat", CONTENT_CHUNKS)

    assert completion == {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1764150000,
        "model": "gpt-4o-mini",
        "system_fingerprint": "fp_1",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello, wörld!"},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": USAGE,
    }


def test_assemble_ignores_null_usage_on_content_chunks() -> None:
    chunks = [{**chunk, "usage": None} for chunk in CONTENT_CHUNKS[:-1]]

    completion = assemble("chat", [*chunks, usage_chunk()])

    assert completion["usage"] == USAGE
    assert "usage" not in assemble("chat", chunks)


TOOL_CHUNKS: list[dict[str, Any]] = [
    chat_chunk({"role": "assistant", "content": None}),
    chat_chunk(
        {
            "tool_calls": [
                {
                    "index": 0,
                    "id": "call_a",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": ""},
                }
            ]
        }
    ),
    chat_chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city":'}}]}),
    chat_chunk(
        {
            "tool_calls": [
                {
                    "index": 1,
                    "id": "call_b",
                    "type": "function",
                    "function": {"name": "get_time", "arguments": '{"tz":'},
                }
            ]
        }
    ),
    # Interleaved: the first call gets more arguments after the second one started.
    chat_chunk({"tool_calls": [{"index": 0, "function": {"arguments": ' "Paris"}'}}]}),
    chat_chunk({"tool_calls": [{"index": 1, "function": {"arguments": ' "CET"}'}}]}),
    chat_chunk({}, "tool_calls"),
    usage_chunk(),
]
TOOL_CALLS: list[dict[str, Any]] = [
    {
        "id": "call_a",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
    },
    {
        "id": "call_b",
        "type": "function",
        "function": {"name": "get_time", "arguments": '{"tz": "CET"}'},
    },
]


def test_assemble_tool_calls_split_across_deltas() -> None:
    completion = assemble("chat", TOOL_CHUNKS)

    (choice,) = completion["choices"]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"] == {"role": "assistant", "content": None, "tool_calls": TOOL_CALLS}
    assert completion["usage"] == USAGE


def test_assemble_null_tool_calls_in_deltas_add_no_tool_calls() -> None:
    # Some OpenAI-compatible servers (LiteLLM among them) write every delta field, null or not.
    chunks = [
        chat_chunk({"role": "assistant", "content": "hi", "tool_calls": None}),
        chat_chunk({"content": None, "tool_calls": None}, "stop"),
    ]

    message = assemble("chat", chunks)["choices"][0]["message"]

    assert message.get("tool_calls") is None
    assert message["content"] == "hi"


def test_assemble_legacy_function_call_split_across_deltas() -> None:
    chunks = [
        chat_chunk({"role": "assistant", "content": None}),
        chat_chunk({"function_call": {"name": "get_weather", "arguments": ""}}),
        chat_chunk({"function_call": {"arguments": '{"city":'}}),
        chat_chunk({"function_call": {"arguments": ' "Paris"}'}}),
        chat_chunk({}, "function_call"),
    ]
    original = copy.deepcopy(chunks)

    message = assemble("chat", chunks)["choices"][0]["message"]

    assert message["function_call"] == {"name": "get_weather", "arguments": '{"city": "Paris"}'}
    assert chunks == original


def test_assemble_reasoning_content() -> None:
    chunks = [
        chat_chunk({"role": "assistant", "content": None, "reasoning_content": ""}),
        chat_chunk({"reasoning_content": "The user "}),
        chat_chunk({"reasoning_content": "greets me."}),
        chat_chunk({"content": "Hi"}),
        chat_chunk({"content": " there"}),
        chat_chunk({}, "stop"),
    ]

    message = assemble("chat", chunks)["choices"][0]["message"]

    assert message == {
        "role": "assistant",
        "content": "Hi there",
        "reasoning_content": "The user greets me.",
    }


def test_assemble_multiple_choices_interleaved() -> None:
    chunks = [
        chat_chunk({"role": "assistant", "content": ""}, index=1),
        chat_chunk({"role": "assistant", "content": ""}, index=0),
        chat_chunk({"content": "B1"}, index=1),
        chat_chunk({"content": "A1"}, index=0),
        chat_chunk({"content": " A2"}, index=0),
        chat_chunk({}, "length", index=1),
        chat_chunk({"content": " A3"}, index=0),
        chat_chunk({}, "stop", index=0),
    ]

    choices = assemble("chat", chunks)["choices"]

    assert [c["index"] for c in choices] == [0, 1]
    assert [c["message"]["content"] for c in choices] == ["A1 A2 A3", "B1"]
    assert [c["finish_reason"] for c in choices] == ["stop", "length"]


def test_assemble_text_completion() -> None:
    chunks = [
        text_chunk("echo"),
        text_chunk(": count"),
        text_chunk(" to three"),
        text_chunk("", "stop"),
        usage_chunk(TEXT_BASE),
    ]

    completion = assemble("text_completion", chunks)

    assert completion == {
        "id": "cmpl-1",
        "object": "text_completion",
        "created": 1764150000,
        "model": "gpt-4o-mini",
        "system_fingerprint": "fp_1",
        "choices": [
            {"index": 0, "text": "echo: count to three", "logprobs": None, "finish_reason": "stop"}
        ],
        "usage": USAGE,
    }


def test_assemble_merges_chat_logprobs_across_chunks() -> None:
    def token(text: str) -> dict[str, Any]:
        return {"token": text, "logprob": -0.5, "bytes": list(text.encode()), "top_logprobs": []}

    chunks = [
        chat_chunk({"role": "assistant", "content": ""}),
        chat_chunk({"content": "Hi"}),
        chat_chunk({"content": " you"}),
        chat_chunk({}, "stop"),
    ]
    chunks[1]["choices"][0]["logprobs"] = {"content": [token("Hi")], "refusal": None}
    chunks[2]["choices"][0]["logprobs"] = {"content": [token(" you")], "refusal": None}

    choice = assemble("chat", chunks)["choices"][0]

    assert choice["logprobs"] == {"content": [token("Hi"), token(" you")], "refusal": None}


def test_assemble_merges_text_logprobs_across_chunks() -> None:
    chunks = [text_chunk("a"), text_chunk("b"), text_chunk("", "stop")]
    chunks[0]["choices"][0]["logprobs"] = {
        "tokens": ["a"],
        "token_logprobs": [-0.1],
        "top_logprobs": [{"a": -0.1}],
        "text_offset": [0],
    }
    chunks[1]["choices"][0]["logprobs"] = {
        "tokens": ["b"],
        "token_logprobs": [-0.2],
        "top_logprobs": [{"b": -0.2}],
        "text_offset": [1],
    }

    choice = assemble("text_completion", chunks)["choices"][0]

    assert choice["text"] == "ab"
    assert choice["logprobs"] == {
        "tokens": ["a", "b"],
        "token_logprobs": [-0.1, -0.2],
        "top_logprobs": [{"a": -0.1}, {"b": -0.2}],
        "text_offset": [0, 1],
    }


def test_assemble_does_not_alter_the_chunks() -> None:
    chunks = copy.deepcopy(TOOL_CHUNKS)

    assemble("chat", chunks)

    assert chunks == TOOL_CHUNKS


# --------------------------------------------------------------------------- round trip

CHAT_COMPLETION: dict[str, Any] = {
    "id": "chatcmpl-9",
    "object": "chat.completion",
    "created": 1764150000,
    "model": "gpt-4o-mini",
    "system_fingerprint": "fp_9",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": None,
                "reasoning_content": "Two lookups are needed.",
                "tool_calls": TOOL_CALLS,
            },
            "finish_reason": "tool_calls",
        },
        {
            "index": 1,
            "message": {"role": "assistant", "content": "It is sunny."},
            "finish_reason": "stop",
        },
    ],
    "usage": USAGE,
}
TEXT_COMPLETION: dict[str, Any] = {
    "id": "cmpl-9",
    "object": "text_completion",
    "created": 1764150000,
    "model": "gpt-3.5-turbo-instruct",
    "choices": [
        {"index": 0, "text": "echo: hello", "finish_reason": "stop"},
        {"index": 1, "text": "echo: hi", "finish_reason": "length"},
    ],
    "usage": USAGE,
}
# As OpenAI writes them: null logprobs and refusal, the tool call list absent.
OPENAI_CHAT_COMPLETION: dict[str, Any] = {
    **CHAT_COMPLETION,
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Hi!", "refusal": None},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ],
}
OPENAI_TEXT_COMPLETION: dict[str, Any] = {
    **TEXT_COMPLETION,
    "choices": [
        {
            "index": 0,
            "text": "echo: hello",
            "logprobs": {"tokens": ["echo"], "token_logprobs": [-0.1]},
            "finish_reason": "stop",
        }
    ],
}


@pytest.mark.parametrize(
    ("route", "completion"),
    [
        ("chat", CHAT_COMPLETION),
        ("text_completion", TEXT_COMPLETION),
        ("chat", OPENAI_CHAT_COMPLETION),
        ("text_completion", OPENAI_TEXT_COMPLETION),
    ],
    ids=["chat-tool-calls", "text", "chat-openai-nulls", "text-logprobs"],
)
def test_chunks_from_completion_round_trip(route: str, completion: dict[str, Any]) -> None:
    original = copy.deepcopy(completion)

    chunks = chunks_from_completion(route, completion)

    assert assemble(route, chunks) == completion
    assert completion == original  # the stored answer is not modified


def test_chunks_from_completion_shape() -> None:
    chunks = chunks_from_completion("chat", CHAT_COMPLETION)

    assert all(chunk["object"] == "chat.completion.chunk" for chunk in chunks)
    assert all(chunk["id"] == "chatcmpl-9" for chunk in chunks)
    # Every choice ends with a finish_reason; the usage-only chunk comes last.
    finishes = [
        (choice["index"], choice["finish_reason"])
        for chunk in chunks
        for choice in chunk["choices"]
        if choice.get("finish_reason")
    ]
    assert finishes == [(0, "tool_calls"), (1, "stop")]
    assert chunks[-1] == {
        "id": "chatcmpl-9",
        "object": "chat.completion.chunk",
        "created": 1764150000,
        "model": "gpt-4o-mini",
        "system_fingerprint": "fp_9",
        "choices": [],
        "usage": USAGE,
    }
    deltas = [choice["delta"] for chunk in chunks for choice in chunk["choices"]]
    tool_deltas = [d["tool_calls"] for d in deltas if d.get("tool_calls")]
    assert [[call["index"] for call in calls] for calls in tool_deltas] == [[0, 1]]


def test_chunks_from_completion_is_what_a_recorder_accepts() -> None:
    for route, completion in (("chat", CHAT_COMPLETION), ("text_completion", TEXT_COMPLETION)):
        chunks = chunks_from_completion(route, completion)
        events = replay_events(chunks, None, include_usage=True)
        recorder = record(*(event for _, event in events))
        assert recorder.complete
        assert assemble(route, recorder.chunks) == completion


# --------------------------------------------------------------------------- replay_events


def decoded(events: list[tuple[float, bytes]]) -> list[Any]:
    out: list[Any] = []
    for _, event in events:
        assert event.startswith(b"data: ") and event.endswith(b"\n\n")
        payload = event[len(b"data: ") : -2]
        out.append("[DONE]" if payload == b"[DONE]" else orjson.loads(payload))
    return out


def test_replay_events_with_usage() -> None:
    events = list(replay_events(CONTENT_CHUNKS, None, include_usage=True))

    assert decoded(events) == [*CONTENT_CHUNKS, "[DONE]"]
    assert events[-1][1] == DONE_EVENT
    assert {offset for offset, _ in events} == {0.0}


def test_replay_events_drop_the_usage_chunk_unless_asked() -> None:
    events = list(replay_events(CONTENT_CHUNKS, None, include_usage=False))

    assert decoded(events) == [*CONTENT_CHUNKS[:-1], "[DONE]"]


def test_replay_events_keep_usage_riding_on_a_content_chunk() -> None:
    # Only a usage-only chunk (no choices) is optional; a chunk with choices always goes.
    chunks = [*CONTENT_CHUNKS[:-2], {**CONTENT_CHUNKS[-2], "usage": USAGE}]

    events = list(replay_events(chunks, None, include_usage=False))

    assert decoded(events) == [*chunks, "[DONE]"]


def test_replay_events_are_byte_identical_to_an_orjson_stream() -> None:
    body = b"".join(event for _, event in replay_events(CONTENT_CHUNKS, None, include_usage=True))

    assert body == sse(CONTENT_CHUNKS)


def test_replay_events_offsets() -> None:
    offsets = [0.0, 0.1, 0.2, 0.3, 0.4, 0.45]

    with_usage = list(replay_events(CONTENT_CHUNKS, offsets, include_usage=True))
    without = list(replay_events(CONTENT_CHUNKS, offsets, include_usage=False))

    assert [offset for offset, _ in with_usage] == [*offsets, 0.45]
    # The skipped usage chunk's time is not used: [DONE] follows the last chunk sent.
    assert [offset for offset, _ in without] == [0.0, 0.1, 0.2, 0.3, 0.4, 0.4]


def test_replay_events_short_offsets_hold_the_last_time() -> None:
    events = list(replay_events(CONTENT_CHUNKS, [0.0, 0.2], include_usage=True))

    assert [offset for offset, _ in events] == [0.0, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2]


def test_replay_events_of_nothing_is_just_done() -> None:
    assert list(replay_events([], None, include_usage=True)) == [(0.0, DONE_EVENT)]
