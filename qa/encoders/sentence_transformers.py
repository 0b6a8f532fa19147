"""The sentence-transformers backend: any hub model name or local directory, fast failure."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from urllib.parse import urlparse

import numpy as np

from . import EncoderUnavailable, prompts_for

HUB_PROBE_TIMEOUT = 3.0  # seconds to decide the model hub is unreachable


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _hub_reachable(timeout: float = HUB_PROBE_TIMEOUT) -> bool:
    # Without this probe a missing model takes ~70 s to fail (5 retries per file) on a machine
    # with no route to the hub; a TCP connect answers in milliseconds to a few seconds.
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        with socket.create_connection((url.hostname or "huggingface.co", url.port or 443), timeout):
            return True
    except OSError:
        return False


class SentenceTransformerEncoder:
    """A sentence-transformers model loaded by hub name or local directory."""

    backend = "sentence-transformers"
    # None: the model's own weights. fp16 (GPU only) is a compute precision, not a quantisation:
    # vectors are cast back to float32 and re-normalised, so an index embedded in fp16 on a GPU
    # is searched with the same model in float32 on a CPU.
    quantisation = None

    def __init__(self, model: str, batch_size: int = 32, threads: int = 0, device: str = "cpu",
                 fp16: bool = False):
        self.name = self.model_name = model
        self.batch_size = batch_size
        self.device = device
        self.fp16 = fp16
        if fp16 and not device.startswith("cuda"):
            raise EncoderUnavailable(f"fp16 needs a CUDA device, not {device!r}")
        self.query_prefix, self.passage_prefix = prompts_for(model)
        local = Path(model).expanduser()
        looks_like_path = model.startswith((".", "/", "~")) or local.exists()
        if looks_like_path and not local.is_dir():
            raise EncoderUnavailable(f"model directory {model} does not exist")
        import sentence_transformers
        import torch
        from sentence_transformers import SentenceTransformer

        if threads > 0:
            # torch's default is every core; with several workers that oversubscribes them
            torch.set_num_threads(threads)
        self.threads = torch.get_num_threads()
        self.version = sentence_transformers.__version__
        try:
            if looks_like_path:
                self._st = SentenceTransformer(str(local), device=device)
            else:
                try:  # the local cache first: instant when the model was downloaded before
                    self._st = SentenceTransformer(model, device=device, local_files_only=True)
                except OSError:
                    if _offline():
                        raise EncoderUnavailable(
                            f"model {model} is not in the local cache and HF_HUB_OFFLINE is set"
                        ) from None
                    if not _hub_reachable():
                        raise EncoderUnavailable(
                            f"model {model} is not cached and the model hub is unreachable"
                        ) from None
                    self._st = SentenceTransformer(model, device=device)
        except EncoderUnavailable:
            raise
        except Exception as exc:  # corrupt directory, incompatible weights, no such device ...
            raise EncoderUnavailable(f"model {model} could not be loaded: {exc}") from exc
        if fp16:
            self._st.half()
        # sentence-transformers 6 renamed get_sentence_embedding_dimension
        get_dim = (getattr(self._st, "get_embedding_dimension", None)
                   or self._st.get_sentence_embedding_dimension)
        self.dim = int(get_dim())

    @property
    def model(self) -> str:
        """The model as given (hub name or directory)."""
        return self.model_name

    def _encode(self, texts: list[str], prefix: str, progress: bool) -> np.ndarray:
        vectors = self._st.encode(
            [prefix + t for t in texts], batch_size=self.batch_size, normalize_embeddings=True,
            convert_to_numpy=True, show_progress_bar=progress)
        out = np.ascontiguousarray(vectors, dtype=np.float32).reshape(len(texts), self.dim)
        if self.fp16:  # normalised in half precision: make them unit length in float32
            out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return out

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        """Unit-length embeddings of questions, with the family's query prefix."""
        return self._encode(texts, self.query_prefix, False)

    def encode_passages(self, texts: list[str], progress: bool = False) -> np.ndarray:
        """Unit-length embeddings of passages, with the family's passage prefix."""
        return self._encode(texts, self.passage_prefix, progress)
