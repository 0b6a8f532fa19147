"""Write index generations: `qa index` (from scratch) and `qa add` (new or changed issues)."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .config import Settings
from .encoders import Encoder, embed_passages, identity
from .errors import IndexCorrupt, IndexMismatch, IndexMissing, IndexWriteFailed
from .generations import current_generation, new_manifest, publish, read_manifest, writer_lock
from .ingest import (
    META_FIELDS,
    IngestError,
    Issue,
    MetaError,
    clean_meta,
    parse_bytes,
    parse_file,
    read_sidecar,
    scan,
)
from .segment import check_segments, fault, load_segment, write_segment
from .sources import check_sources, kept_intact, write_source
from .text import get_tokenizer


class NothingToIndex(RuntimeError):
    """Every given file was rejected (or none was given); the index is left as it was."""


class ArchiveMoved(IndexCorrupt):
    """Another writer published while a rebuild was parsing and embedding."""


class SourcesMissing(IndexCorrupt):
    """`qa reindex` cannot rebuild the published archive: some issue's kept source is gone."""


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
    status: str  # added | replaced | unchanged | rejected | skipped (not an issue file)
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
    """One stored record per passage, carrying its full citation (paper, date and edition
    included: None where the editor gave none)."""
    return [
        {"file": issue.file, "issue_sha": issue.sha256, **issue.meta, "story": s_no,
         "title": story.title, "subtitle": story.subtitle, "byline": story.byline,
         "paragraph": p.paragraph, "lines": list(p.lines), "text": p.text}
        for s_no, story in enumerate(issue.stories, 1)
        for p in story.passages
    ]


def issue_entry(issue: Issue, segment: str, source: str) -> dict:
    """An issue's entry in a manifest's `issues`."""
    return {"sha256": issue.sha256, "segment": segment, "stories": len(issue.stories),
            "passages": sum(len(s.passages) for s in issue.stories), **issue.meta,
            "source": source}


def given_meta(paper: str | None = None, date: str | None = None,
               edition: str | None = None) -> dict[str, str | None]:
    """Checked metadata an editor gave (CLI options, upload fields): only the fields given; an
    empty string clears that field. Raises MetaError."""
    given = {k: v for k, v in zip(META_FIELDS, (paper, date, edition), strict=True)
             if v is not None}
    cleaned = clean_meta(**given)
    return {k: cleaned[k] for k in given}


def classify(issues: list[Issue], given: Mapping[str, set[str]], known: Mapping[str, dict],
             replace: bool) -> tuple[list[FileOutcome], list[Issue], dict[str, Issue],
                                     list[Issue]]:
    """What an add does with each parsed issue, against the published issues `known`:
    (outcomes, fresh: new text to embed, relabelled: same text with new metadata, unchanged).
    A metadata field the editor did not give keeps what the archive holds."""
    outcomes: list[FileOutcome] = []
    fresh: list[Issue] = []
    relabelled: dict[str, Issue] = {}
    unchanged: list[Issue] = []
    for issue in issues:
        n = sum(len(s.passages) for s in issue.stories)
        old = known.get(issue.file)
        if old:
            for key in META_FIELDS:
                if key not in given[issue.file]:
                    setattr(issue, key, old.get(key))
        if old and old["sha256"] == issue.sha256:
            changed = [k for k in META_FIELDS if old.get(k) != getattr(issue, k)]
            if changed:
                relabelled[issue.file] = issue
                why = "new " + ", ".join(f"{k} {getattr(issue, k) or '(none)'}" for k in changed)
                outcomes.append(FileOutcome(issue.file, "replaced", n, reason=why))
            else:
                unchanged.append(issue)
                outcomes.append(FileOutcome(issue.file, "unchanged", n))
            continue
        if old and not replace:
            outcomes.append(FileOutcome(issue.file, "rejected", reason=(
                "already indexed with other content; pass --replace (upload: replace=true) "
                "to replace it")))
            continue
        outcomes.append(FileOutcome(issue.file, "replaced" if old else "added", n))
        fresh.append(issue)
    return outcomes, fresh, relabelled, unchanged


def adding_encoder(base: dict, settings: Settings, encoder: Encoder | None) -> Encoder | None:
    """The encoder an add to the published archive `base` embeds with: IndexMismatch unless
    the tokenizer and the model are the archive's; None for a lexical-only archive (it stays
    lexical only until rebuilt)."""
    if base["tokenizer"] != settings.tokenizer:
        raise IndexMismatch(f"index uses tokenizer {base['tokenizer']!r}, settings say "
                            f"{settings.tokenizer!r}; rebuild with `qa index`")
    if base["model"] and (encoder is None or encoder.name != base["model"]):
        have = encoder.name if encoder else "no sentence model"
        raise IndexMismatch(
            f"index has dense vectors from {base['model']} but {have} is loaded; new "
            f"passages cannot be embedded with the same model (load {base['model']}, or "
            f"rebuild with `qa index`)")
    return encoder if base["model"] else None


