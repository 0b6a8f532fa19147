"""A reader in headless Chromium: the empty page and its examples, a dev-set question, the cited
passage, the story and the way back, more results, an error page, a citation with newspaper and
date. Screenshots (a phone's viewport) are kept in tests/artifacts/."""

from __future__ import annotations

import inspect
import json
import re
import shutil
import threading
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from qa.build import add, build
from qa.web import create_app

from .conftest import EXTRA, ROOT

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = ROOT / "tests" / "artifacts"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium is not installed"),
]


def _serve(settings):
    app = create_app(settings.with_(reload_interval=0))
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def live_server(settings):
    build([ROOT / "seeds"], settings, None)
    server = _serve(settings)
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


@pytest.fixture
def browser():
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"])
        yield chromium
        chromium.close()


def _phone(browser):
    return browser.new_page(viewport={"width": 412, "height": 915})


def test_empty_page_shows_the_archive_and_examples(live_server, browser):
    page = _phone(browser)
    page.goto(live_server + "/")
    assert "档案收录 5 期报纸" in page.locator(".holds").inner_text()
    examples = page.locator("ul.examples a")
    assert examples.count() == 3
    page.screenshot(path=str(ARTIFACTS / "empty-page.png"), full_page=True)
    question = examples.first.inner_text()
    examples.first.click()  # an example is a link to its own answer
    page.wait_for_selector("li.answer")
    assert page.locator("input[name=q]").input_value() == question
    assert page.locator(".short-answer").inner_text().startswith("答案：")


def test_reader_asks_and_follows_the_citation(live_server, browser):
    dev = ROOT.parent / "shared" / "eval" / "dev.jsonl"
    q = next(json.loads(line) for line in dev.read_text("utf-8").splitlines()
             if json.loads(line)["id"] == "q032")
    page = _phone(browser)
    page.goto(live_server + "/")
    page.fill("input[name=q]", q["question"])
    page.click("button[type=submit]")
    page.wait_for_selector("li.answer")
    assert "q=" in page.url  # bookmarkable
    first = page.locator("li.answer").first
    assert q["answer"] in first.locator("p.passage").inner_text().replace(" ", "")
    assert first.locator("mark.best").count() == 1
    # the answer itself first and large, and bold inside its passage
    assert page.locator(".short-answer").inner_text() == f"答案：{q['short']}"
    assert first.locator("strong.short").inner_text() == q["short"]
    assert page.locator(".short-answer").bounding_box()["y"] < first.bounding_box()["y"]
    assert q["title"] in first.locator("a.story-link").inner_text()
    page.screenshot(path=str(ARTIFACTS / "result-page.png"), full_page=True)
    results = page.url
    first.locator("a.story-link").click()
    page.wait_for_selector("article.story")
    assert page.locator("h1").inner_text() == q["title"]
    cited = page.locator("p.para.cited")
    assert cited.count() == 1 and q["answer"] in cited.inner_text().replace(" ", "")
    assert page.evaluate("location.hash") == "#p1"
    assert q["question"] in page.locator(".asked").inner_text()  # the question is kept
    page.screenshot(path=str(ARTIFACTS / "story-page.png"))
    page.locator(".asked a.back").click()  # 返回结果
    page.wait_for_selector("li.answer")
    assert page.url == results
    # more results: the next five below the first five
    page.locator("a.more-link").click()
    page.wait_for_selector("#a10")
    assert page.locator("li.answer").count() == 10 and "top_k=10" in page.url


def test_error_page_is_chinese(live_server, browser):
    page = _phone(browser)
    response = page.goto(live_server + "/story/no-such-issue.txt/1")
    assert response.status == 404
    assert page.locator("h1").inner_text() == "找不到这个页面"
    assert "回到首页提问" in page.locator("main").inner_text()
    page.screenshot(path=str(ARTIFACTS / "error-page.png"), full_page=True)


def test_citation_names_newspaper_date_and_edition(settings, browser):
    build([ROOT / "seeds"], settings, None)
    if "meta" not in inspect.signature(add).parameters:
        pytest.skip("issue metadata (qa.build.add(meta=…), issue 12 item 1) is not in this tree")
    add([EXTRA], settings, None, meta={"paper": "台州日报", "date": "2024-03-05",
                                       "edition": "A3"})
    server = _serve(settings)
    try:
        page = _phone(browser)
        page.goto(f"http://127.0.0.1:{server.server_port}/")
        assert re.search(r"报纸：\s*台州日报", page.locator(".holds-meta").inner_text())
        page.locator("details.filters summary").click()  # 按报纸、日期筛选
        page.select_option("select[name=paper]", "台州日报")
        page.fill("input[name=q]", "白云乡中心小学安装了什么?")
        page.click("button[type=submit]")
        page.wait_for_selector("li.answer")
        assert "paper=" in page.url
        first = page.locator("li.answer").first
        assert first.locator(".source").inner_text() == "台州日报 · 2024年3月5日 · A3版"
        assert page.locator(".source").count() == page.locator("li.answer").count()
        page.screenshot(path=str(ARTIFACTS / "citation-page.png"), full_page=True)
        first.locator("a.story-link").click()
        page.wait_for_selector("article.story")
        assert "台州日报 · 2024年3月5日 · A3版" in page.locator(".byline").inner_text()
    finally:
        server.shutdown()
