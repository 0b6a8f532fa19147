"""Everything that differs between a Milvus server and the embedded milvus-lite, in one place:
connecting, schemas, consistency, BM25's score sign, where a hybrid filter goes, and errors."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

from ...errors import BackendUnavailable

# One token per index term in the `terms` field: the term's 64-bit key (qa.lexical.term_key)
# in base 36. Milvus then counts exactly our terms (jieba words and '§' bigrams), so its BM25
# candidates and our statistics agree, and lite's "standard" tokenizer (it has no whitespace
# one) keeps each key whole: letters and digits never split a word.
KEY_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"
MAX_VARCHAR = 65_535  # bytes: Milvus's default limit for one VARCHAR value
DUMMY_DIM = 2  # Milvus wants a vector field in every collection, even a table of counts


def key_token(key: int) -> str:
    """A 64-bit term key as one alphanumeric token, prefixed so it never reads as a number."""
    out = []
    while True:
        key, r = divmod(key, 36)
        out.append(KEY_DIGITS[r])
        if not key:
            break
    return "k" + "".join(reversed(out))


def signed(key: int) -> int:
    """A uint64 term key as the int64 Milvus stores (two's complement)."""
    return key - (1 << 64) if key >= 1 << 63 else key


@dataclass(frozen=True)
class Dialect:
    """How to talk to this Milvus: a server (http://, https://, tcp://) or a lite directory."""

    uri: str
    lite: bool

    @classmethod
    def of(cls, uri: str) -> Dialect:
        """A URI with a scheme is a server; anything else is a milvus-lite database path."""
        uri = uri.strip()
        return cls(uri, "://" not in uri)

    @property
    def analyzer(self) -> dict:
        """The analyzer for the terms field: our tokens are already split by spaces."""
        # lite knows only "standard" and "jieba"; a server also has "whitespace", but standard
        # splits our alphanumeric keys identically, so both get the same analyzer
        return {"tokenizer": "standard"}

    def bm25_score(self, distance: float) -> float:
        """Lite returns BM25 negated (as a distance); a server returns the score."""
        return -distance if self.lite else distance

    def dense_index(self) -> tuple[str, dict]:
        """(index type, build params) for the passage vectors."""
        if self.lite:
            return "FLAT", {}
        return "HNSW", {"M": 16, "efConstruction": 200}

    def search_params(self, metric: str, k: int) -> dict:
        """Search parameters: HNSW on a server is asked to look wider than k (its default ef
        is about k), so the few passages an answer needs are not lost to the graph walk."""
        if metric == "COSINE" and not self.lite:
            return {"metric_type": metric, "params": {"ef": max(64, 2 * k)}}
        return {"metric_type": metric}

    def connect(self, token: str = "") -> Any:
        """A MilvusClient; BackendUnavailable (one line) when the server cannot be reached."""
        try:
            from pymilvus import MilvusClient  # noqa: PLC0415 - only QA_BACKEND=milvus needs it
        except ImportError:
            raise BackendUnavailable("QA_BACKEND=milvus needs pymilvus: pip install "
                                     "'qa[milvus]' (and milvus-lite for a local path)") from None
        # pymilvus logs every failed call with its traceback; each one reaches the user here
        # as one line (BackendUnavailable), so its own log says nothing new
        logging.getLogger("pymilvus").setLevel(logging.CRITICAL)
        if self.lite:  # lite's in-process gRPC server logs calls it does not implement
            logging.getLogger("grpc._server").setLevel(logging.CRITICAL)
        if self.lite:
            os.makedirs(os.path.dirname(os.path.abspath(self.uri)) or ".", exist_ok=True)
        try:
            kwargs = {"token": token} if token else {}
            if not self.lite:
                kwargs["timeout"] = 10
            return MilvusClient(self.uri, **kwargs)
        except Exception as exc:  # grpc, lite's lock, a bad URI: all "cannot reach"
            raise BackendUnavailable(f"cannot reach Milvus at {self.uri}: {_reason(exc)}") from None


def milvus_errors() -> tuple[type[BaseException], ...]:
    """What a failing Milvus server or connection raises (and only that: our own bugs are not
    reported as the server's)."""
    from grpc import RpcError  # noqa: PLC0415
    from pymilvus.exceptions import MilvusException  # noqa: PLC0415

    return (MilvusException, RpcError, ConnectionError, TimeoutError)


def _reason(exc: Exception) -> str:
    text = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return " ".join(str(text).split())[:300]


def unavailable(exc: Exception, uri: str, doing: str) -> BackendUnavailable:
    """The one-line error for a Milvus call that failed."""
    return BackendUnavailable(f"Milvus at {uri} failed while {doing}: {_reason(exc)}")


def quote(value: str) -> str:
    """A string literal for a Milvus filter expression."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