def _parse_all(paths: Sequence[str | Path], meta: Mapping[str, str | None] | None = None
               ) -> tuple[list[Issue], list[FileOutcome], dict[str, set[str]]]:
    """Parse every issue file; the metadata of each comes from its sidecar, then `meta` (fields
    given override). Returns the issues, the rejected and skipped, and which metadata fields
    were given for each file (the others keep what the archive holds)."""
    issues: list[Issue] = []
    rejected: list[FileOutcome] = []
    given: dict[str, set[str]] = {}
    seen: set[str] = set()
    files, skipped = scan(list(paths))
    for path in files:
        if path.name in seen:
            rejected.append(FileOutcome(path.name, "rejected", reason="same file name given twice"))
            continue
        seen.add(path.name)
        try:
            issue = parse_file(path)
            fields = dict(read_sidecar(path) or {})
        except IngestError as exc:
            rejected.append(FileOutcome(path.name, "rejected", reason=exc.reason))
            continue
        except MetaError as exc:
            rejected.append(FileOutcome(path.name, "rejected", reason=str(exc)))
            continue
        fields.update(meta or {})
        for key in META_FIELDS:
            setattr(issue, key, fields.get(key))
        given[issue.file] = set(fields)
        issues.append(issue)
    rejected += [FileOutcome(p.name + ("/" if p.is_dir() else ""), "skipped", reason=why)
                 for p, why in skipped]
    return issues, rejected, given


def _reasons(outcomes: list[FileOutcome]) -> str:
    return "; ".join(f"{o.file}: {o.reason}" for o in outcomes if o.status == "rejected")


def _nothing(outcomes: list[FileOutcome]) -> str:
    reasons = _reasons(outcomes) or "no issue files given (*.txt)"
    skipped = [o.file for o in outcomes if o.status == "skipped"]
    return f"nothing to index: {reasons}" + (f" (skipped: {', '.join(skipped)})" if skipped
                                              else "")


def _embed(encoder: Encoder | None, records: list[dict], progress: bool) -> np.ndarray | None:
    if encoder is None:
        return None
    # batch by batch (QA_EMBED_BATCH_SIZE, via the encoder), with passages/s and time left
    return embed_passages(encoder, [r["text"] for r in records], progress=progress)


def build(paths: Sequence[str | Path], settings: Settings, encoder: Encoder | None,
          progress: bool = False, meta: Mapping[str, str | None] | None = None) -> WriteReport:
    """Build a new generation from scratch out of the given issue files and directories."""
    root = Path(settings.index_dir)
    expected = current_generation(root)  # parsing and embedding run without the lock
    issues, rejected, _ = _parse_all(paths, meta)
    if not issues:
        raise NothingToIndex(_nothing(rejected))
    return _build_issues(issues, rejected, settings, encoder, progress, expected)


def _build_issues(issues: list[Issue], rejected: list[FileOutcome], settings: Settings,
                  encoder: Encoder | None, progress: bool, expected: str | None) -> WriteReport:
    started = time.perf_counter()
    root = Path(settings.index_dir)
    records = [r for issue in issues for r in issue_records(issue)]
    vectors = _embed(encoder, records, progress)
    tokenizer = get_tokenizer(settings.tokenizer)
    with _os_errors(root), writer_lock(root, settings.lock_timeout, rebuild=True):
        previous = current_generation(root)
        if previous != expected:
            # an add published while this build ran; publishing now would drop what it added
            raise ArchiveMoved(
                f"the archive changed while this build ran ({expected or 'empty'} -> "
                f"{previous}: an add or upload published); nothing was published. Run the "
                "rebuild again (`qa reindex` rebuilds exactly what is published)")
        # sources first, fsynced: a generation never names a source that is not on disk
        sources = {i.file: write_source(root, i.sha256, i.raw) for i in issues}
        fault("sources-written")
        name, entry = write_segment(root, records, tokenizer, vectors, settings.dense_exact_max)
        manifest = new_manifest(
            root, tokenizer=settings.tokenizer, model=encoder.name if encoder else None,
            dim=encoder.dim if encoder else None, encoder=identity(encoder), segments=[entry],
            issues={i.file: issue_entry(i, name, sources[i.file]) for i in issues})
        warnings = publish(root, manifest, settings.keep_generations)
    outcomes = [FileOutcome(i.file, "added", sum(len(s.passages) for s in i.stories))
                for i in issues]
    return WriteReport(manifest["generation"], previous, outcomes + rejected, len(records)
                       if encoder else 0, manifest["model"], time.perf_counter() - started,
                       warnings)


def reindex(settings: Settings, encoder: Encoder | None, progress: bool = False) -> WriteReport:
    """Rebuild the published archive from its kept sources: the same issues with the same
    metadata, parsed and embedded afresh into a new generation (the original files may be
    gone). Raises SourcesMissing, naming every issue it could not rebuild."""
    root = Path(settings.index_dir)
    base = read_manifest(root)
    problems = check_sources(root, base)  # every source there and unaltered, or nothing
    issues: list[Issue] = []
    for file, entry in sorted(base["issues"].items()):
        if problems:
            break
        try:
            issue = parse_bytes((root / entry["source"]).read_bytes(), file)
        except OSError as exc:
            problems.append(f"{file}: its source cannot be read ({exc.strerror or exc})")
            continue
        except IngestError as exc:  # ingest rules changed since: never drop an issue silently
            problems.append(f"{file}: {exc.reason}")
            continue
        for key in META_FIELDS:
            setattr(issue, key, entry.get(key))
        issues.append(issue)
    if problems:
        raise SourcesMissing(f"cannot rebuild {base['generation']} from its sources; nothing "
                             "was published: " + "; ".join(problems))
    if not issues:
        raise NothingToIndex(f"nothing to index: {base['generation']} holds no issues")
    return _build_issues(issues, [], settings, encoder, progress, base["generation"])


