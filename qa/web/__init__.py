"""Flask application factory: settings, the shared searcher, security headers, error envelopes."""

from __future__ import annotations

import logging
import math
import threading
import time
from typing import Any

import orjson
from flask import Flask, Request, current_app, g, jsonify, request
from flask.json.provider import DefaultJSONProvider
from limits import RateLimitItemPerMinute
from limits.storage import MemoryStorage, storage_from_string
from limits.strategies import FixedWindowRateLimiter
from werkzeug.exceptions import ClientDisconnected, HTTPException, RequestEntityTooLarge
from werkzeug.utils import cached_property
from werkzeug.wsgi import LimitedStream, get_input_stream

from ..config import Settings
from ..errors import ERROR_TYPES, SECURITY_HEADERS, BackendUnavailable
from ..runtime import SearcherHolder
from .ratelimit import client_address, default_storage_uri, parse_networks

log = logging.getLogger(__name__)

UNLIMITED_PREFIXES = ("/healthz", "/static/")  # probes and the stylesheet are never counted


class OrjsonProvider(DefaultJSONProvider):
    """JSON via orjson: UTF-8 Chinese (never \\uXXXX), key order kept, ~10x faster dumps."""

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        return orjson.dumps(obj, option=orjson.OPT_NON_STR_KEYS).decode()

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        return orjson.loads(s)

    def response(self, *args: Any, **kwargs: Any):
        obj = args[0] if len(args) == 1 else (args or kwargs)
        return self._app.response_class(orjson.dumps(obj, option=orjson.OPT_NON_STR_KEYS),
                                        mimetype="application/json")


class StrictMaxStream(LimitedStream):
    """A body of unknown length (chunked) read up to a maximum, refused past it.

    Werkzeug's readall() stops at the maximum without telling a body of exactly that size from
    a longer one, so request.get_data() cut a chunked body short silently (a misleading 400).
    """

    def __init__(self, stream: Any, limit: int):
        super().__init__(stream, limit, is_max=True)
        self._raw = stream

    def readall(self) -> bytes:
        """The whole body, or 413 when a byte follows the maximum."""
        out = super().readall()
        if self.is_exhausted and self._raw.read(1):
            raise RequestEntityTooLarge()
        return out


class QARequest(Request):
    """Flask's request, with body limits enforced on the bytes read whatever the framing."""

    @cached_property
    def stream(self) -> Any:
        """The body stream: Content-Length checked up front, a chunked body as it is read."""
        limit = self.max_content_length
        if (self.content_length is None and limit is not None
                and self.environ.get("wsgi.input_terminated")):
            return StrictMaxStream(self.environ["wsgi.input"], limit)
        return get_input_stream(self.environ, max_content_length=limit)


class ApiError(Exception):
    """An error answered with the JSON envelope {"error": {"code", "type", "message"}}."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


def error_response(status: int, message: str, headers: dict[str, str] | None = None):
    """The one JSON error envelope used everywhere under /api."""
    resp = jsonify({"error": {"code": status, "type": ERROR_TYPES.get(status, "error"),
                              "message": message}})
    resp.status_code = status
    resp.headers.update(headers or {})
    return resp


def _poll_generations(app: Flask, holder: SearcherHolder, interval: float) -> None:
    # Moves this worker to a newly published generation (from `qa add` or an upload) without a
    # restart; the old Searcher stays alive for requests that already hold it.
    while True:
        time.sleep(interval)
        try:
            holder.refresh()
        except Exception:  # pragma: no cover - logged, never kills the poller
            log.exception("generation refresh failed")


def create_app(settings: Settings | None = None, **overrides: Any) -> Flask:
    """Build the app: defaults < QA_* environment < `settings`/overrides; loads the index once."""
    settings = settings.with_(**overrides) if settings else Settings.from_env(**overrides)
    app = Flask(__name__)
    app.request_class = QARequest
    # The request limit is the default for every body, however it is framed (a chunked body
    # has no Content-Length): Werkzeug counts the bytes actually read and answers 413. Only
    # the admin upload raises it, per request, in _body_limit.
    app.config.update(QA_SETTINGS=settings, DEBUG=settings.debug,
                      MAX_CONTENT_LENGTH=settings.max_request_bytes)
    app.json = OrjsonProvider(app)

    holder = SearcherHolder(settings)
    holder.refresh()
    app.extensions["qa.holder"] = holder
    app.extensions["qa.limiter"] = RateLimit(settings)
    if settings.reload_interval > 0:
        threading.Thread(target=_poll_generations, args=(app, holder, settings.reload_interval),
                         daemon=True, name="qa-generation-poller").start()

    from .admin import bp as admin_bp
    from .api import bp as api_bp
    from .ui import bp as ui_bp

    app.register_blueprint(ui_bp)
    app.register_blueprint(api_bp)
    app.register_blueprint(admin_bp)
    _install_hooks(app)
    return app


def settings_of() -> Settings:
    """The running app's settings."""
    return current_app.config["QA_SETTINGS"]


