"""The service: form, story page, JSON API, error envelope, admin uploads, live generation switch."""

from __future__ import annotations

import io
import threading
import time

import pytest
from openapi_spec_validator import validate

from qa.build import add
from qa.web import create_app

from .conftest import CORPUS, EXTRA, wait_for_job

Q = "古籍修复体验课每期限报多少人?"


# ---------------------------------------------------------------- health and pages

def test_healthz_503_until_an_index_exists_then_200(settings):
    from qa.build import build

    app = create_app(settings.with_(reload_interval=0))
    client = app.test_client()
    r = client.get("/healthz")
    assert r.status_code == 503 and r.json["status"] == "unavailable"
    assert "no index" in r.json["error"]
    assert client.post("/api/ask", json={"question": Q}).status_code == 503
    build([CORPUS], settings, None)
    app.extensions["qa.holder"].refresh()
    r = client.get("/healthz")
    assert r.status_code == 200
    assert r.json["generation"] == "gen-000001" and r.json["mode"] == "lexical only"


def test_form_and_bookmarkable_results(client):
    page = client.get("/")
    assert page.status_code == 200
    assert 'name="q"' in page.text and 'method="get"' in page.text
    r = client.get("/", query_string={"q": Q})
    assert r.status_code == 200
    assert '<mark class="best">图书馆还开设了<b>古籍</b><b>修复</b>' in r.text
    # the story link carries the question back (tests/test_page.py checks the round trip)
    assert 'href="/story/b_2024-02.txt/2?p=2&amp;generation=gen-000001&amp;q=' in r.text
    assert "图书馆延长开放时间</a>" in r.text and "第2段 · 孙丽" in r.text
    assert "当前仅按关键词检索" in r.text  # a discreet lexical-only notice in the footer


def test_no_confident_answer_state(client):
    r = client.get("/", query_string={"q": "青山镇老街有多少年轻人返乡创业?"})
    assert "没有找到有把握的答案" in r.text


def test_user_strings_are_escaped_and_headers_set(client):
    r = client.get("/", query_string={"q": '<script>alert(1)</script>老街'})
    assert "<script>alert(1)</script>" not in r.text
    assert "&lt;script&gt;" in r.text
    for path in ["/", "/healthz", "/api/issues", "/story/a_2024-01.txt/1", "/nope"]:
        h = client.get(path).headers
        assert "default-src 'none'" in h["Content-Security-Policy"], path
        assert h["X-Content-Type-Options"] == "nosniff"
        assert h["X-Frame-Options"] == "DENY"


def test_empty_question_on_the_form(client):
    r = client.get("/", query_string={"q": "  "})
    assert r.status_code == 400 and "请输入问题" in r.text


def test_story_page_marks_the_cited_paragraph(client):
    r = client.get("/story/b_2024-02.txt/2?p=2")
    assert r.status_code == 200
    assert "<h1>图书馆延长开放时间</h1>" in r.text
    assert 'id="p2" class="para cited"' in r.text
    assert client.get("/story/b_2024-02.txt/9").status_code == 404
    assert client.get("/story/nope.txt/1").status_code == 404


# ---------------------------------------------------------------- JSON API

def test_ask_post_shape(client):
    r = client.post("/api/ask", json={"question": Q, "top_k": 2})
    assert r.status_code == 200
    body = r.json
    assert list(body) == ["question", "answerable", "answers", "generation", "mode", "took_ms"]
    assert body["answerable"] is True and body["generation"] == "gen-000001"
    a = body["answers"][0]
    assert set(a) >= {"text", "highlight", "score", "citation", "retrievers"}
    assert a["citation"] == {"issue": "b_2024-02", "file": "b_2024-02.txt",
                             "paper": None, "date": None, "edition": None,  # none given
                             "title": "图书馆延长开放时间", "byline": "孙丽", "story": 2,
                             "paragraph": 2, "lines": [15, 15],
                             "url": "/story/b_2024-02.txt/2?generation=gen-000001#p2"}
    assert a["retrievers"]["lexical"]["rank"] == 1
    assert "古籍" in r.get_data(as_text=True)  # UTF-8, not \\u escapes
    assert len(body["answers"]) == 2


