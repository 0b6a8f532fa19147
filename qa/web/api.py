"""JSON API for chatbots: /api/ask, /api/issues, /api/story, /healthz, /openapi.json."""

from __future__ import annotations

from flask import Blueprint, jsonify, request

from ..api_schema import result_json, story_url
from ..index import Index
from ..search import QuestionError, Searcher, validate_question
from . import ApiError, holder_of, settings_of
from .openapi import openapi_document

bp = Blueprint("api", __name__)


def current_searcher() -> Searcher:
    """The searcher for this request (held to the end of it), or a 503 error."""
    holder = holder_of()
    searcher = holder.searcher
    if searcher is None:
        raise ApiError(503, holder.error or "the index is not loaded yet",
                       {"Retry-After": "5"})
    return searcher


def index_for_story() -> Index:
    """The index a story look-up reads: the generation named by ?generation= (the one an answer
    cited, while it is on disk), else the current one."""
    wanted = request.args.get("generation")
    if not wanted:
        return current_searcher().index
    index = holder_of().index_at(wanted)
    if index is None:
        raise ApiError(404, f"generation {wanted!r} is not on this server (unknown, or "
                            "collected since); ask again to cite the current generation")
    return index


def _ask_params() -> tuple[object, object]:
    settings = settings_of()
    if request.method in ("GET", "HEAD"):  # HEAD is GET without the body
        question = request.args.get("q", request.args.get("question"))
        if question is None:
            raise ApiError(400, "missing query parameter q")
        raw = request.args.get("top_k")
        if raw is None:
            return question, None
        try:
            return question, int(raw)
        except ValueError:
            raise ApiError(400, "top_k must be an integer") from None
    if request.content_length is not None and request.content_length > settings.max_request_bytes:
        raise ApiError(413, f"request body is over {settings.max_request_bytes} bytes")
    if not request.is_json:
        raise ApiError(400, "body must be JSON (Content-Type: application/json)")
    data = request.get_json(silent=True)
    if data is None:
        raise ApiError(400, "body is not valid JSON")
    if not isinstance(data, dict):
        raise ApiError(400, "body must be a JSON object")
    if "question" not in data:
        raise ApiError(400, "missing field 'question'")
    return data["question"], data.get("top_k")


@bp.route("/api/ask", methods=["GET", "POST", "OPTIONS"])
def ask():
    """Answer a question with cited passages."""
    if request.method == "OPTIONS":
        return "", 204
    question, top_k = _ask_params()
    try:
        validate_question(settings_of(), question, top_k)
        result = current_searcher().ask(question, top_k)  # type: ignore[arg-type]
    except QuestionError as exc:
        raise ApiError(400, str(exc)) from None
    body = result_json(result)
    for answer in body["answers"]:  # a follow-up for the cited story reads the same generation
        cite = answer["citation"]
        cite["url"] = story_url(cite["file"], cite["story"], cite["paragraph"],
                                result.generation)
    return jsonify(body)


@bp.get("/api/issues")
def issues():
    """What is indexed, issue by issue."""
    searcher = current_searcher()
    m = searcher.index.manifest
    return jsonify({
        "generation": m["generation"],
        "mode": searcher.mode,
        "issues": [{"file": f, "issue": f.rsplit(".", 1)[0], "sha256": meta["sha256"],
                    "stories": meta["stories"], "passages": meta["passages"]}
                   for f, meta in sorted(m["issues"].items())],
    })


@bp.get("/api/story/<path:file>/<int:story>")
def story(file: str, story: int):
    """One whole story, paragraph by paragraph (?generation= reads the one an answer cited)."""
    index = index_for_story()
    passages = index.story(file, story)
    if not passages:
        raise ApiError(404, f"no story {story} in {file} (generation {index.generation})")
    first = passages[0]
    return jsonify({
        "file": file, "story": story, "title": first["title"], "subtitle": first["subtitle"],
        "byline": first["byline"], "url": story_url(file, story, None, index.generation),
        "generation": index.generation,
        "paragraphs": [{"paragraph": p["paragraph"], "text": p["text"], "lines": p["lines"]}
                       for p in passages],
    })


@bp.get("/healthz")
def healthz():
    """200 with the generation and search mode once the index is loaded; 503 before."""
    holder = holder_of()
    searcher = holder.searcher
    if searcher is None:
        return jsonify({"status": "unavailable", "error": holder.error}), 503
    return jsonify({"status": "ok", "generation": searcher.index.generation,
                    "mode": searcher.mode, "note": holder.note,
                    "passages": searcher.index.n_passages, "error": holder.error})


@bp.get("/openapi.json")
def openapi():
    """The OpenAPI 3 description of this API (importable as a chatbot tool)."""
    # never the request's Host header: anyone can send one, and caches would keep it
    return jsonify(openapi_document(settings_of().public_url.rstrip("/") or "/"))
