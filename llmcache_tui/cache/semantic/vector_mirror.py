"""An in-memory copy of a vector store's records, searched exactly with numpy.

A store whose own search is slow (embedded Qdrant scans every point and checks the filters
in Python) keeps one of these beside its durable copy, feeds it every write, and answers
searches from it: a filtered search over 10,000 vectors in one scope is one matrix-vector
product, 2-4 ms on one core. The mirror does no I/O and takes no locks; its owner decides
which thread touches it.

Records are grouped by scope, since every search stays inside one. Per scope: a float32
matrix of unit vectors whose rows past ``count`` are spare capacity (doubled when full,
halved when mostly empty), float64 arrays of creation and expiry times beside it, and
lists of keys, texts and entries, and the scope's parts JSON (one per scope: the parts are
a function of the scope, so every record of one has the same). Each key maps to its scope
and row, so replacing or deleting a key needs no scan; a deleted row is filled with its
scope's last row (swap-remove), which keeps every scope's rows dense and a search free of
tombstones.

An entry may be kept as the base64 text a JSON payload carries it in, and is then decoded
only when a search returns it: decoding every entry up front would slow a load down and,
where the text is the very string the store's client holds, double the memory it takes.

numpy is imported inside the methods, so importing this module costs nothing.
"""

from __future__ import annotations

import base64
import binascii
import math
import random
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Final

from llmcache_tui.cache.semantic.store import Neighbour, VectorRecord

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    Matrix = npt.NDArray[np.float32]
    Times = npt.NDArray[np.float64]

# The first allocation of a new scope, in rows. Most scopes stay tiny (one conversation's
# follow-ups share a scope), so spare rows are kept few; growth doubles from here.
INITIAL_CAPACITY: Final = 2

# An entry as a row keeps it: its bytes, its base64 text (decoded when returned), or none.
StoredEntry = bytes | str | None


