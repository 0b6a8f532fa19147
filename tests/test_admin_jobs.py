"""Upload jobs that outlive their worker, keep their files, bounded records; file names; tokens."""

from __future__ import annotations

import errno
import io
import json
import logging
import os
import subprocess
import sys
import textwrap
import time
import types
from pathlib import Path

import pytest
from werkzeug.datastructures import FileStorage

from qa.config import validate_admin_token
from qa.errors import IndexLocked
from qa.web import admin as admin_mod
from qa.web import create_app
from qa.web.admin import NAME_MAX_BYTES, safe_name

from .conftest import CORPUS, EXTRA, ROOT, wait_for_job

TOKEN = "k" * 32
AUTH = {"Authorization": f"Bearer {TOKEN}"}
NEW = EXTRA / "c_2024-03.txt"

# A worker process that takes an upload and is killed (SIGKILL, as gunicorn's timeout or the OOM
# killer does) inside the job, or that only starts and resumes what it finds, recording each run.
CHILD = textwrap.dedent("""
    import io, json, os, signal, sys, threading, time
    from qa.config import Settings
    from qa.web import admin, create_app

    index_dir, upload_dir, mode, upload, log = sys.argv[1:6]
    real_add, answered = admin.add, threading.Event()

    def add(*args, **kwargs):
        with open(log, "a") as fh:
            fh.write(f"{os.getpid()}\\n")
        if mode == "die":
            answered.wait(30)  # die after the upload has answered with the job's id
            os.kill(os.getpid(), signal.SIGKILL)
        return real_add(*args, **kwargs)

    admin.add = add
    app = create_app(Settings(index_dir=index_dir, upload_dir=upload_dir, model="none",
                              reload_interval=0, rate_limit_per_minute=0, admin_token="k" * 32))
    if upload != "-":
        r = app.test_client().post(
            "/api/admin/issues", headers={"Authorization": "Bearer " + "k" * 32},
            data={"files": [(io.BytesIO(open(upload, "rb").read()), os.path.basename(upload))]},
            content_type="multipart/form-data")
        print(r.json["id"], flush=True)
        answered.set()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # resumers stay alive until every job has finished
        jobs = [json.loads(p.read_text("utf-8"))
                for p in (__import__("pathlib").Path(upload_dir) / "jobs").glob("*.json")]
        if jobs and all(j["status"] in ("done", "failed") for j in jobs):
            break
        time.sleep(0.05)
""")


def _child(settings, uploads: Path, mode: str, upload: Path | None, log: Path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, settings.index_dir, str(uploads), mode,
         str(upload) if upload else "-", str(log)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=str(ROOT))


def _orphan(settings, tmp_path) -> tuple[Path, str]:
    """An upload whose worker was killed mid-job: its record says running, its file waits."""
    uploads = tmp_path / "uploads"
    proc = _child(settings, uploads, "die", NEW, tmp_path / "died.log")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == -9, err
    return uploads, out.split()[0]


def _record(uploads: Path, job_id: str) -> dict:
    return json.loads((uploads / "jobs" / f"{job_id}.json").read_text("utf-8"))


def _app(settings, uploads: Path, **changes):
    return create_app(settings.with_(**{"reload_interval": 0, "rate_limit_per_minute": 0,
                                        "admin_token": TOKEN, "upload_dir": str(uploads),
                                        **changes}))


def _wait(client, job_id: str) -> dict:
    return wait_for_job(client, job_id, AUTH)


def _post(client, files):
    return client.post("/api/admin/issues", headers=AUTH, content_type="multipart/form-data",
                       data={"files": [(io.BytesIO(data), name) for name, data in files]})


# ---------------------------------------------------------------- item 4: jobs outlive workers

def test_a_job_whose_worker_was_killed_resumes_when_a_worker_starts(built, settings, tmp_path):
    uploads, job_id = _orphan(settings, tmp_path)
    job = _record(uploads, job_id)
    assert job["status"] == "running" and job["attempts"] == 1
    assert (uploads / "incoming" / job_id / NEW.name).read_bytes() == NEW.read_bytes()

    app = _app(settings, uploads)  # a fresh worker: gunicorn's replacement, or a restart
    job = _wait(app.test_client(), job_id)
    assert job["status"] == "done" and job["attempts"] == 2 and job["error"] is None
    assert job["generation"] == "gen-000002"
    assert [(f["file"], f["status"]) for f in job["files"]] == [(NEW.name, "added")]
    assert (uploads / NEW.name).read_bytes() == NEW.read_bytes()  # kept for rebuilds
    assert not (uploads / "incoming" / job_id).exists()
    assert set(job) >= {"id", "status", "created", "started", "finished", "attempts", "files",
                        "generation", "error", "kept"}
    assert not {"owner", "accepted", "originals"} & set(job)  # internal, never shown
    hit = app.test_client().post("/api/ask", json={"question": "白云乡中心小学安装了什么?"}).json
    assert hit["answers"][0]["citation"]["file"] == NEW.name


