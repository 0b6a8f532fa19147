"""MCP server on the official SDK: ask, get_story and list_issues as tools for chatbots.

`python -m qa.mcp` (or `qa mcp`) speaks MCP over stdio, for desktop assistants that start the
server themselves; `--http` serves the same tools over streamable HTTP at /mcp with the SDK's
own server (uvicorn). The index is loaded once, and a newer published generation is picked up
between calls, as the web service does.
"""

from __future__ import annotations

import argparse
import inspect
import logging
import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any
from urllib.parse import urlsplit

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.transport_security import TransportSecuritySettings
from mcp.types import CallToolResult, TextContent, ToolAnnotations
from pydantic import Field

from . import __version__, operations
from .config import Settings
from .index import IndexError_
from .runtime import SearcherHolder, without_paths
from .search import Searcher

log = logging.getLogger(__name__)
MCP_PATH = "/mcp"
LOOPBACK = ("127.0.0.1", "localhost", "::1")

INSTRUCTIONS = (
    "中文报纸档案问答。用 ask 提问(中文),回答附出处(报名、日期、版次、标题、段落、链接);"
    "answerable 为 false 时请如实说明档案里没有有把握的答案。list_issues 列出收录的报纸期次;"
    "get_story 读取被引用文章的全文。"
    " / Question answering over an archive of Chinese newspaper issues. Ask in Chinese with "
    "`ask`; every passage comes with a citation to quote. When `answerable` is false, say the "
    "archive has no confident answer. `list_issues` lists what is indexed; `get_story` reads "
    "a cited story in full.")

ASK_DOC = (
    "在中文报纸档案中检索并回答问题。返回 short(最简短的答案,如“3个”,可能为 null)、answerable"
    "(是否有把握)、confidence,以及按相关度排列的段落 passages,每段带出处 citation(报名 paper、"
    "日期 date、版次 edition、文件 file、文章编号 story、标题 title、作者 byline、段落 paragraph、"
    "链接 url)。可按报名、日期范围筛选。"
    " / Answer a question (in Chinese) from the newspaper archive. Returns `short` (the answer "
    "itself, e.g. \"3个\", or null), `answerable` (false: no confident answer, say you do not "
    "know), `confidence` (the probability, 0-1, that the best passage answers) and ranked "
    "`passages`, each with a "
    "`citation` (paper, date, edition, file, story, title, byline, paragraph, url) to cite. "
    "Optional filters keep only passages from one newspaper or a date range; issues without "
    "that metadata are then left out.")
STORY_DOC = (
    "读取一篇文章的全文(逐段),file 和 story 取自 ask 结果的 citation。"
    " / Read one whole story, paragraph by paragraph. Take `file`, `story` (and `generation`, "
    "to read exactly the version that was cited) from a citation returned by `ask`.")
ISSUES_DOC = (
    "列出档案收录的全部期次(文件、报名、日期、版次、文章数、段落数)。"
    " / List every indexed newspaper issue: file, paper, date, edition, number of stories and "
    "passages, and the index generation.")


# Parameter types with the descriptions an LLM reads (module level: the SDK evaluates the
# annotations against the module's names).
Question = Annotated[str, Field(description="问题(中文)/ the question, in Chinese, e.g. "
                                            "玉环市有几个国家4A级旅游景区?")]
TopK = Annotated[int | None, Field(description="返回段落数 / passages to return (1 to "
                                               "QA_MAX_TOP_K, 50 by default; default "
                                               "QA_DEFAULT_TOP_K, 5)")]
Paper = Annotated[str | None, Field(description="只看这份报纸 / only this newspaper (its exact "
                                                "name, as list_issues shows it)")]
DateFrom = Annotated[str | None, Field(description="起始日期 / earliest issue date, YYYY-MM-DD")]
DateTo = Annotated[str | None, Field(description="截止日期 / latest issue date, YYYY-MM-DD")]
File = Annotated[str, Field(description="期次文件 / the issue file: citation.file, e.g. "
                                        "001_83ee49fea69f0aa9.txt")]
StoryNumber = Annotated[int, Field(description="文章编号 / the story number: citation.story")]
Generation = Annotated[str | None, Field(description="索引版本 / the generation the answer "
                                                     "named (optional; default the current)")]