def holder_of() -> SearcherHolder:
    """The running app's searcher holder."""
    return current_app.extensions["qa.holder"]


def _is_api() -> bool:
    return request.path.startswith("/api/") or request.path in ("/healthz", "/openapi.json",
                                                                "/openapi-admin.json")


class RateLimit:
    """One fixed one-minute window per client over every page and API call (not /healthz,
    /static, CORS preflights), counted by the `limits` library in storage that every worker
    shares (qa/web/ratelimit.py), so the documented limit is what a client gets."""

    def __init__(self, settings: Settings):
        self.enabled = settings.rate_limit_per_minute > 0
        self.item = RateLimitItemPerMinute(max(1, settings.rate_limit_per_minute))
        uri = settings.rate_limit_storage or default_storage_uri(settings.index_dir)
        self.window = FixedWindowRateLimiter(storage_from_string(uri))
        self.proxies = parse_networks(settings.trusted_proxies)
        self._fallback: FixedWindowRateLimiter | None = None
        self.status = "shared" if self.enabled else "off"

    def check(self):
        """None when the request may go on, else the 429 answer."""
        if (not self.enabled or request.method == "OPTIONS"
                or request.path.startswith(UNLIMITED_PREFIXES)):
            return None
        client = client_address(request.remote_addr, request.headers.getlist("X-Forwarded-For"),
                                self.proxies)
        try:
            window = self._fallback or self.window
            if window.hit(self.item, "qa", client):
                return None
            reset, _ = window.get_window_stats(self.item, "qa", client)
        except Exception:  # a broken counter store must not take the service down
            # ... nor switch limits off: count in this worker's memory from now on (each
            # worker then allows the limit on its own) and say so in /healthz
            log.exception("rate-limit storage failed; counting per worker from now on")
            self._fallback = FixedWindowRateLimiter(MemoryStorage())
            self.status = "per worker (the shared counter store failed; see the log)"
            return self.check()
        wait = str(max(1, math.ceil(reset - time.time())))
        if _is_api():
            return error_response(429, "too many requests; slow down", {"Retry-After": wait})
        from .ui import error_page  # the reader's Chinese page, like every other non-API error

        return error_page(429, headers={"Retry-After": wait})


def _install_hooks(app: Flask) -> None:
    @app.before_request
    def _limits():
        g.started = time.perf_counter()
        return current_app.extensions["qa.limiter"].check()

    @app.before_request
    def _body_limit():
        if request.endpoint == "admin.upload":  # the one route that takes files
            request.max_content_length = settings_of().max_upload_bytes

    @app.after_request
    def _headers(resp):
        for name, value in SECURITY_HEADERS.items():
            resp.headers.setdefault(name, value)
        origins = [o.strip() for o in settings_of().cors_origins.split(",") if o.strip()]
        origin = request.headers.get("Origin")
        if origins and origin and request.path.startswith("/api/") and (
                "*" in origins or origin in origins):
            resp.headers["Access-Control-Allow-Origin"] = "*" if "*" in origins else origin
            resp.headers["Access-Control-Allow-Headers"] = "Content-Type, Authorization"
            resp.headers["Access-Control-Allow-Methods"] = "GET, POST, OPTIONS"
            resp.headers["Vary"] = "Origin"
        return resp

    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError):
        return error_response(exc.status, exc.message, exc.headers)

    @app.errorhandler(TimeoutError)
    def _slow_client(exc: TimeoutError):
        # the server's socket timeout fired while reading the body (QA_CLIENT_TIMEOUT)
        log.info("client too slow on %s: %s", request.path, exc)
        message = "the request body stopped arriving"
        if _is_api():
            return error_response(408, message)
        from .ui import error_page

        return error_page(408)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        if isinstance(exc, ClientDisconnected) and isinstance(exc.__context__, TimeoutError):
            return _slow_client(exc.__context__)
        status = exc.code or 500
        if status == 413:
            limit = request.max_content_length
            message = (f"request body is over {limit} bytes" if limit
                       else "request body is too large")
        else:
            message = exc.description or exc.name
        allow = [v for k, v in exc.get_headers() if k == "Allow"]
        if _is_api():
            return error_response(status, message, {"Allow": allow[0]} if allow else None)
        from .ui import error_page

        return error_page(status, exc.description, {"Allow": allow[0]} if allow else None)

    @app.errorhandler(BackendUnavailable)
    def _backend_down(exc: BackendUnavailable):
        # the Milvus server went away mid-request: not the client's fault, and not a crash
        log.error("%s: %s", request.path, exc)
        if _is_api():
            return error_response(503, "the archive's search engine cannot be reached; try "
                                  "again shortly", {"Retry-After": "5"})
        from .ui import error_page

        return error_page(503)

    @app.errorhandler(Exception)
    def _crash(exc: Exception):
        log.exception("unhandled error on %s", request.path)
        if _is_api():
            return error_response(500, "internal error; it has been logged")
        from .ui import error_page

        return error_page(500)
