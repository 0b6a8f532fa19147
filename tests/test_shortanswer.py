"""The short answer (qa/shortanswer.py) and question normalisation, on their own."""

from __future__ import annotations

import pytest

from qa.shortanswer import asked, short_answer
from qa.text import normalise_question


def _short(question: str, passage: str, sentence: tuple[int, int] | None = None) -> str | None:
    span = short_answer(question, passage, sentence)
    return passage[span[0] : span[1]] if span else None


@pytest.mark.parametrize(("question", "passage", "expected"), [
    # a count answered by the measure word 名 (多少人 -> 名)
    ("被抽调到重点工作专班的滨江干部有多少人?",
     "今年以来,杭州高新区(滨江)抽调了261名干部到重点工作专班,推动项目落地。", "261名"),
    ("玉环市有几个国家4A级旅游景区?", "目前,玉环市有国家4A级旅游景区3个,3A级景区8个。", "3个"),
    # money, with its qualifier
    ("首批鱼鲞和渔绳结卖了多少钱?", "第一批鱼鲞产品和渔绳结销售共计超12000元,村民很高兴。",
     "超12000元"),
    # a date of the asked kind
    ("几内亚拥有自己的货币发行权是在什么时候?",
     "几内亚于1958年10月2日独立,1958年1月7日拥有了自己的货币发行权。", "1958年1月7日"),
    ("这张专辑获得了哪一年的格莱美奖?", "这张专辑获得了2010年的格莱美奖最佳专辑。", "2010年"),
    # a person: between the title and the verb, and before a cue verb
    ("介绍白鹤镇今年专题协商议事开展情况的统战委员是谁?", "白鹤镇统战委员范镇平介绍。", "范镇平"),
    ("作专题授课的是谁?", "近日,浙江大学滨江研究院常务副院长尹建伟作专题授课。", "尹建伟"),
    # an organisation at the end of an apposition
    ("杭港科技大厦由哪家单位负责运营?",
     "杭港科技大厦由上城区属国资运营平台——上城资本集团运营。", "上城资本集团"),
    # a place after 在
    ("党建创新项目大比武在哪里举行?", "党建创新项目大比武在杭州市萧山区临浦镇举行。",
     "杭州市萧山区临浦镇"),
    # a list, ended at its 等
    ("杭州高新区组织干部赴哪些地方学习国企改革?",
     "杭州高新区组织干部赴上海、深圳、苏州等地学习国企改革等先进经验做法。", "上海、深圳、苏州等"),
    # a title in quotation marks: the marks are not part of the answer
    ("湖滨街道成立了什么平台来锻炼干部?", "湖滨街道成立“滨锋干部成长营”,锻炼干部。", "滨锋干部成长营"),
    # what + noun: the asked noun ends the answer
    ("余杭区下一步将依托什么体系构建干部赋能提升体系?",
     "下一步,余杭区将依托村社干部数字化管理体系,构建干部赋能提升体系。", "村社干部数字化管理体系"),
    # a clause for a why question
    ("那个科技创新项目最后为什么没谈成?", "小陈团队跟进了一个项目,但因企业融资等原因未能落地。",
     "企业融资"),  # the eval drops a trailing 等 either way
    # X的Y是什么: the predicate word anchors it
    ("火斑笛鲷的俗名是什么?", "火斑笛鲷,又称金焰笛鲷,俗名赤笔仔,为辐鳍鱼纲的其中一个种。", "赤笔仔"),
    # a rank keeps its 第; a range is one answer, and 一种 is an article, not the amount
    ("丘姓在《百家姓》里排多少位?", "丘姓是中国姓氏之一,在《百家姓》中排第151位。", "第151位"),
    ("白尾雀鲷生活在水深多少的海域?", "白尾雀鲷是一种鱼,栖息在水深0.5至3公尺的海域。", "0.5至3公尺"),
    # a verb that reports the amount is not part of it; a qualifier that changes it is
    ("办结率达到多少?", "群众急难愁盼问题的办结率达95%以上。", "95%以上"),
    # two counts asked in one breath: the answer runs from the first to the second
    ("选派了多少名干部、结对了多少家企业?", "今年共选派379名干部结对665家企业。", "379名干部结对665家"),
    # the answer before both pieces of the question's context (X饰演的勾践)
    ("勾践由谁饰演?", "国家一级演员钱小宝饰演的勾践手持越王剑,准备伐吴。", "钱小宝"),
    # a name after a post, with a long title between it and the question's words
    ("在讲堂上作AIGC技术对服务业影响专题授课的是谁?",
     "在听完常务副院长尹建伟作《泡沫还是奇点?以ChatGPT为代表的AIGC技术对服务业影响分析"
     "——以健康服务业为例》专题授课后,干部们很有收获。", "尹建伟"),
    # the question's own words at the ends of the gap are not the answer
    ("锦北街道马溪社区是杭州市临安区首个什么社区?", "马溪社区是临安区首个浙江省级未来社区。",
     "浙江省级未来社区"),
])
def test_short_answer_by_kind(question: str, passage: str, expected: str) -> None:
    assert _short(question, passage) == expected


