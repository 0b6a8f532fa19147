"""A loaded index generation: segments merged into one searchable, citable archive.

Layout of an index directory (QA_INDEX_DIR)::

    CURRENT                      name of the published generation (replaced atomically)
    LAST_GENERATION              highest generation number handed out (names are never reused)
    LOCK                         pid of the one writer (the lock itself is flock() on the directory)
    generations/gen-000007.json  sealed manifest: versions, model, tokenizer, counts, segments,
                                 checksums, and a checksum of itself
    segments/seg-<hex>/          passages.jsonl, offsets.npy, stories.json, lexical.*,
                                 vectors.npy + dense.faiss when the index has a sentence model
    sources/<sha256>.txt         every published issue file, byte for byte (`qa reindex`)

Segments never change once written. A build writes one segment; an add writes one segment for
its new issues and, when an issue is replaced, a filtered copy of the segment that held it. A
generation is a manifest naming its segments, so a crash before CURRENT moves leaves the old
generation whole and answering. Writing generations lives in generations.py.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import faiss
import numpy as np

from .errors import (
    IndexCorrupt,
    IndexError_,
    IndexLocked,
    IndexLost,
    IndexMismatch,
    IndexMissing,
    IndexWriteFailed,
)
from .generations import (
    FORMAT,
    collect_garbage,
    current_generation,
    new_manifest,
    publish,
    read_manifest,
    writer_lock,
)
from .lexical import BM25, Match
from .segment import Segment, load_segment
from .text import get_tokenizer

if TYPE_CHECKING:
    from .dense import DenseSegment
    from .filters import Filters

__all__ = ["FORMAT", "Index", "IndexCorrupt", "IndexError_", "IndexLocked", "IndexLost",
           "IndexMismatch", "IndexMissing", "IndexWriteFailed", "collect_garbage",
           "current_generation", "new_manifest", "publish", "read_manifest", "writer_lock"]

VERIFY_ALL_BYTES = 256 * 1024 * 1024  # below this total, load() checks every file's sha256
MASK_CACHE = 32  # filter masks an Index keeps (one bool per passage each)
# A filter that leaves at most this many passages of a segment is searched exactly over their
# vectors: HNSW with a selector walks a graph mostly made of excluded nodes and returned as few
# as 1 of 10 asked for with 30 allowed among 60,000.
FILTER_EXACT_MAX = 50_000

class ManifestFacts:
    """What a loaded generation says of itself, read from its manifest (any backend)."""

    manifest: dict

    @property
    def generation(self) -> str:
        """This generation's name."""
        return self.manifest["generation"]

    @property
    def model(self) -> str | None:
        """The sentence model the dense vectors came from, or None (lexical only)."""
        return self.manifest.get("model")

    @property
    def n_passages(self) -> int:
        """Passages in the archive (load checks the manifest's count against the data)."""
        return self.manifest["counts"]["passages"]

    def issue_meta(self, file: str) -> dict:
        """An issue's metadata from the manifest: paper, date, edition (None where not given)."""
        entry = self.manifest["issues"].get(file) or {}
        return {k: entry.get(k) for k in ("paper", "date", "edition")}


