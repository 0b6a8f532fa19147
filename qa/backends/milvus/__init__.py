"""The Milvus backend (QA_BACKEND=milvus): a server or cluster, or milvus-lite for tests.

Milvus holds passages, BM25 over our own index terms, vectors and generation manifests; the
answer layer (ranking maths, confidence, refusal, short answers, citations) runs unchanged in
the application. Differences between a server and lite live in dialect.py only.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ...build import WriteReport
from ...config import Settings
from ...encoders import Encoder
from ...errors import IndexCorrupt, IndexMissing
from . import store
from .archive import MilvusIndex
from .dialect import BackendUnavailable, Dialect, unavailable
from .writer import write

__all__ = ["BackendUnavailable", "MilvusBackend", "MilvusIndex"]

_clients: dict[tuple[str, str], Any] = {}
_loaded: dict[tuple[str, str], set[str]] = {}  # collections loaded per client
_clients_lock = threading.Lock()


class MilvusBackend:
    """Reads and writes one Milvus collection set; one client per URI and process."""

    def __init__(self, settings: Settings, client: Any, dialect: Dialect):
        self.settings = settings
        self.client = client
        self.dialect = dialect
        self.collection = settings.milvus_collection

    @classmethod
    def from_settings(cls, settings: Settings) -> MilvusBackend:
        """Connect (once per process: lite allows one client per database directory)."""
        dialect = Dialect.of(settings.milvus_uri)
        key = (dialect.uri, settings.milvus_token)
        with _clients_lock:
            client = _clients.get(key)
            if client is None:
                client = dialect.connect(settings.milvus_token)
                _clients[key] = client
            loaded = _loaded.setdefault(key, set())
            if settings.milvus_collection not in loaded:
                try:
                    store.load(client, settings.milvus_collection)
                except Exception as exc:
                    raise unavailable(exc, dialect.uri, "loading the collections") from None
                loaded.add(settings.milvus_collection)
        return cls(settings, client, dialect)

    def current_generation(self) -> str | None:
        """The published generation's name, or None."""
        try:
            number = store.published(self.client, self.collection)
        except Exception as exc:
            raise unavailable(exc, self.dialect.uri, "reading the published generation") from None
        return store.generation_name(number) if number else None

    def load(self, generation: str | None = None) -> MilvusIndex:
        """The published generation (or a named one still kept), checked."""
        number = int(generation[4:]) if generation else None
        if number is not None:
            newest = store.published(self.client, self.collection) or 0
            if number > newest:  # written but not (yet) published: never served
                raise IndexMissing(f"{generation} is not published in Milvus collection "
                                   f"{self.collection}")
        manifest = store.read_manifest(self.client, self.dialect, self.collection, number)
        return MilvusIndex(self.client, self.dialect, self.collection, manifest)

    def build(self, paths: Sequence[str | Path], encoder: Encoder | None,
              progress: bool = False, meta: Mapping[str, str | None] | None = None
              ) -> WriteReport:
        """A new generation holding exactly the given issues."""
        return write(self, paths, self.settings, encoder, progress, meta, rebuild=True)

    def add(self, paths: Sequence[str | Path], encoder: Encoder | None, progress: bool = False,
            meta: Mapping[str, str | None] | None = None, replace: bool = False) -> WriteReport:
        """Add or replace issues (idempotent: the same content again changes nothing)."""
        return write(self, paths, self.settings, encoder, progress, meta, replace=replace)

    def verify(self) -> MilvusIndex:
        """Check the published manifest and that every issue's rows are there, each once."""
        index = self.load()
        try:
            if index.n_passages < 16_384:
                rows = self.client.query(self.collection, filter=index.expr,
                                         output_fields=["file"], limit=16_384,
                                         consistency_level=store.STRONG)
            else:
                rows = None
                total = self.client.query(self.collection, filter=index.expr,
                                          output_fields=["count(*)"],
                                          consistency_level=store.STRONG)[0]["count(*)"]
        except Exception as exc:
            raise unavailable(exc, self.dialect.uri, "verifying") from None
        if rows is None:  # too many to list: compare the total only
            if total != index.n_passages:
                raise IndexCorrupt(f"{index.generation}: Milvus shows {total} passages, the "
                                   f"manifest says {index.n_passages}")
            return index
        counts: dict[str, int] = {}
        for r in rows:
            counts[r["file"]] = counts.get(r["file"], 0) + 1
        for file, entry in index.manifest["issues"].items():
            if counts.get(file, 0) != entry["passages"]:
                raise IndexCorrupt(f"{index.generation}: {file} has {counts.get(file, 0)} "
                                   f"passages in Milvus, the manifest says {entry['passages']}")
        return index
