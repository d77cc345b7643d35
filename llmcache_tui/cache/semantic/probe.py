"""The semantic probe: how the proxy would answer one request, and why, step by step.

The terminal app asks it about a prompt an operator types. It builds the body a client
would send, computes the exact key and the semantic query with the proxy's own code,
checks the exact entry, then lists the nearest stored prompts: those in the request's
scope, judged by the guards at the tier's threshold, and those of other scopes (which no
similarity ever crosses, shown so that an operator sees why a near twin did not answer).

The decision follows the proxy's: exact entry first; then, among the first
``tier.candidates`` neighbours of the scope, the first one the guards accept whose entry
still exists. Changing the threshold re-judges the rows without embedding again
(:meth:`ProbeReport.with_threshold`). Nothing here counts in the tier's statistics.

Records keep their scope's parts (:mod:`~llmcache_tui.cache.semantic.scope_parts`), so a
neighbour of another scope is shown with every part that differs (another model, namespace,
tenant or route, other parameters, another conversation); one written before they were
kept gets the generic OTHER_SCOPE.

A store holding LiteLLM's own semantic cache has no scoped records at all: its neighbours
are listed as LiteLLM's and unscoped (LiteLLM keeps no model, parameters or conversation
with them), with whether LiteLLM's threshold test would pass; llmcache serves none of them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from llmcache_tui.cache.backends.base import CacheBackend, CacheBackendError
from llmcache_tui.cache.entry import CacheEntry, EntryFormatError
from llmcache_tui.cache.keys import NAMESPACE_SEPARATOR, request_digest, storage_key
from llmcache_tui.cache.semantic.embedder import EmbedderError
from llmcache_tui.cache.semantic.guards import Verdict, judge
from llmcache_tui.cache.semantic.scope import MAX_TEXT_CHARS, SemanticQuery, semantic_query
from llmcache_tui.cache.semantic.scope_parts import differences
from llmcache_tui.cache.semantic.store import OURS, Neighbour, VectorStoreUnsupported
from llmcache_tui.cache.semantic.tier import SemanticTier

DEFAULT_K = 10
OTHER_SCOPE = "another scope (model, namespace, parameters or conversation differ)"
LITELLM_UNSCOPED = "LiteLLM's entry, unscoped: would not be served by llmcache"
LITELLM_NOTE = (
    "this store holds LiteLLM's own semantic cache: its entries carry no llmcache scope"
    " (LiteLLM stores no model, parameters or conversation with them), so llmcache serves"
    " none of them; LiteLLM itself takes the nearest one above its threshold, whatever the"
    " model or conversation asking"
)
EXACT_ONLY = (
    "this request is answered exactly or not at all: its last message is not plain user"
    f" text, or it is longer than {MAX_TEXT_CHARS} characters"
)

Outcome = Literal["exact hit", "semantic hit", "miss"]
# What reading a neighbour's exact entry found: "ok" (servable for this request), "gone"
# (deleted or expired: the proxy skips the vector), "unservable" (another model or route,
# written by LiteLLM, damaged: the proxy answers a miss).
EntryState = Literal["ok", "gone", "unservable"]


@dataclass(frozen=True, slots=True)
class ProbeRow:
    """One stored prompt near the request, and what the proxy makes of it."""

    key: str
    similarity: float
    text: str
    in_scope: bool
    verdict: Verdict | None  # None outside the scope: never judged
    created_at: float
    expires_at: float | None
    entry: EntryState = "ok"
    model: str | None = None  # as the entry says, when readable
    considered: bool = False  # among the candidates the proxy judges
    origin: str = OURS  # LITELLM: a record of LiteLLM's own semantic cache
    #: for LiteLLM's records: whether LiteLLM's own test (similarity at or above the
    #: threshold) would pass
    litellm_match: bool | None = None
    #: outside the scope: (part, why) for each part of the scope that differs from the
    #: request's; None where the record keeps no parts (written before they were kept)
    scope_diff: tuple[tuple[str, str], ...] | None = None

    @property
    def foreign(self) -> bool:
        return self.origin != OURS

    @property
    def namespace(self) -> str | None:
        if self.foreign:
            return None  # its key is a point id or a hash name
        namespace, _, _ = self.key.rpartition(NAMESPACE_SEPARATOR)
        return namespace or None

    def age(self, now: float) -> float | None:
        """Seconds since the vector was stored; None where the record does not say."""
        if math.isnan(self.created_at):
            return None
        return max(0.0, now - self.created_at)

    def remaining(self, now: float) -> float | None:
        """Seconds until the vector (and its entry) expire; None: never."""
        return None if self.expires_at is None else max(0.0, self.expires_at - now)

    def verdict_text(self) -> str:
        """The verdict column: hit, refused by a guard (with why), or another scope."""
        if self.foreign:
            if self.litellm_match:
                return f"{LITELLM_UNSCOPED} (LiteLLM would match it at this threshold)"
            return f"{LITELLM_UNSCOPED} (below the threshold for LiteLLM too)"
        if not self.in_scope or self.verdict is None:
            if self.scope_diff:
                return "; ".join(why for _, why in self.scope_diff)
            return OTHER_SCOPE
        if self.entry == "gone":
            return "entry gone (deleted or expired)"
        if self.verdict.hit:
            suffix = "" if self.considered else " (past the candidates the proxy judges)"
            return f"hit{suffix}"
        return f"refused: {self.verdict.guard} - {self.verdict.reason}"


@dataclass(frozen=True, slots=True)
class ProbeDecision:
    """What the proxy would answer: ``outcome``, the entry served, and why."""

    outcome: Outcome
    reason: str
    key: str | None = None
    similarity: float | None = None

    def summary(self) -> str:
        if self.outcome == "exact hit":
            return f"would serve: exact hit {self.key}"
        if self.outcome == "semantic hit":
            return f"would serve: semantic hit {self.key} at {self.similarity:.2f}"
        return f"miss: {self.reason}"


@dataclass(frozen=True, slots=True)
class ProbeReport:
    """Everything the probe found for one request."""

    key: str  # the request's exact storage key
    body: dict[str, Any]
    query: SemanticQuery | None
    threshold: float
    candidates: int
    exact: EntryState | None  # None: no exact entry
    rows: tuple[ProbeRow, ...]
    decision: ProbeDecision
    note: str | None = None  # what the probe could not look at
    error: str | None = None  # the embedder or a store failed

    def with_threshold(self, threshold: float) -> ProbeReport:
        """The same neighbours judged at another threshold (no embedding, no search)."""
        text = self.query.text if self.query is not None else ""
        rows = tuple(_judged(row, text, threshold) for row in self.rows)
        decision = _decide(self.key, self.exact, rows, self.query is not None, self.error)
        return replace(self, threshold=threshold, rows=rows, decision=decision)


def chat_body(model: str, prompt: str, temperature: float | None = None) -> dict[str, Any]:
    """The body of a chat completion exactly as a client sends it (no cache controls)."""
    body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": prompt}]}
    if temperature is not None:
        body["temperature"] = temperature
    return body


async def probe(
    tier: SemanticTier,
    exact_cache: CacheBackend,
    request_body: dict[str, Any],
    route: str,
    model: str,
    namespace: str | None,
    k: int = DEFAULT_K,
    *,
    clock: Callable[[], float] | None = None,
    tenant: str | None = None,
) -> ProbeReport:
    """Probe how ``request_body`` (sent to ``route``, in ``namespace``; by ``tenant`` under
    tenant isolation) would be answered.

    Never raises for a failing embedder, store or backend: the report says what failed.
    """
    now = (clock or tier.clock)()
    key = storage_key(request_digest(route, request_body), namespace, tenant)
    query = semantic_query(route, model, request_body, namespace, tenant)
    exact: EntryState | None = None
    error: str | None = None
    try:
        raw = await exact_cache.get(key)
        if raw is not None:
            exact = _entry_state(raw, route, model)[0]
    except CacheBackendError as exc:
        error = f"reading the exact entry failed: {exc}"
    rows: tuple[ProbeRow, ...] = ()
    note = None if query is not None else EXACT_ONLY
    if query is not None and error is None:
        try:
            rows, note = await _neighbours(tier, exact_cache, query, route, model, k, now)
        except (EmbedderError, CacheBackendError) as exc:
            kind = "embedder" if isinstance(exc, EmbedderError) else "vector store"
            error = f"the {kind} failed: {exc}"
    report = ProbeReport(
        key=key,
        body=request_body,
        query=query,
        threshold=tier.threshold,
        candidates=tier.candidates,
        exact=exact,
        rows=rows,
        decision=ProbeDecision("miss", ""),
        note=note,
        error=error,
    )
    return report.with_threshold(tier.threshold)


async def _neighbours(
    tier: SemanticTier,
    exact_cache: CacheBackend,
    query: SemanticQuery,
    route: str,
    model: str,
    k: int,
    now: float,
) -> tuple[tuple[ProbeRow, ...], str | None]:
    scoped = await tier.neighbours(query, k)
    note = None
    try:
        unscoped = await tier.neighbours_everywhere(query, k)
        everywhere, note = unscoped.neighbours, unscoped.cut_short
    except VectorStoreUnsupported as exc:
        everywhere, note = [], f"neighbours of other scopes not shown: {exc}"
    in_scope = {n.key for n in scoped}
    others = [n for n in everywhere if n.key not in in_scope]
    found: list[tuple[Neighbour, bool]] = [(n, True) for n in scoped]
    found += [(n, False) for n in others]
    found.sort(key=lambda pair: pair[0].similarity, reverse=True)
    # A foreign record's key is no entry key of ours: nothing to read for it.
    ours = [n.key for n, _ in found if n.origin == OURS]
    entries = dict(zip(ours, await exact_cache.get_many(ours), strict=True))
    if any(n.origin != OURS for n, _ in found):
        note = LITELLM_NOTE if note is None else f"{LITELLM_NOTE}; {note}"
    rows = []
    considered = 0
    for neighbour, found_in_scope in found:
        is_ours = neighbour.origin == OURS
        scoped_here = found_in_scope and is_ours  # LiteLLM's records carry no scope of ours
        if is_ours:
            state, entry_model = _entry_state(entries.get(neighbour.key), route, model)
        else:
            state, entry_model = "unservable", None
        rows.append(
            ProbeRow(
                key=neighbour.key,
                similarity=neighbour.similarity,
                text=neighbour.text,
                in_scope=scoped_here,
                verdict=None,
                created_at=neighbour.created_at,
                expires_at=neighbour.expires_at,
                entry=state,
                model=entry_model,
                considered=scoped_here and considered < tier.candidates,
                origin=neighbour.origin,
                scope_diff=None if found_in_scope else differences(query.parts, neighbour.parts),
            )
        )
        considered += scoped_here
    return tuple(rows), note


def _entry_state(raw: bytes | None, route: str, model: str) -> tuple[EntryState, str | None]:
    """Whether the proxy could serve these entry bytes for a request of ``route``/``model``."""
    if raw is None:
        return "gone", None
    try:
        entry = CacheEntry.decode(raw)
    except EntryFormatError:
        return "unservable", None
    # The same test as the proxy's before it serves any entry.
    servable = not entry.foreign and entry.route == route and entry.model == model
    return ("ok" if servable else "unservable"), entry.model or None


def _judged(row: ProbeRow, text: str, threshold: float) -> ProbeRow:
    if row.foreign:
        return replace(row, litellm_match=row.similarity >= threshold)
    if not row.in_scope:
        return row
    return replace(row, verdict=judge(text, row.text, row.similarity, threshold))


def _decide(
    key: str,
    exact: EntryState | None,
    rows: Sequence[ProbeRow],
    semantic: bool,
    error: str | None,
) -> ProbeDecision:
    if exact == "ok":
        return ProbeDecision("exact hit", "the exact entry exists", key=key)
    if exact == "unservable":
        return ProbeDecision(
            "miss", "the entry under the exact key is not one this request may be served"
        )
    if error is not None:
        return ProbeDecision("miss", f"{error}; the proxy answers from upstream")
    if not semantic:
        return ProbeDecision("miss", EXACT_ONLY)
    judged = [row for row in rows if row.considered]
    for row in judged:
        if row.verdict is None or not row.verdict.hit:
            continue
        if row.entry == "gone":
            continue  # the proxy drops the vector and tries the next candidate
        if row.entry == "unservable":
            return ProbeDecision("miss", f"candidate {row.key} holds an entry it may not serve")
        return ProbeDecision("semantic hit", "", key=row.key, similarity=row.similarity)
    others = sum(not row.in_scope and not row.foreign for row in rows)
    foreign = sum(row.foreign for row in rows)
    notes = [f"{others} near prompts in other scopes"] if others else []
    if foreign:
        notes.append(f"{foreign} near LiteLLM entries, unscoped: llmcache never serves them")
    elsewhere = f" ({'; '.join(notes)})" if notes else ""
    if not judged:
        return ProbeDecision("miss", f"no stored prompt in this request's scope{elsewhere}")
    best = judged[0]
    if best.verdict is not None and not best.verdict.hit:
        return ProbeDecision(
            "miss", f"best candidate refused by {best.verdict.guard}: {best.verdict.reason}"
        )
    return ProbeDecision("miss", "every candidate the guards accepted has lost its entry")
