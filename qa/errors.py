"""Index errors a user must act on: missing, corrupt, lost, mismatched, locked, unwritable."""

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


class IndexLost(IndexCorrupt):
    """CURRENT is missing or names an unusable generation while generations exist."""


class IndexWriteFailed(IndexError_):
    """A write failed at the operating system (disk full, read-only, I/O); nothing published."""
