"""Generations on disk: sealed manifests, CURRENT, the one-writer lock, publish, clean-up, recovery.

A generation is a manifest naming immutable segments; CURRENT names the published one. The
manifest carries a SHA-256 of its own canonical JSON, so a hand edit (a segment entry removed,
a tokenizer changed, counts inflated) is caught on load and by `qa verify`. Generation names
come from a high-water mark that only grows, so a name is never reused even after manifests are
deleted. Writers hold a lock on the index directory itself (not on a file that can be deleted)
and, before they write, refuse an archive whose CURRENT is lost or broken instead of reading it
as empty: `qa recover` points CURRENT at the newest generation that verifies.

Every published issue's file is kept in sources/<sha256>.txt, written and fsynced before the
manifest that names it, and removed only when no manifest on disk names it any more.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from . import __version__
from .errors import IndexCorrupt, IndexLocked, IndexLost, IndexMismatch, IndexMissing
from .segment import check_segments, fault, write_atomic
from .sources import SOURCES, drop_unnamed

FORMAT = 3  # 2: memory-mapped lexical arrays with 64-bit term keys; 3: + sealed manifests
HIGH_WATER = "LAST_GENERATION"  # the highest generation number ever handed out
PUBLISHED = "LAST_PUBLISHED"  # the newest generation ever published (or recovered to)
QUARANTINE = "quarantine"  # manifests `qa recover` set aside: their data is kept, not served


def library_versions() -> dict[str, str]:
    """Versions of the libraries whose behaviour shapes an index."""
    import faiss
    import jieba

    return {"qa": __version__, "numpy": np.__version__, "faiss": faiss.__version__,
            "jieba": jieba.__version__}


def current_generation(root: Path) -> str | None:
    """Name of the published generation, or None."""
    try:
        return (root / "CURRENT").read_text(encoding="utf-8").strip() or None
    except FileNotFoundError:
        return None


def generation_names(root: Path) -> list[str]:
    """Every generation with a manifest on disk, oldest first."""
    return sorted(p.stem for p in (root / "generations").glob("gen-*.json"))


def last_published(root: Path) -> str | None:
    """The newest generation ever published here, or None (nothing ever was)."""
    return _read(root / PUBLISHED) or None


GENERATION_NAME = re.compile(r"^gen-\d{6,12}\Z")  # bounded: int() of 5,000 digits would raise


def generation_number(name: str | None) -> int:
    """The number in gen-NNNNNN (names only grow: larger is newer); 0 for anything else."""
    return int(name[4:]) if name and GENERATION_NAME.match(name) else 0


def _kept_manifests(root: Path) -> list[Path]:
    # what may own a segment or a source: the generations and the quarantined manifests
    return [*(root / "generations").glob("gen-*.json"), *(root / QUARANTINE).glob("gen-*.json")]


# ---------------------------------------------------------------- manifests

def manifest_checksum(manifest: dict) -> str:
    """SHA-256 of the manifest's canonical JSON, its own checksum field left out."""
    body = {k: v for k, v in manifest.items() if k != "checksum"}
    raw = json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(raw.encode("utf-8")).hexdigest()


def seal(manifest: dict) -> dict:
    """The manifest with its checksum set."""
    return manifest | {"checksum": manifest_checksum(manifest)}


def check_manifest(manifest: dict, where: str) -> None:
    """Raise unless the manifest is this format, unaltered and consistent with itself."""
    if manifest.get("format") != FORMAT:
        raise IndexMismatch(f"{where}: index format {manifest.get('format')}, this qa reads "
                            f"{FORMAT}; rebuild with `qa index`")
    if manifest.get("checksum") != manifest_checksum(manifest):
        raise IndexCorrupt(f"{where}: manifest checksum does not match (edited by hand or "
                           "damaged); `qa recover` restores the newest generation that verifies")
    # The seal proves nothing about a writer's own bug: counts must add up as well.
    segs, issues = manifest["segments"], manifest["issues"]
    names = {s["name"] for s in segs}
    counts = {"issues": len(issues), "stories": sum(i["stories"] for i in issues.values()),
              "passages": sum(s["passages"] for s in segs), "segments": len(segs)}
    if (counts != manifest["counts"] or any(i["segment"] not in names for i in issues.values())
            or sum(i["passages"] for i in issues.values()) != counts["passages"]):
        raise IndexCorrupt(f"{where}: manifest counts disagree with its segments and issues")


