"""Ranking maths as pure functions: reciprocal-rank fusion, query coverage, in-group order."""

from __future__ import annotations

from collections.abc import Collection, Hashable, Mapping, Sequence


def rrf(rankings: Mapping[str, Sequence[int]], k: int = 60,
        weights: Mapping[str, float] | None = None) -> list[tuple[int, float, dict[str, int]]]:
    """Reciprocal-rank fusion of ranked id lists.

    Returns (id, fused score, {retriever: 1-based rank}) best first; score = sum over retrievers
    of weight / (k + rank). Ties go to the id ranked best by any retriever, then the smaller id,
    so the order is deterministic.
    """
    fused: dict[int, float] = {}
    ranks: dict[int, dict[str, int]] = {}
    for name, ids in rankings.items():
        w = 1.0 if weights is None else weights.get(name, 1.0)
        for r, doc in enumerate(ids, 1):
            doc = int(doc)
            if name in ranks.get(doc, {}):
                continue  # a retriever that lists an id twice counts it once, at its best rank
            fused[doc] = fused.get(doc, 0.0) + w / (k + r)
            ranks.setdefault(doc, {})[name] = r
    order = sorted(fused, key=lambda d: (-fused[d], min(ranks[d].values()), d))
    return [(d, fused[d], ranks[d]) for d in order]


def coverage(query_weights: Mapping[str, float], present: Collection[str]) -> float:
    """Share of the query's total term weight (IDF) found among `present` terms, in [0, 1].

    A question whose rare, specific terms are missing from a passage gets a low value even when
    its common terms all match: the basis of the "no confident answer" decision.
    """
    total = sum(query_weights.values())
    if total <= 0:
        return 0.0
    return sum(w for t, w in query_weights.items() if t in present) / total


def order_within_groups(ids: Sequence[int], groups: Sequence[Hashable],
                        keys: Sequence[float]) -> list[int]:
    """Sort the members of each group by key, highest first, each group keeping the positions
    it held: the order between groups never changes. Ties keep their original order."""
    positions: dict[Hashable, list[int]] = {}
    for pos, group in enumerate(groups):
        positions.setdefault(group, []).append(pos)
    out = list(ids)
    for held in positions.values():
        if len(held) > 1:
            ranked = sorted(held, key=lambda p: (-keys[p], p))
            for slot, p in zip(held, ranked, strict=True):
                out[slot] = ids[p]
    return out


def convex(lexical: tuple[Sequence[int], Sequence[float]],
           dense: tuple[Sequence[int], Sequence[float]],
           dense_weight: float = 0.3) -> list[tuple[int, float, dict[str, int]]]:
    """Convex-style fusion of normalised scores: lexical + dense_weight * dense.

    Lexical: the i-th id of the (already ordered) lexical list gets the i-th highest of its
    scores, divided by the top one, so the list keeps its own order (the in-story focus order
    included) and a weak runner-up stays far below a dominant first. Dense: cosine min-max
    normalised over the dense candidates, so only how much better one passage matches than
    the rest counts, not the model's narrow absolute range (e5 cosines sit in 0.8-0.95). An id
    missing from one list scores 0 there. Unlike rank fusion, a lexical first with a clear lead
    cannot be overturned by the model's small preferences, while a near tie is decided by the
    model. Returns (id, fused score, {retriever: 1-based rank}) best first; ties go to the better
    lexical rank, then the better dense rank, then the smaller id.
    """
    lex_ids = [int(i) for i in lexical[0]]
    lex_sorted = sorted((float(s) for s in lexical[1]), reverse=True)
    top = lex_sorted[0] if lex_sorted and lex_sorted[0] > 0 else 1.0
    lex_norm: dict[int, float] = {}
    ranks: dict[int, dict[str, int]] = {}
    for r, (doc, score) in enumerate(zip(lex_ids, lex_sorted, strict=True), 1):
        if doc not in lex_norm:  # listed twice: its best rank counts
            lex_norm[doc] = max(score, 0.0) / top
            ranks.setdefault(doc, {})["lexical"] = r
    d_ids = [int(i) for i in dense[0]]
    d_scores = [float(s) for s in dense[1]]
    dense_norm: dict[int, float] = {}
    if d_ids:
        hi, lo = max(d_scores), min(d_scores)
        span = hi - lo
        for r, (doc, score) in enumerate(zip(d_ids, d_scores, strict=True), 1):
            if doc not in dense_norm:
                dense_norm[doc] = (score - lo) / span if span > 0 else 1.0
                ranks.setdefault(doc, {})["dense"] = r
    fused = {d: lex_norm.get(d, 0.0) + dense_weight * dense_norm.get(d, 0.0) for d in ranks}
    big = len(ranks) + 1
    order = sorted(fused, key=lambda d: (-fused[d], ranks[d].get("lexical", big),
                                         ranks[d].get("dense", big), d))
    return [(d, fused[d], ranks[d]) for d in order]