class VectorMirror:
    """Unit vectors with their records, per scope; exact cosine search within one scope.

    ``put`` inserts or replaces a key (moving it when its scope changed), ``remove`` and
    ``remove_expired`` delete, ``search`` answers like :meth:`VectorStore.search`: only
    rows unexpired at ``now`` (and created at or after ``created_after``) are ranked.
    Vectors are normalised on the way in, so a dot product is the cosine; a zero vector
    stays zero and is similar to nothing. A vector with a non-finite value is a
    ValueError. Not thread-safe: one thread at a time, or a lock around every call.
    """

    def __init__(self, dimension: int) -> None:
        if dimension <= 0:
            raise ValueError("dimension must be positive")
        self.dimension = dimension
        self._scopes: dict[str, _Scope] = {}
        self._rows: dict[str, tuple[str, int]] = {}  # key -> (scope, row)

    @classmethod
    def build(
        cls, dimension: int, records: Iterable[tuple[VectorRecord, str | None]]
    ) -> VectorMirror:
        """A mirror of ``records``, each scope's matrix filled in one go rather than row by
        row. Each record comes with its entry's base64 text, kept instead of
        ``record.entry`` when not None. A later record of a key replaces an earlier one; a
        record whose vector has a non-finite value is left out."""
        import numpy as np

        mirror = cls(dimension)
        latest: dict[str, tuple[VectorRecord, str | None]] = {}
        for item in records:
            latest.pop(item[0].key, None)  # re-inserted last, so the scope order follows it
            latest[item[0].key] = item
        grouped: dict[str, list[tuple[VectorRecord, str | None]]] = {}
        for item in latest.values():
            grouped.setdefault(item[0].scope, []).append(item)
        for name, items in grouped.items():
            matrix = np.asarray([record.vector for record, _ in items], dtype=np.float32)
            if matrix.ndim != 2 or matrix.shape[1] != dimension:
                raise ValueError(f"vectors of another size than {dimension} among the records")
            finite = np.isfinite(matrix).all(axis=1)
            group = [items[row] for row in np.flatnonzero(finite).tolist()]
            if not group:
                continue
            rows = _unit_rows(matrix[finite], dimension)
            scope = _Scope(dimension, len(group))
            scope.vectors[: len(group)] = rows
            scope.created[: len(group)] = [record.created_at for record, _ in group]
            scope.expires[: len(group)] = [_expiry(record.expires_at) for record, _ in group]
            scope.keys = [record.key for record, _ in group]
            scope.texts = [record.text for record, _ in group]
            scope.entries = [
                record.entry if encoded is None else encoded for record, encoded in group
            ]
            scope.count = len(group)
            scope.parts = next((r.parts for r, _ in group if r.parts is not None), None)
            mirror._scopes[name] = scope
            for row, (record, _) in enumerate(group):
                mirror._rows[record.key] = (name, row)
        return mirror

    def __len__(self) -> int:
        return len(self._rows)

    def __contains__(self, key: object) -> bool:
        return key in self._rows

    @property
    def scopes(self) -> int:
        """How many scopes hold at least one row."""
        return len(self._scopes)

    def scope_size(self, scope: str) -> int:
        """How many rows ``scope`` holds (expired ones included until removed)."""
        found = self._scopes.get(scope)
        return 0 if found is None else found.count

    def put(self, record: VectorRecord, *, encoded_entry: str | None = None) -> None:
        """Insert ``record``, or replace the record of its key (in place when the scope is
        the same, moved to the new scope otherwise). ``encoded_entry``, the entry's base64
        text, is kept instead of ``record.entry`` when given."""
        import numpy as np

        row = _unit_rows(np.asarray(record.vector, dtype=np.float32)[np.newaxis, :], self.dimension)
        expires = _expiry(record.expires_at)
        entry: StoredEntry = record.entry if encoded_entry is None else encoded_entry
        where = self._rows.get(record.key)
        if where is not None and where[0] == record.scope:
            group = self._scopes[record.scope]
            group.set(where[1], row[0], record.created_at, expires, record.text, entry)
            group.parts = record.parts or group.parts
            return
        if where is not None:
            self._drop(record.key, *where)
        scope = self._scopes.get(record.scope)
        if scope is None:
            scope = self._scopes[record.scope] = _Scope(self.dimension, INITIAL_CAPACITY)
        index = scope.append(record.key, row[0], record.created_at, expires, record.text, entry)
        scope.parts = record.parts or scope.parts
        self._rows[record.key] = (record.scope, index)

    def remove(self, key: str) -> bool:
        """Delete ``key``'s record; whether it was there."""
        where = self._rows.get(key)
        if where is None:
            return False
        self._drop(key, *where)
        return True

    def remove_expired(self, now: float) -> list[str]:
        """Delete every record expired at ``now`` (expiry at or before it); their keys."""
        removed: list[str] = []
        for name in list(self._scopes):
            scope = self._scopes[name]
            gone = scope.compact(now)
            if not gone:
                continue
            removed.extend(gone)
            for key in gone:
                del self._rows[key]
            if scope.count == 0:
                del self._scopes[name]
                continue
            for row, key in enumerate(scope.keys):
                self._rows[key] = (name, row)
        return removed

    def search(
        self,
        vector: Sequence[float] | Any,
        scope: str | None,
        *,
        limit: int,
        now: float,
        created_after: float | None = None,
    ) -> list[Neighbour]:
        """The ``limit`` rows of ``scope`` most similar to ``vector``, best first (equal
        similarities in row order), among those unexpired at ``now`` and, when
        ``created_after`` is given, created at or after it.

        ``scope`` None searches every scope (the terminal app's probe shows what the
        scope kept out): each scope's best, merged.
        """
        if scope is None:
            found = [
                neighbour
                for name in list(self._scopes)
                for neighbour in self.search(
                    vector, name, limit=limit, now=now, created_after=created_after
                )
            ]
            found.sort(key=lambda neighbour: -neighbour.similarity)
            return found[:limit]
        group = self._scopes.get(scope)
        if group is None or limit <= 0:
            return []
        import numpy as np

        query = _unit_rows(np.asarray(vector, dtype=np.float32)[np.newaxis, :], self.dimension)[0]
        count = group.count
        live = group.expires[:count] > now
        if created_after is not None:
            live &= group.created[:count] >= created_after  # NaN (no time) never passes
        candidates = int(np.count_nonzero(live))
        if candidates == 0:
            return []
        # einsum rather than a BLAS matrix-vector product: the product is bound by memory
        # bandwidth, and BLAS spreads it over threads that, on a busy machine (a proxy
        # process per core), wait on one another: 2-3 times slower there than one thread.
        scores = np.einsum("ij,j->i", group.vectors[:count], query)
        if candidates < count:
            scores[~live] = -np.inf
        take = min(limit, candidates)
        if take < count:
            top = np.argpartition(-scores, take - 1)[:take]
            top.sort()
        else:
            top = np.arange(count)
        order = top[np.argsort(-scores[top], kind="stable")]
        return [group.neighbour(int(row), float(scores[row])) for row in order]

    def sample_records(
        self,
        limit: int,
        *,
        now: float,
        keys: Callable[[str], bool] | None = None,
        rng: random.Random | None = None,
    ) -> tuple[list[VectorRecord], int]:
        """Up to ``limit`` records unexpired at ``now`` whose key ``keys`` keeps (at random
        when more match), each with a copy of its unit vector; and how many matched."""
        matching = [
            (name, row)
            for name, group in self._scopes.items()
            for row in range(group.count)
            if group.expires[row] > now and (keys is None or keys(group.keys[row]))
        ]
        matched = len(matching)
        if matched > limit:
            matching = (rng or random.Random()).sample(matching, max(0, limit))
        records = []
        for name, row in matching:
            group = self._scopes[name]
            expires = float(group.expires[row])
            records.append(
                VectorRecord(
                    key=group.keys[row],
                    vector=group.vectors[row].copy(),
                    scope=name,
                    text=group.texts[row],
                    created_at=float(group.created[row]),
                    expires_at=None if math.isinf(expires) else expires,
                    parts=group.parts,
                )
            )
        return records, matched

    def _drop(self, key: str, name: str, row: int) -> None:
        scope = self._scopes[name]
        moved = scope.pop(row)
        del self._rows[key]
        if moved is not None:
            self._rows[moved] = (name, row)
        if scope.count == 0:
            del self._scopes[name]


