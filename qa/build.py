"""Write index generations: `qa index` (from scratch) and `qa add` (new or changed issues)."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .config import Settings
from .encoders import Encoder, embed_passages, identity
from .errors import IndexCorrupt, IndexMismatch, IndexMissing, IndexWriteFailed
from .generations import current_generation, new_manifest, publish, read_manifest, writer_lock
from .ingest import IngestError, Issue, issue_files, parse_file
from .segment import check_segments, load_segment, write_segment
from .text import get_tokenizer


class NothingToIndex(RuntimeError):
    """Every given file was rejected (or none was given); the index is left as it was."""


class ArchiveMoved(IndexCorrupt):
    """Another writer published while a rebuild was parsing and embedding."""


@contextmanager
def _os_errors(root: Path) -> Iterator[None]:
    # A full disk, a read-only mount or a failing device is one line for the user, saying
    # truthfully what serves now: publish() turns failures after the switch into warnings, so
    # an OSError here always means nothing new was published.
    try:
        yield
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        serving = current_generation(root) if (root / "CURRENT").exists() else None
        raise IndexWriteFailed(
            f"cannot write the index: {exc.strerror or exc}{where}; nothing was published, "
            + (f"{serving} still serves" if serving else "there is still no index")) from None


@dataclass
class FileOutcome:
    """What happened to one file of a build or add."""

    file: str
    status: str  # added | replaced | unchanged | rejected
    passages: int = 0
    reason: str | None = None


@dataclass
class WriteReport:
    """The result of a build or an add."""

    generation: str | None
    previous: str | None
    outcomes: list[FileOutcome] = field(default_factory=list)
    embedded: int = 0
    model: str | None = None
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        """JSON form for the CLI and the admin API."""
        return {"generation": self.generation, "previous": self.previous,
                "model": self.model, "embedded": self.embedded,
                "seconds": round(self.seconds, 3), "warnings": self.warnings,
                "files": [o.__dict__ for o in self.outcomes]}


def issue_records(issue: Issue) -> list[dict]:
    """One stored record per passage, carrying its full citation."""
    return [
        {"file": issue.file, "issue_sha": issue.sha256, "story": s_no, "title": story.title,
         "subtitle": story.subtitle, "byline": story.byline, "paragraph": p.paragraph,
         "lines": list(p.lines), "text": p.text}
        for s_no, story in enumerate(issue.stories, 1)
        for p in story.passages
    ]


def _parse_all(paths: Sequence[str | Path]) -> tuple[list[Issue], list[FileOutcome]]:
    issues: list[Issue] = []
    rejected: list[FileOutcome] = []
    seen: set[str] = set()
    for path in issue_files(list(paths)):
        if path.name in seen:
            rejected.append(FileOutcome(path.name, "rejected", reason="same file name given twice"))
            continue
        seen.add(path.name)
        try:
            issues.append(parse_file(path))
        except IngestError as exc:
            rejected.append(FileOutcome(path.name, "rejected", reason=str(exc)))
    return issues, rejected


def _embed(encoder: Encoder | None, records: list[dict], progress: bool) -> np.ndarray | None:
    if encoder is None:
        return None
    # batch by batch (QA_EMBED_BATCH_SIZE, via the encoder), with passages/s and time left
    return embed_passages(encoder, [r["text"] for r in records], progress=progress)


def build(paths: Sequence[str | Path], settings: Settings, encoder: Encoder | None,
          progress: bool = False) -> WriteReport:
    """Build a new generation from scratch out of the given issue files and directories."""
    started = time.perf_counter()
    root = Path(settings.index_dir)
    expected = current_generation(root)  # parsing and embedding run without the lock
    issues, rejected = _parse_all(paths)
    if not issues:
        reasons = "; ".join(o.reason or "" for o in rejected) or "no issue files given"
        raise NothingToIndex(f"nothing to index: {reasons}")
    records = [r for issue in issues for r in issue_records(issue)]
    vectors = _embed(encoder, records, progress)
    tokenizer = get_tokenizer(settings.tokenizer)
    with _os_errors(root), writer_lock(root, settings.lock_timeout):
        previous = current_generation(root)
        if previous != expected:
            # an add published while this build ran; publishing now would drop what it added
            raise ArchiveMoved(
                f"the archive changed while this build ran ({expected or 'empty'} -> "
                f"{previous}: an add or upload published); nothing was published. Run the "
                "rebuild again, with the added issues' files among its paths")
        name, entry = write_segment(root, records, tokenizer, vectors, settings.dense_exact_max)
        manifest = new_manifest(
            root, tokenizer=settings.tokenizer, model=encoder.name if encoder else None,
            dim=encoder.dim if encoder else None, encoder=identity(encoder), segments=[entry],
            issues={i.file: {"sha256": i.sha256, "segment": name, "stories": len(i.stories),
                             "passages": sum(len(s.passages) for s in i.stories)}
                    for i in issues})
        warnings = publish(root, manifest, settings.keep_generations)
    outcomes = [FileOutcome(i.file, "added", sum(len(s.passages) for s in i.stories))
                for i in issues]
    return WriteReport(manifest["generation"], previous, outcomes + rejected, len(records)
                       if encoder else 0, manifest["model"], time.perf_counter() - started,
                       warnings)


def add(paths: Sequence[str | Path], settings: Settings, encoder: Encoder | None,
        progress: bool = False) -> WriteReport:
    """Add issues to the published generation: new ones are indexed, an unchanged one is a
    no-op, one with the same name and new content replaces its old passages. Only new passages
    are embedded."""
    started = time.perf_counter()
    root = Path(settings.index_dir)
    issues, rejected = _parse_all(paths)
    with _os_errors(root), writer_lock(root, settings.lock_timeout):
        try:
            base = read_manifest(root)
        except IndexMissing:
            base = None
        if base is None:
            if not issues:
                raise NothingToIndex("nothing to index: " + "; ".join(
                    o.reason or "" for o in rejected))
        else:
            if base["tokenizer"] != settings.tokenizer:
                raise IndexMismatch(f"index uses tokenizer {base['tokenizer']!r}, settings say "
                                    f"{settings.tokenizer!r}; rebuild with `qa index`")
            if base["model"] and (encoder is None or encoder.name != base["model"]):
                have = encoder.name if encoder else "no sentence model"
                raise IndexMismatch(
                    f"index has dense vectors from {base['model']} but {have} is loaded; new "
                    f"passages cannot be embedded with the same model (load {base['model']}, or "
                    f"rebuild with `qa index`)")
            if not base["model"]:
                encoder = None  # a lexical-only archive stays lexical only until rebuilt
        outcomes: list[FileOutcome] = []
        fresh: list[Issue] = []
        replaced: set[str] = set()
        known = base["issues"] if base else {}
        for issue in issues:
            n = sum(len(s.passages) for s in issue.stories)
            old = known.get(issue.file)
            if old and old["sha256"] == issue.sha256:
                outcomes.append(FileOutcome(issue.file, "unchanged", n))
                continue
            if old:
                replaced.add(issue.file)
            outcomes.append(FileOutcome(issue.file, "replaced" if old else "added", n))
            fresh.append(issue)
        previous = base["generation"] if base else None
        if not fresh:
            return WriteReport(previous, previous, outcomes + rejected, 0,
                               base["model"] if base else None, time.perf_counter() - started)

        # Every segment carried into the new generation is checked byte for byte first: a
        # generation built on a damaged segment would fail `qa verify`, and after a few more
        # publishes garbage collection would delete the last good one.
        try:
            check_segments(root, base["segments"] if base else [], check_sha=True)
        except IndexCorrupt as exc:
            raise IndexCorrupt(f"{exc}; nothing was published. `qa recover` publishes the "
                               "newest generation that verifies") from None
        tokenizer = get_tokenizer(settings.tokenizer)
        segments = list(base["segments"]) if base else []
        issues_map = {k: dict(v) for k, v in known.items()}
        for entry in [s for s in segments if any(
                known[f]["segment"] == s["name"] for f in replaced)]:
            segments.remove(entry)
            seg = load_segment(root, entry, check_sha=False)
            records = list(seg.records())
            keep = np.array([r["file"] not in replaced for r in records], dtype=bool)
            if keep.any():
                vectors = np.asarray(seg.dense.vectors)[keep] if seg.dense else None
                name, new_entry = write_segment(
                    root, [r for r, k in zip(records, keep, strict=True) if k], tokenizer, vectors,
                    settings.dense_exact_max)
                segments.append(new_entry)
                for meta in issues_map.values():
                    if meta["segment"] == entry["name"]:
                        meta["segment"] = name
        records = [r for issue in fresh for r in issue_records(issue)]
        vectors = _embed(encoder, records, progress)
        name, entry = write_segment(root, records, tokenizer, vectors, settings.dense_exact_max)
        segments.append(entry)
        for issue in fresh:
            issues_map[issue.file] = {"sha256": issue.sha256, "segment": name,
                                      "stories": len(issue.stories),
                                      "passages": sum(len(s.passages) for s in issue.stories)}
        model = base["model"] if base else (encoder.name if encoder else None)
        dim = base["dim"] if base else (encoder.dim if encoder else None)
        manifest = new_manifest(root, tokenizer=settings.tokenizer, model=model, dim=dim,
                                encoder=base.get("encoder") if base else identity(encoder),
                                segments=segments, issues=issues_map)
        warnings = publish(root, manifest, settings.keep_generations)
    return WriteReport(manifest["generation"], previous, outcomes + rejected,
                       len(records) if encoder else 0, model, time.perf_counter() - started,
                       warnings)
