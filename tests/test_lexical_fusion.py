"""Ranking maths on its own: BM25 over segments, fusion, coverage, in-group order."""

from __future__ import annotations

import math

import numpy as np
import pytest

from qa.fusion import convex, coverage, order_within_groups, rrf
from qa.lexical import BM25, Postings, idf, term_key

DOCS = [["a", "b", "b"], ["b", "c"], ["c", "c", "c", "d"], ["a", "d"]]


def test_bm25_matches_the_formula():
    bm = BM25([Postings.build(DOCS)], k1=1.2, b=0.75)
    avgdl = sum(map(len, DOCS)) / len(DOCS)
    # term "b": df 2 of 4 docs; doc 0 has tf 2 and length 3
    w = math.log(1 + (4 - 2 + 0.5) / (2 + 0.5))
    expected = w * 2 * 2.2 / (2 + 1.2 * (1 - 0.75 + 0.75 * 3 / avgdl))
    assert bm.scores(["b"])[0] == pytest.approx(expected, rel=1e-6)
    assert idf(2, 4) == pytest.approx(w)


def test_search_ranks_and_drops_zero_scores():
    bm = BM25([Postings.build(DOCS)])
    ids, scores = bm.search(["c"], k=10)
    assert ids.tolist() == [2, 1]
    assert scores[0] > scores[1] > 0
    assert bm.search(["zzz"], k=3)[0].size == 0


def test_segments_score_exactly_like_one_index():
    whole = BM25([Postings.build(DOCS)])
    split = BM25([Postings.build(DOCS[:1]), Postings.build(DOCS[1:3]), Postings.build(DOCS[3:])])
    for q in (["a"], ["b", "c"], ["d", "a", "c"]):
        np.testing.assert_allclose(whole.scores(q), split.scores(q), rtol=1e-6)


def test_postings_without_drops_and_renumbers():
    p = Postings.build(DOCS).without(np.array([True, False, True, True]))
    expected = Postings.build([DOCS[0], DOCS[2], DOCS[3]])
    q = ["a", "b", "c", "d"]
    np.testing.assert_allclose(BM25([p]).scores(q), BM25([expected]).scores(q), rtol=1e-6)


def test_postings_round_trip(tmp_path):
    p = Postings.build(DOCS)
    p.save(tmp_path)
    q = Postings.load(tmp_path)
    np.testing.assert_array_equal(q.vocab.keys, p.vocab.keys)
    np.testing.assert_array_equal(q.docs, p.docs)
    assert q.df("b") == 2 and q.df("zzz") == 0 and "c" in q.vocab


def test_term_keys():
    assert term_key("§干部") == (1 << 63) | (ord("干") << 21) | ord("部")
    assert term_key("干部") < (1 << 63) and term_key("干部") != term_key("部干")
    assert term_key("干部") == term_key("干部")  # stable across processes (not hash())


def test_rrf_maths_and_provenance():
    fused = rrf({"lexical": [1, 2, 3], "dense": [3, 1]}, k=60)
    assert [d for d, _, _ in fused] == [1, 3, 2]
    d1 = dict((d, (s, r)) for d, s, r in fused)
    assert d1[1][0] == pytest.approx(1 / 61 + 1 / 62)
    assert d1[3][1] == {"lexical": 3, "dense": 1}
    assert d1[2][1] == {"lexical": 2}


def test_rrf_is_deterministic_on_ties_and_ignores_repeats():
    fused = rrf({"x": [5, 7], "y": [7, 5]}, k=10)
    assert [d for d, _, _ in fused] == [5, 7]  # equal scores: smaller id first
    assert rrf({"x": [4, 4, 2]})[0][2] == {"x": 1}
    assert rrf({"x": [1]}, weights={"x": 2.0})[0][1] == pytest.approx(2 / 61)


def test_coverage():
    assert coverage({"a": 3.0, "b": 1.0}, {"a"}) == pytest.approx(0.75)
    assert coverage({}, {"a"}) == 0.0
    assert coverage({"a": 1.0}, set()) == 0.0


def test_top_k_over_many_documents_equals_a_full_sort():
    from qa.lexical import Match

    rng = np.random.default_rng(7)
    scores = rng.gamma(1.0, size=200_000) * (rng.random(200_000) < 0.3)
    scores[[5, 99_999, 150_000]] = 50.0  # ties at the top: smaller id first
    m = Match([], scores)
    ids, top = m.top(50)
    expected = sorted(np.flatnonzero(scores > 0), key=lambda i: (-scores[i], i))[:50]
    assert ids.tolist() == expected
    np.testing.assert_array_equal(top, scores[expected])


def test_partial_scores_split_the_bm25_score():
    bm = BM25([Postings.build(DOCS[:2]), Postings.build(DOCS[2:])])
    m = bm.match(["a", "b", "c", "d"])
    gids = [3, 0, 2, 1]  # any order, across segments
    np.testing.assert_allclose(m.partial(gids, {"a", "b", "c", "d"}), m.scores[gids], rtol=1e-6)
    np.testing.assert_allclose(m.partial(gids, {"c"}), bm.scores(["c"])[gids], rtol=1e-6)
    assert m.partial(gids, {"zzz"}).tolist() == [0.0, 0.0, 0.0, 0.0]
    assert m.partial([], {"a"}).tolist() == []


def test_order_within_groups_keeps_each_group_in_its_places():
    ids = [10, 11, 12, 13, 14, 15]
    groups = ["x", "y", "x", "z", "x", "y"]
    keys = [1.0, 5.0, 3.0, 0.0, 2.0, 9.0]
    # x holds places 0, 2, 4 and y places 1, 5; z alone never moves
    assert order_within_groups(ids, groups, keys) == [12, 15, 14, 13, 10, 11]
    assert order_within_groups(ids, groups, [1.0] * 6) == ids  # ties keep their order
    assert order_within_groups([], [], []) == []


def test_score_fusion_maths_and_provenance():
    # lexical list already in its final order (focus may have swapped 7 and 3): positions take
    # the sorted scores, divided by the top; dense cosines are min-max normalised
    out = convex(([7, 3, 5], [8.0, 10.0, 2.0]), ([5, 3, 9], [0.9, 0.85, 0.8]), dense_weight=0.5)
    scores = {d: s for d, s, _ in out}
    assert scores[7] == pytest.approx(1.0)
    assert scores[3] == pytest.approx(0.8 + 0.5 * 0.5)
    assert scores[5] == pytest.approx(0.2 + 0.5 * 1.0)
    assert scores[9] == pytest.approx(0.0)
    assert [d for d, _, _ in out] == [3, 7, 5, 9]
    assert out[0][2] == {"lexical": 2, "dense": 2}


def test_score_fusion_a_clear_lexical_lead_survives_a_near_tie_does_not():
    dense = ([2, 1, 3], [0.93, 0.85, 0.80])
    assert convex(([1, 2, 3], [30.0, 10.0, 5.0]), dense, 0.3)[0][0] == 1
    assert convex(([1, 2, 3], [30.0, 29.0, 5.0]), dense, 0.3)[0][0] == 2
    # weight 0 keeps the lexical order exactly; ids only the model found come after
    assert [d for d, _, _ in convex(([1, 2], [3.0, 1.0]), dense, 0.0)] == [1, 2, 3]
    assert [d for d, _, _ in convex(([], []), dense, 0.3)] == [2, 1, 3]
