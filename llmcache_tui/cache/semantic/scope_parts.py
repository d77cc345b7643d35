"""What a scope is made of, kept beside each vector so the probe can say why one differs.

The scope digest is all a search filters on; it says that two requests differ, not how.
Each vector record also keeps its scope's parts as one compact JSON string (written when
the vector is stored, never on a lookup): a short
digest of each part (namespace, tenant, route, model, params, context), the namespace,
route and model in plain text, and per body parameter either its plain value (numbers,
booleans, null: a temperature, a seed) or a short digest of it (strings, objects: tools,
a response format, which may be long). The probe compares a request's parts with an
out-of-scope neighbour's and names every part that differs.

The tenant is kept as a digest only, and the conversation too: the probe says "another
tenant" or "another conversation", never whose or which. Records written before the
parts were kept have none: the probe then gives its generic reason.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any, Final

import orjson

#: Hex digits kept of each part's SHA-256 (64 bits: a collision between two parts that
#: differ only hides which part differs, never crosses a scope).
PART_DIGITS: Final = 16
#: Hex digits kept of a non-scalar parameter's digest.
PARAM_DIGITS: Final = 8
#: Beyond this many body parameters, only the params digest is kept (records stay small).
MAX_PARAMS: Final = 24
#: The parts in the order the probe names them.
PART_NAMES: Final = ("model", "namespace", "tenant", "route", "params", "context")
ROUTE_NAMES: Final = {"chat": "chat completion", "text_completion": "text completion"}


class ScopeParts:
    """What a request's scope digest was taken over, and the JSON a vector record keeps
    of it: written and hashed only when :meth:`json` is first asked (when a vector is
    stored), so a lookup pays nothing for it. The material is the request's own (not
    copied): only this JSON would change if a caller changed the body meanwhile, never
    the scope."""

    __slots__ = ("_json", "_material")

    def __init__(self, material: Mapping[str, Any]) -> None:
        self._material = material
        self._json: str | None = None

    @property
    def model(self) -> str:
        return str(self._material.get("model", ""))

    @property
    def namespace(self) -> str:
        return str(self._material.get("namespace", ""))

    def json(self) -> str:
        """The compact JSON a record keeps: ``{"d": part digests, "ns", "rt", "md", "p"}``
        ("p": each body parameter, a scalar plain and anything else as ``#`` and a short
        digest; left out beyond MAX_PARAMS parameters)."""
        if self._json is None:
            self._json = _encode(self._material)
        return self._json


def _encode(material: Mapping[str, Any]) -> str:
    sha256, dumps, sort = hashlib.sha256, orjson.dumps, orjson.OPT_SORT_KEYS
    digests = {
        name: sha256(dumps(value, option=sort)).hexdigest()[:PART_DIGITS]
        for name, value in material.items()
    }
    parts: dict[str, Any] = {
        "d": digests,
        "ns": material.get("namespace", ""),
        "rt": material.get("route", ""),
        "md": material.get("model", ""),
    }
    params = material.get("params")
    if isinstance(params, Mapping) and len(params) <= MAX_PARAMS:
        kept: dict[str, Any] = {}
        for name, value in params.items():
            if value is None or type(value) in (bool, int, float):
                kept[name] = value  # a scalar is shown as it is
            else:
                blob = dumps(value, option=sort)
                kept[name] = "#" + sha256(blob).hexdigest()[:PARAM_DIGITS]
        parts["p"] = kept
    return dumps(parts).decode()


def decode_parts(raw: Any) -> dict[str, Any] | None:
    """A record's parts as stored (JSON text, or already a dict), None when absent or
    unreadable (an old record: the probe falls back to its generic reason)."""
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", "replace")
    if isinstance(raw, str):
        if not raw:
            return None
        try:
            raw = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return None
    if not isinstance(raw, dict) or not isinstance(raw.get("d"), dict):
        return None
    return raw


def differences(mine: ScopeParts | str | None, theirs: Any) -> tuple[tuple[str, str], ...] | None:
    """Why a neighbour with parts ``theirs`` is outside the scope of a request with parts
    ``mine``: (part, phrase) per differing part, in PART_NAMES order. None when either
    side has no parts, or they name no difference (the generic reason applies)."""
    if isinstance(mine, ScopeParts):
        mine = mine.json()
    ours, other = decode_parts(mine), decode_parts(theirs)
    if ours is None or other is None:
        return None
    found = []
    for name in PART_NAMES:
        if ours["d"].get(name) == other["d"].get(name):
            continue
        found.append((name, _phrase(name, ours, other)))
    return tuple(found) or None


def _phrase(name: str, ours: dict[str, Any], other: dict[str, Any]) -> str:
    if name == "model":
        return f"another model ({_plain(other.get('md'))})"
    if name == "namespace":
        namespace = other.get("ns")
        return f"another namespace ({_plain(namespace) if namespace else 'none'})"
    if name == "tenant":
        return "another tenant"
    if name == "route":
        route = _plain(other.get("rt"))
        return f"another route ({ROUTE_NAMES.get(route, route)})"
    if name == "params":
        which = _param_changes(ours.get("p"), other.get("p"))
        return f"other parameters ({which})" if which else "other parameters"
    return "another conversation (system prompt or earlier turns differ)"


def _param_changes(ours: Any, other: Any) -> str:
    """``temperature 0.7 vs 0.2, seed only there, tools``: this request's value first."""
    if not isinstance(ours, dict) or not isinstance(other, dict):
        return ""
    changes = []
    for name in sorted(set(ours) | set(other)):
        if name not in other:
            changes.append(f"{name} only here")
        elif name not in ours:
            changes.append(f"{name} only there")
        elif ours[name] != other[name] or type(ours[name]) is not type(other[name]):
            mine, theirs = ours[name], other[name]
            if _shown(mine) and _shown(theirs):
                changes.append(f"{name} {_json(mine)} vs {_json(theirs)}")
            else:
                changes.append(name)
    return ", ".join(changes)


def _shown(value: Any) -> bool:
    return not (isinstance(value, str) and value.startswith("#"))


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


def _plain(value: Any) -> str:
    return value if isinstance(value, str) else "?"
