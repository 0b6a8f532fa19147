"""Editors' API: upload issue files (bearer token); ingest and indexing run in the background."""

from __future__ import annotations

import hmac
import json
import os
import re
import shutil
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

from flask import Blueprint, current_app, jsonify, request

from ..build import NothingToIndex, add
from ..config import Settings
from ..index import IndexError_
from ..runtime import SearcherHolder
from . import ApiError, holder_of, settings_of

bp = Blueprint("admin", __name__, url_prefix="/api/admin")
_executors: dict[int, ThreadPoolExecutor] = {}
_executors_lock = threading.Lock()
JOB_LOCK_TIMEOUT = 600.0  # a job waits this long for a CLI `qa add` holding the index lock
_UNSAFE = re.compile(r"[^\w.\-]")  # \w keeps Chinese letters in file names
_JOB_ID = re.compile(r"^[0-9a-f]{32}$")


def safe_name(raw: str) -> str | None:
    """A file name that cannot escape the upload directory, or None if nothing usable is left."""
    name = raw.replace("\\", "/").rsplit("/", 1)[-1]
    name = _UNSAFE.sub("_", name).strip("._ ")[:120]
    if not name:
        return None
    return name if name.lower().endswith(".txt") else name + ".txt"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _jobs_dir(settings: Settings) -> Path:
    path = Path(settings.upload_dir) / "jobs"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _save_job(settings: Settings, job: dict) -> None:
    # a job record is a file so every worker process can answer GET /jobs/<id>
    path = _jobs_dir(settings) / f"{job['id']}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(job, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, path)


@bp.before_request
def _authorise():
    token = settings_of().admin_token
    if not token:
        raise ApiError(404, "the admin API is disabled (QA_ADMIN_TOKEN is not set)")
    given = request.headers.get("Authorization", "")
    if not given.startswith("Bearer ") or not hmac.compare_digest(
            given[7:].strip().encode(), token.encode()):
        raise ApiError(401, "missing or wrong bearer token", {"WWW-Authenticate": "Bearer"})


def _run(settings: Settings, holder: SearcherHolder, job: dict, incoming: Path,
         accepted: list[str]) -> None:
    job["status"] = "running"
    _save_job(settings, job)
    try:
        report = add([incoming / n for n in accepted],
                     settings.with_(lock_timeout=max(settings.lock_timeout, JOB_LOCK_TIMEOUT)),
                     holder.encoder)
        for o in report.outcomes:
            job["files"].append({"file": o.file, "status": o.status, "passages": o.passages,
                                 "reason": o.reason})
            if o.status != "rejected":  # keep the source so the archive can be rebuilt
                os.replace(incoming / o.file, Path(settings.upload_dir) / o.file)
        job.update(status="done", generation=report.generation)
        holder.refresh()
    except (NothingToIndex, IndexError_) as exc:
        job.update(status="failed", error=str(exc))
        if isinstance(exc, NothingToIndex):
            job["files"] += [{"file": n, "status": "rejected", "passages": 0,
                              "reason": str(exc)} for n in accepted]
    except Exception as exc:  # logged; the job says it failed, the service keeps serving
        current_app.logger.exception("upload job %s failed", job["id"])
        job.update(status="failed", error=f"internal error: {type(exc).__name__}")
    finally:
        job["finished"] = _now()
        _save_job(settings, job)
        shutil.rmtree(incoming, ignore_errors=True)


def _executor() -> ThreadPoolExecutor:
    # one writer thread per process: jobs of this worker run in order
    with _executors_lock:
        pid = os.getpid()
        if pid not in _executors:
            _executors[pid] = ThreadPoolExecutor(max_workers=1, thread_name_prefix="qa-admin")
        return _executors[pid]


@bp.post("/issues")
def upload():
    """Accept issue files (multipart field 'files'); 202 with a job to poll."""
    settings = settings_of()
    if request.content_length is not None and request.content_length > settings.max_upload_bytes:
        raise ApiError(413, f"upload is over {settings.max_upload_bytes} bytes")
    files = request.files.getlist("files") or request.files.getlist("file")
    if not files:
        raise ApiError(400, "no files: send multipart/form-data with one or more 'files' parts")
    job_id = uuid.uuid4().hex
    incoming = Path(settings.upload_dir) / "incoming" / job_id
    incoming.mkdir(parents=True, exist_ok=True)
    job = {"id": job_id, "status": "queued", "created": _now(), "finished": None,
           "files": [], "generation": None, "error": None}
    accepted: list[str] = []
    for f in files:
        name = safe_name(f.filename or "")
        if name is None or name in accepted:
            job["files"].append({"file": f.filename, "status": "rejected", "passages": 0,
                                 "reason": "unusable or repeated file name"})
            continue
        f.save(incoming / name)
        accepted.append(name)
    if not accepted:
        shutil.rmtree(incoming, ignore_errors=True)
        job.update(status="failed", finished=_now(), error="no usable files")
        _save_job(settings, job)
        return jsonify(job), 202
    _save_job(settings, job)
    app = current_app._get_current_object()  # type: ignore[attr-defined]

    def work() -> None:
        with app.app_context():
            _run(settings, holder_of(), job, incoming, accepted)

    response = jsonify(job)  # serialised now: the job dict changes once the worker starts
    _executor().submit(work)
    return response, 202, {"Location": f"/api/admin/jobs/{job_id}"}


@bp.get("/jobs/<job_id>")
def job_status(job_id: str):
    """The outcome of an upload: per file added / unchanged / replaced / rejected (with reason)."""
    if not _JOB_ID.match(job_id):
        raise ApiError(404, "no such job")
    path = _jobs_dir(settings_of()) / f"{job_id}.json"
    try:
        return jsonify(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        raise ApiError(404, "no such job") from None
