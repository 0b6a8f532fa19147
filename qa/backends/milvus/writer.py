"""`qa index` and `qa add` on Milvus: parse, embed, insert a generation's rows, then publish."""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from ...build import (
    FileOutcome,
    NothingToIndex,
    WriteReport,
    _embed,
    _nothing,
    _parse_all,
    adding_encoder,
    classify,
    issue_records,
)
from ...config import Settings
from ...encoders import Encoder, identity
from ...errors import IndexError_, IndexLocked, IndexMismatch
from ...generations import flock_within
from ...ingest import Issue
from ...lexical import term_key
from ...segment import index_text
from ...text import get_tokenizer
from . import store
from .dialect import (
    DUMMY_DIM,
    MAX_VARCHAR,
    key_token,
    milvus_errors,
    quote,
    signed,
    unavailable,
)

BATCH = 500  # rows per insert call
MAX_QUERY = 16_384  # rows one Milvus query may return


@contextmanager
def writer_lock(settings: Settings) -> Iterator[None]:
    """One writer per collection on this host (flock); writers on other hosts are not seen."""
    root = Path(settings.index_dir)
    root.mkdir(parents=True, exist_ok=True)
    path = root / f"milvus-{settings.milvus_collection}.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if not flock_within(fd, settings.lock_timeout):
            raise IndexLocked(f"another writer is writing Milvus collection "
                              f"{settings.milvus_collection}; try again when it is done")
        yield
    finally:
        os.close(fd)


def _row(number: int, i: int, record: dict, tokens: list[str],
         vector: np.ndarray | None) -> dict:
    rec = json.dumps(record, ensure_ascii=False)
    terms = " ".join(key_token(term_key(t)) for t in tokens)
    for what, value in (("text", rec), ("terms", terms)):
        if len(value.encode()) > MAX_VARCHAR:
            raise IndexMismatch(f"{record['file']} story {record['story']} paragraph "
                                f"{record['paragraph']}: the paragraph is too long for a "
                                f"Milvus VARCHAR ({what}); split it in the issue file")
    row = {"pid": (number << 32) | i, "gen": number, "file": record["file"],
           "story": record["story"], "paragraph": record["paragraph"],
           "paper": record.get("paper") or "", "date": record.get("date") or "",
           "edition": record.get("edition") or "", "record": rec, "terms": terms}
    if vector is not None:
        row["dense"] = [float(x) for x in vector]
    return row


def _rows_of(client: Any, collection: str, expr: str, fields: list[str]) -> list[dict]:
    rows = client.query(collection, filter=expr, output_fields=fields, limit=MAX_QUERY,
                        consistency_level=store.STRONG)
    if len(rows) >= MAX_QUERY:
        raise IndexMismatch(f"more than {MAX_QUERY} passages match {expr}: too many for one "
                            "issue")
    return rows


def write(backend: Any, paths: Sequence[str | Path], settings: Settings,
          encoder: Encoder | None, progress: bool = False,
          meta: Mapping[str, str | None] | None = None, replace: bool = False,
          rebuild: bool = False) -> WriteReport:
    """Build (rebuild=True: the given issues become the whole archive) or add to the archive."""
    started = time.perf_counter()
    issues, rejected, given = _parse_all(paths, meta)
    if not issues and (rebuild or not any(o.status == "rejected" for o in rejected)):
        raise NothingToIndex(_nothing(rejected))
    client, name = backend.client, settings.milvus_collection
    try:
        with writer_lock(settings):
            return _write(backend, client, name, issues, rejected, given, settings, encoder,
                          progress, replace, rebuild, started)
    except IndexError_:
        raise
    except milvus_errors() as exc:  # the server, not our code: one line, nothing published
        raise unavailable(exc, backend.dialect.uri, "writing; nothing was published") from None


