"""Editors' API: upload issue files (bearer token); ingest and indexing run in the background.

A job is a file under QA_UPLOAD_DIR/jobs, so any worker can answer for it, and it names the process
that owns it. A queued or running job whose owner is gone (killed worker, restarted service) is
resumed by the next worker that looks: at start, on an upload, on a poll. Its files wait in
incoming/<job>/ until they are indexed (then kept in QA_UPLOAD_DIR) or the job fails (then kept in
QA_UPLOAD_DIR/failed/<job>/); no path deletes an uploaded file that was not indexed or rejected.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import os
import re
import shutil
import sys
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from flask import Blueprint, Flask, current_app, jsonify, request

from ..backends import add
from ..build import NothingToIndex, given_meta
from ..config import ADMIN_TOKEN_MIN_CHARS, Settings
from ..errors import IndexError_
from ..ingest import MetaError
from . import ApiError, settings_of
from .jobs import (
    JOB_STALE_AFTER,
    _heartbeat,
    _incoming,
    _is_mine,
    _jobs_dir,
    _jobs_lock,
    _load,
    _me,
    _now,
    _own,
    _owner_gone,
    _public,
    _record,
    _save_job,
)

log = logging.getLogger(__name__)
bp = Blueprint("admin", __name__, url_prefix="/api/admin")

JOB_LOCK_TIMEOUT = 600.0  # a job waits this long for a CLI `qa add` holding the index lock
JOB_MAX_ATTEMPTS = 3  # a job whose worker died this often (a file that kills it?) fails, files kept
NAME_MAX_BYTES = 200  # stored file names, ".txt" included, in UTF-8; file systems allow 255
ACTIVE = ("queued", "running")
_UNSAFE = re.compile(r"[^\w.\-]")  # \w keeps Chinese letters in file names
_JOB_ID = re.compile(r"^[0-9a-f]{32}$")

_runners: dict[int, Callable[[Callable[[], None]], Any]] = {}
_runners_lock = threading.Lock()


# ---------------------------------------------------------------- names and tokens

def safe_name(raw: str) -> str | None:
    """A .txt file name that cannot escape the upload directory and is at most NAME_MAX_BYTES
    UTF-8 bytes (cut between characters), or None if nothing usable is left."""
    name = raw.replace("\\", "/").rsplit("/", 1)[-1]
    if name.lower().endswith(".txt"):
        name = name[:-4]
    stem = _UNSAFE.sub("_", name).strip("._ ")
    # a cut by characters let 120 Chinese characters (360 bytes) through to the file system
    stem = stem.encode()[:NAME_MAX_BYTES - 4].decode("utf-8", "ignore").rstrip("._ ")
    # one suffix spelling: `qa index uploads/` globs *.txt, and a stored X.TXT would be missed
    return stem + ".txt" if stem else None


def admin_disabled_reason(settings: Settings) -> str | None:
    """Why the admin API is off (no token, or one too short to resist guessing); None if on."""
    token = settings.admin_token.strip()
    if not token:
        return "the admin API is disabled (QA_ADMIN_TOKEN is not set)"
    if len(token) < ADMIN_TOKEN_MIN_CHARS:
        return (f"the admin API is disabled: QA_ADMIN_TOKEN must be at least "
                f"{ADMIN_TOKEN_MIN_CHARS} characters")
    return None


def _on_register(state: Any) -> None:
    # Runs once per app, inside create_app: a fresh worker picks up jobs its predecessor left.
    settings: Settings = state.app.config["QA_SETTINGS"]
    reason = admin_disabled_reason(settings)
    if reason:
        if settings.admin_token.strip():
            log.warning("%s; it has %d", reason, len(settings.admin_token.strip()))
        return
    try:
        recover_jobs(state.app)
    except OSError as exc:  # an unwritable upload dir must not stop the service from answering
        log.error("could not check upload jobs: %s", exc.strerror or exc)


bp.record_once(_on_register)


@bp.before_request
def _authorise():
    settings = settings_of()
    reason = admin_disabled_reason(settings)
    if reason:
        raise ApiError(404, reason)
    given = request.headers.get("Authorization", "")
    if not given.startswith("Bearer ") or not hmac.compare_digest(
            given[7:].strip().encode(), settings.admin_token.strip().encode()):
        raise ApiError(401, "missing or wrong bearer token", {"WWW-Authenticate": "Bearer"})


# ---------------------------------------------------------------- the runner

def _gevent_patched() -> bool:
    monkey = sys.modules.get("gevent.monkey")
    return bool(monkey is not None and monkey.is_module_patched("threading"))


def _new_runner() -> Callable[[Callable[[], None]], Any]:
    if _gevent_patched():
        # Under gevent's monkey-patching a ThreadPoolExecutor "thread" is a greenlet on the one
        # OS thread: parsing and indexing would stall the event loop (no request served, no
        # heartbeat to the arbiter, so the worker is killed with the job). gevent's own pool runs
        # the job on a real OS thread. Imported only here: gevent is no dependency of admin.
        from gevent.threadpool import ThreadPool

        return ThreadPool(1).spawn
    # one writer thread per process: jobs of this worker run in order; not a daemon, so a
    # gracefully stopping worker finishes the job it is on
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="qa-admin").submit


def _submit(app: Flask, job_id: str) -> None:
    with _runners_lock:
        pid = os.getpid()  # per process: a forked worker must not use its parent's threads
        if pid not in _runners:
            _runners[pid] = _new_runner()
            threading.Thread(target=_heartbeat, daemon=True, name="qa-admin-heartbeat").start()
        runner = _runners[pid]
    settings: Settings = app.config["QA_SETTINGS"]
    _own(_record(settings, job_id), True)

    def work() -> None:
        with app.app_context():
            _run(app, settings, job_id)

    runner(work)


def _keep(settings: Settings, job_id: str) -> str | None:
    """Move what is left of a job's files to failed/<job>/; where they are, relative to
    QA_UPLOAD_DIR, or None when nothing is left."""
    incoming = _incoming(settings, job_id)
    if not incoming.is_dir() or not any(incoming.iterdir()):
        return None
    failed = Path(settings.upload_dir) / "failed" / job_id
    try:
        failed.parent.mkdir(parents=True, exist_ok=True)
        os.replace(incoming, failed)  # one rename: never half here and half there
    except OSError as exc:
        log.error("upload job %s: could not move its files to failed/: %s", job_id,
                  exc.strerror or exc)
        return f"incoming/{job_id}/"  # still kept, where they were
    return f"failed/{job_id}/"


def _kept_note(kept: str | None) -> str:
    return f"; the uploaded files are kept in QA_UPLOAD_DIR/{kept}" if kept else ""


def _run(app: Flask, settings: Settings, job_id: str) -> None:
    path = _record(settings, job_id)
    job, _ = _load(path)
    if job is None or job.get("status") not in ACTIVE or not _is_mine(job):
        _own(path, False)  # finished, pruned or taken over meanwhile
        return
    job.update(status="running", started=_now(), attempts=job.get("attempts", 0) + 1)
    _save_job(settings, job)
    incoming, upload_dir = _incoming(settings, job_id), Path(settings.upload_dir)
    holder = app.extensions["qa.holder"]
    originals = job.get("originals") or {}
    clean_up = True
    try:
        sources: list[Path] = []
        for name in job.get("accepted", []):
            # a resumed job finds a file the lost attempt already indexed and kept in upload_dir
            found = [p for p in (incoming / name, upload_dir / name) if p.is_file()]
            if found:
                sources.append(found[0])
            else:
                job["files"].append({"file": name, "status": "rejected", "passages": 0,
                                     "reason": "the file was gone when the job ran"})
        report = add(sources, settings.with_(
            lock_timeout=max(settings.lock_timeout, JOB_LOCK_TIMEOUT)), holder.encoder,
            meta=job.get("meta") or {}, replace=bool(job.get("replace")))
        for o in report.outcomes:
            entry = {"file": o.file, "status": o.status, "passages": o.passages, "reason": o.reason}
            if originals.get(o.file, o.file) != o.file:
                entry["original"] = originals[o.file]
            job["files"].append(entry)
        try:
            for o in report.outcomes:  # keep the sources so the archive can be rebuilt
                if o.status != "rejected" and (incoming / o.file).is_file():
                    os.replace(incoming / o.file, upload_dir / o.file)
        except OSError as exc:
            kept = _keep(settings, job_id)
            clean_up = False
            job["kept"] = kept
            job["error"] = (f"indexed, but the files could not be moved into QA_UPLOAD_DIR: "
                            f"{exc.strerror or exc}{_kept_note(kept)}")
        job.update(status="done", generation=report.generation)
        try:
            holder.refresh()
        except Exception:  # the poller retries; the job itself is done
            log.exception("upload job %s: refresh after publishing failed", job_id)
    except NothingToIndex as exc:
        job.update(status="failed", error=str(exc))
        job["files"] += [{"file": n, "status": "rejected", "passages": 0, "reason": str(exc)}
                         for n in job.get("accepted", []) if n not in
                         {f["file"] for f in job["files"]}]
    except Exception as exc:  # locked, lost or corrupt index, disk full, a bug: keep the files
        if isinstance(exc, IndexError_):
            message = str(exc)
        elif isinstance(exc, OSError):
            message = f"could not write the index: {exc.strerror or type(exc).__name__}"
        else:
            log.exception("upload job %s failed", job_id)
            message = f"internal error: {type(exc).__name__}"
        kept = _keep(settings, job_id)
        clean_up = False
        job.update(status="failed", kept=kept, error=message + _kept_note(kept))
    finally:
        job["finished"] = _now()
        try:
            _save_job(settings, job)
        except OSError as exc:  # stays "running" under this live owner; resumed once it exits
            log.error("upload job %s: could not save its record: %s", job_id, exc.strerror)
        _own(path, False)
        if clean_up:  # only rejected files are left here: reported, not kept
            shutil.rmtree(incoming, ignore_errors=True)


# ---------------------------------------------------------------- recovery and pruning

def recover_jobs(app: Flask, job_id: str | None = None, prune: bool = False) -> list[str]:
    """Resume every queued or running job (or just `job_id`) whose owner process is gone, or
    fail it keeping its files after JOB_MAX_ATTEMPTS; optionally prune old records. Returns the
    ids resumed here."""
    settings: Settings = app.config["QA_SETTINGS"]
    resumed: list[str] = []
    with _jobs_lock(settings):
        jobs = _jobs_dir(settings)
        paths = [_record(settings, job_id)] if job_id else sorted(jobs.glob("*.json"))
        finished: list[tuple[str, float, Path, dict]] = []
        for path in paths:
            job, mtime = _load(path)
            if job is None:
                continue
            if job.get("status") not in ACTIVE:
                finished.append((job.get("created") or "", mtime, path, job))
                continue
            if not _owner_gone(job, mtime):
                continue
            if "accepted" not in job:  # a record from before jobs listed their files
                incoming = _incoming(settings, job["id"])
                job["accepted"] = sorted(p.name for p in incoming.glob("*.txt"))
            attempts = job.get("attempts", 0)
            if attempts >= JOB_MAX_ATTEMPTS or not job["accepted"]:
                kept = _keep(settings, job["id"])
                why = (f"the worker running this job stopped {attempts} times before it finished"
                       if job["accepted"] else "the worker running this job stopped and its "
                       "files are gone")
                job.update(status="failed", finished=_now(), kept=kept,
                           error=why + _kept_note(kept))
                log.error("upload job %s: %s", job["id"], job["error"])
            else:
                job.update(status="queued", owner=_me())
                resumed.append(job["id"])
                log.warning("upload job %s: its worker stopped; resuming it here", job["id"])
            _save_job(settings, job)
        if prune:
            _prune(settings, finished, len(paths))
    for rid in resumed:
        _submit(app, rid)
    return resumed


def _prune(settings: Settings, finished: list[tuple[str, float, Path, dict]], total: int) -> None:
    # bounded: the oldest finished records go; queued and running ones and kept files never do
    excess = total - max(1, settings.max_job_records)
    for _, _, path, job in sorted(finished, key=lambda r: (r[0], r[1]))[:max(0, excess)]:
        path.unlink(missing_ok=True)
        # only rejected files can be left after a done job, unless the record says a file
        # stayed in incoming/ because moving it failed: then it is kept with its record gone
        if job.get("status") == "done" and not job.get("kept"):
            shutil.rmtree(_incoming(settings, job["id"]), ignore_errors=True)
    for tmp in _jobs_dir(settings).glob(".*.tmp"):  # a writer that died between write and rename
        with contextlib.suppress(OSError):
            if time.time() - tmp.stat().st_mtime > JOB_STALE_AFTER:
                tmp.unlink()


# ---------------------------------------------------------------- endpoints

def _reject(raw: str, reason: str) -> dict:
    return {"file": raw, "status": "rejected", "passages": 0, "reason": reason}


_TRUE, _FALSE = ("1", "true", "yes", "on"), ("", "0", "false", "no", "off")


def _form_options() -> tuple[dict[str, str | None], bool]:
    """The upload's metadata fields (paper, date, edition: for every file of it) and replace."""
    try:
        meta = given_meta(*(request.form.get(k) for k in ("paper", "date", "edition")))
    except MetaError as exc:
        raise ApiError(400, str(exc)) from None
    raw = request.form.get("replace", "").strip().lower()
    if raw not in _TRUE + _FALSE:
        raise ApiError(400, f"replace must be true or false, not {raw!r}")
    return meta, raw in _TRUE