class _Scope:
    """One scope's rows: dense in ``[0, count)``, spare capacity after."""

    __slots__ = ("count", "created", "entries", "expires", "keys", "parts", "texts", "vectors")

    def __init__(self, dimension: int, capacity: int) -> None:
        import numpy as np

        capacity = max(1, capacity)
        self.count = 0
        self.vectors: Matrix = np.zeros((capacity, dimension), dtype=np.float32)
        self.created: Times = np.zeros(capacity, dtype=np.float64)
        self.expires: Times = np.zeros(capacity, dtype=np.float64)
        self.keys: list[str] = []
        self.texts: list[str] = []
        self.entries: list[StoredEntry] = []
        self.parts: str | None = None  # the scope's parts JSON, once a record brings it

    def append(
        self, key: str, row: Matrix, created: float, expires: float, text: str, entry: StoredEntry
    ) -> int:
        if self.count == len(self.vectors):
            self._resize(2 * len(self.vectors))
        index = self.count
        self.count += 1
        self.keys.append(key)
        self.texts.append(text)
        self.entries.append(entry)
        self.set(index, row, created, expires, text, entry)
        return index

    def set(
        self,
        index: int,
        row: Matrix,
        created: float,
        expires: float,
        text: str,
        entry: StoredEntry,
    ) -> None:
        self.vectors[index] = row
        self.created[index] = created
        self.expires[index] = expires
        self.texts[index] = text
        self.entries[index] = entry

    def pop(self, index: int) -> str | None:
        """Delete row ``index`` by moving the last row into it; the key moved, if any."""
        last = self.count - 1
        moved: str | None = None
        if index != last:
            self.vectors[index] = self.vectors[last]
            self.created[index] = self.created[last]
            self.expires[index] = self.expires[last]
            self.keys[index] = moved = self.keys[last]
            self.texts[index] = self.texts[last]
            self.entries[index] = self.entries[last]
        self.keys.pop()
        self.texts.pop()
        self.entries.pop()
        self.count = last
        # Give memory back after mass deletion, with slack so that alternating adds and
        # deletes at a boundary do not reallocate every time.
        if len(self.vectors) > INITIAL_CAPACITY and self.count <= len(self.vectors) // 4:
            self._resize(max(INITIAL_CAPACITY, len(self.vectors) // 2))
        return moved

    def compact(self, now: float) -> list[str]:
        """Delete every row expired at ``now`` in one pass; their keys (row order kept)."""
        import numpy as np

        expired = self.expires[: self.count] <= now
        if not expired.any():
            return []
        keep = np.flatnonzero(~expired)
        gone = [self.keys[row] for row in np.flatnonzero(expired)]
        kept = len(keep)
        capacity = max(INITIAL_CAPACITY, kept)
        vectors = np.zeros((capacity, self.vectors.shape[1]), dtype=np.float32)
        vectors[:kept] = self.vectors[keep]
        created = np.zeros(capacity, dtype=np.float64)
        created[:kept] = self.created[keep]
        expires = np.zeros(capacity, dtype=np.float64)
        expires[:kept] = self.expires[keep]
        self.vectors, self.created, self.expires = vectors, created, expires
        rows = keep.tolist()
        self.keys = [self.keys[row] for row in rows]
        self.texts = [self.texts[row] for row in rows]
        self.entries = [self.entries[row] for row in rows]
        self.count = kept
        return gone

    def neighbour(self, row: int, similarity: float) -> Neighbour:
        expires = float(self.expires[row])
        created = float(self.created[row])
        return Neighbour(
            key=self.keys[row],
            # Rounding can put a unit vector's dot with itself a hair above 1.
            similarity=min(1.0, max(-1.0, similarity)),
            text=self.texts[row],
            created_at=0.0 if math.isnan(created) else created,
            expires_at=None if math.isinf(expires) else expires,
            entry=decode_entry(self.entries[row]),
            parts=self.parts,
        )

    def _resize(self, capacity: int) -> None:
        import numpy as np

        count = self.count
        vectors = np.zeros((capacity, self.vectors.shape[1]), dtype=np.float32)
        vectors[:count] = self.vectors[:count]
        created = np.zeros(capacity, dtype=np.float64)
        created[:count] = self.created[:count]
        expires = np.zeros(capacity, dtype=np.float64)
        expires[:count] = self.expires[:count]
        self.vectors, self.created, self.expires = vectors, created, expires


def decode_entry(entry: object) -> bytes | None:
    """An entry's bytes from its bytes or base64 text; None when absent or unreadable
    (serve no entry rather than a wrong one)."""
    if isinstance(entry, bytes):
        return entry
    if not isinstance(entry, str):
        return None
    try:
        return base64.b64decode(entry.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        return None


def _expiry(expires_at: float | None) -> float:
    """Expiry as stored: infinity for "never", so "unexpired" is one comparison."""
    return math.inf if expires_at is None else float(expires_at)


def _unit_rows(rows: Matrix, dimension: int) -> Matrix:
    """``rows`` (n x dimension) scaled to unit length; zero rows stay zero."""
    import numpy as np

    if rows.ndim != 2 or rows.shape[1] != dimension:
        width = rows.shape[-1] if rows.ndim else 1
        raise ValueError(f"a vector of {width} values for a {dimension}-dimensional mirror")
    if not np.isfinite(rows).all():
        raise ValueError("a vector with a non-finite value (NaN or infinity)")
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    result: Matrix = (rows / norms).astype(np.float32, copy=False)
    return result