@pytest.mark.slow
def test_an_orphan_is_resumed_by_exactly_one_of_several_workers_starting_at_once(
        built, settings, tmp_path):
    uploads, job_id = _orphan(settings, tmp_path)
    runs = tmp_path / "runs.log"
    procs = [_child(settings, uploads, "run", None, runs) for _ in range(4)]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    assert len(runs.read_text().split()) == 1  # one claim, one run
    job = _record(uploads, job_id)
    assert job["status"] == "done" and job["attempts"] == 2
    assert (uploads / NEW.name).is_file()


def test_an_orphan_is_found_on_a_poll_without_any_restart(built, settings, tmp_path):
    uploads = tmp_path / "uploads"
    client = _app(settings, uploads).test_client()  # started before the job existed
    _, job_id = _orphan(settings, tmp_path)
    job = _wait(client, job_id)
    assert job["status"] == "done" and job["attempts"] == 2


def test_an_owner_on_another_host_counts_as_gone_only_when_its_heartbeat_is_stale(
        built, settings, tmp_path):
    uploads, job_id = _orphan(settings, tmp_path)
    path = uploads / "jobs" / f"{job_id}.json"
    job = _record(uploads, job_id)
    job["owner"] = {"host": "another-container", "pid": 1, "start": None}
    path.write_text(json.dumps(job), "utf-8")
    client = _app(settings, uploads).test_client()
    assert client.get(f"/api/admin/jobs/{job_id}", headers=AUTH).json["status"] == "running"
    old = time.time() - admin_mod.JOB_STALE_AFTER - 60
    os.utime(path, (old, old))
    assert _wait(client, job_id)["status"] == "done"


def test_a_job_that_keeps_killing_its_worker_fails_visibly_and_keeps_its_file(
        built, settings, tmp_path):
    uploads, job_id = _orphan(settings, tmp_path)
    path = uploads / "jobs" / f"{job_id}.json"
    job = _record(uploads, job_id)
    job["attempts"] = admin_mod.JOB_MAX_ATTEMPTS  # as after that many killed workers
    path.write_text(json.dumps(job), "utf-8")
    job = _wait(_app(settings, uploads).test_client(), job_id)
    assert job["status"] == "failed" and job["kept"] == f"failed/{job_id}/"
    assert f"stopped {admin_mod.JOB_MAX_ATTEMPTS} times" in job["error"]
    assert f"QA_UPLOAD_DIR/failed/{job_id}/" in job["error"]
    assert (uploads / "failed" / job_id / NEW.name).read_bytes() == NEW.read_bytes()


@pytest.mark.parametrize(("error", "message"), [
    (IndexLocked("the index is locked by another writer"), "the index is locked"),
    (OSError(errno.ENOSPC, "No space left on device"),
     "could not write the index: No space left on device"),
    (KeyError("bug"), "internal error: KeyError"),
])
def test_a_failed_job_keeps_its_files(built, settings, tmp_path, monkeypatch, error, message):
    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr(admin_mod, "add", fail)
    uploads = tmp_path / "uploads"
    client = _app(settings, uploads).test_client()
    r = _post(client, [(NEW.name, NEW.read_bytes()), ("b.txt", b"second")])
    job = _wait(client, r.json["id"])
    assert job["status"] == "failed" and job["kept"] == f"failed/{job['id']}/"
    assert job["error"].startswith(message)
    assert job["error"].endswith(f"the uploaded files are kept in QA_UPLOAD_DIR/failed/{job['id']}/")
    kept = uploads / "failed" / job["id"]
    assert (kept / NEW.name).read_bytes() == NEW.read_bytes()
    assert (kept / "b.txt").read_bytes() == b"second"
    assert not (uploads / NEW.name).exists()