def read_manifest(root: Path, generation: str | None = None) -> dict:
    """The checked manifest of a generation (default: the published one)."""
    generation = generation or current_generation(root)
    if generation is None:
        if generation_names(root):
            raise IndexLost(f"{root}: CURRENT is missing but generations exist; run "
                            "`qa recover` to publish the newest one that verifies")
        raise IndexMissing(f"no index in {root}: build one with `qa index`")
    path = root / "generations" / f"{generation}.json"
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise IndexCorrupt(f"{root}: CURRENT names {generation} but its manifest is missing; "
                           "`qa recover` restores the newest generation that verifies") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise IndexCorrupt(f"{path}: manifest is not valid JSON ({exc})") from None
    if not isinstance(manifest, dict):
        raise IndexCorrupt(f"{path}: manifest is not a JSON object")
    try:
        check_manifest(manifest, str(path))
    except (KeyError, TypeError, AttributeError) as exc:
        raise IndexCorrupt(f"{path}: manifest is incomplete ({exc!r})") from None
    return manifest


def verify_generation(root: Path, generation: str, check_sha: bool = True) -> dict:
    """The manifest of a generation after checking it and every byte of its segments."""
    manifest = read_manifest(root, generation)
    check_segments(root, manifest["segments"], check_sha)
    return manifest


def newest_verified(root: Path) -> tuple[str | None, dict[str, str]]:
    """The newest published generation that verifies, and why each newer one does not.

    Manifests past the last publish were written by writers that died before publishing:
    they are never candidates."""
    limit = generation_number(last_published(root)) or float("inf")
    failures: dict[str, str] = {}
    for name in reversed(generation_names(root)):
        if generation_number(name) > limit:
            continue
        try:
            verify_generation(root, name)
            return name, failures
        except (IndexCorrupt, IndexMismatch) as exc:
            failures[name] = str(exc)
        except OSError as exc:  # an unreadable file fails its generation, not the search
            failures[name] = f"cannot be read ({exc.strerror or exc})"
    return None, failures


def next_generation_name(root: Path) -> str:
    """gen-NNNNNN past every name ever handed out (manifests, CURRENT, the high-water mark)."""
    names = [*generation_names(root), current_generation(root), _read(root / HIGH_WATER)]
    return f"gen-{max(map(generation_number, names), default=0) + 1:06d}"


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8").strip()
    except (FileNotFoundError, UnicodeDecodeError):
        return ""


def new_manifest(root: Path, *, tokenizer: str, model: str | None, dim: int | None,
                 segments: list[dict], issues: dict, encoder: dict | None = None) -> dict:
    """Assemble a sealed manifest for a new generation (call under the writer lock).

    `encoder` is qa.encoders.identity(): backend, model, quantisation, version of the vectors."""
    name = next_generation_name(root)
    write_atomic(root / HIGH_WATER, (name + "\n").encode())  # before use: never handed out twice
    return seal({
        "format": FORMAT,
        "generation": name,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "versions": library_versions(),
        "tokenizer": tokenizer,
        "model": model,
        "dim": dim,
        "encoder": encoder,
        "retrievers": ["lexical", "dense"] if model else ["lexical"],
        "counts": {
            "issues": len(issues),
            "stories": sum(i["stories"] for i in issues.values()),
            "passages": sum(s["passages"] for s in segments),
            "segments": len(segments),
        },
        "segments": segments,
        "issues": issues,
    })


