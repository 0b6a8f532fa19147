"""Index generations on disk: immutable segments, a checked manifest, atomic publish, one writer.

Layout of an index directory (QA_INDEX_DIR)::

    CURRENT                      name of the published generation (replaced atomically)
    LOCK                         flock()ed by the one writer
    generations/gen-000007.json  manifest: versions, model, tokenizer, counts, segments, checksums
    segments/seg-<hex>/          passages.jsonl, offsets.npy, stories.json, lexical.*,
                                 vectors.npy + dense.faiss when the index has a sentence model

Segments never change once written. A build writes one segment; an add writes one segment for
its new issues and, when an issue is replaced, a filtered copy of the segment that held it. A
generation is a manifest naming its segments, so a crash before CURRENT moves leaves the old
generation whole and answering.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from . import __version__
from .errors import IndexCorrupt, IndexError_, IndexLocked, IndexMismatch, IndexMissing
from .lexical import BM25
from .segment import Segment, fault, load_segment, write_atomic
from .text import get_tokenizer

__all__ = ["FORMAT", "Index", "IndexCorrupt", "IndexError_", "IndexLocked", "IndexMismatch",
           "IndexMissing", "collect_garbage", "current_generation", "new_manifest", "publish",
           "read_manifest", "writer_lock"]

FORMAT = 2  # 2: memory-mapped lexical arrays with 64-bit term keys
VERIFY_ALL_BYTES = 256 * 1024 * 1024  # below this total, load() checks every file's sha256


def library_versions() -> dict[str, str]:
    """Versions of the libraries whose behaviour shapes an index."""
    import faiss
    import jieba

    return {"qa": __version__, "numpy": np.__version__, "faiss": faiss.__version__,
            "jieba": jieba.__version__}


# ---------------------------------------------------------------- generations

def current_generation(root: Path) -> str | None:
    """Name of the published generation, or None."""
    try:
        return (root / "CURRENT").read_text(encoding="utf-8").strip() or None
    except FileNotFoundError:
        return None


def read_manifest(root: Path, generation: str | None = None) -> dict:
    """The manifest of a generation (default: the published one)."""
    generation = generation or current_generation(root)
    if generation is None:
        raise IndexMissing(f"no index in {root}: build one with `qa index`")
    path = root / "generations" / f"{generation}.json"
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise IndexCorrupt(
            f"{root}: CURRENT names {generation} but its manifest is missing") from None
    except json.JSONDecodeError as exc:
        raise IndexCorrupt(f"{path}: manifest is not valid JSON ({exc})") from None
    if manifest.get("format") != FORMAT:
        raise IndexMismatch(f"{path}: index format {manifest.get('format')}, this qa reads "
                            f"{FORMAT}; rebuild with `qa index`")
    return manifest


@dataclass
class Index:
    """One loaded generation, read-only; safe to share between threads."""

    root: Path
    manifest: dict
    segments: list[Segment]
    bm25: BM25 = field(init=False)

    def __post_init__(self) -> None:
        self.bm25 = BM25([s.postings for s in self.segments])
        self.offsets = self.bm25.offsets
        self.tokenizer = get_tokenizer(self.manifest["tokenizer"])
        self._stories = {(st["file"], st["story"]): (k, st) for k, seg in enumerate(self.segments)
                         for st in seg.stories}
        # global id of each story's first passage, ascending: a passage's story is a bisection
        starts = [int(base) + st["start"] for seg, base in zip(self.segments, self.offsets[:-1],
                                                              strict=True) for st in seg.stories]
        self._story_starts = np.asarray(starts, dtype=np.int64)

    @classmethod
    def load(cls, root: str | Path, generation: str | None = None,
             verify: bool | None = None, reuse: Index | None = None) -> Index:
        """Load and check a generation; verify=None hashes every file when the index is small.

        Segments never change, so those already loaded by `reuse` (the generation being
        replaced) are shared instead of read again: moving to a generation that adds one
        issue costs only that issue's segment.
        """
        root = Path(root)
        manifest = read_manifest(root, generation)
        known = {s.name: s for s in reuse.segments} if reuse is not None else {}
        fresh = [e for e in manifest["segments"] if e["name"] not in known]
        total = sum(m["bytes"] for s in fresh for m in s["files"].values())
        check = total <= VERIFY_ALL_BYTES if verify is None else verify
        segments = [known.get(e["name"]) or load_segment(root, e, check)
                    for e in manifest["segments"]]
        return cls(root, manifest, segments)

    @property
    def generation(self) -> str:
        """This generation's name."""
        return self.manifest["generation"]

    @property
    def model(self) -> str | None:
        """The sentence model the dense vectors came from, or None (lexical only)."""
        return self.manifest.get("model")

    @property
    def n_passages(self) -> int:
        """Passages in the archive."""
        return self.bm25.n_docs

    def locate(self, gid: int) -> tuple[Segment, int]:
        """Segment and local id of a global passage id."""
        k = int(np.searchsorted(self.offsets, gid, side="right") - 1)
        return self.segments[k], gid - int(self.offsets[k])

    def passage(self, gid: int) -> dict:
        """The record of a global passage id (with 'gid' added)."""
        seg, local = self.locate(gid)
        return seg.passage(local) | {"gid": int(gid)}

    def story(self, file: str, story: int) -> list[dict]:
        """Every passage of one story, in order; empty if unknown."""
        found = self._stories.get((file, story))
        if not found:
            return []
        k, st = found
        base = int(self.offsets[k])
        return [self.passage(base + i) for i in range(st["start"], st["start"] + st["count"])]

    def story_ids(self, gids: np.ndarray) -> np.ndarray:
        """A number per passage that is the same for passages of one story."""
        return np.searchsorted(self._story_starts, np.asarray(gids, dtype=np.int64),
                               side="right") - 1

    def dense_search(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (global ids, cosine scores) over every segment's vectors."""
        ids, scores = [], []
        for seg, base in zip(self.segments, self.offsets[:-1], strict=True):
            if seg.dense is None or seg.n == 0:
                continue
            i, s = seg.dense.search(query, min(k, seg.n))
            ids.append(i + base)
            scores.append(s)
        if not ids:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
        all_ids, all_scores = np.concatenate(ids), np.concatenate(scores)
        order = np.lexsort((all_ids, -all_scores))[:k]
        return all_ids[order], all_scores[order]


@contextmanager
def writer_lock(root: Path, timeout: float = 0.0) -> Iterator[None]:
    """Hold the index's single-writer lock or raise IndexLocked."""
    import time

    root.mkdir(parents=True, exist_ok=True)
    fh = open(root / "LOCK", "a+")  # noqa: SIM115 (held open for the lock's lifetime)
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() >= deadline:
                fh.seek(0)
                holder = fh.read().strip() or "another process"
                fh.close()
                raise IndexLocked(f"{root} is being written by {holder}; try again when it "
                                  "finishes") from None
            time.sleep(0.1)
    try:
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()}")
        fh.flush()
        _clean_crashed(root)
        yield
    finally:
        fh.truncate(0)
        fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
        fh.close()