def test_under_gevent_the_job_runs_on_a_real_thread(monkeypatch):
    # With gevent's monkey-patching a ThreadPoolExecutor thread is a greenlet that would stall the
    # event loop while indexing; the runner must take gevent's pool of real OS threads instead.
    spawned = []

    class ThreadPool:
        def __init__(self, size):
            assert size == 1

        def spawn(self, fn):
            spawned.append(fn)

    monkey = types.ModuleType("gevent.monkey")
    monkey.is_module_patched = lambda name: name == "threading"
    pool = types.ModuleType("gevent.threadpool")
    pool.ThreadPool = ThreadPool
    monkeypatch.setitem(sys.modules, "gevent.monkey", monkey)
    monkeypatch.setitem(sys.modules, "gevent.threadpool", pool)
    runner = admin_mod._new_runner()
    runner(len)
    assert spawned == [len]
    monkeypatch.delitem(sys.modules, "gevent.monkey")
    assert admin_mod._new_runner().__self__.__class__.__name__ == "ThreadPoolExecutor"


def test_with_real_gevent_an_upload_job_runs_on_another_os_thread(built, settings, tmp_path):
    pytest.importorskip("gevent")
    script = textwrap.dedent("""
        from gevent import monkey; monkey.patch_all()
        import io, sys, threading, time
        from qa.config import Settings
        from qa.web import admin, create_app
        real_add, seen = admin.add, []
        def add(*args, **kwargs):
            seen.append(threading.get_native_id())
            return real_add(*args, **kwargs)
        admin.add = add
        app = create_app(Settings(index_dir=sys.argv[1], upload_dir=sys.argv[2], model="none",
                                  reload_interval=0, rate_limit_per_minute=0,
                                  admin_token="k" * 32))
        c, auth = app.test_client(), {"Authorization": "Bearer " + "k" * 32}
        job = c.post("/api/admin/issues", headers=auth, content_type="multipart/form-data",
                     data={"files": [(io.BytesIO(open(sys.argv[3], "rb").read()), "c.txt")]}).json
        for _ in range(600):
            job = c.get("/api/admin/jobs/" + job["id"], headers=auth).json
            if job["status"] in ("done", "failed"):
                break
            time.sleep(0.05)
        print(job["status"], seen[0] != threading.get_native_id())
    """)
    proc = subprocess.run([sys.executable, "-c", script, settings.index_dir,
                           str(tmp_path / "uploads"), str(NEW)], capture_output=True, text=True,
                          timeout=120, cwd=str(ROOT), env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.stdout.split() == ["done", "True"], proc.stderr


# ---------------------------------------------------------------- item 5: file names

def test_safe_name_cuts_by_utf8_bytes_between_characters():
    long = "人民日报" * 40 + ".txt"  # 160 characters, 484 bytes
    name = safe_name(long)
    assert name is not None and name.endswith(".txt")
    assert len(name.encode()) <= NAME_MAX_BYTES < 255
    assert name.encode().decode("utf-8") == name and name.startswith("人民日报人民日报")
    mixed = safe_name("a" + "报" * 100 + ".txt")  # the cut falls inside a 3-byte character
    assert mixed is not None and len(mixed.encode()) <= NAME_MAX_BYTES
    assert mixed == "a" + "报" * ((NAME_MAX_BYTES - 4 - 1) // 3) + ".txt"
    assert safe_name("../../c_2024-03.txt") == "c_2024-03.txt"
    assert safe_name("C:\\issues\\B.TXT") == "B.txt"  # one suffix: `qa index` globs *.txt
    assert safe_name("../.txt") is None


def test_a_long_chinese_name_is_stored_and_does_not_sink_the_upload(built, settings, tmp_path):
    uploads = tmp_path / "uploads"
    client = _app(settings, uploads).test_client()
    long = "白云乡中心小学新安装了一批设备的详细报道" * 5 + ".txt"  # 100 characters, 304 bytes
    same = (CORPUS / "a_2024-01.txt").read_bytes()
    r = _post(client, [(long, NEW.read_bytes()), ("a_2024-01.txt", same)])
    assert r.status_code == 202
    job = _wait(client, r.json["id"])
    assert job["status"] == "done"
    stored = safe_name(long)
    assert {(f["file"], f["status"]) for f in job["files"]} == {
        (stored, "added"), ("a_2024-01.txt", "unchanged")}
    entry = next(f for f in job["files"] if f["file"] == stored)
    assert entry["original"] == long  # the editor can tell which file it was
    assert (uploads / stored).read_bytes() == NEW.read_bytes()


def test_non_txt_and_repeated_names_are_rejected_with_a_reason(built, settings, tmp_path):
    client = _app(settings, tmp_path / "uploads").test_client()
    same = (CORPUS / "a_2024-01.txt").read_bytes()
    r = _post(client, [("picture.png", b"\x89PNG"), ("a_2024-01.txt", same),
                       ("dir/a_2024-01.txt", same), ("noext", b"x")])
    job = _wait(client, r.json["id"])
    assert job["status"] == "done"
    files = [(f["file"], f["status"], f["reason"]) for f in job["files"]]
    assert ("picture.png", "rejected",
            "not an issue file: only .txt files are accepted") in files  # not picture.png.txt
    assert ("noext", "rejected", "not an issue file: only .txt files are accepted") in files
    assert ("dir/a_2024-01.txt", "rejected",
            "another file in this upload is also stored as a_2024-01.txt") in files
    assert ("a_2024-01.txt", "unchanged", None) in files


def test_a_file_that_cannot_be_written_is_rejected_alone(built, settings, tmp_path, monkeypatch):
    save = FileStorage.save

    def flaky(self, dst, *args, **kwargs):
        if Path(dst).name == "full.txt":
            raise OSError(errno.ENOSPC, "No space left on device")
        return save(self, dst, *args, **kwargs)

    monkeypatch.setattr(FileStorage, "save", flaky)
    uploads = tmp_path / "uploads"
    client = _app(settings, uploads).test_client()
    r = _post(client, [("full.txt", b"x"), (NEW.name, NEW.read_bytes())])
    assert r.status_code == 202
    job = _wait(client, r.json["id"])
    assert job["status"] == "done"
    assert {(f["file"], f["status"], f["reason"]) for f in job["files"]} == {
        ("full.txt", "rejected", "could not be stored: No space left on device"),
        (NEW.name, "added", None)}


def test_an_upload_with_no_usable_file_fails_at_once(built, settings, tmp_path):
    client = _app(settings, tmp_path / "uploads").test_client()
    r = _post(client, [("picture.png", b"x")])
    assert r.status_code == 202 and r.json["status"] == "failed"
    assert r.json["error"] == "no usable files"
    assert client.get(f"/api/admin/jobs/{r.json['id']}", headers=AUTH).json["status"] == "failed"


# ---------------------------------------------------------------- item 12: records and tokens

def test_job_records_are_bounded_oldest_finished_first(built, settings, tmp_path):
    uploads = tmp_path / "uploads"
    client = _app(settings, uploads, max_job_records=3).test_client()
    same = (CORPUS / "a_2024-01.txt").read_bytes()
    ids = []
    for _ in range(6):
        r = _post(client, [("a_2024-01.txt", same)])
        ids.append(r.json["id"])
        assert _wait(client, ids[-1])["status"] == "done"
    assert len(list((uploads / "jobs").glob("*.json"))) <= 3
    assert client.get(f"/api/admin/jobs/{ids[-1]}", headers=AUTH).status_code == 200
    assert client.get(f"/api/admin/jobs/{ids[-2]}", headers=AUTH).status_code == 200
    r = client.get(f"/api/admin/jobs/{ids[0]}", headers=AUTH)
    assert r.status_code == 404 and r.json["error"]["message"] == "no such job"


def test_a_short_admin_token_leaves_admin_disabled(built, settings, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="qa.web.admin"):
        client = _app(settings, tmp_path / "uploads", admin_token="s3cret").test_client()
    assert "QA_ADMIN_TOKEN must be at least 32 characters" in caplog.text
    r = client.post("/api/admin/issues", headers={"Authorization": "Bearer s3cret"})
    assert r.status_code == 404
    assert r.json["error"]["message"] == ("the admin API is disabled: QA_ADMIN_TOKEN must be "
                                          "at least 32 characters")
    r = client.get("/api/admin/jobs/" + "0" * 32, headers={"Authorization": "Bearer s3cret"})
    assert r.status_code == 404 and "disabled" in r.json["error"]["message"]


def test_validate_admin_token(settings):
    validate_admin_token(settings.with_(admin_token=""))  # admin simply off
    validate_admin_token(settings.with_(admin_token="x" * 32))
    with pytest.raises(ValueError, match=r"at least 32 characters \(it has 31\)"):
        validate_admin_token(settings.with_(admin_token="x" * 31))


def test_serve_refuses_a_short_admin_token_in_one_line(runner):
    from qa.cli import cli

    r = runner.invoke(cli, ["serve"], env={"QA_ADMIN_TOKEN": "short"})
    assert r.exit_code == 1
    assert r.output.strip().splitlines() == [
        "Error: QA_ADMIN_TOKEN must be at least 32 characters (it has 5); make one with "
        "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`"]
