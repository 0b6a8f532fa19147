"""Answer quality on the seeds stays at what the product promises (lexical only, as runs here)."""

from __future__ import annotations

import pytest

from qa.build import build
from qa.evaluate import evaluate, load_questions
from qa.index import Index
from qa.search import Searcher

from .conftest import ROOT

DEV = ROOT.parent / "shared" / "eval" / "dev.jsonl"
TEAM = ROOT / "bench" / "questions" / "seeds-team.jsonl"
NEARMISS = ROOT / "bench" / "questions" / "seeds-nearmiss.jsonl"
REWORDED2 = ROOT / "bench" / "questions" / "seeds-reworded2.jsonl"


@pytest.fixture(scope="module")
def seeds_searcher(tmp_path_factory) -> Searcher:
    from qa.config import Settings

    settings = Settings(index_dir=str(tmp_path_factory.mktemp("seeds") / "index"), model="none")
    build([ROOT / "seeds"], settings, None)
    return Searcher(Index.load(settings.index_dir), None, settings)


@pytest.mark.slow
@pytest.mark.skipif(not DEV.is_file(), reason="../shared/eval/dev.jsonl is not beside the repo")
def test_dev_set_meets_the_targets(seeds_searcher):
    # the targets of the hybrid-index issue, for the configuration that runs here
    report = evaluate(seeds_searcher, load_questions(DEV))
    assert report["recall@1"] >= 0.93
    assert report["mrr@10"] >= 0.95
    assert report["by_type"]["paraphrase"]["recall@1"] >= 0.85
    # the answerability model (issue 11): measured 8 of 8 refused, 2 of 55 wrongly (0.036);
    # most dev questions are in its training split, so these are not held-out figures
    assert report["unanswerable"]["refused"] >= 0.85
    assert report["false_refusal"] <= 0.05


@pytest.mark.slow
def test_team_questions_hold_the_same_line(seeds_searcher):
    # questions written the same way on other paragraphs of the seeds (no rule comes from them)
    report = evaluate(seeds_searcher, load_questions(TEAM))
    assert report["recall@1"] >= 0.93
    assert report["mrr@10"] >= 0.95
    # measured 15 of 16 refused, 2 of 68 wrongly (0.029); ~80 % of it is training data
    assert report["unanswerable"]["refused"] >= 0.85
    assert report["false_refusal"] <= 0.05


@pytest.mark.slow
def test_held_out_sets_do_not_regress(seeds_searcher):
    # written before the answerability model was first scored and never fitted on; these
    # guard the figures measured with it (near-misses 44 of 56 refused: short of the 0.85
    # target; reworded2 3 of 39 wrongly refused, one more than before the refit that added
    # towns, posts and the counted noun's end), they are not targets met
    near = evaluate(seeds_searcher, load_questions(NEARMISS))
    assert near["unanswerable"]["refused"] >= 0.75
    reworded = evaluate(seeds_searcher, load_questions(REWORDED2))
    assert reworded["recall@1"] >= 0.92
    assert reworded["false_refusal"] <= 0.08
