"""The all-MiniLM-L6-v2 sentence encoder as a plain numpy forward pass.

A six-layer BERT (hidden size 384, 12 heads of 32) followed by mean pooling over the real
tokens and L2 normalisation, which is what sentence-transformers runs for this model. The
weights are read from a safetensors file and rearranged once at load time (query, key and
value fused into one matrix, every matrix transposed for ``x @ W``, the attention scale
folded into the query), so a forward pass is a handful of float32 matmuls per layer.

This module imports numpy, tokenizers and safetensors at the top: import it only when the
local embedder is used (``local_embedder`` does so lazily).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt
from safetensors.numpy import load_file
from tokenizers import Tokenizer

Matrix = npt.NDArray[np.float32]

HIDDEN: Final = 384
HEADS: Final = 12
HEAD_SIZE: Final = HIDDEN // HEADS
LAYERS: Final = 6
LAYER_NORM_EPS: Final = 1e-12
MAX_TOKENS_DEFAULT: Final = 256  # sentence_bert_config.json's max_seq_length
# Added to the attention scores of padding positions: far below any real score, yet
# finite so that exp() gives exactly 0 without inf - inf arithmetic.
MASKED_SCORE: Final = np.float32(-1e9)

# Coefficients of a rational approximation of erf (Abramowitz and Stegun 7.1.26),
# absolute error below 1.5e-7, i.e. at float32 resolution: GELU stays the exact-erf one
# the model was trained with, not the tanh variant.
_ERF_P: Final = np.float32(0.3275911)
_ERF_A: Final = tuple(
    np.float32(a) for a in (0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429)
)
_SQRT_HALF: Final = np.float32(np.sqrt(0.5))
_ERF_SATURATION: Final = np.float32(4.0)


@dataclass(frozen=True, slots=True)
class _Layer:
    """One encoder layer's weights, laid out for ``x @ W + b`` on (tokens, features) rows."""

    qkv_w: Matrix  # (384, 1152): query (pre-scaled), key, value side by side
    qkv_b: Matrix
    out_w: Matrix  # (384, 384)
    out_b: Matrix
    norm1_w: Matrix
    norm1_b: Matrix
    up_w: Matrix  # (384, 1536)
    up_b: Matrix
    down_w: Matrix  # (1536, 384)
    down_b: Matrix
    norm2_w: Matrix
    norm2_b: Matrix


class MiniLM:
    """Tokenizer plus weights; ``encode`` turns texts into unit-length 384-d vectors."""

    def __init__(self, model_dir: Path) -> None:
        self.model_dir = model_dir
        self.max_tokens = _max_tokens(model_dir)
        self.tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self.tokenizer.no_padding()  # padding is done here, per batch, with a mask
        self.tokenizer.enable_truncation(self.max_tokens)
        weights = load_file(str(model_dir / "model.safetensors"))
        self._load(weights)

    def _load(self, raw: dict[str, npt.NDArray[np.generic]]) -> None:
        weights = {name.removeprefix("bert."): value for name, value in raw.items()}

        def get(name: str) -> Matrix:
            return np.ascontiguousarray(weights[name], dtype=np.float32)

        def linear(name: str) -> tuple[Matrix, Matrix]:
            return np.ascontiguousarray(get(name + ".weight").T), get(name + ".bias")

        self.word_embeddings = get("embeddings.word_embeddings.weight")
        self.position_embeddings = get("embeddings.position_embeddings.weight")
        # Every token is of segment 0: add that row once into the position table.
        self.position_embeddings += get("embeddings.token_type_embeddings.weight")[0]
        self.embed_norm_w = get("embeddings.LayerNorm.weight")
        self.embed_norm_b = get("embeddings.LayerNorm.bias")
        scale = np.float32(1.0 / np.sqrt(HEAD_SIZE))
        self.layers: list[_Layer] = []
        for index in range(LAYERS):
            prefix = f"encoder.layer.{index}."
            q_w, q_b = linear(prefix + "attention.self.query")
            k_w, k_b = linear(prefix + "attention.self.key")
            v_w, v_b = linear(prefix + "attention.self.value")
            out_w, out_b = linear(prefix + "attention.output.dense")
            up_w, up_b = linear(prefix + "intermediate.dense")
            down_w, down_b = linear(prefix + "output.dense")
            self.layers.append(
                _Layer(
                    qkv_w=np.ascontiguousarray(np.concatenate([q_w * scale, k_w, v_w], axis=1)),
                    qkv_b=np.concatenate([q_b * scale, k_b, v_b]),
                    out_w=out_w,
                    out_b=out_b,
                    norm1_w=get(prefix + "attention.output.LayerNorm.weight"),
                    norm1_b=get(prefix + "attention.output.LayerNorm.bias"),
                    up_w=up_w,
                    up_b=up_b,
                    down_w=down_w,
                    down_b=down_b,
                    norm2_w=get(prefix + "output.LayerNorm.weight"),
                    norm2_b=get(prefix + "output.LayerNorm.bias"),
                )
            )

    def token_ids(self, texts: list[str]) -> list[list[int]]:
        """Token ids per text, with [CLS] and [SEP], truncated to ``max_tokens``."""
        return [encoding.ids for encoding in self.tokenizer.encode_batch(texts)]

    def encode(self, texts: list[str]) -> Matrix:
        """One L2-normalised float32 vector per text, shape (len(texts), 384)."""
        if not texts:
            return np.zeros((0, HIDDEN), dtype=np.float32)
        ids = self.token_ids(texts)
        out = np.empty((len(ids), HIDDEN), dtype=np.float32)
        for group in _length_groups(ids):
            out[group] = self.forward([ids[i] for i in group])
        return out

    def forward(self, ids: list[list[int]]) -> Matrix:
        """Pooled, normalised vectors for already tokenized, non-empty id lists."""
        batch, length = len(ids), max(len(row) for row in ids)
        tokens = np.zeros((batch, length), dtype=np.int64)
        mask = np.zeros((batch, length), dtype=np.float32)
        for row, row_ids in enumerate(ids):
            tokens[row, : len(row_ids)] = row_ids
            mask[row, : len(row_ids)] = 1.0
        padded = bool(mask.min() == 0.0)

        x = self.word_embeddings[tokens] + self.position_embeddings[:length]
        x = _layer_norm(x.reshape(batch * length, HIDDEN), self.embed_norm_w, self.embed_norm_b)
        # Only padded batches need the mask in attention; it is (batch, 1, 1, keys).
        bias = ((1.0 - mask) * MASKED_SCORE)[:, None, None, :] if padded else None
        for layer in self.layers:
            x = _encoder_layer(x, layer, batch, length, bias)

        hidden = x.reshape(batch, length, HIDDEN)
        summed = np.einsum("btd,bt->bd", hidden, mask)
        pooled = summed / np.maximum(mask.sum(axis=1, keepdims=True), np.float32(1e-9))
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        result: Matrix = (pooled / np.maximum(norms, np.float32(1e-12))).astype(np.float32)
        return result


