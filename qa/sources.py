"""The source archive: every published issue file, byte for byte, named by its sha256.

Kept beside the index (QA_INDEX_DIR/sources/) so `qa reindex` can rebuild exactly the published
archive when the editors' files are gone. A source is written (atomically, fsynced) under the
writer lock before the manifest that names it, and removed only when no manifest on disk names it.
"""

from __future__ import annotations

from pathlib import Path

from .segment import fault, sha256_file, write_atomic

SOURCES = "sources"


def source_name(sha256: str) -> str:
    """Where an issue's source is kept, relative to the index directory."""
    return f"{SOURCES}/{sha256}.txt"


def write_source(root: Path, sha256: str, data: bytes) -> str:
    """Keep an issue file's bytes (under the writer lock, before the manifest that names them
    is written): written atomically and fsynced; one copy per content. Returns its name."""
    name = source_name(sha256)
    if not kept_intact(root, name, sha256):  # a lost or damaged copy is written again
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        fault("source-write")
        write_atomic(path, data)
    return name


def kept_intact(root: Path, name: str, sha256: str) -> bool:
    """Whether the kept source `name` is there and holds exactly the bytes of `sha256`."""
    try:
        return (root / name).is_file() and sha256_file(root / name) == sha256
    except OSError:
        return False


def check_sources(root: Path, manifest: dict, check_sha: bool = True) -> list[str]:
    """What is wrong with the kept sources of a generation's issues (empty when all is well)."""
    problems = []
    for file, entry in sorted(manifest["issues"].items()):
        name = entry.get("source")
        if not name:
            problems.append(f"{file}: no source kept (added before sources were kept; `qa add` "
                            "its file again to keep it)")
            continue
        path = root / name
        if not path.is_file():
            problems.append(f"{file}: its source {name} is missing")
        elif check_sha and sha256_file(path) != entry["sha256"]:
            problems.append(f"{file}: its source {name} does not match its checksum")
    return problems


def drop_unnamed(root: Path, named: set[str]) -> None:
    """Remove kept sources that no manifest names (under the writer lock)."""
    for path in (root / SOURCES).glob("*.txt"):
        if f"{SOURCES}/{path.name}" not in named:
            path.unlink(missing_ok=True)