@dataclass
class Index(ManifestFacts):
    """One loaded generation, read-only; safe to share between threads."""

    root: Path
    manifest: dict
    segments: list[Segment]
    bm25: BM25 = field(init=False)

    def __post_init__(self) -> None:
        self.bm25 = BM25([s.postings for s in self.segments])
        self.offsets = self.bm25.offsets
        self.tokenizer = get_tokenizer(self.manifest["tokenizer"])
        self._stories = {(st["file"], st["story"]): (k, st) for k, seg in enumerate(self.segments)
                         for st in seg.stories}
        # global id of each story's first passage, ascending: a passage's story is a bisection
        starts = [int(base) + st["start"] for seg, base in zip(self.segments, self.offsets[:-1],
                                                              strict=True) for st in seg.stories]
        self._story_starts = np.asarray(starts, dtype=np.int64)
        self._masks: dict[Filters, np.ndarray] = {}
        self._masks_lock = threading.Lock()  # MCP over HTTP asks from several threads

    @classmethod
    def load(cls, root: str | Path, generation: str | None = None,
             verify: bool | None = None, reuse: Index | None = None) -> Index:
        """Load and check a generation; verify=None hashes every file when the index is small.

        Segments never change, so those already loaded by `reuse` (the generation being
        replaced) are shared instead of read again: moving to a generation that adds one
        issue costs only that issue's segment.
        """
        root = Path(root)
        manifest = read_manifest(root, generation)
        known = {s.name: s for s in reuse.segments} if reuse is not None else {}
        fresh = [e for e in manifest["segments"] if e["name"] not in known]
        total = sum(m["bytes"] for s in fresh for m in s["files"].values())
        check = total <= VERIFY_ALL_BYTES if verify is None else verify
        segments = [known.get(e["name"]) or load_segment(root, e, check)
                    for e in manifest["segments"]]
        return cls(root, manifest, segments)

    def locate(self, gid: int) -> tuple[Segment, int]:
        """Segment and local id of a global passage id."""
        k = int(np.searchsorted(self.offsets, gid, side="right") - 1)
        return self.segments[k], gid - int(self.offsets[k])

    def passage(self, gid: int) -> dict:
        """The record of a global passage id (with 'gid' added)."""
        seg, local = self.locate(gid)
        return seg.passage(local) | {"gid": int(gid)}

    def story(self, file: str, story: int) -> list[dict]:
        """Every passage of one story, in order; empty if unknown."""
        found = self._stories.get((file, story))
        if not found:
            return []
        k, st = found
        base = int(self.offsets[k])
        return [self.passage(base + i) for i in range(st["start"], st["start"] + st["count"])]

    def story_ids(self, gids: np.ndarray) -> np.ndarray:
        """A number per passage that is the same for passages of one story."""
        return np.searchsorted(self._story_starts, np.asarray(gids, dtype=np.int64),
                               side="right") - 1

    def passage_mask(self, filters: Filters | None) -> np.ndarray | None:
        """Which passages meet the filters (one bool per global id); None when no filter.

        Decided per issue from the manifest, so the cost is one pass over the stories of the
        issues that match, and a mask is cached per filter."""
        if not filters:
            return None
        with self._masks_lock:
            cached = self._masks.get(filters)
        if cached is not None:
            return cached
        files = {f for f, entry in self.manifest["issues"].items() if filters.matches(entry)}
        mask = np.zeros(self.n_passages, dtype=bool)
        for seg, base in zip(self.segments, self.offsets[:-1], strict=True):
            for st in seg.stories:
                if st["file"] in files:
                    start = int(base) + st["start"]
                    mask[start:start + st["count"]] = True
        with self._masks_lock:
            if len(self._masks) >= MASK_CACHE:
                self._masks.pop(next(iter(self._masks)))
            self._masks[filters] = mask
        return mask

    def lexical(self, terms: list[str], k: int, filters: Filters | None = None) -> Match:
        """BM25 of the query terms over the archive (k: how many the caller will take); with
        filters, passages of other issues score 0 while the statistics stay the archive's."""
        match = self.bm25.match(terms)
        mask = self.passage_mask(filters)
        if mask is not None:
            match.scores = np.where(mask, match.scores, 0.0)
        return match

    def idf_many(self, terms: list[str]) -> dict[str, float]:
        """Archive IDF of each term; one no passage has gets the largest possible IDF."""
        return {t: self.bm25.idf_any(t) for t in terms}

    def dense_search(self, query: np.ndarray, k: int, mask: np.ndarray | None = None,
                     filters: Filters | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (global ids, cosine scores) over every segment's vectors; with a mask (from
        passage_mask) or filters, only among the passages they allow."""
        if mask is None and filters:
            mask = self.passage_mask(filters)
        ids, scores = [], []
        for seg, base in zip(self.segments, self.offsets[:-1], strict=True):
            if seg.dense is None or seg.n == 0:
                continue
            if mask is not None:
                allowed = np.flatnonzero(mask[int(base):int(base) + seg.n]).astype(np.int64)
                if allowed.size == 0:
                    continue
                i, s = _search_among(seg.dense, query, min(k, allowed.size), allowed)
            else:
                i, s = seg.dense.search(query, min(k, seg.n))
            ids.append(i + base)
            scores.append(s)
        if not ids:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
        all_ids, all_scores = np.concatenate(ids), np.concatenate(scores)
        order = np.lexsort((all_ids, -all_scores))[:k]
        return all_ids[order], all_scores[order]


def _search_among(dense: DenseSegment, query: np.ndarray, k: int,
                  allowed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # Only the allowed passages compete, so a narrow filter still gets its k best instead of
    # what survives of an unfiltered top k. Exact over their vectors when they are few enough
    # (or the index is exact anyway); a FAISS selector with a wider HNSW beam otherwise.
    index = dense.index
    if allowed.size <= FILTER_EXACT_MAX or not isinstance(index, faiss.IndexHNSW):
        sims = np.asarray(dense.vectors)[allowed] @ np.asarray(query, np.float32).reshape(-1)
        top = np.argsort(-sims, kind="stable")[:k]
        return allowed[top], sims[top].astype(np.float32)
    selector = faiss.IDSelectorBatch(allowed)
    share = allowed.size / max(1, index.ntotal)
    ef = int(min(4096, max(index.hnsw.efSearch, k / share)))
    params = faiss.SearchParametersHNSW(sel=selector, efSearch=ef)
    scores, ids = index.search(np.ascontiguousarray(query.reshape(1, -1), np.float32), k,
                               params=params)
    keep = ids[0] >= 0
    return ids[0][keep].astype(np.int64), scores[0][keep]
