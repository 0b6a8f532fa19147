"""BM25 over postings arrays: one immutable index per segment, statistics summed at query time.

Why not bm25s: an archive that grows one issue at a time is stored as segments (like Lucene) so
an add never rebuilds the whole lexical index. Scores must stay identical to a full rebuild, so
document frequencies, the document count and the mean length are summed over segments at query
time; a segment only stores its own postings (term -> documents, term frequencies) and lengths.
"""

from __future__ import annotations

import functools
import hashlib
import math
from array import array
from collections import Counter
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

K1 = 1.2
B = 0.75


_BIGRAM_TAG = 1 << 63


def term_key(term: str) -> int:
    """A term's 64-bit key: a bigram token ('§' + two characters) is its two code points
    (tagged with the top bit); any other term a 63-bit BLAKE2b hash."""
    if len(term) == 3 and term[0] == "§":
        return _BIGRAM_TAG | (ord(term[1]) << 21) | ord(term[2])
    digest = hashlib.blake2b(term.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little") & (_BIGRAM_TAG - 1)


class TermIndex:
    """Sorted term keys; a term's id is its position. Millions of terms cost 8 bytes each,
    memory-mapped, instead of a Python dict that every worker would rebuild and hold."""

    def __init__(self, keys: np.ndarray):
        self.keys = keys

    def __len__(self) -> int:
        return int(self.keys.shape[0])

    def get(self, term: str) -> int | None:
        """The term's id, or None."""
        return self.lookup(np.array([term_key(term)], dtype=np.uint64))[0]

    def lookup(self, keys: np.ndarray) -> list[int | None]:
        """Ids of many keys at once (None where absent)."""
        if not len(self):
            return [None] * len(keys)
        pos = np.minimum(np.searchsorted(self.keys, keys), len(self) - 1)
        hit = self.keys[pos] == keys
        return [int(p) if h else None for p, h in zip(pos.tolist(), hit.tolist(), strict=True)]

    def __contains__(self, term: str) -> bool:
        return self.get(term) is not None


LEXICAL_FILES = ("keys", "indptr", "docs", "tfs", "doclen")


@dataclass
class Postings:
    """The lexical index of one segment: CSR postings by term id, plus document lengths."""

    vocab: TermIndex
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
        # term ids become ranks of the terms' keys, so the key array alone is the vocabulary
        keys = np.fromiter((term_key(t) for t in vocab), dtype=np.uint64, count=len(vocab))
        by_key = np.argsort(keys, kind="stable")
        keys = keys[by_key]
        if keys.size > 1 and bool(np.any(keys[1:] == keys[:-1])):
            raise ValueError("two terms share a 64-bit key")  # ~1e-6 at millions of terms
        rank = np.empty(len(vocab), dtype=np.int32)
        rank[by_key] = np.arange(len(vocab), dtype=np.int32)
        term = rank[np.frombuffer(terms, dtype=np.int32)] if terms else np.empty(0, np.int32)
        # documents arrive in order, so a stable sort by term keeps them ascending per term
        order = np.argsort(term, kind="stable")
        indptr = np.zeros(len(vocab) + 1, dtype=np.int64)
        np.cumsum(np.bincount(term, minlength=len(vocab)), out=indptr[1:])
        return cls(
            vocab=TermIndex(keys),
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
        """Write lexical.<array>.npy files; return their names."""
        names = []
        for name in LEXICAL_FILES:
            arr = self.vocab.keys if name == "keys" else getattr(self, name)
            np.save(directory / f"lexical.{name}.npy", np.ascontiguousarray(arr))
            names.append(f"lexical.{name}.npy")
        return names

    @classmethod
    def load(cls, directory: Path) -> Postings:
        """Memory-map what save() wrote: near-instant, and shared by every worker's page cache."""
        arrays = {n: np.load(directory / f"lexical.{n}.npy", mmap_mode="r") for n in LEXICAL_FILES}
        if arrays["indptr"].shape[0] != arrays["keys"].shape[0] + 1:
            raise ValueError("lexical index: vocabulary and postings disagree")
        return cls(vocab=TermIndex(arrays.pop("keys")), **arrays)


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
        # the length normalisation of every document, once per generation, not per posting
        self._norms = [(self.k1 * (1.0 - self.b + self.b * s.doclen / self.avgdl)).astype(
            np.float32) for s in self.segments]

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
        parts: list[np.ndarray] = []
        gathered: list[Gathered] = []
        qkeys = np.fromiter((term_key(t) for t in uniq), dtype=np.uint64, count=len(uniq))
        for seg, base, norms in zip(self.segments, self.offsets[:-1], self._norms, strict=True):
            found = [(i, r) for i, r in enumerate(seg.vocab.lookup(qkeys)) if r is not None]
            if not found:
                parts.append(np.zeros(seg.n_docs, dtype=np.float64))
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
            contrib = np.repeat(weights[tids] * (self.k1 + 1.0), lengths) * tf / (tf + norms[docs])
            parts.append(np.bincount(docs, weights=contrib, minlength=seg.n_docs))
            # plain arrays (not np.memmap views): slicing them later stays in C
            gathered.append(Gathered(
                docs.astype(np.int64) + base if base else np.asarray(docs),
                np.repeat(tids, lengths), contrib))
        out = parts[0] if len(parts) == 1 else (np.concatenate(parts) if parts
                                                 else np.zeros(self.n_docs))
        return Match(uniq, out, gathered)

    def scores(self, terms: Sequence[str]) -> np.ndarray:
        """BM25 score of every document for the unique query terms (float64 array)."""
        return self.match(terms).scores

    def search(self, terms: Sequence[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (global ids, scores), best first; documents scoring 0 are never returned."""
        return self.match(terms).top(k)


class Gathered(NamedTuple):
    """One segment's matched postings, grouped by term in ascending term order."""

    docs: np.ndarray  # global id of each posting's document (ascending within a term)
    term_ids: np.ndarray  # index into Match.terms of each posting
    contrib: np.ndarray  # what each posting adds to its document's score


@dataclass
class Match:
    """One query's BM25 scores and the postings that produced them."""

    terms: list[str]
    scores: np.ndarray  # per document
    gathered: list[Gathered] = field(default_factory=list)  # one per segment with a match

    def top(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (global ids, scores), best first; ties broken by id; zero scores dropped."""
        scores = self.scores
        floor = 0.0
        if scores.shape[0] >= 64 * k:
            # The k-th largest of the block maxima is a lower bound on the k-th largest score
            # (k blocks each hold a score at least that high), so only documents at or above
            # it need sorting: a few dozen instead of every matching document.
            usable = scores.shape[0] // 1024 * 1024
            maxima = scores[:usable].reshape(-1, 1024).max(axis=1)
            if maxima.shape[0] > k:
                floor = float(np.partition(maxima, maxima.shape[0] - k)[maxima.shape[0] - k])
        positive = np.flatnonzero(scores >= floor) if floor > 0 else np.flatnonzero(scores > 0)
        if positive.size == 0:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
        if positive.size > k:
            positive = positive[np.argpartition(-scores[positive], k - 1)[:k]]
        ids = positive[np.lexsort((positive, -scores[positive]))]
        return ids, scores[ids]

    def score(self, gid: int) -> float:
        """BM25 of one document."""
        return float(self.scores[gid])

    def present(self, gids: Sequence[int]) -> list[set[str]]:
        """For each of gids, which query terms it contains (read from the matched postings)."""
        where = {int(g): i for i, g in enumerate(gids)}
        out: list[set[str]] = [set() for _ in gids]
        mask = np.zeros(self.scores.shape[0], dtype=bool)
        mask[np.fromiter(where, dtype=np.int64, count=len(where))] = True
        for g in self.gathered:
            hit = mask[g.docs]
            for d, t in zip(g.docs[hit].tolist(), g.term_ids[hit].tolist(), strict=True):
                out[where[d]].add(self.terms[t])
        return out

    def partial(self, gids: Sequence[int], terms: Collection[str]) -> np.ndarray:
        """For each of gids, the part of its BM25 score that the given query terms contribute.

        A term's postings are sorted by document, so each of the few gids is found by binary
        search: the cost does not grow with how common the term is.
        """
        out = np.zeros(len(gids), dtype=np.float64)
        ids = np.asarray(gids, dtype=np.int64)
        wanted = [i for i, t in enumerate(self.terms) if t in terms]
        if not wanted:
            return out
        for g in self.gathered:
            # the needles take the postings' dtype: the other way round numpy would copy the
            # whole postings list to int64 first
            needles = ids.astype(g.docs.dtype, copy=False)
            bounds = np.searchsorted(g.term_ids, [wanted, np.add(wanted, 1)])
            for start, end in zip(*bounds.tolist(), strict=True):
                if start == end:
                    continue
                docs = g.docs[start:end]
                pos = np.minimum(np.searchsorted(docs, needles), end - start - 1)
                hit = docs[pos] == needles
                out[hit] += g.contrib[start:end][pos[hit]]
        return out
