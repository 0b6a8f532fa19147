"""The page for readers: Chinese error pages, no operator text, what the archive holds with
example questions it answers, more results, the story page keeping the question, citations
with newspaper and date."""

from __future__ import annotations

import inspect
import re
from urllib.parse import parse_qs, urlsplit

import pytest
from werkzeug.exceptions import RequestEntityTooLarge, RequestURITooLarge

from qa.build import add, build
from qa.config import Settings
from qa.web import create_app
from qa.web.archive import citation_source, count_questions, date_text, edition_text

from .conftest import EXTRA, ROOT

Q = "古籍修复体验课每期限报多少人?"
SEEDS_Q = "玉环市有几个国家4A级旅游景区?"
OPERATOR_TEXT = ("gen-0", "sentence model", "lexical only", "索引 gen", "语义模型", "Not Found",
                 "Method Not Allowed", "The requested URL", "索引尚未就绪")
META = {"paper": "台州日报", "date": "2024-03-05", "edition": "A3"}


def _main(html: str) -> str:
    """The visible part of a page, tags dropped and whitespace collapsed."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html.split("<body>", 1)[1])).strip()


@pytest.fixture(scope="module")
def seeds_app(tmp_path_factory):
    """The app on the seeds, lexical only, built once for this module."""
    root = tmp_path_factory.mktemp("seeds")
    settings = Settings(index_dir=str(root / "index"), model="none", reload_interval=0,
                        rate_limit_per_minute=0, upload_dir=str(root / "up"))
    build([ROOT / "seeds"], settings, None)
    return create_app(settings)


@pytest.fixture
def seeds(seeds_app):
    return seeds_app.test_client()


# ---------------------------------------------------------------- error pages

@pytest.mark.parametrize(("path", "status", "heading", "text"), [
    ("/nope", 404, "找不到这个页面", "链接可能有误"),
    ("/story/nope.txt/1", 404, "找不到这个页面", "档案中没有这篇报道"),
    ("/story/a_2024-01.txt/99", 404, "找不到这个页面", "档案中没有这篇报道"),
    ("/story/a_2024-01.txt/abc", 404, "找不到这个页面", "链接可能有误"),
    ("/story/a_2024-01.txt/1?generation=gen-000099", 404, "找不到这个页面", "请重新提问"),
    ("/static/nope.css", 404, "找不到这个页面", "链接可能有误"),
])
def test_unknown_paths_get_the_chinese_404_page(client, path, status, heading, text):
    r = client.get(path)
    assert r.status_code == status and r.mimetype == "text/html"
    page = _main(r.text)
    assert heading in page and text in page and "回到首页提问" in page
    assert 'href="/static/style.css"' in r.text  # the page's own style
    for english in OPERATOR_TEXT:
        assert english not in r.text, english


def test_405_page_keeps_the_allow_header(client):
    r = client.post("/")
    assert r.status_code == 405 and "不支持这种请求" in r.text and "GET" in r.headers["Allow"]
    assert "Method Not Allowed" not in r.text


@pytest.mark.parametrize(("exc", "status", "heading"), [
    (RequestEntityTooLarge, 413, "提交的内容太大"),
    (RequestURITooLarge, 414, "网址太长"),
    (RuntimeError, 500, "服务器出错了"),
])
def test_413_414_500_pages_are_chinese(built, settings, exc, status, heading):
    app = create_app(settings.with_(reload_interval=0, rate_limit_per_minute=0))

    def fail():
        raise exc("secret internals")

    app.add_url_rule("/fail", "fail", fail)
    r = app.test_client().get("/fail")
    assert r.status_code == status and heading in r.text
    assert "secret" not in r.text and "Traceback" not in r.text


def test_api_errors_keep_the_json_envelope(client):
    r = client.get("/api/nothing")
    assert r.status_code == 404 and r.json["error"]["type"] == "not_found"
    r = client.get("/api/story/nope.txt/1")
    assert r.status_code == 404 and "error" in r.json


def test_429_page_is_the_same_chinese_page(built, settings):
    client = create_app(settings.with_(reload_interval=0, rate_limit_per_minute=1)).test_client()
    assert client.get("/").status_code == 200
    r = client.get("/")
    assert r.status_code == 429 and "请求太频繁，请稍后再试。" in r.text
    assert 'class="error-page"' in r.text and int(r.headers["Retry-After"]) >= 1


def test_gunicorns_own_html_error_is_the_chinese_page():
    from qa.serve import error_page

    raw = error_page(414, "the request line is too long", api=False).decode()
    assert raw.startswith("HTTP/1.1 414")
    assert "网址太长" in raw and 'href="/static/style.css"' in raw and "request line" not in raw
    assert '"code":414' in error_page(414, "x", api=True).decode()  # /api keeps the envelope


# ---------------------------------------------------------------- no operator text

def test_no_operator_text_for_readers(client):
    for path in ["/", f"/?q={Q}", "/story/b_2024-02.txt/2", "/nope"]:
        page = _main(client.get(path).text)
        for text in OPERATOR_TEXT:
            assert text not in page, (path, text)
    # one discreet Chinese notice, on the question page only
    assert "当前仅按关键词检索" in client.get("/").text
    assert "当前仅按关键词检索" not in client.get("/nope").text


def test_before_an_index_exists_the_page_says_so_in_chinese(settings):
    client = create_app(settings.with_(reload_interval=0)).test_client()
    assert "档案索引尚未就绪，请稍后再试。" in client.get("/").text
    r = client.get("/", query_string={"q": Q})
    assert r.status_code == 503 and "档案索引尚未就绪" in r.text
    assert "no index" not in r.text and "qa index" not in r.text


# ---------------------------------------------------------------- the empty page

def test_empty_page_says_what_the_archive_holds(seeds):
    page = _main(seeds.get("/").text)
    assert "档案收录 5 期报纸、50 篇报道，共 221 个段落。" in page
    assert "报纸：" not in page and "日期：" not in page  # the seeds carry no metadata


def test_three_example_questions_each_answered_by_the_archive(seeds_app, seeds):
    r = seeds.get("/")
    examples = re.findall(r'<ul class="examples">(.*?)</ul>', r.text, re.S)[0]
    links = re.findall(r'<a href="([^"]+)">([^<]+)</a>', examples)
    assert len(links) == 3
    assert len({q for _, q in links}) == 3
    for href, question in links:
        assert question.endswith("？") and "多少" in question
        assert parse_qs(urlsplit(href.replace("&amp;", "&")).query)["q"] == [question]
        result = seeds_app.extensions["qa.holder"].searcher.ask(question)
        assert result.answerable, question
        page = seeds.get(href.replace("&amp;", "&"))
        assert page.status_code == 200 and "答案：" in page.text, question
    # the same examples every time on one generation
    assert seeds.get("/").text.count("<li><a href=") == 3
    assert re.findall(r'<ul class="examples">(.*?)</ul>', seeds.get("/").text, re.S)[0] == examples


def test_examples_are_clauses_asked_in_place():
    got = count_questions("近日,慈溪市梳理确定11个具体的履职项目和责任主体,强化落实。")
    assert ("慈溪市梳理确定多少个具体的履职项目和责任主体？", "11", 0) in got
    # a clause leaning on the one before, or holding two figures, makes no question
    assert count_questions("其中,该镇共有村民3200余名。") == []
    assert count_questions("新昌县回山镇2023年有1.3万名群众受益。") == []
    # a clause that names no place takes the one the story named last, as its topic
    got = count_questions("开化县推出文化走读。截至目前,累计开展走读活动60余场。", "文化走读")
    assert got == [("开化县累计开展走读活动多少场？", "60", 1)]


def test_examples_follow_a_new_generation(app, client, settings):
    first = client.get("/").text
    add([EXTRA], settings, None)
    app.extensions["qa.holder"].refresh()
    second = client.get("/").text
    assert "档案收录 2 期报纸" in first and "档案收录 3 期报纸" in second


# ---------------------------------------------------------------- results

def test_more_results_link_asks_for_more(seeds):
    r = seeds.get("/", query_string={"q": SEEDS_Q})
    assert r.text.count('class="answer"') == 5
    more = re.search(r'<a class="button more-link" href="([^"]+)">更多结果</a>', r.text)
    assert more
    href = more.group(1).replace("&amp;", "&")
    assert parse_qs(urlsplit(href).query) == {"q": [SEEDS_Q], "top_k": ["10"]}
    assert href.endswith("#a6")  # lands on the first new result
    r = seeds.get(href)
    assert r.status_code == 200 and r.text.count('class="answer"') == 10
    assert "top_k=20" in r.text
    # bounded by QA_MAX_TOP_K; a mangled value falls back to the default, never an error page
    r = seeds.get("/", query_string={"q": SEEDS_Q, "top_k": "999"})
    assert r.status_code == 200 and 10 < r.text.count('class="answer"') <= 50
    assert "更多结果" not in r.text  # every match is shown
    r = seeds.get("/", query_string={"q": SEEDS_Q, "top_k": "abc"})
    assert r.status_code == 200 and r.text.count('class="answer"') == 5


def test_no_more_link_when_every_result_is_shown(client):
    r = client.get("/", query_string={"q": Q, "top_k": "20"})
    assert r.text.count('class="answer"') < 20 and "更多结果" not in r.text


def test_story_page_keeps_the_question_and_links_back(seeds):
    r = seeds.get("/", query_string={"q": SEEDS_Q, "top_k": "10"})
    link = re.search(r'<a class="story-link" href="([^"]+)"', r.text).group(1).replace("&amp;", "&")
    params = parse_qs(urlsplit(link).query)
    assert params["q"] == [SEEDS_Q] and params["top_k"] == ["10"]
    story = seeds.get(link)
    assert story.status_code == 200
    assert f"问题：{SEEDS_Q}" in _main(story.text)
    back = re.findall(r'<a class="back" href="([^"]+)"', story.text)
    assert back and all(parse_qs(urlsplit(b.replace("&amp;", "&")).query) ==
                        {"q": [SEEDS_Q], "top_k": ["10"]} for b in back)
    assert "返回结果" in story.text
    # without a question, no way back is offered
    plain = seeds.get(link.split("?")[0])
    assert plain.status_code == 200 and "返回结果" not in plain.text


def test_no_closest_passages_text_above_an_empty_list(client):
    r = client.get("/", query_string={"q": "xyzzy"})
    assert r.status_code == 200 and 'class="answer"' not in r.text
    assert "没有找到相关的段落" in r.text
    assert "下面是最接近的段落" not in r.text and "<ol" not in r.text
    weak = client.get("/", query_string={"q": "青山镇老街有多少年轻人返乡创业?"})
    assert "下面是最接近的段落，仅供参考。" in weak.text and 'class="answer"' in weak.text


def test_question_errors_are_chinese(client):
    r = client.get("/", query_string={"q": "问" * 501})
    assert r.status_code == 400 and "问题太长（501 个字），请缩短到 500 个字以内。" in r.text


def test_interface_text_uses_full_width_punctuation():
    # ASCII punctuation next to a Chinese character in anything the interface itself says
    half = re.compile(r"[\u4e00-\u9fff][,:;?!]|[,:;?!][\u4e00-\u9fff]")
    web = ROOT / "qa" / "web"
    for path in [*sorted((web / "templates").glob("*.html")), web / "ui.py", web / "archive.py",
                 ROOT / "qa" / "serve.py"]:
        for n, line in enumerate(path.read_text("utf-8").splitlines(), 1):
            if line.lstrip().startswith("#") or '"""' in line or 'r"' in line:
                continue  # comments, docstrings and patterns are for developers
            assert not half.search(line), f"{path.name}:{n}: {line.strip()}"


