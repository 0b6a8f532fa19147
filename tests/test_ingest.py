"""Ingest: stories, bylines, paragraph repair, no lost text, decoding errors."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest

from qa.ingest import IngestError, parse_bytes, parse_file
from qa.text import CJK, strip_ws

ROOT = Path(__file__).resolve().parents[1]
SEEDS = sorted((ROOT / "seeds").glob("*.txt"))
DEV = ROOT.parent / "shared" / "eval" / "dev.jsonl"

EXPECTED = {
    "000_b1b954bbec98dec7.txt": [
        ("杭州市西湖区打造“西商学堂” 倾力建强国企“三支队伍”", "陈献东 魏妃妃"),
        ("深入履职 当好“两员”", "罗焱 陈鑫"),
        ("强化监督 助企纾困", "孙婷婷"),
        ("红色七月 活动纷呈", "苏燕 胡茜茜 胡天霞"),
        ("新棚上岗 安全续航", "王宇安 黄宇鸿"),
        ("汇聚向善力量 增进民生福祉", "张笑言 倪俊杰"),
        ("优秀人才扎根海岛 优质资源下沉乡村", "曾智辉"),
        ("绍兴市上虞区:探索推行“五微共治” 破解物业管理难题", "朱银燕 任煌华"),
        ("越城塔山:府河里“微醺计划”点亮夏夜经济", "陈烨"),
    ],
    "001_83ee49fea69f0aa9.txt": [
        ('充电提能 服务三个"一号工程"', "贺之晏"),
        ("聚焦重点工程 确保群众喝上优质水", "马可远 金棋"),
        ('竭"禁"所能 优化营商环境', None),
        ('走心实访 监督员开展"送上门"服务', "黄晶"),
        ("台州玉环创成省级全域旅游示范市", "郭海峰 洪嘉"),
        ("党群连心 推动良好社风民风建设", "吴敏"),
        ("服务提标 保障升级", "李琴 屈慧琴"),
        ("生态绿色 崭新篇章", "王杨军"),
        ("乡贤参与 协商高效", "山山山"),
        ("同心聚力 侨助共富", "于文"),
        ("管育并重 锻造队伍", "张晓飞"),
    ],
    "002_fcb78bd655ccb902.txt": [
        ("“看见”行动为抓手 干部干事有劲头", "沈梦旦 荀筱筱"),
        ("设定岗位锻队伍 实干担当赢口碑", "李静 罗玮 陈慕远"),
        ("比拼中检视成效 实训中提升本领", "陈震雷 龚燕丹"),
        ("“干部十条”新规范 躬身实践增才干", "赵悦 陈科佳"),
        ("应干部学习所需 建“五维”课堂矩阵", "韩惠娜 胡杉杉"),
        ("“校地企”协同共进 人才共筑新优势", "王张杰 胡文岩"),
    ],
    "003_f9c9bcb874f0daac.txt": [
        ("凝聚阵地力量 推动项目破冰", "张梦月 杨元元"),
        ("乡贤示范引领 难题迎刃而解", "李啸杰"),
        ("寻美清波吴山 汇聚同心之力", "彭妍"),
        ("坚持楼宇融合 谱写发展新篇", "高春雷 黄智 魏婷"),
        ("完善网格议事 促进社区“自转”", "许时泽 宋燕"),
        ("深化机制书写大民生", "沈丹璐 产玉琦"),
        ("夯实善治打造“学堂”", "刘凯航 郑宸"),
        ("以大服务实现大聚力", "孔丽芳 郑宸"),
        ("以文润城绘幸福底色", "龚晨忱 郑宸"),  # printed twice in the issue: one story
    ],
    "004_1ce795c8bb2c9173.txt": [
        ('上城区:强基赋能 凝"新"聚力', "周静 严琰"),
        ("乡贤回归 助企纾困", "余明艳"),
        ("人才强区 近悦远来", "陈作枪 刘丹怡"),
        ("治堵多管齐下 序化美化亮化", "周静 蔡瑶"),
        ("市民监督员护航生态环境", "鲍雪青 陈露茜 朱孙华"),
        ("创新基层治理 开启美丽嬗变", None),
        ('"星火家园"绘就小区治理新场景', "周静 陈建平"),
        ("三方协同激活老旧小区", "倪智海俞琳"),
        ("迭代智治提升质效为民生", "叶城钢 夏晓龙 周静"),
        ("情暖冬日 爱心相随", "李昕俞琳"),
        ("岁末年关 防火消灾", "刘国征 罗明昌 林梦兰"),
        ("预案保通 精准治堵", "颜启祯 刘丹怡"),
        ("", "朱琰星"),  # a story printed without its headline: kept, untitled
        ('"童"行消防 感恩"蓝焰"', "周静 冯小富"),
        ("社区合伙 共建共享", "任龙汪靖福"),
    ],
}


@pytest.fixture(scope="module")
def issues():
    return {p.name: parse_file(p) for p in SEEDS}


def test_seeds_are_the_originals():
    assert [p.name for p in SEEDS] == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_headlines_and_bylines(issues, name):
    got = [(s.title, s.byline) for s in issues[name].stories]
    assert got == EXPECTED[name]


def test_subtitle_and_captions(issues):
    story = issues["003_f9c9bcb874f0daac.txt"].stories[0]
    assert story.subtitle == "上城区打造元宇宙产业标杆园区"
    assert story.captions == ["中国元谷·杭港科技大厦(图片由上城资本、望江街道提供)"]
    first = issues["001_83ee49fea69f0aa9.txt"].stories[0]
    # a caption floated into the middle of a sentence is lifted out and the sentence rejoined
    assert first.captions == ['滨江区开展"百名干部助百企"精准服务。']
    assert '积极开展"大走访大调研大服务大解题",35名区领导' in first.passages[-1].text


def _passage_containing(issue, needle):
    found = [(s, p) for s in issue.stories for p in s.passages if needle in p.text]
    assert len(found) == 1, needle
    return found[0]


def test_split_paragraph_is_joined(issues):
    _, p = _passage_containing(issues["000_b1b954bbec98dec7.txt"], "南郊监狱等地开展廉政教育现场教学。")
    assert p.lines == (11, 13)


def test_ocr_space_removed_but_latin_spacing_kept(issues):
    _, p = _passage_containing(issues["001_83ee49fea69f0aa9.txt"], "必须跟上")
    assert "必须跟 上" not in p.text
    issue = parse_bytes("# 标题测试一下\n\n张三 李四\n\n他说 Hello World 很 好,共 3 个。\n".encode(), "x.txt")
    assert issue.stories[0].passages[0].text == "他说Hello World很好,共3个。"


def test_repeated_header_does_not_duplicate(issues):
    titles = [s.title for s in issues["003_f9c9bcb874f0daac.txt"].stories]
    assert titles.count("以文润城绘幸福底色") == 1
    story = issues["003_f9c9bcb874f0daac.txt"].stories[-1]
    assert [p.paragraph for p in story.passages] == list(range(1, len(story.passages) + 1))


def test_stray_fragment_at_story_start_is_kept(issues):
    story = issues["003_f9c9bcb874f0daac.txt"].stories[4]
    assert story.passages[0].text.startswith("隐患。今年以来")


def test_narrow_column_does_not_break_the_sentence_it_cuts(issues):
    _, p = _passage_containing(issues["004_1ce795c8bb2c9173.txt"], "还有投资1800万元的力恒农业")
    assert p.lines == (21, 41)


def _body_cjk(path: Path, issue) -> Counter:
    """Chinese characters of the file minus those of headline, byline and caption lines."""
    text = path.read_text(encoding="utf-8-sig")
    non_body = Counter()
    for s in issue.stories:
        for part in [s.title, s.subtitle or "", s.byline or "", *s.captions]:
            non_body.update(re.findall(f"[{CJK}]", part))
    every = Counter(re.findall(f"[{CJK}]", text))
    return every - non_body


@pytest.mark.parametrize("path", SEEDS, ids=lambda p: p.name[:3])
def test_no_body_text_is_lost_or_duplicated(issues, path):
    issue = issues[path.name]
    passages = Counter()
    for s in issue.stories:
        for p in s.passages:
            passages.update(re.findall(f"[{CJK}]", p.text))
    expected = _body_cjk(path, issue)
    # a repeated story header is printed twice in the file but is one headline here
    for s in issue.stories:
        repeats = sum(1 for line in path.read_text("utf-8-sig").splitlines()
                      if s.title and line.strip().lstrip("#").strip() == s.title) - 1
        for _ in range(max(repeats, 0)):
            expected -= Counter(re.findall(f"[{CJK}]", s.title + (s.byline or "")))
    assert passages == expected


def test_every_dev_answer_lies_in_exactly_one_passage(issues):
    for line in DEV.read_text(encoding="utf-8").splitlines():
        q = json.loads(line)
        if not q["answer"]:
            continue
        issue = issues[q["file"]]
        hits = [s.title for s in issue.stories for p in s.passages
                if strip_ws(q["answer"]) in strip_ws(p.text)]
        assert hits == [q["title"]], q["id"]


def test_long_paragraph_is_split_at_sentence_ends_and_short_merged():
    sentence = "这是一个用来测试切分的句子,长度大约二十五个字。"
    text = "# 长段落测试标题\n\n王五 赵六\n\n" + sentence * 40 + "\n\n短句。\n"
    story = parse_bytes(text.encode(), "long.txt").stories[0]
    assert all(len(p.text) <= 500 * 1.15 for p in story.passages)
    assert len(story.passages) == 2
    assert "".join(p.text for p in story.passages) == sentence * 40 + "短句。"
    assert all(p.text.endswith("。") for p in story.passages)


def test_encodings():
    text = "# 编码测试标题\n\n张三\n\n这是一段用来测试编码的正文内容。\n"
    for data, enc in [(text.encode("utf-8"), "utf-8"),
                      (b"\xef\xbb\xbf" + text.encode("utf-8"), "utf-8-sig"),
                      (text.encode("gb18030"), "gb18030")]:
        issue = parse_bytes(data, "e.txt")
        assert issue.encoding == enc
        assert issue.stories[0].title == "编码测试标题"
        assert issue.stories[0].passages[0].text == "这是一段用来测试编码的正文内容。"


@pytest.mark.parametrize(("data", "message"), [
    (b"", "bad.txt: file is empty"),
    (b"  \n\n ", "bad.txt: file is empty"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "bad.txt: looks binary"),
    (b"\xff\xfe\xfa" * 50, "bad.txt: not valid UTF-8 or GB18030"),
    (b"just some english text\n", "bad.txt: contains no Chinese text"),
])
def test_bad_input_names_the_file(data, message):
    with pytest.raises(IngestError, match=re.escape(message)):
        parse_bytes(data, "bad.txt")


def test_unreadable_path_is_a_clear_error(tmp_path):
    with pytest.raises(IngestError, match="missing.txt: cannot read"):
        parse_file(tmp_path / "missing.txt")


def test_interleaved_columns_around_a_repeated_header_go_to_their_stories(issues):
    issue = issues["003_f9c9bcb874f0daac.txt"]
    for needle in ("有贤来栖,更需固巢留贤", "我们将持续发挥乡贤力量"):
        story, _ = _passage_containing(issue, needle)
        assert story.title == "以大服务实现大聚力", needle
    for needle in ("又名盈悦书房", "盈悦书房自开业以来"):
        story, _ = _passage_containing(issue, needle)
        assert story.title == "以文润城绘幸福底色", needle
