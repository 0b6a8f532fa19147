"""Run the app under gunicorn with gevent workers: each worker loads the index once and holds
many connections, so slow or stalled clients wait on the network without taking a worker."""

from __future__ import annotations

import html
from typing import Any

import gevent
import orjson
from gunicorn.app.base import BaseApplication
from gunicorn.workers.ggevent import GeventWorker

from .config import Settings

# The same headers the app sets (kept literal here: importing qa.web would pull Flask into the
# master before the fork, and gevent must patch first).
SECURITY_HEADERS = {
    "Content-Security-Policy": ("default-src 'none'; style-src 'self'; img-src 'self' data:; "
                                "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"),
    "X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin"}
ERROR_TYPES = {400: "bad_request", 403: "forbidden", 408: "request_timeout",
               414: "uri_too_long", 417: "expectation_failed", 431: "headers_too_large",
               500: "internal_error", 501: "not_implemented"}
REASONS = {400: "Bad Request", 403: "Forbidden", 408: "Request Timeout", 414: "URI Too Long",
           417: "Expectation Failed", 431: "Request Header Fields Too Large",
           500: "Internal Server Error", 501: "Not Implemented"}


def request_line_limit(max_question_chars: int) -> int:
    """Bytes of request line that a GET of the longest allowed question needs: every character
    percent-encoded from up to 4 UTF-8 bytes (12 bytes), plus method, path, top_k and version.
    Gunicorn accepts at most 8190; longer questions still go through POST."""
    return min(8190, 12 * max_question_chars + 256)


def error_page(status: int, message: str, api: bool) -> bytes:
    """A complete HTTP/1.1 error response for errors raised before the app sees the request:
    the JSON envelope under /api (and when the path is unknown), a small page elsewhere."""
    if api:
        body = orjson.dumps({"error": {"code": status,
                                       "type": ERROR_TYPES.get(status, "error"),
                                       "message": message}})
        kind = "application/json"
    else:
        body = (f'<!doctype html><html lang="zh-CN"><meta charset="utf-8"><title>{status}</title>'
                f"<h1>{status}</h1><p>{html.escape(message)}</p></html>").encode()
        kind = "text/html; charset=utf-8"
    head = [f"HTTP/1.1 {status} {REASONS.get(status, 'Error')}", "Connection: close",
            f"Content-Type: {kind}", f"Content-Length: {len(body)}",
            *(f"{k}: {v}" for k, v in SECURITY_HEADERS.items())]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


class _Capture:
    """Stands in for the client socket while gunicorn writes its HTML error: keeps the bytes."""

    def __init__(self) -> None:
        self.data = b""

    def gettimeout(self) -> float:
        return 0.0

    def setblocking(self, flag: bool) -> None:
        pass

    def sendall(self, data: bytes) -> None:
        self.data += data

    send = sendall


class Worker(GeventWorker):
    """Gevent worker with a socket timeout on every connection and the envelope on its errors.

    Gevent bounds the wait for request headers with `keepalive` (gunicorn's timeout_ctx); the
    same number as a socket timeout bounds every later silence: a body that stops arriving, an
    answer nobody reads. A stalled connection costs one greenlet until then, never a worker.
    """

    def handle(self, listener, client, addr) -> None:
        """Serve one connection under the read/write timeout (QA_CLIENT_TIMEOUT)."""
        client.settimeout(float(self.cfg.keepalive))
        # GeventWorker.handle would make the socket blocking again (no timeout): skip it
        super(GeventWorker, self).handle(listener, client, addr)

    def handle_request(self, listener_name, req, sock, addr) -> bool:
        """Serve one request, then let every other connection with a request waiting go first.

        Searches are CPU-bound and never yield: without this, a keep-alive connection whose
        next request is already there is served again at once, and at 16 connections a few
        of them starved the rest (p99 0.7-1.7 s against 50-100 ms).
        """
        try:
            return super().handle_request(listener_name, req, sock, addr)
        finally:
            gevent.idle()

    def handle_error(self, req, client, addr, exc) -> None:
        """Gunicorn's own 400/414/431/500 with the JSON envelope and the security headers."""
        # gunicorn chooses the status and logs; its HTML page goes to a capture, not the client
        capture = _Capture()
        super().handle_error(req, capture, addr, exc)
        try:
            status = int(capture.data.split(b" ", 2)[1])
        except (IndexError, ValueError):
            status = 500
        if status == 414:
            message = "the request line is too long; send long questions with POST"
        elif status == 431:
            message = "the request headers are too large"
        elif status >= 500:
            message = "internal error; it has been logged"
        else:
            message = f"malformed request: {str(exc)[:200]}"
        path = getattr(req, "path", None)
        api = path is None or path.startswith("/api/") or path in ("/healthz", "/openapi.json")
        try:
            client.sendall(error_page(status, message, api))
        except OSError:
            self.log.debug("could not send the error response")


class _Gunicorn(BaseApplication):
    def __init__(self, settings: Settings, options: dict[str, Any]):
        self.settings = settings
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            if key in self.cfg.settings and value is not None:
                self.cfg.set(key, value)

    def load(self):
        from .encoders import encoder_threads
        from .web import create_app

        # Runs in each worker after the fork: each gets its share of the cores, so workers x
        # encoder threads never exceed them (more OpenMP threads than cores spin: 3.5x slower).
        threads = encoder_threads(self.settings.encoder_threads,
                                  processes=int(self.options["workers"]))
        return create_app(self.settings.with_(encoder_threads=threads))


def gunicorn_options(settings: Settings, host: str, port: int, workers: int) -> dict[str, Any]:
    """The gunicorn configuration `qa serve` runs with."""
    return {
        "bind": f"{host}:{port}",
        "workers": max(1, workers),
        # gevent: a worker holds up to worker_connections connections, so slow or stalled
        # clients cannot take every worker (sync workers were starved by two idle sockets).
        # Requests are CPU-bound and short, so each runs to completion between reads; the
        # number of workers still sets how many questions are searched at once.
        "worker_class": "qa.serve.Worker",
        "worker_connections": max(1, settings.worker_connections),
        # idle keep-alive connections and slow request headers are dropped after this
        "keepalive": max(1, settings.client_timeout),
        "timeout": max(1, settings.worker_timeout),
        "graceful_timeout": 30,
        # a GET of the longest question allowed must fit (gunicorn's default is 4094 bytes)
        "limit_request_line": request_line_limit(settings.max_question_chars),
        "accesslog": "-",
        "errorlog": "-",
        "preload_app": False,  # each worker loads its own index + model after the fork
        "control_socket_disable": True,  # gunicorn 27 otherwise creates ~/.gunicorn/ sockets
    }


def run_gunicorn(settings: Settings, host: str, port: int, workers: int) -> None:
    """Block serving on host:port with `workers` gevent worker processes."""
    _Gunicorn(settings, gunicorn_options(settings, host, port, workers)).run()

