"""Filters on issue metadata (newspaper, date range): validation and the per-passage test.

A passage record carries its issue's `paper`, `date` (YYYY-MM-DD) and `edition`, as the editor
gave them (None where not given). A filter keeps a passage when every condition given holds;
a passage without a date never passes a date condition, nor one without a paper a paper
condition: a filter asks for what is known, it never guesses.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from .ingest import MAX_PAPER_CHARS, MetaError, clean_meta

FIELDS = ("paper", "date_from", "date_to")


class FilterError(ValueError):
    """A filter a client cannot use (unknown field, bad date, reversed range)."""


@dataclass(frozen=True)
class Filters:
    """Conditions on a passage's issue: paper (exact, after trimming), dates inclusive."""

    paper: str | None = None
    date_from: str | None = None
    date_to: str | None = None

    def __bool__(self) -> bool:
        return any((self.paper, self.date_from, self.date_to))

    def matches(self, record: Mapping) -> bool:
        """True when a passage record (or a manifest's issue entry) meets every condition."""
        return matches(record, self.paper, self.date_from, self.date_to)

    def to_json(self) -> dict:
        """The filter as given, for echoing back to a client."""
        return {"paper": self.paper, "date_from": self.date_from, "date_to": self.date_to}


def matches(record: Mapping, paper: str | None = None, date_from: str | None = None,
            date_to: str | None = None) -> bool:
    """True when the record's paper equals `paper` and its date lies in [date_from, date_to]
    (ISO dates compare as strings); conditions left None are not checked."""
    if paper is not None and record.get("paper") != paper:
        return False
    if date_from is None and date_to is None:
        return True
    date = record.get("date")
    if not date:
        return False
    return (date_from is None or date >= date_from) and (date_to is None or date <= date_to)


def parse_filters(raw: object) -> Filters:
    """Check a client's filters (a JSON object, or query parameters as a dict); FilterError
    says what is wrong. None or {} is no filter."""
    if raw is None:
        return Filters()
    if not isinstance(raw, Mapping):
        raise FilterError("filters must be an object with paper, date_from, date_to")
    unknown = sorted(set(raw) - set(FIELDS))
    if unknown:
        raise FilterError(f"unknown filter field(s): {', '.join(map(str, unknown))}; known: "
                          f"{', '.join(FIELDS)}")
    values = {k: raw.get(k) for k in FIELDS}
    for k, v in values.items():
        if v is not None and not isinstance(v, str):
            raise FilterError(f"filters.{k} must be a string")
    checked: dict[str, str | None] = {}
    for key, kind in (("paper", "paper"), ("date_from", "date"), ("date_to", "date")):
        try:
            checked[key] = clean_meta(**{kind: values[key]})[kind]
        except MetaError as exc:
            raise FilterError(f"filters.{key}: {exc}") from None
    paper, start, end = checked["paper"], checked["date_from"], checked["date_to"]
    if start and end and start > end:
        raise FilterError(f"filters: date_from {start} is after date_to {end}")
    return Filters(paper, start, end)


__all__ = ["FIELDS", "MAX_PAPER_CHARS", "FilterError", "Filters", "matches", "parse_filters"]
