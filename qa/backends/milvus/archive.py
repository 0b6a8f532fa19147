"""A published Milvus generation, read through the same methods as qa.index.Index.

Milvus finds the candidates (BM25 over our own terms, vectors, filters); the exact scores are
computed here from the candidates' terms and the archive's statistics (document frequencies
from the _df collection, counts from the manifest), with qa.lexical's formula. So the answer
layer — focus order, features, confidence, refusal, short answers — sees the same numbers as
on the embedded backend, and lite's per-segment IDF never reaches a ranking.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import Counter, OrderedDict
from collections.abc import Collection, Sequence
from typing import Any

import numpy as np

from ...errors import IndexCorrupt
from ...filters import Filters
from ...index import ManifestFacts
from ...lexical import K1, B, idf, term_key
from ...text import get_tokenizer
from . import store
from .dialect import Dialect, key_token, quote, signed, unavailable

ROW_FIELDS = ["pid", "record", "terms"]
QUERY_WINDOW = 16_384  # rows one Milvus query may return
CACHE_ROWS = 2_000  # passages a loaded generation keeps (~18 KB each: record, term counts)
DF_CHUNK = 64  # term keys per statistics query
CANDIDATE_FACTOR = 2  # Milvus's BM25 is asked for this many times the candidates kept


class _Row:
    __slots__ = ("record", "tf", "length")

    def __init__(self, record: dict, terms: str):
        keys = terms.split()
        self.record = record
        self.tf = Counter(keys)
        self.length = len(keys)


class MilvusIndex(ManifestFacts):
    """One published generation in Milvus; safe to share between threads."""

    segments: list = []  # no local segments: the archive page lists issues from the manifest

    def __init__(self, client: Any, dialect: Dialect, collection: str, manifest: dict):
        self.client, self.dialect, self.collection = client, dialect, collection
        self.manifest = manifest
        self.tokenizer = get_tokenizer(manifest["tokenizer"])
        self.expr = store.visible(manifest)
        n = self.n_passages
        self.avgdl = manifest["counts"]["tokens"] / n if n else 1.0
        self._rows: OrderedDict[int, _Row] = OrderedDict()
        self._df: dict[int, int] = {}
        self._lock = threading.Lock()

    # -------------------------------------------------------------- what Index offers

    def passage(self, gid: int) -> dict:
        """The record of one passage (with 'gid' added)."""
        return self._fetch([gid])[int(gid)].record | {"gid": int(gid)}

    def story(self, file: str, story: int) -> list[dict]:
        """Every passage of one story, in order; empty if unknown."""
        rows = self._query(f"{self.expr} and file == {quote(file)} and story == {int(story)}",
                           ROW_FIELDS, 16_384)
        self._keep(rows)
        out = [json.loads(r["record"]) | {"gid": int(r["pid"])} for r in rows]
        return sorted(out, key=lambda r: r["paragraph"])

    def story_ids(self, gids: np.ndarray) -> np.ndarray:
        """A number per passage that is the same for passages of one story."""
        rows = self._fetch([int(g) for g in np.asarray(gids).tolist()])
        out = []
        for g in np.asarray(gids).tolist():
            r = rows[int(g)].record
            digest = hashlib.blake2b(f"{r['file']}\0{r['story']}".encode(), digest_size=7)
            out.append(int.from_bytes(digest.digest(), "little"))
        return np.asarray(out, dtype=np.int64)

    def idf_many(self, terms: list[str]) -> dict[str, float]:
        """Archive IDF of each term; one no passage has gets the largest possible IDF."""
        dfs = self._dfs([term_key(t) for t in terms])
        return {t: idf(dfs[term_key(t)], self.n_passages) for t in terms}

    def lexical(self, terms: list[str], k: int, filters: Filters | None = None) -> MilvusMatch:
        """BM25 candidates from Milvus, scored exactly here (k: how many the caller takes)."""
        uniq = list(dict.fromkeys(terms))
        keys = [term_key(t) for t in uniq]
        dfs = self._dfs(keys)
        kept = [(t, key) for t, key in zip(uniq, keys, strict=True) if dfs[key]]
        weights = {key_token(key): idf(dfs[key], self.n_passages) for _, key in kept}
        match = MilvusMatch(self, [t for t, _ in kept], [key_token(k_) for _, k_ in kept],
                            weights)
        if not kept:
            return match
        text = " ".join(match.tokens)
        hits = self._search(text, "sparse", k * CANDIDATE_FACTOR, filters, "BM25")
        match.candidates = [int(h["pid"]) for h in hits]
        return match

    def dense_search(self, query: np.ndarray, k: int, mask: Any = None,
                     filters: Filters | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (passage ids, cosine scores) from Milvus's vector index."""
        if not self.model:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
        hits = self._search([float(x) for x in query], "dense", k, filters, "COSINE")
        ids = np.asarray([int(h["pid"]) for h in hits], dtype=np.int64)
        scores = np.asarray([float(h["distance"]) for h in hits], dtype=np.float32)
        order = np.lexsort((ids, -scores))
        return ids[order], scores[order]

    # -------------------------------------------------------------- Milvus calls

    def filter_expr(self, filters: Filters | None) -> str:
        """The visibility expression, narrowed by an issue filter."""
        expr = self.expr
        if filters and filters.paper is not None:
            expr += f" and paper == {quote(filters.paper)}"
        if filters and filters.date_from is not None:
            expr += f" and date >= {quote(filters.date_from)}"
        if filters and filters.date_to is not None:
            expr += f' and date != "" and date <= {quote(filters.date_to)}'
        return expr

    def _search(self, data: Any, field: str, limit: int, filters: Filters | None,
                metric: str) -> list[dict]:
        try:
            res = self.client.search(self.collection, data=[data], anns_field=field,
                                     limit=max(1, min(limit, 16_384)),
                                     filter=self.filter_expr(filters),
                                     output_fields=ROW_FIELDS[1:],
                                     search_params=self.dialect.search_params(metric, limit),
                                     consistency_level=store.STRONG)
        except Exception as exc:
            raise unavailable(exc, self.dialect.uri, "searching") from None
        hits = [{"pid": h["pid"] if "pid" in h else h["id"], "distance": h["distance"],
                 **h["entity"]} for h in res[0]]
        self._keep(hits)
        if metric == "BM25":  # a server returns scores, lite negated distances: order by score
            hits.sort(key=lambda h: -self.dialect.bm25_score(h["distance"]))
        return hits

    def _query(self, expr: str, fields: list[str], limit: int) -> list[dict]:
        try:
            return self.client.query(self.collection, filter=expr, output_fields=fields,
                                     limit=limit, consistency_level=store.STRONG)
        except Exception as exc:
            raise unavailable(exc, self.dialect.uri, "reading passages") from None

    def _keep(self, rows: list[dict]) -> None:
        with self._lock:
            for r in rows:
                pid = int(r["pid"])
                if pid not in self._rows:
                    self._rows[pid] = _Row(json.loads(r["record"]), r["terms"])
                self._rows.move_to_end(pid)
            while len(self._rows) > CACHE_ROWS:
                self._rows.popitem(last=False)

    def _fetch(self, gids: Sequence[int]) -> dict[int, _Row]:
        with self._lock:
            have = {g: self._rows[g] for g in gids if g in self._rows}
        missing = sorted({int(g) for g in gids} - set(have))
        if missing:
            rows = self._query(f"{self.expr} and pid in {missing}", ROW_FIELDS, len(missing))
            self._keep(rows)
            have |= {int(r["pid"]): _Row(json.loads(r["record"]), r["terms"]) for r in rows}
            absent = [g for g in missing if g not in have]
            if absent:
                raise KeyError(f"no passage {absent[0]} in {self.generation}")
        return have

    def _dfs(self, keys: list[int]) -> dict[int, int]:
        """Document frequency of each term key at this generation (memoised)."""
        with self._lock:
            out = {k: self._df[k] for k in keys if k in self._df}
        missing = sorted(set(keys) - set(out))
        if missing:
            got = dict.fromkeys(missing, 0)
            for start in range(0, len(missing), DF_CHUNK):
                self._sum_dfs(missing[start:start + DF_CHUNK], got)
            with self._lock:
                if len(self._df) > 200_000:
                    self._df.clear()
                self._df.update(got)
            out |= got
        return out

    def _sum_dfs(self, keys: list[int], into: dict[int, int]) -> None:
        # one row per term and generation that changed it: a query returning a full window
        # may have been cut off, so the keys are split until each answer is whole
        expr = (f"gen >= {int(self.manifest['floor'])} and gen <= "
                f"{int(self.manifest['number'])} and term in {[signed(k) for k in keys]}")
        try:
            rows = self.client.query(store.names(self.collection)[1], filter=expr,
                                     output_fields=["term", "df"], limit=QUERY_WINDOW,
                                     consistency_level=store.STRONG)
        except Exception as exc:
            raise unavailable(exc, self.dialect.uri, "reading term statistics") from None
        if len(rows) >= QUERY_WINDOW:
            if len(keys) == 1:
                raise IndexCorrupt(f"{self.generation}: a term has over {QUERY_WINDOW} "
                                   "statistics rows; rebuild with `qa index` to compact them")
            half = len(keys) // 2
            self._sum_dfs(keys[:half], into)
            self._sum_dfs(keys[half:], into)
            return
        for r in rows:
            into[int(r["term"]) % (1 << 64)] += int(r["df"])


