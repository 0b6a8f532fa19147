"""Retrieval backends behind one small surface: the embedded segments (QA_BACKEND=embedded, the
default: qa.index and qa.build) and Milvus (QA_BACKEND=milvus: qa.backends.milvus).

A loaded generation of either offers what the answer layer reads (the `Archive` protocol);
writers offer build and add with the same reports. The CLI, the web app, the MCP server and
the upload jobs call these functions and never look at which backend answers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from .. import build as embedded
from ..config import Settings
from ..encoders import Encoder
from ..filters import Filters
from ..generations import current_generation as _embedded_current
from ..generations import read_manifest
from ..index import Index


class Archive(Protocol):
    """A loaded, read-only generation: what search and citations need from a backend."""

    manifest: dict
    tokenizer: Any

    @property
    def generation(self) -> str: ...  # noqa: D102
    @property
    def model(self) -> str | None: ...  # noqa: D102
    @property
    def n_passages(self) -> int: ...  # noqa: D102

    def lexical(self, terms: list[str], k: int, filters: Filters | None = None) -> Any:
        """BM25 match with top(k), score(gid), present(gids), partial(gids, terms), terms."""

    def idf_many(self, terms: list[str]) -> dict[str, float]:
        """Archive IDF per term (an unknown term gets the largest)."""

    def dense_search(self, query: np.ndarray, k: int, mask: Any = None,
                     filters: Filters | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (passage ids, cosine scores)."""

    def passage(self, gid: int) -> dict:
        """One passage's record."""

    def story(self, file: str, story: int) -> list[dict]:
        """A story's passages in order."""

    def story_ids(self, gids: np.ndarray) -> np.ndarray:
        """One number per story."""

    def issue_meta(self, file: str) -> dict:
        """An issue's paper, date and edition."""


def _milvus(settings: Settings):
    from .milvus import MilvusBackend  # noqa: PLC0415 - pymilvus only for QA_BACKEND=milvus

    return MilvusBackend.from_settings(settings)


def current_generation(settings: Settings) -> str | None:
    """The published generation's name, or None."""
    if settings.backend == "milvus":
        return _milvus(settings).current_generation()
    return _embedded_current(Path(settings.index_dir))


def load_index(settings: Settings, generation: str | None = None, reuse: Any = None,
               verify: bool | None = None) -> Archive:
    """Load and check a generation (default: the published one)."""
    if settings.backend == "milvus":
        return _milvus(settings).load(generation)
    return Index.load(settings.index_dir, generation, verify=verify,
                      reuse=reuse if isinstance(reuse, Index) else None)


def read_published_manifest(settings: Settings) -> dict:
    """The published generation's checked manifest."""
    if settings.backend == "milvus":
        return _milvus(settings).load().manifest
    return read_manifest(Path(settings.index_dir))


def build(paths: Sequence[str | Path], settings: Settings, encoder: Encoder | None,
          progress: bool = False, meta: Mapping[str, str | None] | None = None
          ) -> embedded.WriteReport:
    """A new generation from scratch out of the given issue files and directories."""
    if settings.backend == "milvus":
        return _milvus(settings).build(paths, encoder, progress, meta)
    return embedded.build(paths, settings, encoder, progress, meta)


def add(paths: Sequence[str | Path], settings: Settings, encoder: Encoder | None,
        progress: bool = False, meta: Mapping[str, str | None] | None = None,
        replace: bool = False) -> embedded.WriteReport:
    """Add new issues or replace changed ones in the published generation."""
    if settings.backend == "milvus":
        return _milvus(settings).add(paths, encoder, progress, meta, replace)
    return embedded.add(paths, settings, encoder, progress, meta, replace)