# ---------------------------------------------------------------- citations

def test_citation_source_formats():
    assert citation_source(META) == "台州日报 · 2024年3月5日 · A3版"
    assert citation_source({"paper": "台州日报", "date": None, "edition": None}) == "台州日报"
    assert citation_source({"file": "x.txt"}) == ""  # nothing when absent, never invented
    assert date_text("2024-03-05") == "2024年3月5日" and edition_text("第3版") == "第3版"


def test_citation_without_metadata_shows_no_empty_fields(client):
    r = client.get("/", query_string={"q": Q})
    assert "None" not in _main(r.text) and "· ·" not in _main(r.text)


def _supports_metadata() -> bool:
    return "meta" in inspect.signature(add).parameters


def test_citation_with_newspaper_date_and_edition(app, client, settings):
    if not _supports_metadata():
        pytest.skip("issue metadata (qa.build.add(meta=…)) is not in this tree yet")
    add([EXTRA], settings, None, meta=META)
    app.extensions["qa.holder"].refresh()
    r = client.get("/", query_string={"q": "白云乡中心小学安装了什么?"})
    first = r.text.split('class="answer"')[1]
    assert "台州日报 · 2024年3月5日 · A3版" in first
    link = re.search(r'class="story-link" href="([^"]+)"', first).group(1).replace("&amp;", "&")
    assert "台州日报 · 2024年3月5日 · A3版" in client.get(link).text
    page = _main(client.get("/").text)
    assert re.search("报纸： ?台州日报", page) and re.search("日期： ?2024年3月5日", page)
    # the issues without metadata still show none
    other = client.get("/", query_string={"q": Q}).text.split('class="answer"')[1]
    assert "台州日报" not in other


