"""Which requests may be answered semantically, what text is embedded, and the scope.

The scope is a digest of everything about a request except the wording of its last user
message: the namespace, the route, the model as sent, every other body parameter the
exact key covers (temperature, tools, response_format, ...), the earlier conversation
(system prompt and previous turns) and the last message's other fields. Vector searches
are filtered on it before they rank, so no similarity can cross from one model,
parameter set or conversation to another.

Beside the digest, the query carries the scope's parts
(:mod:`~llmcache_tui.cache.semantic.scope_parts`), which a stored vector keeps so that the
probe can say which part differs; they are hashed only when a vector is stored.

Only plain text questions qualify: a last message that is a tool result (an agent's turn
depends on what the tool said, not on how it is worded), any non-text content part, or a
prompt too long for the embedder to see whole makes a request exact-only.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from llmcache_tui.cache.keys import IGNORED_PARAMS, canonical_params
from llmcache_tui.cache.semantic.scope_parts import ScopeParts

if TYPE_CHECKING:
    from llmcache_tui.cache.semantic.embedder import Vectors

# all-MiniLM-L6-v2 reads 256 word pieces and drops the rest: a difference past them would
# be invisible to the similarity. About four characters a piece, with margin.
MAX_TEXT_CHARS = 800
SEMANTIC_ROUTES = frozenset({"chat", "text_completion"})
# The parts of a body that are the question itself rather than its scope.
_NOT_SCOPE = IGNORED_PARAMS | {"messages", "prompt", "model"}


@dataclass(slots=True)
class SemanticQuery:
    """A request as the semantic tier sees it: the embedded text and its scope digest.

    ``vector`` is filled by the first step that embeds ``text`` (the lookup, or the store
    when the lookup was skipped), so one request costs at most one embedding. ``partition``
    is the tenant under tenant isolation: the embedder's memory of recent vectors is kept
    apart per tenant, or a fast embedding would tell one tenant another asked the same.
    ``parts`` is what the scope is made of (None: not known); ``parts.json()`` is what a
    vector record keeps of it.
    """

    text: str
    scope: str
    vector: Vectors | None = field(default=None, repr=False)
    partition: str = ""
    parts: ScopeParts | None = field(default=None, repr=False)


def semantic_query(
    route: str,
    model: str,
    body: Mapping[str, Any],
    namespace: str | None,
    tenant: str | None = None,
) -> SemanticQuery | None:
    """The semantic view of a request, or None if it must be answered exactly or not at all.

    ``body`` is the request without its ``cache`` controls.
    """
    if route not in SEMANTIC_ROUTES:
        return None
    if route == "chat":
        split = _split_chat(body.get("messages"))
        if split is None:
            return None
        text, context = split
    else:
        prompt = _single_prompt(body.get("prompt"))
        if prompt is None:
            return None
        text, context = prompt, None
    if not text.strip() or len(text) > MAX_TEXT_CHARS:
        return None
    material = {
        "namespace": namespace or "",
        "tenant": tenant or "",
        "route": route,
        "model": model,
        "params": canonical_params(body, _NOT_SCOPE),
        "context": context,
    }
    try:
        digest = hashlib.sha256(orjson.dumps(material, option=orjson.OPT_SORT_KEYS)).hexdigest()
    except orjson.JSONEncodeError:
        return None  # the exact key refuses such a body with a 400 anyway
    return SemanticQuery(
        text=text, scope=digest, partition=tenant or "", parts=ScopeParts(material)
    )


def _split_chat(messages: Any) -> tuple[str, Any] | None:
    """The last user message's text and everything else of the conversation, or None."""
    if not isinstance(messages, list) or not messages:
        return None
    last = messages[-1]
    if not isinstance(last, dict) or last.get("role") != "user":
        return None  # a tool result, an assistant prefill, ...
    if not all(isinstance(m, dict) and _text_only(m.get("content")) for m in messages):
        return None
    text = _text(last.get("content"))
    if text is None:
        return None
    rest_of_last = {k: v for k, v in last.items() if k != "content"}
    return text, {"history": messages[:-1], "last": rest_of_last}


def _text_only(content: Any) -> bool:
    if content is None or isinstance(content, str):
        return True
    if isinstance(content, list):
        return all(
            isinstance(part, dict)
            and part.get("type") == "text"
            and isinstance(part.get("text"), str)
            for part in content
        )
    return False


def _text(content: Any) -> str | None:
    if isinstance(content, str):
        return content
    if isinstance(content, list) and content:
        return "\n".join(part["text"] for part in content)
    return None


def _single_prompt(prompt: Any) -> str | None:
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        return prompt[0]
    return None  # several prompts or token ids: one answer per prompt, exact only
