"""The reader's web form: GET /?q=… results with highlights and citations, and story pages."""

from __future__ import annotations

import re

from flask import Blueprint, abort, render_template, request
from markupsafe import Markup, escape

from ..api_schema import story_url
from ..search import QuestionError, validate_question
from . import holder_of, settings_of

bp = Blueprint("ui", __name__)


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


@bp.get("/")
def index():
    """The question form, and the results when ?q= is given (bookmarkable)."""
    q = request.args.get("q")
    holder = holder_of()
    ctx = {"q": q or "", "result": None, "error": None, "note": holder.note,
           "highlight_html": highlight_html, "story_url": story_url}
    status = 200
    if q is not None:
        try:
            question, top_k = validate_question(settings_of(), q, None)
            searcher = holder.searcher
            if searcher is None:
                ctx["error"] = "索引尚未就绪,请稍后再试。"
                status = 503
            else:
                ctx["result"] = searcher.ask(question, top_k)
        except QuestionError as exc:
            ctx["error"] = {"question is empty": "请输入问题。"}.get(str(exc), str(exc))
            status = 400
    ctx["searcher"] = holder.searcher
    return render_template("index.html", **ctx), status


@bp.get("/story/<path:file>/<int:story>")
def story(file: str, story: int):
    """A whole story with the cited paragraph marked (anchor #pN scrolls to it); ?generation=
    shows it as the generation that cited it, while that generation is on disk."""
    holder = holder_of()
    wanted = request.args.get("generation")
    index = holder.index_at(wanted) if wanted else None
    searcher = holder.searcher
    if wanted and index is None:
        abort(404, "引用这篇报道的索引版本已不在服务器上,请重新提问。")
    if index is None:
        if searcher is None:
            abort(503, "索引尚未就绪")
        index = searcher.index
    passages = index.story(file, story)
    if not passages:
        abort(404, "没有这篇报道")
    cited = request.args.get("p", type=int)
    return render_template("story.html", passages=passages, first=passages[0], cited=cited,
                           file=file, searcher=searcher, note=holder_of().note)
