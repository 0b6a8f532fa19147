"""Run the app under gunicorn, the production WSGI server; each worker loads the index once."""

from __future__ import annotations

from typing import Any

from gunicorn.app.base import BaseApplication

from .config import Settings


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
        from .web import create_app

        return create_app(self.settings)


def run_gunicorn(settings: Settings, host: str, port: int, workers: int) -> None:
    """Block serving on host:port with `workers` single-threaded worker processes."""
    options = {
        "bind": f"{host}:{port}",
        "workers": max(1, workers),
        # sync workers, concurrency from QA_WORKERS: measured on 2 cores, 4 threads per worker
        # gave a third of the throughput (the GIL around every numpy call), and gthread's
        # keep-alive let one worker hold every connection while the other idled. Put a
        # reverse proxy in front for slow clients, as gunicorn advises for sync workers.
        "worker_class": "sync",
        "timeout": 60,
        "graceful_timeout": 30,
        "accesslog": "-",
        "errorlog": "-",
        "preload_app": False,  # each worker loads its own index + model after the fork
        "control_socket_disable": True,  # gunicorn 27 otherwise creates ~/.gunicorn/ sockets
    }
    _Gunicorn(settings, options).run()
