"""The `qa` command line: every subcommand, JSON shapes, one-line errors (never a traceback)."""

from __future__ import annotations

import json

import pytest

from qa.cli import cli

from .conftest import CORPUS, EXTRA, QUESTIONS, ROOT


@pytest.fixture
def qa(runner, tmp_path):
    env = {"QA_INDEX_DIR": str(tmp_path / "index"), "QA_MODEL": "none"}

    def invoke(*args):
        return runner.invoke(cli, [str(a) for a in args], env=env)

    return invoke


def test_parse_outline_lists_the_six_stories():
    from click.testing import CliRunner

    result = CliRunner().invoke(cli, ["parse", str(ROOT / "seeds/002_fcb78bd655ccb902.txt")])
    assert result.exit_code == 0
    assert "6 stories" in result.output
    for byline in ["沈梦旦 荀筱筱", "李静 罗玮 陈慕远", "陈震雷 龚燕丹", "赵悦 陈科佳", "韩惠娜 胡杉杉",
                   "王张杰 胡文岩"]:
        assert f"作者: {byline}" in result.output


def test_parse_json_shape(qa):
    result = qa("parse", CORPUS / "b_2024-02.txt", "--json")
    obj = json.loads(result.stdout)
    assert set(obj) >= {"file", "stories"}
    story = obj["stories"][1]
    assert set(story) >= {"title", "subtitle", "byline", "captions", "passages"}
    assert story["title"] == "图书馆延长开放时间" and story["byline"] == "孙丽"
    assert story["passages"][0]["paragraph"] == 1
    assert story["passages"][0]["lines"] == [13, 13]


def test_parse_errors_are_one_line(qa, tmp_path):
    bad = tmp_path / "empty.txt"
    bad.write_bytes(b"")
    result = qa("parse", bad)
    assert result.exit_code == 1
    assert result.output.strip() == "Error: empty.txt: file is empty"


def test_index_add_info_ask_eval(qa):
    assert qa("info").output.strip().startswith("Error: no index in")
    built = qa("index", CORPUS)
    assert built.exit_code == 0, built.output
    assert "published gen-000001 (lexical only" in built.output
    assert "already built" in qa("index", "--if-missing").output
    added = qa("add", EXTRA / "c_2024-03.txt", "--json")
    assert json.loads(added.stdout)["files"][0]["status"] == "added"
    assert "unchanged" in qa("add", EXTRA / "c_2024-03.txt").output
    info = json.loads(qa("info", "--json").stdout)
    assert (info["generation"], info["issues"], info["passages"]) == ("gen-000002", 3, 10)
    assert info["model"] == "lexical only"
    assert qa("verify").output.startswith("ok: gen-000002")

    ask = json.loads(qa("ask", "古籍修复体验课每期限报多少人?", "--json", "--top-k", "2").stdout)
    assert set(ask) == {"question", "answerable", "answers", "generation", "mode", "took_ms"}
    a = ask["answers"][0]
    assert set(a) >= {"text", "highlight", "score", "citation", "retrievers", "confidence"}
    assert set(a["citation"]) >= {"issue", "file", "title", "byline", "paragraph", "lines", "url"}
    assert a["citation"]["url"] == "/story/b_2024-02.txt/2#p2"
    assert len(ask["answers"]) == 2

    ev = json.loads(qa("eval", QUESTIONS, "--json").stdout)
    assert set(ev) >= {"recall@1", "recall@5", "recall@10", "mrr@10", "by_type", "unanswerable",
                       "false_refusal"}
    assert ev["unanswerable"] == {"n": 1, "refused": 1.0}
    assert ev["by_type"]["numeric"]["recall@1"] == 1.0
    text = qa("eval", QUESTIONS).output
    assert "R@1" in text and "unanswerable refused" in text


def test_user_errors_exit_non_zero_without_traceback(qa, tmp_path):
    qa("index", CORPUS)
    for args, message in [
        (("ask", ""), "Error: question is empty"),
        (("ask", "老街", "--top-k", "0"), "Error: top_k must be between 1 and 50"),
        (("eval", tmp_path / "nope.jsonl"), "Error: "),
        (("index", tmp_path / "missing-dir"), "Error: nothing to index"),
    ]:
        result = qa(*args)
        assert result.exit_code == 1, args
        assert message in result.output
        assert "Traceback" not in result.output
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "x"}\nnot json\n', "utf-8")
    assert "bad.jsonl:2: not JSON" in qa("eval", bad).output


def test_add_reports_rejected_files_and_exits_1(qa, tmp_path):
    qa("index", CORPUS)
    bad = tmp_path / "gb.txt"
    bad.write_bytes(b"\xff\xfe\xfa" * 10)
    result = qa("add", bad, EXTRA / "c_2024-03.txt")
    assert result.exit_code == 1
    assert "rejected  gb.txt: not valid UTF-8 or GB18030 text" in result.output  # named once
    assert "added     c_2024-03.txt" in result.output


def test_bad_setting_is_a_clear_error(runner):
    result = runner.invoke(cli, ["info"], env={"QA_MAX_TOP_K": "lots"})
    assert result.exit_code == 1
    assert "QA_MAX_TOP_K='lots' is not a valid int" in result.output