def test_ask_get(client):
    r = client.get("/api/ask", query_string={"q": Q, "top_k": 1})
    assert r.status_code == 200 and len(r.json["answers"]) == 1


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"json": {"question": ""}}, "question is empty"),
    ({"json": {"question": "问" * 501}}, "the limit is 500"),
    ({"json": {"question": Q, "top_k": 0}}, "top_k must be between 1 and 50"),
    ({"json": {"question": Q, "top_k": "5"}}, "top_k must be an integer"),
    ({"json": {"question": 5}}, "question must be a string"),
    ({"json": {"top_k": 5}}, "missing field 'question'"),
    ({"json": ["a"]}, "body must be a JSON object"),
    ({"data": "question=x"}, "body must be JSON"),
    ({"data": "{bad", "content_type": "application/json"}, "body is not valid JSON"),
])
def test_ask_400s(client, kwargs, message):
    r = client.post("/api/ask", **kwargs)
    assert r.status_code == 400
    assert r.json["error"]["code"] == 400 and r.json["error"]["type"] == "bad_request"
    assert message in r.json["error"]["message"]


def test_get_400s(client):
    assert client.get("/api/ask").json["error"]["message"] == "missing query parameter q"
    assert client.get("/api/ask?q=x&top_k=two").status_code == 400


def test_404_405_413_envelopes(client):
    r = client.get("/api/nothing")
    assert r.status_code == 404 and set(r.json["error"]) == {"code", "type", "message"}
    r = client.delete("/api/ask")
    assert r.status_code == 405 and r.json["error"]["code"] == 405
    assert "POST" in r.headers["Allow"]
    r = client.post("/api/ask", data='{"question": "' + "x" * 70000 + '"}',
                    content_type="application/json")
    assert r.status_code == 413 and r.json["error"]["type"] == "payload_too_large"


def test_429_rate_limit(built, settings):
    client = create_app(settings.with_(reload_interval=0, rate_limit_per_minute=2)).test_client()
    codes = [client.get("/api/ask", query_string={"q": Q}).status_code for _ in range(3)]
    assert codes == [200, 200, 429]
    r = client.get("/api/ask", query_string={"q": Q})
    assert r.json["error"]["type"] == "rate_limited" and int(r.headers["Retry-After"]) >= 1


def test_500_has_no_traceback(app, client, monkeypatch):
    searcher = app.extensions["qa.holder"].searcher

    def boom(*a, **k):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(searcher, "ask", boom)
    r = client.post("/api/ask", json={"question": Q})
    assert r.status_code == 500
    assert r.json == {"error": {"code": 500, "type": "internal_error",
                                "message": "internal error; it has been logged"}}
    assert "secret" not in r.text and "Traceback" not in r.text


def test_issues_and_story_api(client):
    r = client.get("/api/issues").json
    assert [i["file"] for i in r["issues"]] == ["a_2024-01.txt", "b_2024-02.txt"]
    assert r["issues"][0]["passages"] == 4
    s = client.get("/api/story/a_2024-01.txt/2").json
    assert s["title"] == "老街改造留住乡愁" and s["byline"] == "赵敏"
    assert [p["paragraph"] for p in s["paragraphs"]] == [1, 2]
    assert client.get("/api/story/a_2024-01.txt/7").status_code == 404


def test_openapi_document_is_valid(client):
    doc = client.get("/openapi.json").json
    validate(doc)
    assert {"/api/ask", "/api/issues", "/healthz"} <= set(doc["paths"])
    admin = client.get("/openapi-admin.json").json  # upload powers stay out of the tool document
    validate(admin)
    assert "/api/admin/issues" in admin["paths"] and "/api/admin/issues" not in doc["paths"]