def add(paths: Sequence[str | Path], settings: Settings, encoder: Encoder | None,
        progress: bool = False, meta: Mapping[str, str | None] | None = None,
        replace: bool = False) -> WriteReport:
    """Add issues to the published generation: new ones are indexed, an unchanged one is a
    no-op, one with new metadata is re-recorded (its vectors reused), and one with the same
    name and other content replaces its old passages only with `replace` (else it is rejected).
    Only new passages are embedded; every published issue's file is kept in the source
    archive. `meta` (from given_meta) applies to every file; fields not given keep what the
    archive holds."""
    started = time.perf_counter()
    root = Path(settings.index_dir)
    issues, rejected, given = _parse_all(paths, meta)
    if not issues and not any(o.status == "rejected" for o in rejected):
        raise NothingToIndex(_nothing(rejected))  # an empty directory is not "no change"
    with _os_errors(root), writer_lock(root, settings.lock_timeout):
        try:
            base = read_manifest(root)
        except IndexMissing:
            base = None
        if base is None:
            if not issues:
                raise NothingToIndex(_nothing(rejected))
        else:
            encoder = adding_encoder(base, settings, encoder)
        known = base["issues"] if base else {}
        outcomes, fresh, relabelled, unchanged = classify(issues, given, known, replace)
        archive_only: list[Issue] = []  # unchanged, but indexed before sources were kept
        for issue in unchanged:
            old = known[issue.file]
            if not old.get("source"):
                archive_only.append(issue)
            elif not kept_intact(root, old["source"], issue.sha256):
                # the same bytes again: the kept copy the manifest names is repaired in
                # place, nothing else changes
                write_source(root, issue.sha256, issue.raw)
        previous = base["generation"] if base else None
        if not fresh and not relabelled and not archive_only:
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
        # the sources first, fsynced: a published generation never names one not on disk
        sources = {i.file: write_source(root, i.sha256, i.raw)
                   for i in [*fresh, *relabelled.values(), *archive_only]}
        fault("sources-written")
        tokenizer = get_tokenizer(settings.tokenizer)
        segments = list(base["segments"]) if base else []
        issues_map = {k: dict(v) for k, v in known.items()}
        for issue in archive_only:
            issues_map[issue.file]["source"] = sources[issue.file]
        moving = set(relabelled) | {i.file for i in fresh if i.file in known}
        moved: list[dict] = []  # re-labelled records, with their vectors (never re-embedded)
        moved_vectors: list[np.ndarray] = []
        for entry in [s for s in segments if any(
                known[f]["segment"] == s["name"] for f in moving)]:
            segments.remove(entry)
            seg = load_segment(root, entry, check_sha=False)
            records = list(seg.records())
            keep = np.array([r["file"] not in moving for r in records], dtype=bool)
            vectors = np.asarray(seg.dense.vectors) if seg.dense else None
            for i, r in enumerate(records):
                if r["file"] in relabelled:
                    moved.append(r | relabelled[r["file"]].meta)
                    if vectors is not None:
                        moved_vectors.append(vectors[i])
            if keep.any():
                name, new_entry = write_segment(
                    root, [r for r, k in zip(records, keep, strict=True) if k], tokenizer,
                    vectors[keep] if vectors is not None else None, settings.dense_exact_max)
                segments.append(new_entry)
                for meta_ in issues_map.values():
                    if meta_["segment"] == entry["name"]:
                        meta_["segment"] = name
        records = [r for issue in fresh for r in issue_records(issue)]
        vectors = _embed(encoder, records, progress)
        embedded = len(records) if encoder else 0
        if moved:
            records += moved
            if vectors is not None:
                vectors = np.concatenate([vectors, np.stack(moved_vectors)]) if moved_vectors \
                    else vectors
        if records:
            name, entry = write_segment(root, records, tokenizer, vectors,
                                        settings.dense_exact_max)
            segments.append(entry)
            for issue in [*fresh, *relabelled.values()]:
                issues_map[issue.file] = issue_entry(issue, name, sources[issue.file])
        model = base["model"] if base else (encoder.name if encoder else None)
        dim = base["dim"] if base else (encoder.dim if encoder else None)
        manifest = new_manifest(root, tokenizer=settings.tokenizer, model=model, dim=dim,
                                encoder=base.get("encoder") if base else identity(encoder),
                                segments=segments, issues=issues_map)
        warnings = publish(root, manifest, settings.keep_generations)
    return WriteReport(manifest["generation"], previous, outcomes + rejected, embedded, model,
                       time.perf_counter() - started, warnings)
