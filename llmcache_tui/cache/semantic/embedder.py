"""What the semantic tier asks of an embedder, and the errors every embedder raises.

Two kinds exist: the built-in local model (``local_embedder``) and a ``model_list``
deployment called over HTTP (``remote_embedder``). Both answer ``embed(texts)`` with one
L2-normalised float32 row per text, under a deadline, and raise :class:`EmbedderError`
for anything that goes wrong, so the caller can fail open on one exception type.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    Vectors = npt.NDArray[np.float32]


class EmbedderError(RuntimeError):
    """An embedding could not be produced; the message says why."""


class EmbedderUnavailable(EmbedderError):
    """The local embedder's packages or model files are not installed."""


class EmbedderTimeout(EmbedderError):
    """An embedding took longer than the embedder's deadline."""


class EmbeddingDimensionError(EmbedderError):
    """An embedder returned vectors of another shape than it promised."""


class Embedder(Protocol):
    """Turns texts into unit vectors.

    ``dimension`` is None until known: a remote model's is learned from its first answer,
    and every later answer must match it.
    """

    @property
    def name(self) -> str: ...

    @property
    def dimension(self) -> int | None: ...

    async def embed(self, texts: list[str], partition: str = "") -> Vectors:
        """One row per text, shape ``(len(texts), dimension)``; raises EmbedderError.

        ``partition`` keeps the remembered vectors of one tenant apart from another's.
        """
        ...

    async def aclose(self) -> None:
        """Release threads and connections."""
        ...
