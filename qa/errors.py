"""Index errors a user must act on: missing, corrupt, mismatched, locked."""

from __future__ import annotations


class IndexError_(RuntimeError):
    """Base for index problems users must act on (missing, corrupt, mismatched, locked)."""


class IndexMissing(IndexError_):
    """No published generation in the index directory."""


class IndexCorrupt(IndexError_):
    """A generation file is missing, truncated or altered."""


class IndexMismatch(IndexError_):
    """The index and the running configuration (model, tokenizer, format) disagree."""


class IndexLocked(IndexError_):
    """Another writer holds the index lock."""
