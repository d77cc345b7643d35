"""Cache values in LiteLLM's format, for ``cache_params.key_format: litellm``.

LiteLLM stores ``{"timestamp": <unix time>, "response": ...}``: for a chat or text completion
the response is the answer as a JSON *string*; for an embedding request it stores one entry
per input whose response is an object ``{"embedding", "index", "object", "model",
"prompt_tokens", "prompt_tokens_details", "format_version": 2}`` (prompt tokens shared out
among the inputs, the remainder to the first ones), except on S3, where it keeps the whole
embedding answer as a JSON string, like a completion, under the whole request's key. A
streamed answer is stored assembled, as one chat completion, also for a streamed text
completion. This module writes those values from our entries and turns LiteLLM's values back
into answers our proxy can serve.
"""

from __future__ import annotations

from typing import Any

import orjson

from llmcache_tui.cache.entry import CacheEntry

EMBEDDING_FORMAT_VERSION = 2


def encode_answer(entry: CacheEntry) -> bytes:
    """A chat or text completion entry as LiteLLM stores it."""
    answer = orjson.dumps(entry.response).decode()
    return orjson.dumps({"timestamp": entry.created_at, "response": answer})


def encode_embeddings(entry: CacheEntry, inputs: int) -> list[bytes] | None:
    """One LiteLLM value per input of an embedding answer, in input order; None when the
    answer does not hold exactly one vector per input (LiteLLM then stores nothing)."""
    response = entry.response
    data = response.get("data") if isinstance(response, dict) else None
    if not isinstance(data, list) or len(data) != inputs:
        return None
    if not all(isinstance(item, dict) and "embedding" in item for item in data):
        return None
    usage = response.get("usage")
    total = usage.get("prompt_tokens") if isinstance(usage, dict) else None
    values = []
    for position, item in enumerate(data):
        tokens = None
        if isinstance(total, int):
            share, remainder = divmod(total, inputs)
            tokens = share + (1 if position < remainder else 0)
        record = {
            "embedding": item["embedding"],
            "index": item.get("index", position),
            "object": item.get("object", "embedding"),
            "model": response.get("model"),
            "prompt_tokens": tokens,
            "prompt_tokens_details": None,
            "format_version": EMBEDDING_FORMAT_VERSION,
        }
        values.append(orjson.dumps({"timestamp": entry.created_at, "response": record}))
    return values


def answer_for(route: str, entry: CacheEntry) -> Any | None:
    """The answer a LiteLLM entry gives a request to ``route``, or None if it gives none.

    A chat completion serves a chat request; a text completion a text request, as does the
    chat-shaped answer LiteLLM assembles from a streamed text completion (rewritten to the
    text completion it stands for); a whole embedding answer (S3) an embedding request.
    Embedding items are joined by :func:`join_embeddings`.
    """
    response = entry.response
    if not isinstance(response, dict) or "error" in response:
        return None
    kind = response.get("object")
    if route == "embedding":
        data = response.get("data")
        if kind != "list" or not isinstance(data, list) or not data:
            return None
        if all(isinstance(item, dict) and "embedding" in item for item in data):
            return response
        return None
    choices = response.get("choices")
    if not isinstance(choices, list) or not choices:
        return None
    if route == "chat" and kind == "chat.completion":
        return response
    if route == "text_completion":
        if kind == "text_completion":
            return response
        if kind == "chat.completion":
            return _as_text_completion(response)
    return None


def embedding_item(entry: CacheEntry) -> dict[str, Any] | None:
    """The stored vector of one input, if ``entry`` is LiteLLM's embedding item."""
    item = entry.response
    if not isinstance(item, dict) or item.get("format_version") != EMBEDDING_FORMAT_VERSION:
        return None
    if not isinstance(item.get("embedding"), (list, str)):
        return None
    return item


def join_embeddings(items: list[dict[str, Any]], model: str) -> dict[str, Any]:
    """The embedding answer for a request whose every input was found, in input order."""
    tokens = sum(
        item["prompt_tokens"] for item in items if isinstance(item.get("prompt_tokens"), int)
    )
    return {
        "object": "list",
        "data": [
            {"object": "embedding", "index": index, "embedding": item["embedding"]}
            for index, item in enumerate(items)
        ],
        "model": items[0].get("model") or model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def _as_text_completion(response: dict[str, Any]) -> dict[str, Any] | None:
    choices = []
    for position, choice in enumerate(response["choices"]):
        message = choice.get("message") if isinstance(choice, dict) else None
        if not isinstance(message, dict):
            return None
        choices.append(
            {
                "index": choice.get("index", position),
                "text": message.get("content") or "",
                "finish_reason": choice.get("finish_reason"),
                "logprobs": None,
            }
        )
    answer = {
        "id": response.get("id"),
        "object": "text_completion",
        "created": response.get("created"),
        "model": response.get("model"),
        "choices": choices,
    }
    if "usage" in response:
        answer["usage"] = response["usage"]
    return answer