class Tools:
    """The tools' work, on a searcher that follows newly published generations."""

    def __init__(self, settings: Settings, holder: SearcherHolder | None = None):
        self.settings = settings
        self.holder = holder or SearcherHolder(settings)
        self._checked = 0.0
        self._lock = threading.Lock()

    def searcher(self) -> Searcher:
        """The current searcher, refreshed at most every QA_RELOAD_INTERVAL seconds."""
        now = time.monotonic()
        with self._lock:
            # an editor's `qa add` publishes a generation; look for it between calls, not on a
            # timer thread (stdio servers live as long as the assistant, mostly idle)
            if self.holder.searcher is None or now - self._checked >= max(
                    0.0, self.settings.reload_interval):
                self._checked = now
                try:
                    self.holder.refresh()
                except IndexError_ as exc:  # keep serving what is held; say why if nothing is
                    log.warning("cannot refresh the index: %s", exc)
                    if self.holder.searcher is None:
                        raise ToolError(without_paths(str(exc))) from None
        searcher = self.holder.searcher
        if searcher is None:
            raise ToolError(self.holder.error or "the index is not loaded yet")
        return searcher

    def ask(self, question: str, top_k: int | None = None, paper: str | None = None,
            date_from: str | None = None, date_to: str | None = None) -> dict[str, Any]:
        """The short answer, the refusal flag and cited passages, as the API has them."""
        filters = {k: v for k, v in (("paper", paper), ("date_from", date_from),
                                     ("date_to", date_to)) if v is not None}
        try:
            body = operations.ask(self.searcher(), self.settings, question, top_k, filters)
        except operations.OperationError as exc:
            raise ToolError(exc.message) from None
        except IndexError_ as exc:  # the search engine (Milvus) failed: say so, no paths
            raise ToolError(without_paths(str(exc))) from None
        answers = body["answers"]
        top = answers[0] if answers else None
        return {
            "question": body["question"],
            "answerable": body["answerable"],
            # the short answer is only worth saying when the archive answers at all
            "short": (top["short"] or {}).get("text") if top and body["answerable"] else None,
            "confidence": top["confidence"] if top else 0.0,
            "passages": [{"text": a["text"], "short": (a["short"] or {}).get("text"),
                          "highlight": a["highlight"], "confidence": a["confidence"],
                          "citation": a["citation"]} for a in answers],
            "generation": body["generation"],
            "mode": body["mode"],
        }

    def get_story(self, file: str, story: int, generation: str | None = None) -> dict[str, Any]:
        """One story, from the generation a citation named when given."""
        try:
            index = (operations.index_at(self.holder, generation) if generation
                     else self.searcher().index)
            return operations.story(index, self.settings, file, story)
        except operations.OperationError as exc:
            raise ToolError(exc.message) from None
        except IndexError_ as exc:  # the search engine (Milvus) failed: say so, no paths
            raise ToolError(without_paths(str(exc))) from None

    def list_issues(self) -> dict[str, Any]:
        """Every indexed issue."""
        return operations.issues(self.searcher())


class _UnknownArguments:
    """Refuses a tool call that names an argument the tool does not have, as the API refuses an
    unknown field: a misspelt `topk` silently ignored would answer another question."""

    def __init__(self, allowed: dict[str, tuple[str, ...]]):
        self.allowed = allowed

    async def __call__(self, ctx: Any, call_next: Any) -> Any:
        """Answer a tool error for unknown arguments; pass everything else on."""
        params = ctx.params or {}
        known = self.allowed.get(params.get("name")) if ctx.method == "tools/call" else None
        arguments = params.get("arguments") or {}
        unknown = sorted(set(arguments) - set(known)) if known is not None and isinstance(
            arguments, dict) else []
        if unknown:
            message = (f"unknown argument(s) {', '.join(map(repr, unknown))}; allowed: "
                       f"{', '.join(known)}")
            return CallToolResult(content=[TextContent(type="text", text=message)],
                                  is_error=True)
        return await call_next(ctx)


