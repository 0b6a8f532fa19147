"""FAISS inner-product search over a segment's unit vectors: exact when small, HNSW past a size."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

HNSW_M = 32
HNSW_EF_CONSTRUCTION = 80
HNSW_EF_SEARCH = 128


@dataclass
class DenseSegment:
    """A FAISS index plus the raw vectors it was built from (kept so adds never re-embed)."""

    index: faiss.Index
    vectors: np.ndarray

    def search(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (local ids, inner products) for one unit-length query vector."""
        scores, ids = self.index.search(np.ascontiguousarray(query.reshape(1, -1), np.float32), k)
        keep = ids[0] >= 0
        return ids[0][keep].astype(np.int64), scores[0][keep]


def make_index(vectors: np.ndarray, exact_max: int) -> faiss.Index:
    """IndexFlatIP up to exact_max vectors (exact, and fast enough there); HNSW beyond."""
    dim = vectors.shape[1]
    if vectors.shape[0] <= exact_max:
        index = faiss.IndexFlatIP(dim)
    else:
        index = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        index.hnsw.efSearch = HNSW_EF_SEARCH
    if vectors.shape[0]:
        index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    return index


def build_dense(directory: Path, vectors: np.ndarray, exact_max: int) -> None:
    """Write vectors.npy and dense.faiss into a segment directory being built."""
    np.save(directory / "vectors.npy", np.ascontiguousarray(vectors, dtype=np.float32))
    # faiss.write_index rewrites in place without fsync: safe here only because the whole
    # segment directory is still a temporary one, fsynced and renamed by the caller.
    faiss.write_index(make_index(vectors, exact_max), str(directory / "dense.faiss"))


def load_dense(directory: Path) -> DenseSegment:
    """Read a segment's dense index and vectors."""
    index = faiss.read_index(str(directory / "dense.faiss"))
    if isinstance(index, faiss.IndexHNSWFlat):
        index.hnsw.efSearch = HNSW_EF_SEARCH
    vectors = np.load(directory / "vectors.npy", mmap_mode="r")
    if index.ntotal != vectors.shape[0]:
        raise ValueError("dense index and vectors disagree on the passage count")
    return DenseSegment(index, vectors)