def _write(backend: Any, client: Any, name: str, issues: list[Issue],
           rejected: list[FileOutcome], given: dict[str, set[str]], settings: Settings,
           encoder: Encoder | None, progress: bool, replace: bool, rebuild: bool,
           started: float) -> WriteReport:
    passages, df_name, meta_name = store.names(name)
    base_n = store.published(client, name)
    base = store.read_manifest(client, backend.dialect, name, base_n) if base_n else None
    previous = base["generation"] if base else None
    if base and not rebuild:
        encoder = adding_encoder(base, settings, encoder)
    known = base["issues"] if base and not rebuild else {}
    outcomes, fresh, relabelled_map, _ = classify(issues, given, known, replace)
    relabelled = list(relabelled_map.values())
    if not fresh and not relabelled:
        return WriteReport(previous, previous, outcomes + rejected, 0,
                           base["model"] if base else None, time.perf_counter() - started)

    model = encoder.name if encoder else None
    dim = encoder.dim if encoder else None
    if base and not rebuild:
        model, dim = base["model"], base["dim"]
    # embedding first: a model that fails leaves Milvus untouched
    records = [r for issue in fresh for r in issue_records(issue)]
    vectors = _embed(encoder, records, progress)
    store.create_collections(client, backend.dialect, name, dim)
    number = max(store.high_water(client, name), base_n or 0) + 1
    client.insert(meta_name, [{"key": f"claimed:{number:09d}", "kind": "claimed", "gen": number,
                               "body": "", "v": [0.0] * DUMMY_DIM}])
    still_hidden = _clean(client, name, base, settings.keep_generations)
    tokenizer = get_tokenizer(settings.tokenizer)
    rows, delta, tokens = [], Counter(), 0
    for i, record in enumerate(records):
        toks = tokenizer(index_text(record))
        tokens += len(toks)
        delta.update({term_key(t) for t in toks})
        rows.append(_row(number, i, record, toks, vectors[i] if vectors is not None else None))
    # rows an older generation still kept hides stay hidden (deleted once none is kept)
    hidden: list[list] = [] if rebuild else still_hidden
    issues_map = {k: dict(v) for k, v in known.items()}
    fields = ["record", "terms"] + (["dense"] if dim else [])
    for issue in [*fresh, *relabelled]:
        if issue.file not in known:
            continue
        hidden.append([issue.file, number])
        old_rows = _rows_of(client, passages, f"{store.visible(base)} and file == "
                            f"{quote(issue.file)}", fields)
        if issue in relabelled:  # same text, new metadata: the stored rows, re-labelled
            for r in sorted(old_rows, key=lambda r: (json.loads(r["record"])["story"],
                                                     json.loads(r["record"])["paragraph"])):
                record = json.loads(r["record"]) | issue.meta
                rows.append(_row(number, len(rows), record, [], None)
                            | {"terms": r["terms"]}
                            | ({"dense": list(map(float, r["dense"]))} if dim else {}))
        else:
            for r in old_rows:
                keys = r["terms"].split()
                tokens -= len(keys)
                delta.subtract({_untoken(k) for k in keys})
    for issue in [*fresh, *relabelled]:
        issues_map[issue.file] = {"sha256": issue.sha256, "stories": len(issue.stories),
                                  "passages": sum(len(s.passages) for s in issue.stories),
                                  **issue.meta, "gen": number}
    for start in range(0, len(rows), BATCH):
        client.insert(passages, rows[start:start + BATCH])
    df_rows = [{"term": signed(k), "gen": number, "df": int(v), "v": [0.0] * DUMMY_DIM}
               for k, v in delta.items() if v]
    for start in range(0, len(df_rows), BATCH * 4):
        client.insert(df_name, df_rows[start:start + BATCH * 4])
    client.flush(passages)
    client.flush(df_name)
    got = client.query(passages, filter=f"gen == {number}", output_fields=["count(*)"],
                       consistency_level=store.STRONG)[0]["count(*)"]
    if got != len(rows):  # never publish a generation a reader would see half of
        raise IndexMismatch(f"Milvus holds {got} of the {len(rows)} rows just written; nothing "
                            "was published")
    manifest = store.new_manifest(
        number, collection=name, tokenizer=settings.tokenizer, model=model, dim=dim,
        encoder=(base.get("encoder") if base and not rebuild else identity(encoder)),
        issues=issues_map, floor=number if rebuild else (base["floor"] if base else number),
        hidden=hidden, tokens=tokens + (base["counts"]["tokens"] if base and not rebuild else 0))
    store.write_manifest(client, name, manifest)
    client.flush(meta_name)
    store.publish(client, name, number)  # the switch; reads are Strong, no flush needed
    warnings = _collect(client, name, number, settings.keep_generations)
    return WriteReport(manifest["generation"], previous, outcomes + rejected,
                       len(records) if encoder else 0, model, time.perf_counter() - started,
                       warnings)


def _untoken(token: str) -> int:
    return int(token[1:], 36)


def _clean(client: Any, name: str, base: dict | None, keep: int) -> list[list]:
    """Before writing: drop what a dead writer left (rows above the published generation), and
    rows no generation still kept can see: below a rebuild's floor, or superseded by a replace,
    once every kept generation is at or after the one that hid them. Returns the hidden
    entries that must stay in the next manifest."""
    passages, df_name, meta_name = store.names(name)
    top = base["number"] if base else 0
    client.delete(passages, filter=f"gen > {top}")
    client.delete(df_name, filter=f"gen > {top}")
    client.delete(meta_name, filter=f'kind == "manifest" and gen > {top}')
    if not base:
        return []
    oldest = top - max(keep, 1) + 1  # the oldest generation kept (and servable) now
    if int(base["floor"]) <= oldest:
        client.delete(passages, filter=f"gen < {int(base['floor'])}")
        client.delete(df_name, filter=f"gen < {int(base['floor'])}")
    kept = []
    for file, below in base["hidden"]:
        if int(below) <= oldest:
            client.delete(passages, filter=f"file == {quote(file)} and gen < {int(below)}")
        else:
            kept.append([file, below])
    return kept


def _collect(client: Any, name: str, number: int, keep: int) -> list[str]:
    """After publishing: old manifests beyond `keep` go (a failure is only a warning)."""
    meta_name = store.names(name)[2]
    oldest = number - max(keep, 1) + 1  # the newest `keep` generations stay, as on disk
    try:
        client.delete(meta_name, filter=f'(kind == "manifest" or kind == "published" or '
                      f'kind == "claimed") and gen < {oldest}')
    except Exception as exc:
        return [f"published, but old manifests were not removed: {exc}"]
    return []