def build_server(settings: Settings, holder: SearcherHolder | None = None) -> MCPServer:
    """An MCP server with the archive's three tools (read-only, so annotated as such)."""
    tools = Tools(settings, holder)
    server = MCPServer("newspaper-qa", title="中文报纸档案问答 Newspaper archive QA",
                       instructions=INSTRUCTIONS, version=__version__, log_level="WARNING")
    read_only = ToolAnnotations(read_only_hint=True, open_world_hint=False)

    def ask(question: Question, top_k: TopK = None, paper: Paper = None,
            date_from: DateFrom = None, date_to: DateTo = None) -> dict[str, Any]:
        return tools.ask(question, top_k, paper, date_from, date_to)

    def get_story(file: File, story: StoryNumber,
                  generation: Generation = None) -> dict[str, Any]:
        return tools.get_story(file, story, generation)

    def list_issues() -> dict[str, Any]:
        return tools.list_issues()

    allowed = {fn.__name__: tuple(inspect.signature(fn).parameters)
               for fn in (ask, get_story, list_issues)}
    server.middleware.append(_UnknownArguments(allowed))
    server.add_tool(ask, description=ASK_DOC, title="问档案 Ask the archive",
                    annotations=read_only)
    server.add_tool(get_story, description=STORY_DOC, title="读全文 Read a story",
                    annotations=read_only)
    server.add_tool(list_issues, description=ISSUES_DOC, title="期次 List issues",
                    annotations=read_only)
    return server


_LOOPBACK_HOSTS = ["127.0.0.1:*", "localhost:*", "[::1]:*"]
_LOOPBACK_ORIGINS = ["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"]


def _security(settings: Settings, host: str) -> TransportSecuritySettings | None:
    # Host/Origin checks against DNS rebinding. On loopback the SDK's own defaults hold (only
    # loopback names), plus the public URL's host: a reverse proxy in front that keeps the
    # Host header sends that one. On another address only the public URL's host is accepted;
    # with none configured the check is off (the tools are read-only; the README says so).
    public = urlsplit(settings.public_url.strip())
    if not public.netloc:
        return None if host in LOOPBACK else TransportSecuritySettings(
            enable_dns_rebinding_protection=False)
    hosts = [public.netloc, f"{public.hostname}:*"]
    origins = [f"{public.scheme}://{public.netloc}"]
    if host in LOOPBACK:
        hosts, origins = _LOOPBACK_HOSTS + hosts, _LOOPBACK_ORIGINS + origins
    return TransportSecuritySettings(allowed_hosts=hosts, allowed_origins=origins)


@contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    # Over stdio, one stray byte on stdout breaks the protocol: anything a library prints while
    # the index and model load (from Python or C) goes to stderr instead.
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def serve(settings: Settings, http: bool = False, host: str = "127.0.0.1",
          port: int = 8001) -> None:
    """Load the index, then serve MCP over stdio, or over streamable HTTP at host:port/mcp."""
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)  # stdout is the protocol
    holder = SearcherHolder(settings)
    with _stdout_to_stderr():
        try:
            loaded = holder.refresh()
        except IndexError_ as exc:  # e.g. a lost CURRENT: the operator reads how to recover
            loaded, holder.error = None, str(exc)
    if loaded is None:  # say why once, then keep answering tool errors with it
        print(f"qa mcp: {holder.detail or holder.error}", file=sys.stderr)
    server = build_server(settings, holder)
    if not http:
        server.run("stdio")
        return
    # stateless, JSON answers: each POST stands alone, so restarts or several processes
    # behind a proxy lose no session, and no SSE stream has to pass through proxies
    server.run("streamable-http", host=host, port=port, streamable_http_path=MCP_PATH,
               stateless_http=True, json_response=True,
               max_request_body_size=settings.max_request_bytes,
               transport_security=_security(settings, host))


def main(argv: list[str] | None = None) -> None:
    """`python -m qa.mcp [--http] [--host H] [--port N]`, settings from QA_* variables."""
    parser = argparse.ArgumentParser(prog="python -m qa.mcp", description=__doc__.splitlines()[0])
    parser.add_argument("--http", action="store_true",
                        help="serve streamable HTTP at /mcp instead of stdio")
    parser.add_argument("--host", default="127.0.0.1", help="address for --http")
    parser.add_argument("--port", type=int, default=8001, help="port for --http")
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
    except ValueError as exc:
        parser.exit(1, f"Error: {exc}\n")
    serve(settings, http=args.http, host=args.host, port=args.port)


if __name__ == "__main__":
    main()
