"""BM25 over postings arrays: one immutable index per segment, statistics summed at query time.

Why not bm25s: an archive that grows one issue at a time is stored as segments (like Lucene) so
an add never rebuilds the whole lexical index. Scores must stay identical to a full rebuild, so
document frequencies, the document count and the mean length are summed over segments at query
time; a segment only stores its own postings (term -> documents, term frequencies) and lengths.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

K1 = 1.2
B = 0.75


@dataclass
class Postings:
    """The lexical index of one segment: CSR postings by term id, plus document lengths."""

    vocab: dict[str, int]
    indptr: np.ndarray  # int64, len(vocab) + 1
    docs: np.ndarray  # int32, local document ids, ascending within a term
    tfs: np.ndarray  # float32 term frequencies
    doclen: np.ndarray  # float32, tokens per document

    @classmethod
    def build(cls, token_lists: Sequence[Sequence[str]]) -> Postings:
        """Index pre-tokenised documents (local ids 0..n-1)."""
        vocab: dict[str, int] = {}
        rows: list[int] = []
        cols: list[int] = []
        vals: list[int] = []
        for d, tokens in enumerate(token_lists):
            for term, tf in Counter(tokens).items():
                rows.append(vocab.setdefault(term, len(vocab)))
                cols.append(d)
                vals.append(tf)
        term = np.asarray(rows, dtype=np.int64)
        order = np.lexsort((np.asarray(cols, dtype=np.int64), term))
        counts = np.bincount(term, minlength=len(vocab))
        indptr = np.zeros(len(vocab) + 1, dtype=np.int64)
        np.cumsum(counts, out=indptr[1:])
        return cls(
            vocab=vocab,
            indptr=indptr,
            docs=np.asarray(cols, dtype=np.int32)[order],
            tfs=np.asarray(vals, dtype=np.float32)[order],
            doclen=np.asarray([len(t) for t in token_lists], dtype=np.float32),
        )

    @property
    def n_docs(self) -> int:
        """Documents in this segment."""
        return int(self.doclen.shape[0])

    def df(self, term: str) -> int:
        """Documents in this segment containing term."""
        t = self.vocab.get(term)
        return 0 if t is None else int(self.indptr[t + 1] - self.indptr[t])

    def without(self, keep: np.ndarray) -> Postings:
        """A copy that drops documents where keep is False and renumbers the rest."""
        new_id = np.cumsum(keep) - 1
        live = keep[self.docs]
        term_of = np.repeat(np.arange(len(self.vocab)), np.diff(self.indptr))[live]
        counts = np.bincount(term_of, minlength=len(self.vocab))
        indptr = np.zeros(len(self.vocab) + 1, dtype=np.int64)
        np.cumsum(counts, out=indptr[1:])
        return Postings(self.vocab, indptr, new_id[self.docs[live]].astype(np.int32),
                        self.tfs[live], self.doclen[keep])

    def save(self, directory: Path) -> list[str]:
        """Write lexical.vocab.json and lexical.npz; return the file names."""
        terms = sorted(self.vocab, key=self.vocab.__getitem__)
        (directory / "lexical.vocab.json").write_text(
            json.dumps(terms, ensure_ascii=False), encoding="utf-8")
        with open(directory / "lexical.npz", "wb") as fh:
            np.savez(fh, indptr=self.indptr, docs=self.docs, tfs=self.tfs, doclen=self.doclen)
        return ["lexical.vocab.json", "lexical.npz"]

    @classmethod
    def load(cls, directory: Path) -> Postings:
        """Read what save() wrote."""
        terms = json.loads((directory / "lexical.vocab.json").read_text(encoding="utf-8"))
        with np.load(directory / "lexical.npz") as z:
            arrays = {k: z[k] for k in ("indptr", "docs", "tfs", "doclen")}
        if arrays["indptr"].shape[0] != len(terms) + 1:
            raise ValueError("lexical index: vocabulary and postings disagree")
        return cls(vocab={t: i for i, t in enumerate(terms)}, **arrays)


def idf(df: int, n: int) -> float:
    """BM25 inverse document frequency (the non-negative Lucene form)."""
    return math.log(1.0 + (n - df + 0.5) / (df + 0.5))


class BM25:
    """BM25 over several segments as if they were one index."""

    def __init__(self, segments: Sequence[Postings], k1: float = K1, b: float = B):
        self.segments = list(segments)
        self.k1, self.b = k1, b
        self.offsets = np.cumsum([0] + [s.n_docs for s in self.segments])
        self.n_docs = int(self.offsets[-1])
        total = float(sum(s.doclen.sum() for s in self.segments))
        self.avgdl = total / self.n_docs if self.n_docs else 1.0

    def df(self, term: str) -> int:
        """Archive-wide document frequency."""
        return sum(s.df(term) for s in self.segments)

    def idf(self, term: str) -> float:
        """Archive-wide IDF (0 for a term no document has)."""
        df = self.df(term)
        return idf(df, self.n_docs) if df else 0.0

    def contains(self, term: str, gid: int) -> bool:
        """Whether document gid (a global id) contains term; a binary search in its postings."""
        k = int(np.searchsorted(self.offsets, gid, side="right") - 1)
        seg, local = self.segments[k], gid - int(self.offsets[k])
        t = seg.vocab.get(term)
        if t is None:
            return False
        docs = seg.docs[seg.indptr[t] : seg.indptr[t + 1]]
        i = int(np.searchsorted(docs, local))
        return i < docs.shape[0] and int(docs[i]) == local

    def scores(self, terms: Sequence[str]) -> np.ndarray:
        """BM25 score of every document for the unique query terms (dense float32 array)."""
        out = np.zeros(self.n_docs, dtype=np.float32)
        for term in dict.fromkeys(terms):
            weight = self.idf(term)
            if weight == 0.0:
                continue
            for seg, base in zip(self.segments, self.offsets[:-1], strict=True):
                t = seg.vocab.get(term)
                if t is None:
                    continue
                lo, hi = seg.indptr[t], seg.indptr[t + 1]
                docs, tf = seg.docs[lo:hi], seg.tfs[lo:hi]
                norm = self.k1 * (1.0 - self.b + self.b * seg.doclen[docs] / self.avgdl)
                # documents are unique within one term's postings, so fancy-index += is exact
                out[base + docs] += weight * tf * (self.k1 + 1.0) / (tf + norm)
        return out

    def search(self, terms: Sequence[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (global ids, scores), best first; documents scoring 0 are never returned."""
        scores = self.scores(terms)
        positive = np.flatnonzero(scores > 0)
        if positive.size == 0:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
        if positive.size > k:
            part = np.argpartition(-scores[positive], k - 1)[:k]
            positive = positive[part]
        # ties broken by id so rankings are reproducible
        order = np.lexsort((positive, -scores[positive]))
        ids = positive[order]
        return ids, scores[ids]