def test_filters_by_newspaper_and_date_on_the_page(app, client, settings):
    if not _supports_metadata():
        pytest.skip("issue metadata (qa.build.add(meta=…)) is not in this tree yet")
    assert 'name="paper"' not in client.get("/").text  # nothing to filter on without metadata
    add([EXTRA], settings, None, meta=META)
    app.extensions["qa.holder"].refresh()
    form = client.get("/").text
    assert "按报纸、日期筛选" in form and "<option>台州日报</option>" in form
    assert 'name="date_from"' in form and 'min="2024-03-05"' in form
    q = "学校安装了什么?"
    everything = client.get("/", query_string={"q": q}).text
    assert "b_2024-02.txt" in everything or "a_2024-01.txt" in everything
    only = client.get("/", query_string={"q": q, "paper": "台州日报", "date_from": "",
                                         "date_to": "2024-03-31"})
    assert only.status_code == 200 and only.text.count('class="answer"') >= 1
    cites = re.findall(r'class="cite">(.*?)</p>', only.text, re.S)
    assert cites and all("台州日报" in c for c in cites)
    assert "<option selected>台州日报</option>" in only.text  # the form keeps the choice
    link = re.search(r'class="story-link" href="([^"]+)"', only.text).group(1)
    assert "paper=" in link  # the way back from the story keeps the filter
    none = client.get("/", query_string={"q": q, "date_from": "2025-01-01"})
    assert none.status_code == 200 and "所选报纸和日期中没有" in none.text
    bad = client.get("/", query_string={"q": q, "date_from": "2024-13-45"})
    assert bad.status_code == 400 and "筛选条件有误" in bad.text