@bp.post("/issues")
def upload():
    """Accept issue files (multipart field 'files', optional fields paper, date, edition,
    replace); 202 with a job to poll."""
    settings = settings_of()
    if request.content_length is not None and request.content_length > settings.max_upload_bytes:
        raise ApiError(413, f"upload is over {settings.max_upload_bytes} bytes")
    files = request.files.getlist("files") or request.files.getlist("file")
    if not files:
        raise ApiError(400, "no files: send multipart/form-data with one or more 'files' parts")
    meta, replace = _form_options()
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    job_id = uuid.uuid4().hex
    incoming = _incoming(settings, job_id)
    try:
        incoming.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ApiError(503, f"uploads cannot be stored now: {exc.strerror or exc}") from None
    job: dict[str, Any] = {
        "id": job_id, "status": "queued", "created": _now(), "started": None, "finished": None,
        "attempts": 0, "files": [], "generation": None, "error": None, "kept": None,
        "meta": meta, "replace": replace, "accepted": [], "originals": {}, "owner": _me()}
    for f in files:
        # each file on its own: one bad name or a failed write rejects that file, not the upload
        raw = f.filename or ""
        base = raw.replace("\\", "/").rsplit("/", 1)[-1].strip()
        name = safe_name(raw)
        if not base.lower().endswith(".txt"):
            job["files"].append(_reject(raw, "not an issue file: only .txt files are accepted"))
        elif name is None:
            job["files"].append(_reject(raw, "unusable file name"))
        elif name in job["accepted"]:
            job["files"].append(_reject(raw, f"another file in this upload is also stored as "
                                             f"{name}"))
        else:
            try:
                f.save(incoming / name)
            except OSError as exc:
                (incoming / name).unlink(missing_ok=True)
                job["files"].append(_reject(raw, f"could not be stored: "
                                                 f"{exc.strerror or type(exc).__name__}"))
                continue
            job["accepted"].append(name)
            job["originals"][name] = raw
    if not job["accepted"]:
        shutil.rmtree(incoming, ignore_errors=True)
        job.update(status="failed", finished=_now(), error="no usable files")
    try:
        _save_job(settings, job)
    except OSError as exc:
        shutil.rmtree(incoming, ignore_errors=True)
        raise ApiError(503, f"the upload could not be recorded: {exc.strerror or exc}; nothing "
                            f"was kept, send it again") from None
    response = jsonify(_public(job))  # serialised now: the record changes once the job runs
    if job["accepted"]:
        _submit(app, job_id)
    try:  # resume others' orphans and bound the records while we are here
        recover_jobs(app, prune=True)
    except OSError as exc:
        log.error("could not check upload jobs: %s", exc.strerror or exc)
    if not job["accepted"]:
        return response, 202
    return response, 202, {"Location": f"/api/admin/jobs/{job_id}"}


@bp.get("/jobs/<job_id>")
def job_status(job_id: str):
    """The outcome of an upload: per file added / unchanged / replaced / rejected (with reason)."""
    if not _JOB_ID.match(job_id):
        raise ApiError(404, "no such job")
    settings = settings_of()
    path = _record(settings, job_id)
    job, mtime = _load(path)
    if job is None:
        raise ApiError(404, "no such job")
    if job.get("status") in ACTIVE and _owner_gone(job, mtime):
        # a poll is where an orphan shows first when no worker has restarted since
        recover_jobs(current_app._get_current_object(), job_id)  # type: ignore[attr-defined]
        job, _ = _load(path)
        if job is None:
            raise ApiError(404, "no such job")
    return jsonify(_public(job))
