"""The JSON shape of an answer, shared by `qa ask --json` and the HTTP API."""

from __future__ import annotations

from urllib.parse import quote

from .search import Answer, Result


def story_url(file: str, story: int, paragraph: int | None = None,
              generation: str | None = None) -> str:
    """Path of the story page, anchored at a paragraph; pinned to a generation when given."""
    url = f"/story/{quote(file)}/{story}"
    if generation:
        url += f"?generation={generation}"
    return f"{url}#p{paragraph}" if paragraph else url


def answer_json(a: Answer) -> dict:
    """One answer with its citation."""
    r = a.record
    return {
        "id": a.passage_id,
        "text": r["text"],
        "highlight": a.highlight,
        "highlight_span": list(a.highlight_span),
        "terms": a.terms,
        "score": round(a.score, 6),
        "confidence": a.confidence,
        "citation": {
            "issue": r["file"].rsplit(".", 1)[0],
            "file": r["file"],
            # the editor's metadata; None where none was given (never guessed from the text)
            "paper": r.get("paper"),
            "date": r.get("date"),
            "edition": r.get("edition"),
            "title": r["title"],
            "byline": r["byline"],
            "story": r["story"],
            "paragraph": r["paragraph"],
            "lines": r["lines"],
            "url": story_url(r["file"], r["story"], r["paragraph"]),
        },
        "retrievers": a.retrievers,
        "short": short_json(a),
    }


def issue_json(file: str, meta: dict) -> dict:
    """One `/api/issues` item from a manifest's issue entry: what the archive holds of it."""
    return {"file": file, "issue": file.rsplit(".", 1)[0], "sha256": meta["sha256"],
            "paper": meta.get("paper"), "date": meta.get("date"), "edition": meta.get("edition"),
            "stories": meta["stories"], "passages": meta["passages"]}


def short_json(a: Answer) -> dict | None:
    """The short answer: its text and [start, end) offsets into the passage, or None."""
    if a.short is None:
        return None
    start, end = a.short
    return {"text": a.record["text"][start:end], "span": [start, end]}


def result_json(result: Result) -> dict:
    """A whole result: answers, the refusal flag, the generation it came from."""
    return {
        "question": result.question,
        "answerable": result.answerable,
        "answers": [answer_json(a) for a in result.answers],
        "generation": result.generation,
        "mode": result.mode,
        "took_ms": result.took_ms,
    }
