"""BM25 over postings arrays: one immutable index per segment, statistics summed at query time.

Why not bm25s: an archive that grows one issue at a time is stored as segments (like Lucene) so
an add never rebuilds the whole lexical index. Scores must stay identical to a full rebuild, so
document frequencies, the document count and the mean length are summed over segments at query
time; a segment only stores its own postings (term -> documents, term frequencies) and lengths.
"""

from __future__ import annotations

import functools
import json
import math
from array import array
from collections import Counter
from collections.abc import Iterable, Sequence
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
    tfs: np.ndarray  # uint16 term frequencies
    doclen: np.ndarray  # float32, tokens per document

    @classmethod
    def build(cls, token_lists: Iterable[Sequence[str]]) -> Postings:
        """Index pre-tokenised documents (local ids 0..n-1), streaming: postings accumulate in
        compact typed arrays (10 bytes each), so a million documents fit in a few GiB."""
        vocab: dict[str, int] = {}
        terms, docs, tfs, lengths = array("i"), array("i"), array("H"), array("f")
        for d, tokens in enumerate(token_lists):
            lengths.append(len(tokens))
            for term, tf in Counter(tokens).items():
                terms.append(vocab.setdefault(term, len(vocab)))
                docs.append(d)
                tfs.append(min(tf, 65535))
        term = np.frombuffer(terms, dtype=np.int32) if terms else np.empty(0, np.int32)
        # documents arrive in order, so a stable sort by term keeps them ascending per term
        order = np.argsort(term, kind="stable")
        indptr = np.zeros(len(vocab) + 1, dtype=np.int64)
        np.cumsum(np.bincount(term, minlength=len(vocab)), out=indptr[1:])
        return cls(
            vocab=vocab,
            indptr=indptr,
            docs=np.frombuffer(docs, dtype=np.int32)[order] if docs else np.empty(0, np.int32),
            tfs=np.frombuffer(tfs, dtype=np.uint16)[order] if tfs else np.empty(0, np.uint16),
            doclen=np.frombuffer(lengths, dtype=np.float32).copy() if lengths
            else np.empty(0, np.float32),
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
        self._df_cache: dict[str, int] = {}

    def df(self, term: str) -> int:
        """Archive-wide document frequency (memoised: a generation never changes)."""
        df = self._df_cache.get(term)
        if df is None:
            if len(self._df_cache) > 200_000:
                self._df_cache.clear()
            df = self._df_cache[term] = sum(s.df(term) for s in self.segments)
        return df

    def idf(self, term: str) -> float:
        """Archive-wide IDF (0 for a term no document has)."""
        df = self.df(term)
        return self._idf_of_df(df) if df else 0.0

    def idf_any(self, term: str) -> float:
        """IDF where a term no document has counts as the rarest possible (df = 0)."""
        return self._idf_of_df(self.df(term))

    @functools.lru_cache(maxsize=65536)  # noqa: B019 (bounded; one BM25 per generation)
    def _idf_of_df(self, df: int) -> float:
        return idf(df, self.n_docs)

    def match(self, terms: Sequence[str]) -> Match:
        """Score every document for the unique query terms, in one vectorised pass per segment:
        the postings of all terms are gathered at once and summed with bincount."""
        uniq = [t for t in dict.fromkeys(terms) if self.df(t)]
        weights = np.asarray([self.idf(t) for t in uniq], dtype=np.float32)
        out = np.zeros(self.n_docs, dtype=np.float32)
        docs_all, tids_all = [], []
        for seg, base in zip(self.segments, self.offsets[:-1], strict=True):
            found = [(i, seg.vocab[t]) for i, t in enumerate(uniq) if t in seg.vocab]
            if not found:
                continue
            tids = np.fromiter((i for i, _ in found), dtype=np.int64, count=len(found))
            rows = np.fromiter((r for _, r in found), dtype=np.int64, count=len(found))
            lo, hi = seg.indptr[rows], seg.indptr[rows + 1]
            lengths = hi - lo
            total = int(lengths.sum())
            # the postings ranges [lo, hi) of every term, as one index array
            idx = np.repeat(lo - np.cumsum(lengths) + lengths, lengths) + np.arange(total)
            docs = seg.docs[idx]
            tf = seg.tfs[idx].astype(np.float32)
            norm = self.k1 * (1.0 - self.b + self.b * seg.doclen[docs] / self.avgdl)
            contrib = np.repeat(weights[tids], lengths) * tf * (self.k1 + 1.0) / (tf + norm)
            out[base : base + seg.n_docs] += np.bincount(
                docs, weights=contrib, minlength=seg.n_docs).astype(np.float32)
            docs_all.append(docs.astype(np.int64) + base)
            tids_all.append(np.repeat(tids, lengths))
        empty = np.empty(0, dtype=np.int64)
        return Match(uniq, out, np.concatenate(docs_all) if docs_all else empty,
                     np.concatenate(tids_all) if tids_all else empty)

    def scores(self, terms: Sequence[str]) -> np.ndarray:
        """BM25 score of every document for the unique query terms (float32 array)."""
        return self.match(terms).scores

    def search(self, terms: Sequence[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (global ids, scores), best first; documents scoring 0 are never returned."""
        return self.match(terms).top(k)


@dataclass
class Match:
    """One query's BM25 scores and the postings that produced them."""

    terms: list[str]
    scores: np.ndarray  # per document
    docs: np.ndarray  # global id of every matched posting
    term_ids: np.ndarray  # index into terms of every matched posting

    def top(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (global ids, scores), best first; ties broken by id; zero scores dropped."""
        scores = self.scores
        positive = np.flatnonzero(scores > 0)
        if positive.size == 0:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
        if positive.size > k:
            positive = positive[np.argpartition(-scores[positive], k - 1)[:k]]
        ids = positive[np.lexsort((positive, -scores[positive]))]
        return ids, scores[ids]

    def present(self, gids: Sequence[int]) -> list[set[str]]:
        """For each of gids, which query terms it contains (read from the matched postings)."""
        where = {int(g): i for i, g in enumerate(gids)}
        out: list[set[str]] = [set() for _ in gids]
        hit = np.isin(self.docs, np.fromiter(where, dtype=np.int64, count=len(where)))
        for d, t in zip(self.docs[hit].tolist(), self.term_ids[hit].tolist(), strict=True):
            out[where[d]].add(self.terms[t])
        return out
