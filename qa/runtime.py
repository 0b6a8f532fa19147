"""Open the published index with the sentence model it needs, once; for the CLI and the web app."""

from __future__ import annotations

import logging
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from .backends import current_generation, load_index
from .config import Settings
from .encoders import Encoder, EncoderUnavailable, canonical_model, load_encoder
from .errors import BackendUnavailable
from .generations import GENERATION_NAME, generation_number
from .index import Index, IndexMismatch
from .search import Searcher

log = logging.getLogger(__name__)
_ABS_PATH = re.compile(r"(?<![\w.:/])/[^\s'\":,;()]+")  # /a/b/c, not the // of a URL


def without_paths(text: str) -> str:
    """A message fit for anyone (healthz, the page footer): absolute paths cut to their last
    part; the whole message goes to the log."""
    return _ABS_PATH.sub(lambda m: "…/" + m.group().rstrip("/").rsplit("/", 1)[-1], text)


@dataclass
class EncoderStatus:
    """Which model is in use, or why none is."""

    encoder: Encoder | None
    note: str | None  # a plain sentence when dense search is off


def open_encoder(settings: Settings, index_model: str | None = None) -> EncoderStatus:
    """Load the configured model; explain (never raise) when it cannot be used."""
    if not settings.dense_enabled:
        return EncoderStatus(None, "dense search is switched off (model 'none'): lexical only")
    if index_model is not None and canonical_model(index_model) != canonical_model(settings.model):
        raise IndexMismatch(f"the index was embedded with {index_model} but the configured model "
                            f"is {settings.model}; set QA_MODEL={index_model} or rebuild with "
                            "`qa index`")
    try:
        return EncoderStatus(load_encoder(settings.model, settings.embed_batch_size,
                                          settings.encoder_threads), None)
    except EncoderUnavailable as exc:
        log.warning("sentence model unavailable: %s", exc)
        return EncoderStatus(None, without_paths(f"{exc}: lexical only"))


class SearcherHolder:
    """Holds the current Searcher and moves to a newer generation when one is published.

    A request takes a reference to one Searcher and uses it to the end, so a switch never
    fails a query in flight; the model is loaded once and reused across generations.
    `error` is safe to show to anyone (no paths); `detail` is the whole story, for logs and
    the command line.
    """

    def __init__(self, settings: Settings, encoder_status: EncoderStatus | None = None):
        self.settings = settings
        self._status = encoder_status
        self._lock = threading.Lock()
        self._older_lock = threading.Lock()
        self._older: OrderedDict[str, Index] = OrderedDict()  # recently asked-for generations
        self.searcher: Searcher | None = None
        self.error: str | None = None
        self.detail: str | None = None

    def _fail(self, public: str, detail: str) -> None:
        if detail != self.detail:  # the poller retries every few seconds: log each cause once
            log.error("%s", detail)
        self.error, self.detail = public, detail

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
        root = (self.settings.index_dir if self.settings.backend == "embedded" else
                f"Milvus collection {self.settings.milvus_collection}")
        try:
            wanted = current_generation(self.settings)
        except Exception as exc:  # Milvus down: keep serving what is held, say why
            self._fail(f"the archive cannot be reached ({type(exc).__name__}); the server log "
                       "says why", str(exc))
            return self.searcher
        held = self.searcher
        if wanted is None or (held is not None and held.index.generation == wanted):
            if wanted is None and held is None:
                self._fail("no index has been built yet: an editor runs `qa index`",
                           f"no index in {root}: build one with `qa index`")
            return held
        with self._lock:
            if self.searcher is not None and self.searcher.index.generation == wanted:
                return self.searcher
            try:
                index = load_index(self.settings, wanted,
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
                self.error = self.detail = None
                log.info("serving generation %s (%s)", wanted, self.searcher.mode)
            except Exception as exc:  # keep serving the old generation, say why
                # the exception names files and directories: the log gets it, the public
                # message (healthz, 503s) only what happened
                kept = f"; still serving {held.index.generation}" if held else ""
                self._fail(f"cannot load generation {wanted} ({type(exc).__name__}){kept}; "
                           "the server log says why", f"cannot load generation {wanted}: {exc}")
            return self.searcher

    def index_at(self, generation: str) -> Index | None:
        """The index of a named generation while it is on disk, else None.

        Workers move to a new generation a moment apart, so a client may ask one worker about
        a passage another just cited: a newer generation than the one held is a reason to
        refresh now; an older one is loaded beside it (sharing its unchanged segments) and
        kept among the `generation_cache` most recently asked for.
        """
        if not GENERATION_NAME.match(generation):
            return None
        held = self.searcher
        if held is None or generation_number(generation) > generation_number(
                held.index.generation):
            held = self.refresh()
        if held is not None and held.index.generation == generation:
            return held.index
        with self._older_lock:
            if generation in self._older:
                self._older.move_to_end(generation)
                return self._older[generation]
            root = Path(self.settings.index_dir)
            if self.settings.backend == "embedded" and not (
                    root / "generations" / f"{generation}.json").exists():
                return None
            try:
                index = load_index(self.settings, generation,
                                   reuse=held.index if held else None)
            except BackendUnavailable:
                raise  # the search engine is down: a 503, not "collected since"
            except Exception as exc:  # collected meanwhile, or damaged: not servable
                log.warning("cannot load generation %s for a story look-up: %s", generation, exc)
                return None
            if self.settings.generation_cache > 0:
                self._older[generation] = index
                while len(self._older) > self.settings.generation_cache:
                    self._older.popitem(last=False)
            return index