class MilvusMatch:
    """One query's BM25 over the candidates Milvus returned, with Match's methods."""

    def __init__(self, index: MilvusIndex, terms: list[str], tokens: list[str],
                 weights: dict[str, float]):
        self.index = index
        self.terms = terms  # query terms some passage has, as qa.lexical.Match lists them
        self.tokens = tokens
        self.weights = weights  # key token -> IDF
        self._term_of = dict(zip(tokens, terms, strict=True))
        self.candidates: list[int] = []

    def _contrib(self, row: _Row, tokens: Collection[str]) -> float:
        norm = K1 * (1.0 - B + B * row.length / self.index.avgdl)
        total = 0.0
        for tok in tokens:
            tf = row.tf.get(tok, 0)
            if tf:
                total += self.weights[tok] * (K1 + 1.0) * tf / (tf + norm)
        return total

    def top(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (passage ids, scores), best first; ties broken by id; zero scores dropped."""
        if not self.candidates:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
        rows = self.index._fetch(self.candidates)
        scored = [(self._contrib(rows[g], self.tokens), g) for g in self.candidates]
        scored = sorted((s, g) for s, g in scored if s > 0)
        scored.sort(key=lambda x: (-x[0], x[1]))
        scored = scored[:k]
        return (np.asarray([g for _, g in scored], dtype=np.int64),
                np.asarray([s for s, _ in scored], dtype=np.float64))

    def score(self, gid: int) -> float:
        """BM25 of one passage."""
        return self._contrib(self.index._fetch([gid])[int(gid)], self.tokens)

    def present(self, gids: Sequence[int]) -> list[set[str]]:
        """For each of gids, which query terms it contains."""
        rows = self.index._fetch([int(g) for g in gids])
        return [{self._term_of[t] for t in self.tokens if t in rows[int(g)].tf} for g in gids]

    def partial(self, gids: Sequence[int], terms: Collection[str]) -> np.ndarray:
        """For each of gids, the part of its BM25 score the given query terms contribute."""
        wanted = [tok for tok, t in self._term_of.items() if t in terms]
        rows = self.index._fetch([int(g) for g in gids])
        return np.asarray([self._contrib(rows[int(g)], wanted) for g in gids], dtype=np.float64)