def test_the_asked_type_absent_gives_none() -> None:
    passage = "杭州高新区(滨江)组织干部赴上海学习国企改革经验,干部们收获很大。"
    assert short_answer("杭州高新区抽调了多少名干部?", passage) is None
    assert short_answer("干部们哪一年去的上海?", passage) is None
    assert short_answer("这是一个陈述句。", passage) is None  # no question word
    assert short_answer("谁去了上海?", "") is None


def test_the_best_sentence_is_searched_first() -> None:
    passage = "去年全区有外资企业120家。今年以来,全区新引进外资企业35家。"
    second = (passage.index("今年"), len(passage))
    assert _short("今年新引进了多少家外资企业?", passage, second) == "35家"


def test_offsets_are_into_the_passage_as_given() -> None:
    passage = "第一批产品销售共计ＡＢ超12000元。"  # full-width letters: folding keeps lengths
    start, end = short_answer("卖了多少钱?", passage)
    assert passage[start:end] == "超12000元"


def test_question_reading() -> None:
    a = asked("余杭区下一步将依托什么体系,构建干部赋能提升体系?")
    assert (a.kind, a.left, a.noun) == ("thing", "余杭区下一步将依托", "体系")
    assert asked("勾践由谁饰演?").kind == "person"
    assert asked("杭港科技大厦由哪家单位负责运营?").kind == "org"
    assert asked("被抽调的干部有多少人?").units == ("人", "名", "位", "人次")  # 261名 answers it


def test_normalise_question() -> None:
    assert normalise_question("玉環市有幾個國家４Ａ級旅遊景區？") == "玉环市有几个国家4a级旅游景区?"
    assert normalise_question("ChatGPT是什麼?") == "chatgpt是什么?"
    simplified = "杭州高新区(滨江)抽调了多少名干部到重点工作专班?"
    assert normalise_question(simplified) == simplified


# ------------------------------------------------------------------ wired into search, API, page, CLI

def test_every_answer_carries_its_short_answer_in_the_api(client):
    r = client.post("/api/ask", json={"question": "图书馆的古籍修复体验课每期限报多少人?", "top_k": 2})
    top = r.json["answers"][0]
    assert top["short"] == {"text": "20人", "span": [top["text"].index("20人"),
                                                     top["text"].index("20人") + 3]}
    assert all("short" in a for a in r.json["answers"])  # null where no answer of the kind


def test_a_traditional_question_is_answered_like_a_simplified_one(client):
    simplified = client.get("/api/ask", query_string={"q": "稻鱼米每斤卖多少钱?"}).json
    traditional = client.get("/api/ask", query_string={"q": "稻魚米每斤賣多少錢?"}).json
    assert traditional["question"] == "稻魚米每斤賣多少錢?"  # shown as typed
    assert traditional["answerable"] == simplified["answerable"]
    assert [a["id"] for a in traditional["answers"]] == [a["id"] for a in simplified["answers"]]
    assert traditional["answers"][0]["short"]["text"] == "12元"


def test_the_page_shows_the_answer_first_and_bold_in_its_passage(client):
    html = client.get("/", query_string={"q": "老街引入了哪些非遗工坊?"}).get_data(as_text=True)
    assert '<span class="label">答案：</span><strong>竹编、米酒等</strong>' in html
    assert '<strong class="short">竹编、米酒等</strong>' in html
    assert html.index("答案：") < html.index('class="passage"')


def test_latin_terms_are_marked_whatever_their_case():
    from qa.web.ui import highlight_html

    html = str(highlight_html("有国家4A级旅游景区3个。", (0, 12), ["4a", "景区"], (10, 12)))
    assert html == ('<mark class="best">有国家<b>4A</b>级旅游<b>景区</b>'
                    '<strong class="short">3个</strong></mark>。')


def test_qa_ask_prints_the_short_answer_first(runner, built, settings):
    from qa.cli import cli

    r = runner.invoke(cli, ["ask", "稻鱼米每斤卖多少钱?", "--top-k", "1"],
                      env={"QA_INDEX_DIR": settings.index_dir, "QA_MODEL": "none"})
    assert r.exit_code == 0, r.output
    assert [x for x in r.output.splitlines() if not x.startswith("note:")][0] == "答案：12元"


def test_offsets_hold_when_folding_changes_lengths():
    # ﬁ (NFKC: two letters) and İ (lower(): two characters) must not shift the span
    passage = "ﬁİ 培训班共有180名学员。"
    start, end = short_answer("培训班有多少学员?", passage)
    assert passage[start:end] == "180名"


def test_a_refused_result_shows_no_answer_in_bold(client):
    # "no confident answer" must not look like one: nothing bold, no 答案 line
    html = client.get("/", query_string={"q": "老街引入了哪些外国餐厅和咖啡馆?"}).get_data(as_text=True)
    assert "没有找到有把握的答案" in html
    assert 'class="short"' not in html and "答案：" not in html
