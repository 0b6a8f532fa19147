"""The MCP server, driven by the official SDK's own client over both transports: stdio
(`python -m qa.mcp`, as a desktop assistant starts it) and streamable HTTP (`--http`)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import pytest
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client

from qa import operations
from qa.build import build
from qa.config import Settings
from qa.mcp import Tools

from .conftest import CORPUS, ROOT

Q = "古籍修复体验课每期限报多少人?"
PUBLIC = "https://qa.example.org"

Session = Callable[[Callable[[ClientSession], Awaitable[Any]]], Any]


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory) -> str:
    """The two-issue fixture corpus, built lexical only, shared by every server in this module."""
    root = tmp_path_factory.mktemp("mcp") / "index"
    build([CORPUS], Settings(index_dir=str(root), model="none"), None)
    return str(root)


def _env(index_dir: str, **extra: str) -> dict[str, str]:
    return {"QA_INDEX_DIR": index_dir, "QA_MODEL": "none", **extra}


@pytest.fixture(scope="module")
def stdio(index_dir) -> Session:
    """Run a coroutine against a fresh `python -m qa.mcp` over stdio, as an assistant would."""
    params = StdioServerParameters(command=sys.executable, args=["-m", "qa.mcp"],
                                   env=_env(index_dir), cwd=str(ROOT))

    def run(body: Callable[[ClientSession], Awaitable[Any]]) -> Any:
        async def main() -> Any:
            async with stdio_client(params) as (read, write), ClientSession(read, write) as s:
                await s.initialize()
                return await body(s)
        return anyio.run(main)
    return run


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def http(index_dir, tmp_path_factory) -> Session:
    """Run a coroutine against `python -m qa.mcp --http` on a free loopback port."""
    port = _free_port()
    log_path = tmp_path_factory.mktemp("mcp-http") / "server.log"
    log = open(log_path, "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([sys.executable, "-m", "qa.mcp", "--http", "--port", str(port)],
                            env={**os.environ, **_env(index_dir, QA_PUBLIC_URL=PUBLIC + "/")},
                            cwd=str(ROOT), stdout=log, stderr=subprocess.STDOUT)
    try:
        for _ in range(300):
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                if proc.poll() is not None:
                    raise AssertionError(log_path.read_text()) from None
                time.sleep(0.1)
        url = f"http://127.0.0.1:{port}/mcp"

        def run(body: Callable[[ClientSession], Awaitable[Any]]) -> Any:
            async def main() -> Any:
                async with streamable_http_client(url) as (read, write), \
                        ClientSession(read, write) as s:
                    await s.initialize()
                    return await body(s)
            return anyio.run(main)
        yield run
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()


TRANSPORTS = [pytest.param("stdio", marks=pytest.mark.slow), pytest.param("http",
                                                                           marks=pytest.mark.slow)]


@pytest.fixture(params=TRANSPORTS)
def session(request) -> tuple[str, Session]:
    """Each transport in turn: (its name, its runner)."""
    return request.param, request.getfixturevalue(request.param)


def _call(name: str, args: dict) -> Callable[[ClientSession], Awaitable[Any]]:
    async def body(s: ClientSession):
        return await s.call_tool(name, args)
    return body


# ---------------------------------------------------------------- one test per tool and transport

def test_tools_are_listed_with_bilingual_descriptions(session):
    _, run = session

    async def body(s: ClientSession):
        return (await s.list_tools()).tools
    tools = {t.name: t for t in run(body)}
    assert set(tools) == {"ask", "get_story", "list_issues"}
    for tool in tools.values():
        assert tool.annotations.read_only_hint is True
        assert any("\u4e00" <= ch <= "\u9fff" for ch in tool.description), tool.name
        assert " / " in tool.description  # Chinese, then English
    props = tools["ask"].input_schema["properties"]
    assert tools["ask"].input_schema["required"] == ["question"]
    assert {"question", "top_k", "paper", "date_from", "date_to"} == set(props)
    assert all(p.get("description") for p in props.values())


def test_ask(session):
    name, run = session
    r = run(_call("ask", {"question": Q, "top_k": 2}))
    assert r.is_error is False
    out = r.structured_content
    assert out["answerable"] is True and out["short"] == "20人"
    assert 0 < out["confidence"] <= 1 and len(out["passages"]) == 2
    cite = out["passages"][0]["citation"]
    assert cite["file"] == "b_2024-02.txt" and cite["story"] == 2 and cite["paragraph"] == 2
    url = "/story/b_2024-02.txt/2?generation=gen-000001#p2"
    assert cite["url"] == (PUBLIC + url if name == "http" else url)  # absolute when configured
    assert json.loads(r.content[0].text) == out  # the same, as text, for clients without schemas


def test_ask_errors_are_tool_errors_with_the_apis_messages(session):
    _, run = session

    async def body(s: ClientSession):
        return [await s.call_tool("ask", {"question": "  "}),
                await s.call_tool("ask", {"question": Q, "top_k": 0}),
                await s.call_tool("ask", {"question": Q, "date_from": "2024/01/01"}),
                await s.call_tool("ask", {"question": Q, "topk": 3})]
    empty, bad_k, bad_date, misspelt = run(body)
    assert empty.is_error and empty.content[0].text.endswith("question is empty")
    assert bad_k.is_error and bad_k.content[0].text.endswith("top_k must be between 1 and 50")
    assert bad_date.is_error and "is not a date in the form YYYY-MM-DD" in bad_date.content[0].text
    assert misspelt.is_error and misspelt.content[0].text == (
        "unknown argument(s) 'topk'; allowed: question, top_k, paper, date_from, date_to")


def test_ask_refusal_and_filters(session):
    _, run = session

    async def body(s: ClientSession):
        return [await s.call_tool("ask", {"question": "青山镇老街有多少年轻人返乡创业?"}),
                await s.call_tool("ask", {"question": Q, "paper": "人民日报"})]
    refused, filtered = run(body)
    assert refused.structured_content["answerable"] is False
    assert refused.structured_content["short"] is None
    assert refused.structured_content["passages"]  # the closest ones, still listed
    # the fixture issues carry no newspaper name: a filter on it leaves nothing
    assert filtered.structured_content["passages"] == []
    assert filtered.structured_content["answerable"] is False


def test_get_story(session):
    name, run = session

    async def body(s: ClientSession):
        return [await s.call_tool("get_story", {"file": "a_2024-01.txt", "story": 2}),
                await s.call_tool("get_story", {"file": "a_2024-01.txt", "story": 7}),
                await s.call_tool("get_story", {"file": "a_2024-01.txt", "story": 1,
                                                "generation": "gen-000001"}),
                await s.call_tool("get_story", {"file": "a_2024-01.txt", "story": 1,
                                                "generation": "gen-999999"})]
    ok, missing, pinned, gone = run(body)
    story = ok.structured_content
    assert ok.is_error is False
    assert story["title"] == "老街改造留住乡愁" and story["byline"] == "赵敏"
    assert [p["paragraph"] for p in story["paragraphs"]] == [1, 2]
    assert story["url"] == (PUBLIC if name == "http" else "") + \
        "/story/a_2024-01.txt/2?generation=gen-000001"
    assert missing.is_error
    assert missing.content[0].text.endswith("no story 7 in a_2024-01.txt (generation gen-000001)")
    assert pinned.structured_content["generation"] == "gen-000001"
    assert gone.is_error and "generation 'gen-999999' is not on this server" in gone.content[0].text


def test_list_issues(session):
    _, run = session
    r = run(_call("list_issues", {}))
    out = r.structured_content
    assert r.is_error is False and out["generation"] == "gen-000001"
    assert [i["file"] for i in out["issues"]] == ["a_2024-01.txt", "b_2024-02.txt"]
    assert out["issues"][0]["passages"] == 4
    assert {"paper", "date", "edition"} <= set(out["issues"][0])


# ---------------------------------------------------------------- in process

def test_a_generation_published_later_is_picked_up(built, settings, tmp_path):
    from qa.build import add

    from .conftest import EXTRA

    tools = Tools(settings.with_(reload_interval=0))
    assert tools.list_issues()["generation"] == "gen-000001"
    add([EXTRA], settings, None)  # an editor's `qa add` while the assistant is connected
    assert tools.ask("白云乡中心小学安装了什么?")["generation"] == "gen-000002"


def test_no_index_is_a_tool_error_that_says_what_to_do(settings):
    from mcp.server.mcpserver.exceptions import ToolError

    with pytest.raises(ToolError, match="no index has been built yet"):
        Tools(settings).list_issues()


def test_filters_keep_matching_issues(corpus_copy, settings):
    from qa.runtime import SearcherHolder

    for name, meta in {"a_2024-01.txt": {"paper": "台州日报", "date": "2024-01-05"},
                       "b_2024-02.txt": {"paper": "青山日报", "date": "2024-02-01",
                                         "edition": "A1"}}.items():
        (corpus_copy / f"{name}.meta.json").write_text(json.dumps(meta), encoding="utf-8")
    build([corpus_copy], settings, None)
    searcher = SearcherHolder(settings).refresh()
    everything = operations.ask(searcher, settings, Q, 5)
    assert everything["answers"][0]["citation"]["paper"] == "青山日报"
    only = operations.ask(searcher, settings, Q, 5, {"paper": "台州日报"})
    assert only["answers"] and {a["citation"]["paper"] for a in only["answers"]} == {"台州日报"}
    kept = operations.ask(searcher, settings, Q, 1, {"date_from": "2024-02-01",
                                                     "date_to": "2024-02-29"})
    assert len(kept["answers"]) == 1 and kept["answers"][0]["citation"]["date"] == "2024-02-01"
    assert kept["answers"][0]["id"] == everything["answers"][0]["id"]
    with pytest.raises(operations.OperationError, match="after date_to"):
        operations.ask(searcher, settings, Q, 1, {"date_from": "2024-03-01",
                                                  "date_to": "2024-02-01"})


def test_qa_mcp_command_is_the_same_server(runner, monkeypatch):
    import qa.mcp
    from qa.cli import cli

    if "mcp" not in cli.commands:
        pytest.skip("`qa mcp` is not wired into qa/cli.py yet")
    seen = {}
    monkeypatch.setattr(qa.mcp, "serve", lambda settings, **kw: seen.update(kw, s=settings))
    r = runner.invoke(cli, ["--index-dir", "/x", "mcp", "--http", "--port", "9123"])
    assert r.exit_code == 0, r.output
    assert seen["http"] is True and seen["port"] == 9123 and seen["s"].index_dir == "/x"


@pytest.mark.slow
def test_mcp_module_help_runs():
    r = subprocess.run([sys.executable, "-m", "qa.mcp", "--help"], cwd=str(ROOT),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "--http" in r.stdout


def test_a_proxy_keeping_the_public_host_reaches_a_loopback_mcp_server():
    # behind Caddy or nginx (proxy_set_header Host $host) the Host is the public one
    from qa.config import Settings
    from qa.mcp import _security

    loop = _security(Settings(public_url="https://qa.example.org"), "127.0.0.1")
    assert "qa.example.org" in loop.allowed_hosts and "127.0.0.1:*" in loop.allowed_hosts
    assert "https://qa.example.org" in loop.allowed_origins
    assert _security(Settings(public_url=""), "127.0.0.1") is None  # the SDK's loopback default
    wide = _security(Settings(public_url="https://qa.example.org"), "0.0.0.0")
    assert wide.allowed_hosts == ["qa.example.org", "qa.example.org:*"]
