"""JSON API for chatbots: /api/ask, /api/issues, /api/story, /healthz, /openapi.json."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify, request

from .. import operations
from ..index import Index
from ..search import Searcher
from . import ApiError, holder_of, settings_of
from .openapi import admin_document, openapi_document

bp = Blueprint("api", __name__)

ASK_FIELDS = ("question", "top_k", "filters")  # what a POST body may hold
ASK_PARAMS = ("q", "question", "top_k", *operations.FILTERS)  # what GET's query may hold


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
    try:
        return operations.index_at(holder_of(), wanted)
    except operations.OperationError as exc:
        raise ApiError(exc.status, exc.message) from None


def _unknown(names: list[str], allowed: tuple[str, ...], where: str) -> None:
    # a misspelt field ({"topk": 3}) silently ignored gives an answer to another request
    if names:
        raise ApiError(400, f"unknown {where} {', '.join(map(repr, sorted(names)))}; "
                            f"allowed: {', '.join(allowed)}")


def _ask_params() -> tuple[object, object, object]:
    settings = settings_of()
    if request.method in ("GET", "HEAD"):  # HEAD is GET without the body
        _unknown([k for k in request.args if k not in ASK_PARAMS], ASK_PARAMS,
                 "query parameter(s)")
        question = request.args.get("q", request.args.get("question"))
        if question is None:
            raise ApiError(400, "missing query parameter q")
        filters = {k: request.args[k] for k in operations.FILTERS if k in request.args}
        raw = request.args.get("top_k")
        if raw is None:
            return question, None, filters
        try:
            return question, int(raw), filters
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
    _unknown([k for k in data if k not in ASK_FIELDS], ASK_FIELDS, "field(s)")
    if "question" not in data:
        raise ApiError(400, "missing field 'question'")
    return data["question"], data.get("top_k"), data.get("filters")


@bp.route("/api/ask", methods=["GET", "POST", "OPTIONS"])
def ask():
    """Answer a question with cited passages."""
    if request.method == "OPTIONS":
        return "", 204
    question, top_k, filters = _ask_params()
    try:
        body = operations.ask(current_searcher(), settings_of(), question, top_k, filters)
    except operations.OperationError as exc:
        raise ApiError(exc.status, exc.message) from None
    return jsonify(body)


@bp.get("/api/issues")
def issues():
    """What is indexed, issue by issue."""
    return jsonify(operations.issues(current_searcher()))


@bp.get("/api/story/<path:file>/<int:story>")
def story(file: str, story: int):
    """One whole story, paragraph by paragraph (?generation= reads the one an answer cited)."""
    try:
        return jsonify(operations.story(index_for_story(), settings_of(), file, story))
    except operations.OperationError as exc:
        raise ApiError(exc.status, exc.message) from None


@bp.get("/healthz")
def healthz():
    """200 with the generation and search mode once the index is loaded; 503 before."""
    holder = holder_of()
    searcher = holder.searcher
    if searcher is None:
        return jsonify({"status": "unavailable", "error": holder.error}), 503
    return jsonify({"status": "ok", "generation": searcher.index.generation,
                    "mode": searcher.mode, "note": holder.note,
                    "passages": searcher.index.n_passages, "error": holder.error,
                    "rate_limit": current_app.extensions["qa.limiter"].status})


def _server() -> str:
    # never the request's Host header: anyone can send one, and caches would keep it
    return settings_of().public_url.strip().rstrip("/") or "/"


@bp.get("/openapi.json")
def openapi():
    """The OpenAPI 3 description of the reader-facing API (importable as chatbot tools)."""
    return jsonify(openapi_document(_server()))


@bp.get("/openapi-admin.json")
def openapi_admin():
    """The OpenAPI 3 description of the editors' upload API (kept out of the tool document)."""
    return jsonify(admin_document(_server()))
