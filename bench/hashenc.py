"""A model-free stand-in encoder for benchmarks: feature-hashed character bigrams, 384 dimensions.

Embedding a million passages with a real model takes hours on two cores; these vectors are
cheap yet have realistic structure (passages that share words point the same way), so FAISS
build, memory and search costs are measured on data shaped like real embeddings.
"""

from __future__ import annotations

import zlib

import numpy as np

from qa.text import char_ngrams


class HashEncoder:
    """Implements qa.encoders.Encoder; not a language model."""

    name = "bench/hash-bigram-384"
    dim = 384

    def _encode(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            h = np.fromiter((zlib.crc32(g.encode()) for g in char_ngrams(text)), dtype=np.uint64)
            if h.size:
                signs = np.where((h >> np.uint64(20)) & np.uint64(1), 1.0, -1.0)
                np.add.at(out[i], (h % np.uint64(self.dim)).astype(np.int64), signs)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norms, 1e-9)

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        """Vectors of questions."""
        return self._encode(texts)

    def encode_passages(self, texts: list[str], progress: bool = False) -> np.ndarray:
        """Vectors of passages."""
        return self._encode(texts)
