"""What the HTTP API and the MCP server both do: ask, list issues, read a story, as plain JSON.

One implementation, so a chatbot gets the same answers, citations and error messages whichever
way it calls the service; the callers only turn `OperationError` into their own error form.
"""

from __future__ import annotations

from .api_schema import issue_json, result_json, story_url
from .config import Settings
from .filters import FilterError, parse_filters
from .index import Index
from .runtime import SearcherHolder
from .search import QuestionError, Searcher, validate_question

FILTERS = ("paper", "date_from", "date_to")  # conditions on an issue's editor metadata


class OperationError(Exception):
    """A request the service answers with an error: an HTTP status and a message for the user."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def absolute(settings: Settings, path: str) -> str:
    """A site path made absolute with QA_PUBLIC_URL when it is set (else left relative)."""
    base = settings.public_url.strip().rstrip("/")
    return base + path if base else path


def ask(searcher: Searcher, settings: Settings, question: object, top_k: object = None,
        filters: object = None) -> dict:
    """The API's answer JSON; filters (paper, date_from, date_to) keep only matching issues."""
    try:
        wanted = parse_filters(filters)
        question, k = validate_question(settings, question, top_k)
        result = searcher.ask(question, k, filters=wanted or None)  # ranked among matches
    except (QuestionError, FilterError) as exc:
        raise OperationError(400, str(exc)) from None
    body = result_json(result)
    answers = body["answers"]
    for answer in answers:  # a follow-up for the cited story reads the same generation
        cite = answer["citation"]
        cite["url"] = absolute(settings, story_url(cite["file"], cite["story"],
                                                   cite["paragraph"], result.generation))
    return body


def issues(searcher: Searcher) -> dict:
    """What is indexed, issue by issue, with each issue's newspaper, date and edition if known."""
    m = searcher.index.manifest
    return {
        "generation": m["generation"],
        "mode": searcher.mode,
        "issues": [issue_json(f, meta) for f, meta in sorted(m["issues"].items())],
    }


def index_at(holder: SearcherHolder, generation: str) -> Index:
    """The index of the generation an answer named, while it is on disk; else a 404."""
    index = holder.index_at(generation)
    if index is None:
        raise OperationError(404, f"generation {generation!r} is not on this server (unknown, "
                                  "or collected since); ask again to cite the current generation")
    return index


def story(index: Index, settings: Settings, file: str, number: object) -> dict:
    """One whole story, paragraph by paragraph, from the given generation's index."""
    if isinstance(number, bool) or not isinstance(number, int) or number < 1:
        raise OperationError(400, "story must be a positive integer")
    passages = index.story(file, number)
    if not passages:
        raise OperationError(404, f"no story {number} in {file} (generation {index.generation})")
    first = passages[0]
    meta = index.manifest["issues"].get(file, {})
    return {
        "file": file, "story": number, "title": first["title"], "subtitle": first["subtitle"],
        "byline": first["byline"],
        "paper": first.get("paper", meta.get("paper")), "date": first.get("date", meta.get("date")),
        "edition": first.get("edition", meta.get("edition")),
        "url": absolute(settings, story_url(file, number, None, index.generation)),
        "generation": index.generation,
        "paragraphs": [{"paragraph": p["paragraph"], "text": p["text"], "lines": p["lines"]}
                       for p in passages],
    }
