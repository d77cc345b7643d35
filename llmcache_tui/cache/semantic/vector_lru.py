"""Vectors already computed, by text: what every embedder keeps so a repeat costs nothing.

The same prompt is embedded again and again (a cache hit embeds it too, for the lookup),
so each embedder keeps its recent vectors in memory, at most ``size`` of them, the least
recently used going first. Keys are fixed-size digests of the text, so a long prompt costs
16 bytes of key, not its length. Safe to share between threads (the proxy in the terminal
app runs on another thread than a headless caller might).
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    Vectors = npt.NDArray[np.float32]


class VectorLRU:
    """At most ``size`` vectors by text (0: keep none), the least recently used dropped first."""

    def __init__(self, size: int) -> None:
        if size < 0:
            raise ValueError("cache_size must be >= 0")
        self.size = size
        self._vectors: OrderedDict[bytes, Vectors] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._vectors)

    async def embed(
        self,
        texts: list[str],
        compute: Callable[[list[str]], Awaitable[Vectors]],
        dimension: int,
        partition: str = "",
    ) -> Vectors:
        """One row per text: known ones from here, the rest from ``compute``, then kept.

        ``compute`` gets only the texts not known, in order, and returns one row each;
        ``dimension`` is the width of the empty result for no texts. A vector kept for
        one ``partition`` (tenant) is not known to another: how fast a text embeds must
        not say whether someone else sent it.
        """
        import numpy as np

        keys = [text_key(text, partition) for text in texts]
        found: dict[int, Vectors] = {}
        for i, key in enumerate(keys):
            if (vector := self._get(key)) is not None:
                found[i] = vector
        missing = [i for i in range(len(texts)) if i not in found]
        if missing:
            computed = await compute([texts[i] for i in missing])
            for row, i in enumerate(missing):
                vector = computed[row]
                vector.flags.writeable = False  # shared with every later caller
                found[i] = vector
                self._put(keys[i], vector)
        if not texts:
            return np.zeros((0, dimension), dtype=np.float32)
        return np.stack([found[i] for i in range(len(texts))])

    def _get(self, key: bytes) -> Vectors | None:
        with self._lock:
            vector = self._vectors.get(key)
            if vector is not None:
                self._vectors.move_to_end(key)
            return vector

    def _put(self, key: bytes, vector: Vectors) -> None:
        if self.size == 0:
            return
        with self._lock:
            self._vectors[key] = vector
            self._vectors.move_to_end(key)
            while len(self._vectors) > self.size:
                self._vectors.popitem(last=False)


def text_key(text: str, partition: str = "") -> bytes:
    """A 16-byte digest of ``text`` (lone surrogates included, as JSON can carry them),
    keyed by ``partition`` when given."""
    data = text.encode("utf-8", "surrogatepass")
    if not partition:
        return hashlib.blake2b(data, digest_size=16).digest()
    return hashlib.blake2b(data, digest_size=16, key=partition.encode()[:64]).digest()