def _clean_crashed(root: Path) -> None:
    """Under the lock: drop what a killed writer left (temp segments, unpublished manifests)."""
    for tmp in (root / "segments").glob(".tmp-*"):
        shutil.rmtree(tmp, ignore_errors=True)
    current = current_generation(root)
    for g in (root / "generations").glob("gen-*.json"):
        if current is None or g.stem > current:
            g.unlink(missing_ok=True)


def publish(root: Path, manifest: dict, keep: int) -> None:
    """Write the manifest, switch CURRENT to it atomically, then drop unreferenced old files."""
    gens = root / "generations"
    gens.mkdir(parents=True, exist_ok=True)
    write_atomic(gens / f"{manifest['generation']}.json",
                  json.dumps(manifest, ensure_ascii=False, indent=1).encode("utf-8"))
    fault("manifest-written")
    write_atomic(root / "CURRENT", (manifest["generation"] + "\n").encode())
    collect_garbage(root, keep)


def collect_garbage(root: Path, keep: int) -> None:
    """Remove generations beyond the newest `keep`, their segments, and crashed writers' temps."""
    gens = sorted((root / "generations").glob("gen-*.json"))
    current = current_generation(root)
    kept = [g for g in gens[-max(keep, 1):]]
    for g in gens:
        if g not in kept and g.stem != current:
            g.unlink(missing_ok=True)
    live = set()
    for g in (root / "generations").glob("gen-*.json"):
        try:
            live.update(s["name"] for s in json.loads(g.read_text("utf-8"))["segments"])
        except (OSError, ValueError, KeyError):
            continue
    for seg in (root / "segments").glob("*"):
        if seg.name not in live:
            shutil.rmtree(seg, ignore_errors=True)
    for tmp in (root / "generations").glob(".*.tmp"):
        tmp.unlink(missing_ok=True)


def next_generation_name(root: Path) -> str:
    """gen-NNNNNN, one past the newest on disk."""
    nums = [int(p.stem.split("-")[1]) for p in (root / "generations").glob("gen-*.json")]
    return f"gen-{max(nums, default=0) + 1:06d}"


def new_manifest(root: Path, *, tokenizer: str, model: str | None, dim: int | None,
                 segments: list[dict], issues: dict) -> dict:
    """Assemble a manifest for a new generation."""
    return {
        "format": FORMAT,
        "generation": next_generation_name(root),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "versions": library_versions(),
        "tokenizer": tokenizer,
        "model": model,
        "dim": dim,
        "retrievers": ["lexical", "dense"] if model else ["lexical"],
        "counts": {
            "issues": len(issues),
            "stories": sum(i["stories"] for i in issues.values()),
            "passages": sum(s["passages"] for s in segments),
            "segments": len(segments),
        },
        "segments": segments,
        "issues": issues,
    }
