"""What a token costs, for the money a cache hit saved.

A ``model_list`` entry's ``model_info.input_cost_per_token`` and ``output_cost_per_token``
(LiteLLM's own keys) come first. Without them, the upstream model name is looked up in
:data:`BUILT_IN`, OpenAI's standard-tier list prices in USD per token as published in
August 2025 (uncached input, no batch discount). A dated snapshot (``gpt-4o-mini-2024-07-18``,
``gpt-3.5-turbo-0125``) takes its model's price unless listed itself; other variants
(``gpt-4o-realtime-preview``) are other models with other prices, and are not guessed.
Models neither names are not priced: their hits still count tokens, but no money.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from llmcache_tui.config import ModelEntry


@dataclass(frozen=True, slots=True)
class Price:
    """USD per prompt (input) token and per completion (output) token."""

    prompt: float
    completion: float


def _per_million(prompt: float, completion: float) -> Price:
    return Price(prompt / 1_000_000, completion / 1_000_000)


BUILT_IN: dict[str, Price] = {
    "gpt-4o": _per_million(2.50, 10.00),
    "gpt-4o-2024-05-13": _per_million(5.00, 15.00),
    "gpt-4o-mini": _per_million(0.15, 0.60),
    "gpt-4.1": _per_million(2.00, 8.00),
    "gpt-4.1-mini": _per_million(0.40, 1.60),
    "gpt-4.1-nano": _per_million(0.10, 0.40),
    "gpt-3.5-turbo": _per_million(0.50, 1.50),
    "o1": _per_million(15.00, 60.00),
    "o1-mini": _per_million(1.10, 4.40),
    "o3": _per_million(2.00, 8.00),
    "o3-mini": _per_million(1.10, 4.40),
    "o4-mini": _per_million(1.10, 4.40),
    "text-embedding-3-small": _per_million(0.02, 0.0),
    "text-embedding-3-large": _per_million(0.13, 0.0),
    "text-embedding-ada-002": _per_million(0.10, 0.0),
}


_SNAPSHOT = re.compile(r"(.+?)-(?:\d{4}-\d{2}-\d{2}|\d{4})")


def built_in_price(upstream_model: str) -> Price | None:
    """The listed price of an upstream model name (``openai/`` and other prefixes ignored)."""
    name = upstream_model.rpartition("/")[2]
    price = BUILT_IN.get(name)
    if price is None:
        snapshot = _SNAPSHOT.fullmatch(name)
        if snapshot is not None:
            price = BUILT_IN.get(snapshot.group(1))
    return price


def configured_price(entries: list[ModelEntry], model_name: str) -> Price | None:
    """The ``model_info`` price of the first entry named ``model_name`` that gives one.

    Both keys or either: a missing one counts as free (an embedding model has no output).
    """
    for entry in entries:
        info = entry.model_info
        if entry.model_name != model_name:
            continue
        if info.input_cost_per_token is None and info.output_cost_per_token is None:
            continue
        return Price(info.input_cost_per_token or 0.0, info.output_cost_per_token or 0.0)
    return None


def price_for(entries: list[ModelEntry], model_name: str, upstream_model: str) -> Price | None:
    """What a call of ``model_name`` (a model_list name) answered by ``upstream_model`` costs."""
    return configured_price(entries, model_name) or built_in_price(upstream_model)
