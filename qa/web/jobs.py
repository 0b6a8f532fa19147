"""Upload job records on disk and the processes that own them (the admin API's bookkeeping).

A job is a file under QA_UPLOAD_DIR/jobs, so any worker process can answer for it; it names the
process that owns it (host, pid, boot id and start time, so a reused pid is not mistaken for it),
and that process touches it every JOB_HEARTBEAT seconds.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..config import Settings
from ..segment import write_atomic

JOB_HEARTBEAT = 15.0  # seconds between touches of a live job's record by its owner process
JOB_STALE_AFTER = 120.0  # an owner on another host whose job record is older than this is gone
_INTERNAL = ("owner", "accepted", "originals")  # kept in the record, never shown

_owned: dict[int, set[Path]] = {}  # per process: records of its queued/running jobs (heartbeat)
_state_lock = threading.Lock()


# ---------------------------------------------------------------- job records

def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _jobs_dir(settings: Settings) -> Path:
    path = Path(settings.upload_dir) / "jobs"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _record(settings: Settings, job_id: str) -> Path:
    return _jobs_dir(settings) / f"{job_id}.json"


def _incoming(settings: Settings, job_id: str) -> Path:
    return Path(settings.upload_dir) / "incoming" / job_id


def _save_job(settings: Settings, job: dict) -> None:
    # a job record is a file so every worker process can answer GET /jobs/<id>; written whole and
    # renamed, so a reader or a crash sees the old record or the new one
    write_atomic(_record(settings, job["id"]), json.dumps(job, ensure_ascii=False).encode())


def _load(path: Path) -> tuple[dict | None, float]:
    try:
        mtime = path.stat().st_mtime
        return json.loads(path.read_text(encoding="utf-8")), mtime
    except (OSError, ValueError):
        return None, 0.0


def _public(job: dict) -> dict:
    return {k: v for k, v in job.items() if k not in _INTERNAL}


@contextlib.contextmanager
def _jobs_lock(settings: Settings) -> Iterator[None]:
    # Serialises claiming orphans across worker processes, so several gunicorn workers starting at
    # once resume each job once. flock dies with its holder: no stale lock after a kill.
    with open(_jobs_dir(settings) / ".lock", "a+b") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


# ---------------------------------------------------------------- owners

def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


_BOOT = _boot_id()


def _proc_stat(pid: int) -> tuple[str, str] | None:
    """(state, identity) of a process from /proc, or None where there is no /proc."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        fields = stat.rsplit(")", 1)[1].split()  # the command name may hold spaces and ")"
        return fields[0], f"{_BOOT}:{fields[19]}"  # boot and start time: a reused pid differs
    except (OSError, IndexError):
        return None


def _me() -> dict:
    pid = os.getpid()
    stat = _proc_stat(pid)
    return {"host": socket.gethostname(), "pid": pid, "start": stat[1] if stat else None}


def _alive(pid: Any, start: str | None) -> bool:
    if not isinstance(pid, int) or pid <= 0:  # kill(0 or -n) would signal a process group
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, under another user
    stat = _proc_stat(pid)
    if stat is None:
        return True  # no /proc: the pid is all there is to go on
    state, identity = stat
    return state not in ("Z", "X") and (start is None or identity == start)


def _owner_gone(job: dict, mtime: float) -> bool:
    owner = job.get("owner") or {}
    if owner.get("host") == socket.gethostname():
        return not _alive(owner.get("pid"), owner.get("start"))
    # another host sharing the directory (or a new container), or a record older than owners:
    # only the owner's heartbeat on the record tells
    return time.time() - mtime > JOB_STALE_AFTER


def _is_mine(job: dict) -> bool:
    owner, me = job.get("owner") or {}, _me()
    return all(owner.get(k) == me[k] for k in ("host", "pid", "start"))


def _heartbeat() -> None:
    # Keeps the records of this process's live jobs fresh, so that a host that cannot see this
    # process (shared volume, another container) does not take them for orphans.
    while True:
        time.sleep(JOB_HEARTBEAT)
        with _state_lock:
            paths = list(_owned.get(os.getpid(), ()))
        for path in paths:
            with contextlib.suppress(OSError):
                os.utime(path)


def _own(path: Path, mine: bool) -> None:
    with _state_lock:
        owned = _owned.setdefault(os.getpid(), set())
        if mine:
            owned.add(path)
        else:
            owned.discard(path)