def _length_groups(ids: list[list[int]]) -> list[list[int]]:
    """Indexes of ``ids`` in groups of similar length, each run as one padded batch.

    Every matmul costs in proportion to the padded length, so a batch mixing 5- and
    40-token texts would spend most of its time on padding; a group ends where the next
    text is more than a quarter (plus a few tokens) longer than the group's first.
    """
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    groups: list[list[int]] = []
    for index in order:
        if groups and len(ids[index]) <= len(ids[groups[-1][0]]) * 1.25 + 4:
            groups[-1].append(index)
        else:
            groups.append([index])
    return groups


def _encoder_layer(
    x: Matrix, layer: _Layer, batch: int, length: int, bias: Matrix | None
) -> Matrix:
    """Self-attention then the feed-forward block, each with a residual and LayerNorm.

    ``x`` is (batch * length, 384): the dense layers run as one 2-D matmul over every
    token of the batch, attention as batched matmuls over (batch, heads).
    """
    qkv: Matrix = x @ layer.qkv_w
    qkv += layer.qkv_b
    # (batch, length, 3, heads, head_size) -> (3, batch, heads, length, head_size)
    q, k, v = qkv.reshape(batch, length, 3, HEADS, HEAD_SIZE).transpose(2, 0, 3, 1, 4)
    scores = q @ k.transpose(0, 1, 3, 2)  # (batch, heads, length, length)
    if bias is not None:
        scores += bias
    scores -= scores.max(axis=-1, keepdims=True)
    np.exp(scores, out=scores)
    scores /= scores.sum(axis=-1, keepdims=True)
    context = (scores @ v).transpose(0, 2, 1, 3).reshape(batch * length, HIDDEN)

    attended: Matrix = context @ layer.out_w
    attended += layer.out_b
    attended += x
    x = _layer_norm(attended, layer.norm1_w, layer.norm1_b)

    inner: Matrix = x @ layer.up_w
    inner += layer.up_b
    _gelu_inplace(inner)
    projected: Matrix = inner @ layer.down_w
    projected += layer.down_b
    projected += x
    return _layer_norm(projected, layer.norm2_w, layer.norm2_b)


def _layer_norm(x: Matrix, weight: Matrix, bias: Matrix) -> Matrix:
    centered: Matrix = x - x.mean(axis=-1, keepdims=True)
    variance = np.mean(np.square(centered), axis=-1, keepdims=True)
    centered /= np.sqrt(variance + np.float32(LAYER_NORM_EPS))
    centered *= weight
    centered += bias
    return centered


def _gelu_inplace(x: Matrix) -> None:
    """x * Phi(x) with Phi(x) = (1 + erf(x / sqrt 2)) / 2, written over ``x``."""
    z = np.abs(x)
    z *= _SQRT_HALF
    # erf(z) is 1.0 in float32 from z = 3.9 on. Capping z there keeps exp(-z^2) far from
    # the subnormal range, whose slow arithmetic would otherwise dominate the whole pass.
    np.minimum(z, _ERF_SATURATION, out=z)
    t = _ERF_P * z
    t += np.float32(1.0)
    np.reciprocal(t, out=t)
    a1, a2, a3, a4, a5 = _ERF_A
    poly = a5 * t
    for coefficient in (a4, a3, a2, a1):
        poly += coefficient
        poly *= t
    # 1 - erf(|z|) = poly * exp(-z^2); halved, that is Phi(-|x|), the lower tail.
    np.square(z, out=z)
    np.negative(z, out=z)
    np.exp(z, out=z)
    poly *= z
    poly *= np.float32(0.5)
    # Phi(x) = 1/2 + sign(x) * (1/2 - tail); copysign is far cheaper than np.where.
    np.subtract(np.float32(0.5), poly, out=poly)
    np.copysign(poly, x, out=poly)
    poly += np.float32(0.5)
    x *= poly


def _max_tokens(model_dir: Path) -> int:
    """The model's max_seq_length from sentence_bert_config.json (256 for this model)."""
    try:
        config = json.loads((model_dir / "sentence_bert_config.json").read_text())
        return int(config["max_seq_length"])
    except (OSError, ValueError, KeyError, TypeError):
        return MAX_TOKENS_DEFAULT
