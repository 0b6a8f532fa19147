"""Run the app under gunicorn with gevent workers: each worker loads the index once and holds
many connections, so slow or stalled clients wait on the network without taking a worker."""

from __future__ import annotations

import contextlib
from http import HTTPStatus
from typing import Any

import gevent
import orjson
from gunicorn.app.base import BaseApplication
from gunicorn.workers.ggevent import GeventWorker

from .config import Settings
from .errors import ERROR_TYPES, SECURITY_HEADERS

# What a reader's browser shows for gunicorn's own errors (as qa/web/ui.py's ERROR_TEXT).
READER_ERRORS = {400: ("请求有误", "这个请求无法处理，请检查链接或重新提问。"),
                 408: ("请求超时", "请求内容没有按时送达，请重试。"),
                 414: ("网址太长", "问题太长了，请缩短后再试。"),
                 431: ("请求头太大", "请求头太大，请清除这个网站的 Cookie 后重试。"),
                 500: ("服务器出错了", "服务器内部错误，已经记录下来，请稍后再试。")}


def request_line_limit(max_question_chars: int) -> int:
    """Bytes of request line that a GET of the longest allowed question needs: every character
    percent-encoded from up to 4 UTF-8 bytes (12 bytes), plus method, path, top_k and version.
    Gunicorn accepts at most 8190; longer questions still go through POST."""
    return min(8190, 12 * max_question_chars + 256)


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def error_page(status: int, message: str, api: bool) -> bytes:
    """A complete HTTP/1.1 error response for errors raised before the app sees the request:
    the JSON envelope under /api (and when the path is unknown), a small page elsewhere."""
    if api:
        body = orjson.dumps({"error": {"code": status,
                                       "type": ERROR_TYPES.get(status, "error"),
                                       "message": message}})
        kind = "application/json"
    else:  # the reader's page (qa/web/templates/error.html), in Chinese, in the page's style
        title, text = READER_ERRORS.get(status, READER_ERRORS[400])
        body = ('<!doctype html><html lang="zh-CN"><head><meta charset="utf-8"><meta '
                'name="viewport" content="width=device-width, initial-scale=1">'
                f'<title>{title} · 报纸档案问答</title><link rel="stylesheet" '
                'href="/static/style.css"></head><body><header><a class="brand" href="/">'
                f'报纸档案问答</a></header><main><section class="error-page"><h1>{title}</h1>'
                f'<p class="error" role="alert">{text}</p><p class="status">错误代码 {status}</p>'
                '<p><a class="button" href="/">回到首页提问</a></p></section></main></body>'
                "</html>").encode()
        kind = "text/html; charset=utf-8"
    head = [f"HTTP/1.1 {status} {_reason(status)}", "Connection: close",
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


# Set in each worker by _Gunicorn.load (gunicorn's own config has no place for them).
_GUARDS: dict[str, Any] = {"per_client": 0, "request_timeout": 0.0, "proxies": []}


class Worker(GeventWorker):
    """Gevent worker with a socket timeout on every connection and the envelope on its errors.

    Gevent bounds the wait for request headers with `keepalive` (gunicorn's timeout_ctx); the
    same number as a socket timeout bounds every later silence: a body that stops arriving, an
    answer nobody reads. A stalled connection costs one greenlet until then, never a worker.
    """

    def handle(self, listener, client, addr) -> None:
        """Serve one connection under the read/write timeout (QA_CLIENT_TIMEOUT), at most
        QA_MAX_CLIENT_CONNECTIONS at once from one address."""
        client.settimeout(float(self.cfg.keepalive))
        who = addr[0] if isinstance(addr, tuple) and addr else str(addr)
        open_now = self.__dict__.setdefault("_open", {})
        cap = _GUARDS["per_client"]
        if cap and not _is_proxy(who) and open_now.get(who, 0) >= cap:
            # one client trickling bytes on many sockets must not hold every slot of a worker
            with contextlib.suppress(OSError):
                client.sendall(error_page(429, "too many connections from this address", True))
            client.close()
            return
        open_now[who] = open_now.get(who, 0) + 1
        try:
            # GeventWorker.handle would make the socket blocking again (no timeout): skip it
            super(GeventWorker, self).handle(listener, client, addr)
        finally:
            open_now[who] -= 1
            if not open_now[who]:
                del open_now[who]

    def handle_request(self, listener_name, req, sock, addr) -> bool:
        """Serve one request, then let every other connection with a request waiting go first.

        Searches are CPU-bound and never yield: without this, a keep-alive connection whose
        next request is already there is served again at once, and at 16 connections a few
        of them starved the rest (p99 0.7-1.7 s against 50-100 ms).
        """
        # A deadline for the whole request: the per-read timeout alone lets a client that
        # sends one byte every few seconds hold its connection for ever.
        deadline = gevent.Timeout(_GUARDS["request_timeout"] or None)
        deadline.start()
        try:
            return super().handle_request(listener_name, req, sock, addr)
        except gevent.Timeout as exc:
            if exc is not deadline:
                raise
            self.log.warning("request from %s cut off after %s s", addr, exc.seconds)
            # gunicorn's keep-alive loop ignores a False return and would go on reading the
            # trickle; StopIteration is how its parser says "no more requests": it closes
            raise StopIteration("request deadline") from None
        finally:
            deadline.close()
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


def _is_proxy(address: str) -> bool:
    from .web.ratelimit import _trusted

    return bool(_GUARDS["proxies"]) and _trusted(address, _GUARDS["proxies"])


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
        from .web.ratelimit import parse_networks

        if self.settings.backend == "milvus":
            # pymilvus speaks gRPC: without this its calls block the gevent hub for good
            import grpc.experimental.gevent as grpc_gevent

            grpc_gevent.init_gevent()
        _GUARDS.update(per_client=max(0, self.settings.max_client_connections),
                       request_timeout=max(0.0, self.settings.request_timeout),
                       proxies=parse_networks(self.settings.trusted_proxies))
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

