"""Layered settings: defaults, then `QA_*` environment variables, then explicit overrides."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from typing import Any

DEFAULT_MODEL = "intfloat/multilingual-e5-small"


def _f(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class Settings:
    """Every tunable and every limit, with the environment variable that sets it (QA_<NAME>)."""

    index_dir: str = _f("embeddings/default", "index directory holding the generations")
    seeds_dir: str = _f("seeds", "issues indexed by `qa index` with no paths and by `make run`")
    upload_dir: str = _f("embeddings/uploads", "where issues uploaded by editors are kept, and "
                         "their job records")
    model: str = _f(DEFAULT_MODEL, "sentence-transformers model name or local directory; "
                    "'none' for lexical only")
    tokenizer: str = _f("jieba+bigram", "lexical analyser: jieba+bigram, jieba or bigram")
    embed_batch_size: int = _f(32, "passages per encoder batch")
    dense_exact_max: int = _f(50_000, "passages up to which FAISS search is exact; HNSW above")
    rrf_k: int = _f(60, "reciprocal-rank-fusion constant")
    dense_weight: float = _f(1.0, "weight of the dense ranking in fusion (lexical is 1.0)")
    candidates: int = _f(50, "hits taken from each retriever before fusion")
    focus_weight: float = _f(2.0, "extra weight of the words beside the question word when "
                             "ordering the paragraphs of one story; 0 turns it off")
    min_confidence: float = _f(0.15, "answers below this confidence are 'no confident answer'")
    default_top_k: int = _f(5, "answers returned when top_k is not given")
    max_top_k: int = _f(50, "largest top_k accepted")
    max_question_chars: int = _f(500, "longest question accepted (characters)")
    max_request_bytes: int = _f(64 * 1024, "largest JSON request body on /api (bytes)")
    max_upload_bytes: int = _f(20 * 1024 * 1024, "largest admin upload (bytes, all files)")
    rate_limit_per_minute: int = _f(120, "requests per minute per client on /api; 0 disables")
    admin_token: str = _f("", "bearer token for /api/admin; empty disables admin")
    cors_origins: str = _f("", "comma-separated origins allowed to call /api; '*' for any")
    reload_interval: float = _f(2.0, "seconds between checks for a newer index generation")
    keep_generations: int = _f(3, "old generations kept on disk after a publish")
    lock_timeout: float = _f(0.0, "seconds a writer waits for the index lock before giving up")
    workers: int = _f(2, "gunicorn worker processes for `qa serve`")
    debug: bool = _f(False, "Flask debug mode (refused by `qa serve`)")

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides: Any) -> Settings:
        """Defaults, overridden by QA_* variables, overridden by keyword arguments."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(f"QA_{f.name.upper()}")
            if raw is None:
                continue
            values[f.name] = _parse(f.name, raw, type(f.default))
        values.update(overrides)
        return cls(**values)

    def with_(self, **changes: Any) -> Settings:
        """A copy with some settings changed."""
        return replace(self, **changes)

    @property
    def dense_enabled(self) -> bool:
        """False when the model is switched off ('none' or empty)."""
        return self.model.strip().lower() not in ("", "none", "off")


def _parse(name: str, raw: str, kind: type) -> Any:
    try:
        if kind is bool:
            if raw.strip().lower() in ("1", "true", "yes", "on"):
                return True
            if raw.strip().lower() in ("0", "false", "no", "off", ""):
                return False
            raise ValueError(raw)
        return kind(raw)
    except ValueError:
        raise ValueError(f"QA_{name.upper()}={raw!r} is not a valid {kind.__name__}") from None


def describe() -> list[tuple[str, Any, str]]:
    """(environment variable, default, help) for every setting: the README table."""
    return [(f"QA_{f.name.upper()}", f.default, f.metadata["help"]) for f in fields(Settings)]