def test_cors(built, settings):
    client = create_app(settings.with_(reload_interval=0, cors_origins="https://bot.example")
                        ).test_client()
    ok = client.get("/api/issues", headers={"Origin": "https://bot.example"})
    assert ok.headers["Access-Control-Allow-Origin"] == "https://bot.example"
    other = client.get("/api/issues", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in other.headers
    pre = client.options("/api/ask", headers={"Origin": "https://bot.example"})
    assert pre.status_code == 204 and "POST" in pre.headers["Access-Control-Allow-Methods"]


# ---------------------------------------------------------------- admin and live updates

TOKEN = "s3cret-" + "x" * 25  # admin needs a token of at least 32 characters


@pytest.fixture
def admin(built, settings, tmp_path):
    app = create_app(settings.with_(reload_interval=0, admin_token=TOKEN,
                                    upload_dir=str(tmp_path / "uploads")))
    return app, app.test_client(), {"Authorization": f"Bearer {TOKEN}"}


def test_admin_is_off_without_a_token(client):
    r = client.post("/api/admin/issues")
    assert r.status_code == 404 and "disabled" in r.json["error"]["message"]


def test_admin_needs_the_right_token(admin):
    _, client, _ = admin
    assert client.post("/api/admin/issues").status_code == 401
    r = client.post("/api/admin/issues", headers={"Authorization": "Bearer nope"})
    assert r.status_code == 401 and r.headers["WWW-Authenticate"] == "Bearer"


def test_upload_adds_issues_and_the_service_moves_to_the_new_generation(admin, tmp_path):
    app, client, auth = admin
    new = (EXTRA / "c_2024-03.txt").read_bytes()
    same = (CORPUS / "a_2024-01.txt").read_bytes()
    changed = (CORPUS / "b_2024-02.txt").read_text("utf-8").replace("12元", "15元").encode()
    files = [(io.BytesIO(new), "../../c_2024-03.txt"), (io.BytesIO(same), "a_2024-01.txt"),
             (io.BytesIO(changed), "b_2024-02.txt"), (io.BytesIO(b"\x00\x01"), "junk.txt")]
    r = client.post("/api/admin/issues", data={"files": files, "replace": "true"}, headers=auth,
                    content_type="multipart/form-data")
    assert r.status_code == 202 and r.json["status"] == "queued"
    job = wait_for_job(client, r.json["id"], auth)
    assert job["status"] == "done"
    outcome = {f["file"]: f["status"] for f in job["files"]}
    assert outcome == {"c_2024-03.txt": "added", "a_2024-01.txt": "unchanged",
                       "b_2024-02.txt": "replaced", "junk.txt": "rejected"}
    assert "looks binary" in next(f["reason"] for f in job["files"] if f["file"] == "junk.txt")
    assert client.get("/healthz").json["generation"] == job["generation"] == "gen-000002"
    hit = client.post("/api/ask", json={"question": "白云乡中心小学安装了什么?"}).json
    assert hit["generation"] == "gen-000002"
    assert hit["answers"][0]["citation"]["file"] == "c_2024-03.txt"
    assert (tmp_path / "uploads" / "c_2024-03.txt").read_bytes() == new  # kept for rebuilds
    assert client.get("/api/admin/jobs/0123", headers=auth).status_code == 404


def test_upload_limits(built, settings, tmp_path):
    client = create_app(settings.with_(reload_interval=0, admin_token=TOKEN, max_upload_bytes=1000,
                                       upload_dir=str(tmp_path / "u"))).test_client()
    auth = {"Authorization": f"Bearer {TOKEN}"}
    big = [(io.BytesIO("正文".encode() * 1000), "big.txt")]
    r = client.post("/api/admin/issues", data={"files": big}, headers=auth,
                    content_type="multipart/form-data")
    assert r.status_code == 413 and r.json["error"]["code"] == 413
    r = client.post("/api/admin/issues", data={}, headers=auth, content_type="multipart/form-data")
    assert r.status_code == 400


def test_queries_in_flight_survive_a_generation_switch(app, client, settings):
    holder = app.extensions["qa.holder"]
    seen: set[str] = set()
    failures: list[object] = []
    stop = threading.Event()

    def fire():
        while not stop.is_set():
            r = client.post("/api/ask", json={"question": Q})
            if r.status_code != 200:
                failures.append(r.status_code)
            else:
                seen.add(r.json["generation"])

    threads = [threading.Thread(target=fire) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.2)
    add([EXTRA], settings, None)  # an editor's `qa add` in another process, in effect
    holder.refresh()
    time.sleep(0.2)
    stop.set()
    for t in threads:
        t.join()
    assert failures == []
    assert seen == {"gen-000001", "gen-000002"}


def test_serve_refuses_debug(runner):
    from qa.cli import cli

    r = runner.invoke(cli, ["serve"], env={"QA_DEBUG": "1"})
    assert r.exit_code == 1 and "refusing to serve in production with QA_DEBUG on" in r.output


def test_poller_picks_up_an_editors_qa_add_without_restart(built, settings):
    client = create_app(settings.with_(reload_interval=0.1)).test_client()
    assert client.get("/healthz").json["generation"] == "gen-000001"
    add([EXTRA], settings, None)  # an editor's `qa add` in a shell
    for _ in range(100):
        if client.get("/healthz").json["generation"] == "gen-000002":
            break
        time.sleep(0.05)
    assert client.get("/healthz").json["generation"] == "gen-000002"
    r = client.post("/api/ask", json={"question": "白云乡中心小学安装了什么?"})
    assert r.json["generation"] == "gen-000002"
