"""Search behaviour: validation, refusal, answer types, highlights, duplicates, the dense path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from qa.answertype import LENGTH, MONEY, AnswerType, expected_answer, supports
from qa.build import add, build
from qa.encoders import EncoderUnavailable, load_encoder, prompts_for
from qa.index import Index, IndexMismatch
from qa.search import QuestionError, Searcher
from qa.text import question_focus

from .conftest import CORPUS, EXTRA, QUESTIONS, ROOT


@pytest.fixture
def searcher(built, settings) -> Searcher:
    return Searcher(built, None, settings)


@pytest.mark.parametrize(("question", "top_k", "message"), [
    ("", None, "question is empty"),
    ("   ", None, "question is empty"),
    ("问" * 501, None, "question is 501 characters; the limit is 500"),
    (123, None, "question must be a string"),
    ("老街", 0, "top_k must be between 1 and 50"),
    ("老街", 51, "top_k must be between 1 and 50"),
    ("老街", "3", "top_k must be an integer"),
    ("老街", True, "top_k must be an integer"),
])
def test_bad_questions(searcher, question, top_k, message):
    with pytest.raises(QuestionError, match=message):
        searcher.ask(question, top_k)


def test_answer_carries_citation_highlight_and_provenance(searcher):
    result = searcher.ask("古籍修复体验课每期限报多少人?", 2)
    assert result.answerable and result.mode == "lexical only"
    top = result.answers[0]
    assert top.record["title"] == "图书馆延长开放时间"
    assert top.record["byline"] == "孙丽"
    assert (top.record["file"], top.record["story"], top.record["paragraph"]) == ("b_2024-02.txt", 2, 2)
    assert top.highlight == "图书馆还开设了古籍修复体验课,每月举办两期,每期限报20人,市民可在公众号预约。"
    start, end = top.highlight_span
    assert top.record["text"][start:end] == top.highlight
    assert top.retrievers == {"lexical": {"rank": 1, "score": top.retrievers["lexical"]["score"]}}
    assert "古籍" in top.terms


def test_question_the_archive_does_not_answer_is_refused(searcher):
    result = searcher.ask("青山镇老街有多少年轻人返乡创业?")
    assert not result.answerable
    assert searcher.ask("老街引入了哪些非遗工坊?").answerable


def test_unknown_words_only_returns_nothing(searcher):
    result = searcher.ask("量子计算机")
    assert result.answers == [] and not result.answerable


def test_count_of_something_the_passage_does_not_count_is_refused(searcher):
    # the passage counts 12家 非遗工坊; a number of 外资企业 is not in the archive
    assert searcher.ask("老街引入了多少家非遗工坊?").answerable
    assert not searcher.ask("老街引入了多少家外资企业?").answerable


def test_which_question_is_not_a_count(searcher):
    # 哪几种 asks which ones: the answer is a list of names, not "N种"
    result = searcher.ask("老街引入了哪几种非遗工坊?")
    assert result.answerable
    assert result.answers[0].record["title"] == "老街改造留住乡愁"


Q = AnswerType


@pytest.mark.parametrize(("question", "expected"), [
    ("发放了多少份宣传册?", Q("quantity", ("份",), ("宣传", "传册"), loose=("个",),
                           named=("宣传", "传册"))),
    ("卖了多少钱?", Q("quantity", ("元",))),
    ("放养了多少鱼苗?", Q("quantity")),
    ("有几个国家4A级旅游景区?", Q("quantity", ("个",), ("国家", "级旅", "4a"))),
    ("引进了多少家外资企业?", Q("quantity", ("家",), ("外资", "资企", "企业"), loose=("个",),
                             named=("外资", "资企", "企业"))),
    ("全村常住人口有多少?", Q("quantity", ("人", "名", "万", "亿", "余", "多"))),
    ("年产值预计能增加多少?", Q("quantity", MONEY)),
    ("办结率达到多少?", Q("quantity")),
    ("滨江干部有多少人?", Q("quantity", ("人", "名", "位", "人次"))),  # 261名 answers 多少人
    ("什么时候开班?", Q("time")),
    ("晚上几点闭馆?", Q("time", time="clock")),
    ("每年几月产生?", Q("time", time="date")),
    ("哪一年建成?", Q("time", time="year")),
    ("干部多久去听一次讲座?", Q("time", time="duration")),
    ("嘉兴南站由哪几个部分组成?", None),
    ("那几年谁的势力最大?", None),
    ("几乎所有人都来了吗?", None),
    ("由谁挂帅?", None),
])
def test_expected_answer_type(question, expected):
    assert expected_answer(question) == expected


def test_answer_type_support():
    assert supports(Q("quantity", ("册",)), "发放宣传资料26000余册")
    assert not supports(Q("quantity", ("份",)), "发放宣传资料26000余册")
    assert supports(Q("quantity"), "共计三千")
    assert supports(expected_answer("被抽调到重点工作专班的滨江干部有多少人?"), "抽调了261名干部")
    assert supports(Q("quantity", MONEY), "年产值将增加5000万元")
    assert supports(Q("quantity", MONEY), "定价为12港元")
    assert supports(Q("quantity", MONEY), "全程收费$4.9")
    assert not supports(Q("quantity", MONEY), "1.3万名群众喝上了水")
    assert supports(Q("quantity", LENGTH), "有效距离30km")
    assert supports(Q("time"), "预计2025年6月通车")
    assert not supports(Q("time"), "被列为省重点项目")
    assert supports(None, "任何文字")


def test_the_counted_noun_ends_at_the_first_verb_or_adjective():
    # a reworded question says more after the noun than the passage does
    assert expected_answer("多少家企业结了对子?").counted[0] == "企业"
    assert supports(expected_answer("区管干部总共和多少家企业结了对子?"), "区管干部结对企业750家")
    assert expected_answer("今年协商解决了多少件加装电梯这样的事?").counted == ()
    assert expected_answer("有几个新上任的村社书记?").counted == ()
    assert expected_answer("发放了多少份宣传册?").counted == ("宣传", "传册")
    # abstract things are counted with any of their measure words
    assert supports(expected_answer("一共摸索出几条门路?"), "探索出闲置激活等5种门路")
    # 个 counts things of every kind beside their name; people keep their own measure words
    assert supports(expected_answer("上城区重点联系的公益组织有几家?"), "重点联系公益组织9个")
    assert not supports(expected_answer("上虞区的邻里食堂一共开了多少家?"),
                        "推动224个小区党群服务站提档升级。因地制宜设立邻里食堂。")
    assert not supports(expected_answer("有多少人参加?"), "开展活动9个")


def test_a_count_must_stand_beside_what_it_counts():
    asked = expected_answer("今年引进了多少家外资企业?")
    assert not supports(asked, "普查入企企业2714家。招引落地首店旗舰店28家。")
    assert supports(asked, "全年引进外资企业12家,新增就业300人。")
    # half the noun is enough: the article may word it a little differently
    asked = expected_answer("选派了多少名驻村第一书记?")
    assert supports(asked, "选派驻村(社区)第一书记37名、农村工作指导员29名。")


def test_time_questions_want_their_kind_of_time():
    assert not supports(expected_answer("书房每天几点开门?"), "书房位于民和路27号,面积300平方米。")
    assert supports(expected_answer("书房每天几点开门?"), "书房每天上午9点开门。")
    # a house number is not a date
    assert not supports(expected_answer("什么时候开班?"), "学堂位于民和路27号。")
    assert supports(expected_answer("什么时候开班?"), "第二期将于3月27号开班。")
    assert supports(expected_answer("多久举办一次?"), "每个月举办一次。")
    assert not supports(expected_answer("哪一年建成?"), "大桥于3月通车。")
    assert supports(expected_answer("哪一年建成?"), "大桥于2019年建成。")


@pytest.mark.parametrize(("question", "focus"), [
    ("大型街区沉浸式情景剧《梦回越王箫韶师秀》中,勾践由谁饰演?", "勾践由 饰演"),
    ("慈溪为让人大代表助力营商环境优化而组建的工作班子由谁挂帅?", "班子由 挂帅"),
    ("参加经济普查突击队的湖滨干部们晚上都在忙什么?", "在忙"),
    ("常山的小学生们在消防站体验了哪些项目?", "体验了 项目"),
    ("量子计算机", ""),
])
def test_question_focus_is_the_words_beside_the_question_word(question, focus):
    assert question_focus(question) == focus


STAGE_ISSUE = """# 古镇上演沉浸式实景情景剧

