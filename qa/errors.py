"""Index errors a user must act on (missing, corrupt, lost, mismatched, locked, unwritable), and
the HTTP error vocabulary every server path shares."""

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


class BackendUnavailable(IndexError_):
    """The search engine (a Milvus server) cannot be reached or failed; nothing was changed."""


# The JSON envelope's "type" per HTTP status and the security headers, for the app and for the
# errors gunicorn answers itself (qa/serve.py): here, free of Flask, so the gunicorn master can
# use them before gevent patches anything.
ERROR_TYPES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
               405: "method_not_allowed", 408: "request_timeout", 413: "payload_too_large",
               414: "uri_too_long", 417: "expectation_failed", 429: "rate_limited",
               431: "headers_too_large", 500: "internal_error", 501: "not_implemented",
               503: "not_ready"}
SECURITY_HEADERS = {
    "Content-Security-Policy": ("default-src 'none'; style-src 'self'; img-src 'self' data:; "
                                "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"),
    "X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin"}
