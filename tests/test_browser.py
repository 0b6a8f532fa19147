"""A reader in headless Chromium: ask a dev-set question, see the cited passage, open the story."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from qa.build import build
from qa.web import create_app

from .conftest import ROOT

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = ROOT / "tests" / "artifacts"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium is not installed"),
]


@pytest.fixture
def live_server(settings):
    build([ROOT / "seeds"], settings, None)
    app = create_app(settings.with_(reload_interval=0))
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def test_reader_asks_and_follows_the_citation(live_server):
    from playwright.sync_api import sync_playwright

    dev = ROOT.parent / "shared" / "eval" / "dev.jsonl"
    q = next(json.loads(line) for line in dev.read_text("utf-8").splitlines()
             if json.loads(line)["id"] == "q032")
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"])
        page = browser.new_page(viewport={"width": 412, "height": 915})  # a phone
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
        first.locator("a.story-link").click()
        page.wait_for_selector("article.story")
        assert page.locator("h1").inner_text() == q["title"]
        cited = page.locator("p.para.cited")
        assert cited.count() == 1 and q["answer"] in cited.inner_text().replace(" ", "")
        assert page.evaluate("location.hash") == "#p1"
        page.screenshot(path=str(ARTIFACTS / "story-page.png"))
        browser.close()