王芳

近日,大型沉浸式实景情景剧《运河古韵千年梦》在古镇广场首次上演,吸引了大批市民和游客前来观看。

现场锣鼓喧天,青年演员李明饰演的船工带领众人沿河巡游,观众跟随队伍穿行在老街的街巷之间。

## 图书馆延长开放时间

孙丽

市图书馆从三月起把闭馆时间推迟到晚上九点,周一也照常开放。
"""


def test_the_paragraph_that_answers_beats_the_lead_that_sets_the_scene(tmp_path, settings):
    (tmp_path / "stage.txt").write_text(STAGE_ISSUE, encoding="utf-8")
    build([tmp_path / "stage.txt"], settings, None)
    index = Index.load(settings.index_dir)
    question = "古镇广场首次上演的情景剧里,船工由谁饰演?"
    # BM25 alone prefers the lead, which holds the whole setting (古镇广场, 首次上演, 情景剧)
    plain = Searcher(index, None, settings.with_(focus_weight=0)).ask(question, 2)
    assert [a.record["paragraph"] for a in plain.answers] == [1, 2]
    # the words beside 谁 (船工, 饰演) pick the paragraph within the story
    focused = Searcher(index, None, settings).ask(question, 2)
    assert [a.record["paragraph"] for a in focused.answers] == [2, 1]
    assert focused.answers[0].retrievers["lexical"]["rank"] == 1
    assert "李明" in focused.answers[0].highlight


def test_story_printed_twice_collapses(tmp_path, settings):
    (tmp_path / "docs").mkdir()
    story = "# 同一篇报道\n\n张三\n\n这是一篇被两期报纸重复刊登的报道,讲述了河道治理的经过和成效。\n"
    (tmp_path / "docs" / "x1.txt").write_text(story, "utf-8")
    (tmp_path / "docs" / "x2.txt").write_text(story, "utf-8")
    build([tmp_path / "docs"], settings, None)
    result = Searcher(Index.load(settings.index_dir), None, settings).ask("河道治理的成效", 5)
    assert [a.record["file"] for a in result.answers] == ["x1.txt"]


# ---------------------------------------------------------------- dense path (stand-in model)

def test_prompts_follow_the_model_family():
    assert prompts_for("intfloat/multilingual-e5-small") == ("query: ", "passage: ")
    assert prompts_for("BAAI/bge-small-zh-v1.5")[0].startswith("为这个句子")
    assert prompts_for("/models/all-MiniLM-L6-v2") == ("", "")


def test_missing_model_fails_fast_and_plainly(tmp_path):
    started = time.perf_counter()
    with pytest.raises(EncoderUnavailable, match="does not exist"):
        load_encoder(str(tmp_path / "no-such-model"))
    code = ("import os, time; os.environ['HF_HUB_OFFLINE']='1'\n"
            "from qa.encoders import load_encoder, EncoderUnavailable\n"
            "try:\n    load_encoder('org/definitely-not-cached-model')\n"
            "except EncoderUnavailable as e:\n    print('UNAVAILABLE', e)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                          env=dict(os.environ, HF_HUB_OFFLINE="1"), timeout=120)
    assert "UNAVAILABLE model org/definitely-not-cached-model is not in the local cache and " \
           "HF_HUB_OFFLINE is set" in proc.stdout, proc.stderr
    assert time.perf_counter() - started < 60


def test_dense_path_with_the_stand_in_model(settings, stand_in_encoder, stand_in_model_path):
    dense_settings = settings.with_(model=stand_in_model_path)
    report = build([CORPUS], dense_settings, stand_in_encoder)
    assert report.embedded == 8
    index = Index.load(settings.index_dir)
    assert index.manifest["model"] == stand_in_model_path
    assert index.manifest["dim"] == 384
    assert index.manifest["retrievers"] == ["lexical", "dense"]
    # a passage's own text, as a query, is its own nearest neighbour
    target = index.passage(3)
    ids, scores = index.dense_search(stand_in_encoder.encode_queries([target["text"]])[0], 3)
    assert ids[0] == 3 and scores[0] == pytest.approx(1.0, abs=1e-3)
    searcher = Searcher(index, stand_in_encoder, dense_settings)
    assert searcher.mode == "dense"
    top = searcher.ask("古籍修复体验课每期限报多少人?", 3).answers[0]
    assert set(top.retrievers) == {"lexical", "dense"}
    # adding embeds only the new passages, with the same model
    more = add([EXTRA], dense_settings, stand_in_encoder)
    assert more.embedded == 2
    with pytest.raises(IndexMismatch, match="dense vectors from"):
        add([EXTRA], dense_settings, None)


def test_model_mismatch_is_a_clear_error(settings, stand_in_encoder, stand_in_model_path):
    build([CORPUS], settings.with_(model=stand_in_model_path), stand_in_encoder)
    index = Index.load(settings.index_dir)

    class Other:
        name, dim = "some/other-model", 384

    with pytest.raises(IndexMismatch, match="embedded with .* but the loaded model is some/other"):
        Searcher(index, Other(), settings)


def test_large_segments_use_hnsw(settings, stand_in_encoder, stand_in_model_path):
    import faiss

    dense = settings.with_(model=stand_in_model_path, dense_exact_max=4)
    build([CORPUS], dense, stand_in_encoder)
    index = Index.load(settings.index_dir)
    seg = index.segments[0].dense
    assert isinstance(seg.index, faiss.IndexHNSWFlat)
    target = index.passage(5)
    ids, _ = index.dense_search(stand_in_encoder.encode_queries([target["text"]])[0], 2)
    assert ids[0] == 5


def test_dense_weight_shapes_the_fusion(settings, stand_in_encoder, stand_in_model_path):
    dense = settings.with_(model=stand_in_model_path)
    build([CORPUS], dense, stand_in_encoder)
    index = Index.load(settings.index_dir)
    q = "古籍修复体验课每期限报多少人?"
    lexical_first = Searcher(index, stand_in_encoder, dense.with_(dense_weight=0.0)).ask(q, 8)
    lexical_only = Searcher(index, None, dense).ask(q, 8)
    # with the dense ranking weighted 0, fusion keeps the lexical order exactly
    lex_ids = [a.passage_id for a in lexical_only.answers]
    assert [a.passage_id for a in lexical_first.answers][: len(lex_ids)] == lex_ids


def test_short_answer_scoring_follows_the_eval_readme():
    from qa.evaluate import char_f1, normalise_short

    assert normalise_short(" “竹编、米酒等” ") == "竹编、米酒"
    assert normalise_short("《梦回越王》") == "梦回越王"
    assert char_f1("261名", "261名") == 1.0
    assert char_f1("261", "261名") == pytest.approx(2 * 1 * 0.75 / 1.75)
    assert char_f1("", "261名") == 0.0


def test_eval_reports_short_answers(built, settings):
    from qa.evaluate import evaluate

    questions = [
        {"id": "s1", "question": "稻鱼米每斤卖多少钱?", "file": "b_2024-02.txt",
         "answer": "稻鱼米每斤售价12元", "short": "12元", "type": "numeric"},
        {"id": "s2", "question": "老街引入了哪些非遗工坊?", "file": "a_2024-01.txt",
         "answer": "引入了竹编、米酒等非遗工坊", "short": "竹编、米酒等", "type": "entity"},
    ]
    report = evaluate(Searcher(built, None, settings), questions)
    assert report["short"] == {"n": 2, "em": 1.0, "f1": 1.0, "highlight_contains": 1.0}


def test_the_marked_sentence_always_holds_the_short_answer():
    text = "青山镇首座光伏电站并网发电。电站装机容量为2.4兆瓦。(王小明)"
    assert Searcher._sentence_at(text, (text.index("2.4"), text.index("2.4") + 5)) == (
        "电站装机容量为2.4兆瓦。", (14, 27))
    # a span running past its sentence's end is covered whole
    assert Searcher._sentence_at("甲乙。丙丁。", (1, 4)) == ("甲乙。丙", (0, 4))


def test_every_listed_answer_marks_the_sentence_its_short_answer_stands_in(built, settings):
    searcher = Searcher(built, None, settings)
    seen = 0
    for line in QUESTIONS.read_text("utf-8").splitlines():
        for answer in searcher.ask(json.loads(line)["question"], 5).answers:
            if answer.short:
                seen += 1
                assert answer.highlight_span[0] <= answer.short[0]
                assert answer.short[1] <= answer.highlight_span[1]
                assert answer.record["text"][slice(*answer.highlight_span)] == answer.highlight
    assert seen
