"""Cache keys as LiteLLM's proxy computes them (``cache_params.key_format: litellm``).

LiteLLM hashes a text of ``name: value`` pairs, one per request parameter it knows, with
each value written the way Python's ``str()`` writes it (so ``{'role': 'user'}``, ``True``,
``0.2``): SHA-256 of that text, hex, prefixed with the namespace. What goes in, and in what
order, was read off LiteLLM 1.108's proxy itself (tests/data/litellm_reference.json):

* ``model`` first, as the client named it (the model group), then the prompt (``messages``,
  ``prompt`` or ``input``), then every other known parameter in the order the client wrote
  it, leaving out nulls, ``metadata``, ``cache`` and parameters LiteLLM does not know;
* chat requests end with ``stream: False`` or ``stream: True``; a streamed chat request
  also has ``stream_options: {'include_usage': True}`` (LiteLLM's proxy asks every stream
  for usage), in the client's place for it or else just before ``stream``;
* an embedding request has one key per input, each with ``input: <that one input>``.

So the key depends on the order of the body's fields, as LiteLLM's does; two orders are two
entries. A body parsed by orjson holds the same values, in the same order, as the one
LiteLLM's proxy parses with ``json``, so ``str()`` writes them identically.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

# The parameters LiteLLM 1.108 keys on (``ModelParamHelper.get_all_llm_api_params()`` with
# the OpenAI SDK 3.57 it installs): the OpenAI request fields of every call type, less
# ``metadata``/``litellm_metadata``. Anything else in a body does not change its key.
KEYED_PARAMS = frozenset(
    {
        "access_programs", "audio", "background", "background_options", "best_of",
        "cache_control", "chunking_strategy", "compaction", "container",
        "context_management", "conversation", "dimensions", "documents", "echo",
        "encoding_format", "file", "frequency_penalty", "function_call", "functions",
        "image", "include", "inference_geo", "input", "instruction", "instructions",
        "keywords", "known_speaker_names", "known_speaker_references", "language",
        "languages", "logit_bias", "logprobs", "max_chunks_per_doc",
        "max_completion_tokens", "max_output_tokens", "max_tokens", "max_tokens_per_doc",
        "max_tokens_per_query", "max_tool_calls", "mcp_servers", "messages", "modalities",
        "model", "moderation", "n", "output_config", "output_format",
        "parallel_tool_calls", "prediction", "presence_penalty", "previous_response_id",
        "prompt", "prompt_cache_key", "prompt_cache_options", "prompt_cache_retention",
        "query", "rank_fields", "reasoning", "reasoning_effort", "response_format",
        "return_documents", "safeguards", "safety_identifier", "seed", "service_tier",
        "speed", "stop", "stop_sequences", "store", "stream", "stream_options", "suffix",
        "system", "temperature", "text", "thinking", "timestamp_granularities",
        "tool_choice", "tools", "top_k", "top_logprobs", "top_n", "top_p",
        "truncate_prompt_tokens", "truncation", "truncation_side", "user", "verbosity",
        "web_search_options",
    }
)  # fmt: skip
# Keyed only when set to something (LiteLLM skips an empty one).
KEYED_WHEN_SET = frozenset({"continuation_token"})
PROMPT_PARAM = {"chat": "messages", "text_completion": "prompt", "embedding": "input"}
# Routes whose keys and values follow LiteLLM; a transcription keeps our own format.
SHARED_ROUTES = frozenset(PROMPT_PARAM)
STREAM_USAGE = {"include_usage": True}


def litellm_material(route: str, body: Mapping[str, Any]) -> str:
    """The text LiteLLM's proxy hashes into the key of ``body`` sent to ``route``."""
    prompt = PROMPT_PARAM[route]
    parts = [_pair("model", body.get("model"))]
    if prompt in body:
        parts.append(_pair(prompt, body[prompt]))
    chat = route == "chat"
    stream = bool(body.get("stream")) if chat else None
    for name, value in body.items():
        if name in ("model", prompt) or (chat and name == "stream"):
            continue
        if chat and stream and name == "stream_options":
            value = STREAM_USAGE
        if name in KEYED_WHEN_SET and not value:
            continue
        if (name in KEYED_PARAMS or name in KEYED_WHEN_SET) and value is not None:
            parts.append(_pair(name, value))
    if chat:
        if stream and "stream_options" not in body:
            parts.append(_pair("stream_options", STREAM_USAGE))
        parts.append(_pair("stream", stream))
    return "".join(parts)


def litellm_digest(route: str, body: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of :func:`litellm_material`: the key before its namespace."""
    return hashlib.sha256(litellm_material(route, body).encode()).hexdigest()


def embedding_digests(body: Mapping[str, Any]) -> list[str]:
    """One digest per input of an embedding request, as LiteLLM keys each input alone."""
    inputs = body.get("input")
    if not isinstance(inputs, list):
        return [litellm_digest("embedding", body)]
    return [litellm_digest("embedding", {**body, "input": item}) for item in inputs]


def litellm_storage_key(
    digest: str,
    namespace: str | None,
    configured: str | None,
    store_prefixes: bool,
) -> str:
    """The key as LiteLLM stores it: ``<namespace>:<digest>``, where a per-request namespace
    wins over the configured one; a Redis store (``store_prefixes``) then puts the
    configured namespace in front of any key that does not start with it already."""
    chosen = namespace or configured
    key = f"{chosen}:{digest}" if chosen else digest
    if store_prefixes and configured and not key.startswith(configured + ":"):
        key = f"{configured}:{key}"
    return key


def _pair(name: str, value: Any) -> str:
    return f"{name}: {value}"
