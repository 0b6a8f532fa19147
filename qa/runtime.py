"""Open the published index with the sentence model it needs, once; for the CLI and the web app."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

from .config import Settings
from .encoders import Encoder, EncoderUnavailable, load_encoder
from .index import Index, IndexMismatch, current_generation
from .search import Searcher

log = logging.getLogger(__name__)


@dataclass
class EncoderStatus:
    """Which model is in use, or why none is."""

    encoder: Encoder | None
    note: str | None  # a plain sentence when dense search is off


def open_encoder(settings: Settings, index_model: str | None = None) -> EncoderStatus:
    """Load the configured model; explain (never raise) when it cannot be used."""
    if not settings.dense_enabled:
        return EncoderStatus(None, "dense search is switched off (model 'none'): lexical only")
    if index_model is not None and index_model != settings.model:
        raise IndexMismatch(f"the index was embedded with {index_model} but the configured model "
                            f"is {settings.model}; set QA_MODEL={index_model} or rebuild with "
                            "`qa index`")
    try:
        return EncoderStatus(load_encoder(settings.model, settings.embed_batch_size), None)
    except EncoderUnavailable as exc:
        return EncoderStatus(None, f"{exc}: lexical only")


class SearcherHolder:
    """Holds the current Searcher and moves to a newer generation when one is published.

    A request takes a reference to one Searcher and uses it to the end, so a switch never
    fails a query in flight; the model is loaded once and reused across generations.
    """

    def __init__(self, settings: Settings, encoder_status: EncoderStatus | None = None):
        self.settings = settings
        self._status = encoder_status
        self._lock = threading.Lock()
        self.searcher: Searcher | None = None
        self.error: str | None = None

    @property
    def encoder(self) -> Encoder | None:
        """The loaded sentence model, if any (what an add must embed new passages with)."""
        return self._status.encoder if self._status else None

    @property
    def note(self) -> str | None:
        """Why search is lexical only, if it is."""
        return self._status.note if self._status else None

    def refresh(self) -> Searcher | None:
        """Load the published generation if it is newer than the one held; keep the old on error."""
        root = self.settings.index_dir
        wanted = current_generation(Path(root))
        held = self.searcher
        if wanted is None or (held is not None and held.index.generation == wanted):
            if wanted is None and held is None:
                self.error = f"no index in {root}: build one with `qa index`"
            return held
        with self._lock:
            if self.searcher is not None and self.searcher.index.generation == wanted:
                return self.searcher
            try:
                index = Index.load(root, wanted,
                                   reuse=self.searcher.index if self.searcher else None)
                if index.model is None:
                    encoder = None
                    if self._status is None or self._status.encoder is None:
                        self._status = EncoderStatus(None, "the index was built without a "
                                                     "sentence model: lexical only")
                else:
                    if self._status is None or self._status.encoder is None:
                        self._status = open_encoder(self.settings, index.model)
                    encoder = self._status.encoder
                searcher = Searcher(index, encoder, self.settings)
                searcher.ask("预热")  # warm jieba, caches and the model before taking traffic
                self.searcher = searcher
                self.error = None
                log.info("serving generation %s (%s)", wanted, self.searcher.mode)
            except Exception as exc:  # keep serving the old generation, say why
                self.error = f"cannot load generation {wanted}: {exc}"
                log.error(self.error)
            return self.searcher
