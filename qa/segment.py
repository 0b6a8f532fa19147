"""One immutable segment on disk: passages, stories, postings and vectors, written atomically."""

from __future__ import annotations

import errno
import hashlib
import json
import mmap
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .dense import DenseSegment, build_dense, load_dense
from .errors import IndexCorrupt
from .lexical import Postings


def fault(stage: str) -> None:
    """Die (or fail with an OS error) here when QA_FAULT_INJECT names this stage."""
    # The crash tests' hook. QA_FAULT_INJECT=<stage> kills the writer right there, as kill -9
    # would; QA_FAULT_INJECT=<stage>:ENOSPC (any errno name) raises that OSError instead, as a
    # full disk, a read-only mount or a failing device would.
    wanted, _, code = os.environ.get("QA_FAULT_INJECT", "").partition(":")
    if wanted != stage:
        return
    if not code:
        os._exit(137)
    number = getattr(errno, code, errno.EIO)
    raise OSError(number, os.strerror(number))


def fsync_dir(path: Path) -> None:
    """Make a directory's entries (a rename, a new file) durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes) -> None:
    """Replace path with data all at once: temp file, fsync, rename, fsync the directory."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass
class Segment:
    """One loaded segment: passages (memory-mapped), stories, postings, optional dense index."""

    name: str
    path: Path
    postings: Postings
    offsets: np.ndarray
    stories: list[dict]
    dense: DenseSegment | None
    _data: mmap.mmap | bytes = b""

    @property
    def n(self) -> int:
        """Passages in this segment."""
        return int(self.offsets.shape[0] - 1)

    def passage(self, local: int) -> dict:
        """The stored record of one passage."""
        raw = self._data[int(self.offsets[local]) : int(self.offsets[local + 1])]
        return json.loads(raw)

    def records(self) -> Iterator[dict]:
        """Every passage record in order."""
        for i in range(self.n):
            yield self.passage(i)


def write_segment(root: Path, records: list[dict], tokenizer: Callable[[str], list[str]],
                   vectors: np.ndarray | None, dense_exact_max: int) -> tuple[str, dict]:
    """Write a new immutable segment; return its name and its manifest entry."""
    name = f"seg-{uuid.uuid4().hex[:12]}"
    tmp = root / "segments" / f".tmp-{name}"
    tmp.mkdir(parents=True)
    try:
        entry = _write_files(tmp, name, records, tokenizer, vectors, dense_exact_max)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # a full disk must not keep half a segment
        raise
    os.rename(tmp, root / "segments" / name)
    fsync_dir(root / "segments")
    return name, entry


def _write_files(tmp: Path, name: str, records: list[dict],
                 tokenizer: Callable[[str], list[str]], vectors: np.ndarray | None,
                 dense_exact_max: int) -> dict:
    fault("segment-write")
    lines = [json.dumps(r, ensure_ascii=False).encode("utf-8") + b"\n" for r in records]
    offsets = np.zeros(len(lines) + 1, dtype=np.int64)
    np.cumsum([len(x) for x in lines], out=offsets[1:])
    (tmp / "passages.jsonl").write_bytes(b"".join(lines))
    np.save(tmp / "offsets.npy", offsets)
    stories: list[dict] = []
    for i, r in enumerate(records):
        if not stories or (stories[-1]["file"], stories[-1]["story"]) != (r["file"], r["story"]):
            stories.append({"file": r["file"], "story": r["story"], "title": r["title"],
                            "start": i, "count": 0})
        stories[-1]["count"] += 1
    (tmp / "stories.json").write_text(json.dumps(stories, ensure_ascii=False), encoding="utf-8")
    Postings.build(tokenizer(index_text(r)) for r in records).save(tmp)
    if vectors is not None:
        build_dense(tmp, vectors, dense_exact_max)
    files = {}
    for f in sorted(tmp.iterdir()):
        with open(f, "rb") as fh:
            os.fsync(fh.fileno())
        files[f.name] = {"bytes": f.stat().st_size, "sha256": sha256_file(f)}
    fsync_dir(tmp)
    fault("segment-written")
    return {"name": name, "passages": len(records), "files": files}


def index_text(record: dict) -> str:
    """What the lexical index sees of a passage: its headline, then its text."""
    return f"{record['title']}\n{record['text']}"


def check_segments(root: Path, entries: list[dict], check_sha: bool) -> None:
    """Raise IndexCorrupt unless every file of these segments is there, whole and unaltered.

    Sizes are always checked; with check_sha every byte is hashed, on two threads (hashlib
    releases the GIL, so two cores hash twice as fast).
    """
    files = []
    for entry in entries:
        path = root / "segments" / entry["name"]
        for fname, meta in entry["files"].items():
            f = path / fname
            if not f.is_file():
                raise IndexCorrupt(f"segment {entry['name']}: {fname} is missing")
            if f.stat().st_size != meta["bytes"]:
                raise IndexCorrupt(f"segment {entry['name']}: {fname} has {f.stat().st_size} "
                                   f"bytes, manifest says {meta['bytes']} (truncated or altered)")
            files.append((entry["name"], fname, f, meta["sha256"]))
    if not check_sha:
        return
    with ThreadPoolExecutor(max_workers=2) as pool:
        digests = list(pool.map(sha256_file, [f for _, _, f, _ in files]))
    for (seg, fname, _, want), got in zip(files, digests, strict=True):
        if got != want:
            raise IndexCorrupt(f"segment {seg}: {fname} checksum does not match")


def load_segment(root: Path, entry: dict, check_sha: bool) -> Segment:
    """Open one segment of a manifest, checking its files first."""
    path = root / "segments" / entry["name"]
    check_segments(root, [entry], check_sha)
    try:
        postings = Postings.load(path)
        offsets = np.load(path / "offsets.npy")
        stories = json.loads((path / "stories.json").read_text(encoding="utf-8"))
        dense = load_dense(path) if "dense.faiss" in entry["files"] else None
        with open(path / "passages.jsonl", "rb") as fh:
            data = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) if offsets[-1] else b""
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise IndexCorrupt(f"segment {entry['name']}: unreadable ({exc})") from exc
    if postings.n_docs != entry["passages"] or offsets.shape[0] != entry["passages"] + 1:
        raise IndexCorrupt(f"segment {entry['name']}: passage counts disagree with the manifest")
    return Segment(entry["name"], path, postings, offsets, stories, dense, data)