def _drop_orphan_sources(root: Path) -> None:
    # A source stays while any generation on disk (or in quarantine) names it: `qa recover`
    # may go back to one.
    live: set[str] = set()
    for path in _kept_manifests(root):
        try:
            m = json.loads(path.read_text("utf-8"))
            live.update(i["source"] for i in m["issues"].values() if i.get("source"))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return  # an unreadable manifest may name any source: delete nothing
    drop_unnamed(root, live)


# ---------------------------------------------------------------- the writer

def flock_within(fd: int, timeout: float) -> bool:
    """Take an exclusive flock on fd, waiting up to timeout seconds; False if it stays held."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.1)


@contextmanager
def writer_lock(root: Path, timeout: float = 0.0, check: bool = True,
                rebuild: bool = False) -> Iterator[None]:
    """Hold the index's single-writer lock, refuse a lost CURRENT, clean up crashed writers.

    The lock is flock() on the index directory itself: deleting LOCK (which only names the
    holder, for the error message) cannot let a second writer in. A `rebuild` (a full build)
    may replace a published generation of an older index format.
    """
    root.mkdir(parents=True, exist_ok=True)
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    if not flock_within(fd, timeout):
        os.close(fd)
        holder = _read(root / "LOCK") or "another process"
        raise IndexLocked(f"{root} is being written by {holder}; try again when it finishes")
    try:
        (root / "LOCK").write_text(f"pid {os.getpid()}", encoding="utf-8")
        if check:
            _refuse_lost_current(root, rebuild)
            clean_leftovers(root)
        yield
    finally:
        try:  # LOCK only names the holder: failing to remove it must not turn a publish into
            (root / "LOCK").unlink(missing_ok=True)  # a reported failure
        except OSError:
            pass
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


def _refuse_lost_current(root: Path, rebuild: bool = False) -> None:
    # A writer that read "no CURRENT" as "empty archive" would publish only its own files and
    # let garbage collection delete the rest: refuse unless nothing was ever published here
    # (then whatever lies here is what a first build left when it died: leftovers).
    current, published = current_generation(root), last_published(root)
    if current is None and published is None and not generation_names(root):
        return
    names = generation_names(root)
    if (current in names and published in names
            and generation_number(current) < generation_number(published)):
        # CURRENT went back by hand: a writer would take the newer generations for
        # unpublished leftovers and delete them
        raise IndexLost(f"{root}: CURRENT names {current} but {published} was published after "
                        "it (CURRENT edited by hand?); nothing was written. `qa recover` "
                        "publishes the newest generation that verifies")
    if rebuild and current is not None and _format_of(root, current) not in (None, FORMAT):
        return  # a full build replaces an archive of an older format: the upgrade path
    try:
        read_manifest(root, current)
    except (IndexCorrupt, IndexMismatch, IndexMissing) as exc:
        best, _ = newest_verified(root)
        hint = (f"The newest generation that verifies is {best}: `qa recover` publishes it"
                if best else "No generation verifies; rebuild with `qa index` into a new "
                "directory")
        what = "CURRENT is missing" if current is None else f"{current} is unusable ({exc})"
        raise IndexLost(f"{root}: {what}; nothing was written. {hint}") from None


def _format_of(root: Path, generation: str) -> object:
    try:
        return json.loads((root / "generations" / f"{generation}.json").read_text("utf-8"))[
            "format"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def clean_leftovers(root: Path) -> None:
    """Under the lock: drop what killed or failed writers left (temps, unpublished files)."""
    for tmp in (root / "segments").glob(".tmp-*"):
        shutil.rmtree(tmp, ignore_errors=True)
    for pattern in (".*.tmp", "generations/.*.tmp", f"{SOURCES}/.*.tmp"):
        for tmp in root.glob(pattern):
            tmp.unlink(missing_ok=True)
    cutoff = max(generation_number(current_generation(root)),
                 generation_number(last_published(root)))
    if cutoff:  # manifests past the last publish were never published
        for name in generation_names(root):
            if generation_number(name) > cutoff:
                (root / "generations" / f"{name}.json").unlink(missing_ok=True)
    _drop_orphan_segments(root)
    _drop_orphan_sources(root)


def _drop_orphan_segments(root: Path) -> None:
    live: set[str] = set()
    for path in _kept_manifests(root):
        try:
            m = json.loads(path.read_text("utf-8"))
            live.update(s["name"] for s in m["segments"])
        except (OSError, ValueError, KeyError, TypeError):
            return  # an unreadable manifest may own any segment: delete nothing
    for seg in (root / "segments").glob("seg-*"):
        if seg.name not in live:
            shutil.rmtree(seg, ignore_errors=True)


def publish(root: Path, manifest: dict, keep: int) -> list[str]:
    """Write the manifest and switch CURRENT to it; return warnings from after the switch.

    An error before CURRENT moves propagates (nothing was published). Once CURRENT names the
    new generation it is published, so a later failure (a directory fsync, garbage collection)
    is reported as a warning, never as a failed write.
    """
    gens = root / "generations"
    gens.mkdir(parents=True, exist_ok=True)
    write_atomic(gens / f"{manifest['generation']}.json",
                 json.dumps(manifest, ensure_ascii=False, indent=1).encode("utf-8"))
    fault("manifest-written")
    warnings: list[str] = []
    try:
        write_atomic(root / "CURRENT", (manifest["generation"] + "\n").encode())
    except OSError as exc:
        if current_generation(root) != manifest["generation"]:
            raise
        warnings.append(f"published, but the directory could not be synced ({exc.strerror}): "
                        "a power cut now could undo it")
    try:  # what the next writer's clean-up counts as published
        write_atomic(root / PUBLISHED, (manifest["generation"] + "\n").encode())
    except OSError as exc:
        warnings.append(f"the publish could not be recorded in {PUBLISHED} ({exc.strerror})")
    try:
        fault("collect-garbage")
        collect_garbage(root, keep)
    except OSError as exc:
        warnings.append(f"old generations were not collected ({exc.strerror}); the next "
                        "writer retries")
    return warnings


def collect_garbage(root: Path, keep: int) -> None:
    """Remove generations beyond the newest `keep` (never CURRENT) and their segments."""
    current = current_generation(root)
    names = generation_names(root)
    kept = set(names[-max(keep, 1):]) | {current}
    for name in names:
        if name not in kept:
            (root / "generations" / f"{name}.json").unlink(missing_ok=True)
    _drop_orphan_segments(root)
    _drop_orphan_sources(root)


def recover(root: Path, timeout: float = 0.0) -> tuple[str | None, str, dict[str, str],
                                                     dict[str, list[str]]]:
    """Point CURRENT at the newest published generation that verifies.

    Returns (previous, now, why each newer one failed, issues each set-aside generation held
    that `now` does not hold the same). Newer published generations that fail are moved to
    quarantine/ with their segments and sources kept: nothing is deleted that may be
    salvaged."""
    with writer_lock(root, timeout, check=False):
        previous = current_generation(root)
        chosen, failures = newest_verified(root)
        if chosen is None:
            detail = "; ".join(f"{k}: {v}" for k, v in failures.items())
            raise IndexCorrupt(f"no generation in {root} verifies"
                               + (f" ({detail})" if detail else "") + ": rebuild with `qa index`")
        kept = _issue_hashes(root / "generations" / f"{chosen}.json")
        set_aside: dict[str, list[str]] = {}
        for name in failures:  # all newer than chosen
            path = root / "generations" / f"{name}.json"
            held = _issue_hashes(path)
            set_aside[name] = sorted(f for f, sha in held.items() if kept.get(f) != sha)
            (root / QUARANTINE).mkdir(exist_ok=True)
            os.replace(path, root / QUARANTINE / path.name)
        if previous != chosen:
            write_atomic(root / "CURRENT", (chosen + "\n").encode())
        write_atomic(root / PUBLISHED, (chosen + "\n").encode())
        clean_leftovers(root)
    return previous, chosen, failures, set_aside


def _issue_hashes(path: Path) -> dict[str, str]:
    try:
        return {f: i.get("sha256", "") for f, i in json.loads(path.read_text("utf-8"))
                ["issues"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}
