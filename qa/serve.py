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
    """Block serving on host:port with `workers` sync workers (threads for concurrent requests)."""
    options = {
        "bind": f"{host}:{port}",
        "workers": max(1, workers),
        "worker_class": "gthread",
        "threads": 4,
        "timeout": 60,
        "graceful_timeout": 30,
        "accesslog": "-",
        "errorlog": "-",
        "preload_app": False,  # each worker loads its own index + model after the fork
        "control_socket_disable": True,  # gunicorn 27 otherwise creates ~/.gunicorn/ sockets
    }
    _Gunicorn(settings, options).run()
