"""Flask application factory: settings, the shared searcher, security headers, error envelopes."""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from typing import Any

import orjson
from flask import Flask, current_app, g, jsonify, render_template, request
from flask.json.provider import DefaultJSONProvider
from werkzeug.exceptions import HTTPException

from ..config import Settings
from ..runtime import SearcherHolder

log = logging.getLogger(__name__)

CSP = ("default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
       "base-uri 'none'; frame-ancestors 'none'")
ERROR_TYPES = {400: "bad_request", 401: "unauthorized", 404: "not_found",
               405: "method_not_allowed", 413: "payload_too_large", 429: "rate_limited",
               500: "internal_error", 503: "not_ready"}


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


class RateLimiter:
    """Fixed one-minute windows per client address (per worker process)."""

    def __init__(self, per_minute: int):
        self.per_minute = per_minute
        self._lock = threading.Lock()
        self._windows: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])

    def check(self, client: str) -> int | None:
        """None when allowed, else seconds until the window resets."""
        if self.per_minute <= 0:
            return None
        now = time.monotonic()
        with self._lock:
            window = self._windows[client]
            if now - window[0] >= 60:
                window[0], window[1] = now, 0
            window[1] += 1
            if window[1] > self.per_minute:
                return max(1, int(60 - (now - window[0])))
            if len(self._windows) > 100_000:  # bound memory under address churn
                self._windows.clear()
        return None


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
    app.config.update(QA_SETTINGS=settings, DEBUG=settings.debug,
                      MAX_CONTENT_LENGTH=max(settings.max_upload_bytes, settings.max_request_bytes))
    app.json = OrjsonProvider(app)

    holder = SearcherHolder(settings)
    holder.refresh()
    app.extensions["qa.holder"] = holder
    app.extensions["qa.limiter"] = RateLimiter(settings.rate_limit_per_minute)
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
    return request.path.startswith("/api/") or request.path in ("/healthz", "/openapi.json")


def _install_hooks(app: Flask) -> None:
    @app.before_request
    def _limits():
        g.started = time.perf_counter()
        if not request.path.startswith("/api/") or request.method == "OPTIONS":
            return None
        wait = current_app.extensions["qa.limiter"].check(request.remote_addr or "-")
        if wait is not None:
            return error_response(429, "too many requests; slow down",
                                  {"Retry-After": str(wait)})
        return None

    @app.after_request
    def _headers(resp):
        resp.headers.setdefault("Content-Security-Policy", CSP)
        resp.headers.setdefault("X-Content-Type-Options", "nosniff")
        resp.headers.setdefault("X-Frame-Options", "DENY")
        resp.headers.setdefault("Referrer-Policy", "same-origin")
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

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        status = exc.code or 500
        message = "request body is too large" if status == 413 else (exc.description or exc.name)
        if _is_api():
            allow = [v for k, v in exc.get_headers() if k == "Allow"]
            return error_response(status, message, {"Allow": allow[0]} if allow else None)
        return render_template("error.html", status=status, message=message), status

    @app.errorhandler(Exception)
    def _crash(exc: Exception):
        log.exception("unhandled error on %s", request.path)
        if _is_api():
            return error_response(500, "internal error; it has been logged")
        return render_template("error.html", status=500, message="服务器内部错误"), 500
