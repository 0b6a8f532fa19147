"""The reader's web form: GET /?q=… results with highlights and citations, story pages, and the
Chinese error pages every non-API path gets."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, Response, abort, current_app, render_template, request
from markupsafe import Markup, escape

from ..api_schema import story_url
from ..filters import FIELDS as FILTER_FIELDS
from ..filters import FilterError, parse_filters
from ..search import QuestionError, Result, Searcher, validate_question
from . import holder_of, settings_of
from .archive import ArchiveCache, citation_source, date_range

bp = Blueprint("ui", __name__)

# Each status a reader can meet: a heading and what to do about it. A Chinese description given
# to abort() (a missing story) replaces the default text; Werkzeug's English ones never show.
ERROR_TEXT = {
    400: ("请求有误", "这个请求无法处理，请检查链接或重新提问。"),
    404: ("找不到这个页面", "链接可能有误，或者内容已经不在档案中。"),
    405: ("不支持这种请求", "这个地址只能用浏览器直接打开。"),
    408: ("请求超时", "请求内容没有按时送达，请重试。"),
    413: ("提交的内容太大", "请缩短问题后再试。"),
    414: ("网址太长", "问题太长了，请缩短后再试。"),
    429: ("请求太频繁", "请求太频繁，请稍后再试。"),
    431: ("请求头太大", "请求头太大，请清除这个网站的 Cookie 后重试。"),
    500: ("服务器出错了", "服务器内部错误，已经记录下来，请稍后再试。"),
    503: ("暂时无法提问", "档案索引尚未就绪，请稍后再试。"),
}
_CJK = re.compile(r"[\u4e00-\u9fff]")


def error_page(status: int, description: str | None = None,
               headers: dict[str, str] | None = None) -> Response:
    """The reader's error page for a status, in Chinese, in the page's style."""
    title, text = ERROR_TEXT.get(status, ("出错了", "请求没有完成，请稍后再试。"))
    if description and _CJK.search(description):
        text = description
    page = render_template("error.html", status=status, title=title, message=text)
    return current_app.response_class(page, status, headers or {}, mimetype="text/html")


def highlight_html(text: str, span: tuple[int, int] | None, terms: list[str],
                   short: tuple[int, int] | None = None) -> Markup:
    """Escape text; wrap the best sentence in <mark class=best>, the short answer in
    <strong class=short> and question terms in <b> (Latin case-insensitively: 4a marks 4A)."""
    pattern = (re.compile("|".join(re.escape(t) for t in sorted(terms, key=len, reverse=True)),
                          re.IGNORECASE) if terms else None)

    def marked(part: str) -> Markup:
        if pattern is None:
            return escape(part)
        out, pos = [], 0
        for m in pattern.finditer(part):
            out += [escape(part[pos:m.start()]), Markup("<b>"), escape(m.group()), Markup("</b>")]
            pos = m.end()
        out.append(escape(part[pos:]))
        return Markup("").join(out)

    def bolded(x: int, y: int) -> Markup:  # text[x:y], the part inside the short answer bold
        a, b = (max(x, short[0]), min(y, short[1])) if short else (y, y)
        if a >= b:
            return marked(text[x:y])
        return (marked(text[x:a]) + Markup('<strong class="short">') + marked(text[a:b])
                + Markup("</strong>") + marked(text[b:y]))

    if not span or not 0 <= span[0] < span[1] <= len(text):
        return bolded(0, len(text))
    a, b = span
    out = [bolded(0, a), Markup('<mark class="best">'), bolded(a, b), Markup("</mark>"),
           bolded(b, len(text))]
    return Markup("").join(out)


def reader_top_k(raw: str | None) -> int:
    """The number of results a page asks for (?top_k=), kept within 1..max_top_k; the default
    when absent or not a number (a reader's edited link is corrected, not refused)."""
    s = settings_of()
    try:
        wanted = int(raw) if raw is not None else s.default_top_k
    except ValueError:
        wanted = s.default_top_k
    return max(1, min(wanted, s.max_top_k))


def reader_filters() -> dict[str, str]:
    """The filters a page was asked with (?paper=, ?date_from=, ?date_to=), empty ones left out
    (the form sends every field)."""
    return {k: v.strip() for k in FILTER_FIELDS if (v := request.args.get(k, "")).strip()}


def results_url(q: str, top_k: int | None = None, anchor: str = "",
                filters: dict[str, str] | None = None) -> str:
    """The bookmarkable results page of a question (top_k only when not the default)."""
    params = {"q": q}
    if top_k and top_k != settings_of().default_top_k:
        params["top_k"] = str(top_k)
    params.update(filters or {})
    return f"/?{urlencode(params)}{anchor}"


def cite_url(record: dict, generation: str, q: str, top_k: int,
             filters: dict[str, str] | None = None) -> str:
    """The story page of a cited passage, pinned to its generation, carrying the question (and
    how it was asked) back."""
    params: dict = {"p": record["paragraph"], "generation": generation, "q": q}
    if top_k != settings_of().default_top_k:
        params["top_k"] = top_k
    params.update(filters or {})
    url = story_url(record["file"], record["story"])
    return f"{url}?{urlencode(params)}#p{record['paragraph']}"


def next_top_k(shown: int, top_k: int) -> int | None:
    """How many results the 更多结果 link asks for, or None when there are no more to show."""
    most = settings_of().max_top_k
    if shown < top_k or top_k >= most:
        return None
    return min(max(2 * top_k, 10), most)


def _question_error(exc: QuestionError, q: str) -> str:
    if not q.strip():
        return "请输入问题。"
    limit = settings_of().max_question_chars
    if len(q.strip()) > limit:
        return f"问题太长（{len(q.strip())} 个字），请缩短到 {limit} 个字以内。"
    return f"无法处理这个问题：{exc}"


def _ask(searcher: Searcher, question: str, top_k: int, wanted: Any) -> Result:
    # the searcher ranks only passages of issues that meet the filters
    return searcher.ask(question, top_k, filters=wanted or None)


@bp.get("/")
def index():
    """The question form, and the results when ?q= is given (bookmarkable)."""
    q = request.args.get("q")
    top_k = reader_top_k(request.args.get("top_k"))
    filters = reader_filters()
    holder = holder_of()
    searcher = holder.searcher
    ctx: dict = {"q": q or "", "result": None, "error": None, "archive": None, "more": None,
                 "top_k": top_k, "filters": filters, "highlight_html": highlight_html,
                 "cite_url": cite_url, "citation_source": citation_source,
                 "results_url": results_url, "date_range": date_range,
                 "max_chars": settings_of().max_question_chars, "not_ready": searcher is None,
                 # a discreet notice, no more: the reason is for /healthz and the CLI
                 "lexical_only": searcher is not None and searcher.mode != "dense"}
    status = 200
    if searcher is not None:  # the summary, and the papers and dates the filters offer
        cache = current_app.extensions.setdefault("qa.archive", ArchiveCache())
        ctx["archive"] = cache.get(searcher, examples=q is None)
    if q is not None:
        try:
            question, top_k = validate_question(settings_of(), q, top_k)
            wanted = parse_filters(filters) if filters else None
            if searcher is None:
                ctx["error"] = "档案索引尚未就绪，请稍后再试。"
                status = 503
            else:
                result = _ask(searcher, question, top_k, wanted)
                ctx["result"] = result
                ctx["more"] = next_top_k(len(result.answers), top_k)
        except QuestionError as exc:
            ctx["error"] = _question_error(exc, q)
            status = 400
        except FilterError as exc:
            # the date rule in Chinese when a date is at fault, else what was wrong
            ctx["error"] = ("筛选条件有误：日期请按 2024-03-05 的格式填写，开始日期不能晚于"
                            "结束日期。" if "date" in str(exc) else f"筛选条件有误：{exc}")
            status = 400
    return render_template("index.html", **ctx), status


@bp.get("/story/<path:file>/<int:story>")
def story(file: str, story: int):
    """A whole story with the cited paragraph marked (anchor #pN scrolls to it); ?generation=
    shows it as the generation that cited it, while that generation is on disk; ?q= keeps the
    reader's question and links back to its results."""
    holder = holder_of()
    wanted = request.args.get("generation")
    index = holder.index_at(wanted) if wanted else None
    searcher = holder.searcher
    if wanted and index is None:
        abort(404, "引用这篇报道的档案版本已不在服务器上，请重新提问。")
    if index is None:
        if searcher is None:
            abort(503)
        index = searcher.index
    passages = index.story(file, story)
    if not passages:
        abort(404, "档案中没有这篇报道，链接可能有误。")
    q = (request.args.get("q") or "").strip()
    back = results_url(q, reader_top_k(request.args.get("top_k")),
                       filters=reader_filters()) if q else None
    return render_template("story.html", passages=passages, first=passages[0],
                           cited=request.args.get("p", type=int), file=file, q=q, back=back,
                           source=citation_source(passages[0]))
