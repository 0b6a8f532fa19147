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
