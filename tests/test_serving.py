"""Serving under attack and under change: stalled clients, chunked bodies, shared rate limits,
long GET questions and gunicorn's own errors, HEAD, OpenAPI servers, no paths in public
messages, and story look-ups pinned to the generation an answer cited."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager, suppress
from pathlib import Path
from urllib.parse import quote

import orjson
import pytest
from openapi_spec_validator import validate

from qa.build import add
from qa.serve import request_line_limit
from qa.web import create_app
from qa.web.ratelimit import SQLiteStorage, client_address, parse_networks

from .conftest import CORPUS, EXTRA, ROOT

Q = "古籍修复体验课每期限报多少人?"
NEW_Q = "白云乡中心小学安装了什么?"
SECURITY = ("Content-Security-Policy", "X-Content-Type-Options", "X-Frame-Options")
BIN = Path(sys.executable).parent


def _chunked(client, path: str, body: bytes, **kwargs):
    """POST a body the way gunicorn hands over a chunked one: no Content-Length."""
    return client.post(path, input_stream=io.BytesIO(body), content_type="application/json",
                       headers={"Transfer-Encoding": "chunked", **kwargs.pop("headers", {})},
                       environ_overrides={"wsgi.input_terminated": True}, **kwargs)


# ---------------------------------------------------------------- a real `qa serve`

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, timeout: float = 5.0, headers: dict | None = None):
    """(status, headers, body) of a GET; errors are answers too."""
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def _raw(port: int, data: bytes, timeout: float = 5.0) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes, read the whole answer (the server closes): status, headers, body."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
            if b"\r\n\r\n" in out:
                head, _, body = out.partition(b"\r\n\r\n")
                length = [int(line.split(b":")[1]) for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:")]
                if length and len(body) >= length[0]:
                    break
    head, _, body = out.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}
    return int(lines[0].split()[1]), headers, body


def _chunked_request(path: str, body: bytes, terminate: bool = True) -> bytes:
    out = [f"POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
           "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n".encode()]
    for i in range(0, len(body), 8192):
        part = body[i:i + 8192]
        out.append(b"%x\r\n%s\r\n" % (len(part), part))
    if terminate:
        out.append(b"0\r\n\r\n")
    return b"".join(out)


@contextmanager
def serving(tmp_path: Path, **env: str):
    """`qa serve` (2 workers) on a lexical-only index of the fixture corpus, on a free port."""
    index = tmp_path / "served-index"
    environ = dict(os.environ, QA_MODEL="none", QA_INDEX_DIR=str(index),
                   QA_UPLOAD_DIR=str(tmp_path / "uploads"), QA_RELOAD_INTERVAL="0", **env)
    subprocess.run([str(BIN / "qa"), "index", str(CORPUS)], env=environ, check=True,
                   capture_output=True)
    port = _free_port()
    log = open(tmp_path / "serve.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([str(BIN / "qa"), "serve", "--host", "127.0.0.1", "--port",
                             str(port), "--workers", "2"], env=environ, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        for _ in range(300):
            try:
                if _get(f"http://127.0.0.1:{port}/healthz", 1)[0] == 200:
                    break
            except OSError:
                pass
            if proc.poll() is not None:
                raise AssertionError((tmp_path / "serve.log").read_text())
            time.sleep(0.1)
        yield port
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(30)
        log.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One real server for the HTTP-level tests, dropping silent clients after 2 s."""
    # every test client is 127.0.0.1, attacker and reader alike: no per-address cap here
    with serving(tmp_path_factory.mktemp("serve"), QA_CLIENT_TIMEOUT="2",
                 QA_RATE_LIMIT_PER_MINUTE="0", QA_MAX_CLIENT_CONNECTIONS="0") as port:
        yield port


# ---------------------------------------------------------------- 8. stalled clients

@pytest.mark.slow
def test_stalled_connections_do_not_starve_the_workers(server):
    base = f"http://127.0.0.1:{server}"
    stalled = []
    try:
        for i in range(100):  # twice as many as connections the sync workers could ever hold
            s = socket.create_connection(("127.0.0.1", server), timeout=10)
            if i % 2:
                s.sendall(b"GET /api/ask?q=%E5%8F%A4 HT")  # half a request line
            else:
                s.sendall(b"POST /api/ask HTTP/1.1\r\nHost: t\r\nContent-Type: "
                          b"application/json\r\nContent-Length: 100\r\n\r\n{\"quest")  # half a body
            stalled.append(s)
        status, _, body = _get(f"{base}/healthz", timeout=5)
        assert status == 200 and orjson.loads(body)["status"] == "ok"
        status, _, body = _get(f"{base}/api/ask?q={quote(Q)}", timeout=5)
        assert status == 200 and orjson.loads(body)["answers"]
        # and the stalled ones are dropped once silent for QA_CLIENT_TIMEOUT (2 s here):
        # a half request line is closed, a half body gets a 408 in the envelope
        answers = []
        for s in stalled:
            s.settimeout(20)
            data, chunk = b"", b"x"
            while chunk:
                chunk = s.recv(4096)
                data += chunk
            answers.append(data)
        assert all(a == b"" for a in answers[1::2])
        timed_out = answers[0::2]
        assert all(a.startswith(b"HTTP/1.1 408") for a in timed_out)
        assert b'"type":"request_timeout"' in timed_out[0]
    finally:
        for s in stalled:
            s.close()


def _trickle(port: int, n: int, seconds: float = 12) -> list[float]:
    """Open n connections that send headers, then one body byte every 0.5 s; return when
    each was closed by the server (seconds after the start)."""
    head = (b"POST /api/ask HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000\r\n\r\n")
    socks = [socket.create_connection(("127.0.0.1", port), timeout=15) for _ in range(n)]
    closed_after: list[float] = []
    started = time.monotonic()
    try:
        for s in socks:
            with suppress(OSError):
                s.sendall(head)
        alive = list(socks)
        while alive and time.monotonic() - started < seconds:
            time.sleep(0.5)
            for s in list(alive):
                try:
                    s.sendall(b"x")
                    s.setblocking(False)
                    gone = s.recv(4096) is not None  # an answer or EOF: the server is done
                except BlockingIOError:
                    gone = False
                except OSError:  # reset: closed with our bytes unread
                    gone = True
                s.setblocking(True)
                if gone:
                    alive.remove(s)
                    closed_after.append(time.monotonic() - started)
    finally:
        for s in socks:
            s.close()
    return closed_after


@pytest.mark.slow
def test_a_trickling_client_is_cut_off_at_the_request_deadline(tmp_path):
    # one byte every 0.5 s never trips the 10 s read timeout; the whole-request deadline
    # (QA_REQUEST_TIMEOUT) does
    with serving(tmp_path, QA_REQUEST_TIMEOUT="3", QA_MAX_CLIENT_CONNECTIONS="0",
                 QA_RATE_LIMIT_PER_MINUTE="0") as port:
        closed_after = _trickle(port, 2)
    assert len(closed_after) == 2  # nobody holds a connection past the deadline
    assert "cut off after 3.0 s" in (tmp_path / "serve.log").read_text()


@pytest.mark.slow
def test_one_address_cannot_hold_every_connection(tmp_path):
    with serving(tmp_path, QA_REQUEST_TIMEOUT="3", QA_MAX_CLIENT_CONNECTIONS="2",
                 QA_RATE_LIMIT_PER_MINUTE="0") as port:
        closed_after = _trickle(port, 10)
    assert len(closed_after) == 10
    # 10 sockets over 2 workers: some worker had more than 2 and refused the rest at once
    assert min(closed_after) < 2.5


# ---------------------------------------------------------------- 9. body limits

@pytest.mark.parametrize("size", [65_537, 1_000_000])
def test_a_chunked_body_over_the_request_limit_is_413(client, size):
    body = b'{"question": "' + b"x" * size + b'"}'
    r = _chunked(client, "/api/ask", body)
    assert r.status_code == 413
    assert r.json["error"] == {"code": 413, "type": "payload_too_large",
                               "message": "request body is over 65536 bytes"}


def test_a_chunked_body_within_the_limit_is_answered(client):
    r = _chunked(client, "/api/ask", orjson.dumps({"question": Q}))
    assert r.status_code == 200 and r.json["answers"]


def test_the_upload_limit_applies_to_chunked_uploads(built, settings, tmp_path):
    token = "t" * 40
    client = create_app(settings.with_(reload_interval=0, admin_token=token,
                                       max_upload_bytes=5000, rate_limit_per_minute=0,
                                       upload_dir=str(tmp_path / "u"))).test_client()
    boundary = "b0undary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; "
            f"filename=\"big.txt\"\r\nContent-Type: text/plain\r\n\r\n").encode() \
        + "正文".encode() * 5000 + f"\r\n--{boundary}--\r\n".encode()
    r = client.post("/api/admin/issues", input_stream=io.BytesIO(body),
                    content_type=f"multipart/form-data; boundary={boundary}",
                    headers={"Transfer-Encoding": "chunked", "Authorization": f"Bearer {token}"},
                    environ_overrides={"wsgi.input_terminated": True})
    assert r.status_code == 413 and r.json["error"]["type"] == "payload_too_large"
    # uploads may be larger than a question: the request limit does not apply to them
    assert create_app(settings.with_(reload_interval=0)).config["MAX_CONTENT_LENGTH"] == 65536


@pytest.mark.slow
def test_chunked_bodies_on_the_real_server(server):
    body = b'{"question": "' + b"x" * 200_000 + b'"}'
    for terminate in (True, False):
        status, headers, raw = _raw(server, _chunked_request("/api/ask", body, terminate))
        assert status == 413, raw
        assert orjson.loads(raw)["error"]["type"] == "payload_too_large"
    status, _, raw = _raw(server, _chunked_request("/api/ask", orjson.dumps({"question": Q})))
    assert status == 200 and orjson.loads(raw)["answers"]


# ---------------------------------------------------------------- 10. rate limits

def _limited_app(settings, tmp_path, per_minute: int = 3, **kw):
    return create_app(settings.with_(reload_interval=0, rate_limit_per_minute=per_minute,
                                     rate_limit_storage=f"sqlite:///{tmp_path}/limits.db", **kw))


def test_workers_count_together(built, settings, tmp_path):
    a = _limited_app(settings, tmp_path).test_client()
    b = _limited_app(settings, tmp_path).test_client()  # another worker process, in effect
    codes = [c.get("/api/ask", query_string={"q": Q}).status_code for c in (a, b, a, b)]
    assert codes == [200, 200, 200, 429]
    r = b.get("/api/ask", query_string={"q": Q})
    assert r.json["error"]["type"] == "rate_limited" and 1 <= int(r.headers["Retry-After"]) <= 60
    assert all(name in r.headers for name in SECURITY)


def test_a_failing_counter_store_falls_back_to_per_worker_limits(built, settings, tmp_path):
    app = _limited_app(settings, tmp_path)
    assert app.test_client().get("/healthz").json["rate_limit"] == "shared"

    class Broken:
        def hit(self, *a):
            raise OSError(30, "Read-only file system")

    app.extensions["qa.limiter"].window = Broken()  # e.g. the SQLite file on a read-only disk
    client = app.test_client()
    codes = [client.get("/api/ask", query_string={"q": Q}).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]  # still limited, never switched off
    assert client.get("/healthz").json["rate_limit"].startswith("per worker")


def test_the_form_counts_against_the_same_limit(built, settings, tmp_path):
    client = _limited_app(settings, tmp_path, per_minute=2).test_client()
    assert client.get("/", query_string={"q": Q}).status_code == 200
    assert client.get("/api/ask", query_string={"q": Q}).status_code == 200
    r = client.get("/", query_string={"q": Q})
    assert r.status_code == 429 and r.mimetype == "text/html"
    assert "请求太频繁" in r.text and int(r.headers["Retry-After"]) >= 1
    # probes and the stylesheet are never counted
    assert client.get("/healthz").status_code == 200
    assert client.get("/static/style.css").status_code == 200


def test_forwarded_for_is_ignored_unless_the_peer_is_a_trusted_proxy(built, settings, tmp_path):
    client = _limited_app(settings, tmp_path, per_minute=2).test_client()
    codes = [client.get("/api/issues", headers={"X-Forwarded-For": f"203.0.113.{i}"}).status_code
             for i in range(3)]
    assert codes == [200, 200, 429]  # a client cannot reset its count by inventing addresses


def test_forwarded_for_names_the_client_behind_a_trusted_proxy(built, settings, tmp_path):
    client = _limited_app(settings, tmp_path, per_minute=2,
                          trusted_proxies="127.0.0.1, 10.0.0.0/8").test_client()

    def code(xff: str) -> int:
        return client.get("/api/issues", headers={"X-Forwarded-For": xff}).status_code

    assert [code("198.51.100.7"), code("198.51.100.7"), code("198.51.100.7")] == [200, 200, 429]
    assert code("198.51.100.8") == 200  # another client behind the same proxy has its own count
    # what the client wrote itself (left of the last untrusted hop) is not believed
    assert code("1.2.3.4, 198.51.100.7, 10.1.1.1") == 429


def test_client_address_rules():
    proxies = parse_networks("127.0.0.1,10.0.0.0/8")
    assert client_address("192.0.2.1", ["198.51.100.7"], proxies) == "192.0.2.1"
    assert client_address("127.0.0.1", ["6.6.6.6, 198.51.100.7"], proxies) == "198.51.100.7"
    assert client_address("127.0.0.1", ["198.51.100.7", "10.0.0.2"], proxies) == "198.51.100.7"
    assert client_address("127.0.0.1", [], proxies) == "127.0.0.1"
    assert client_address("127.0.0.1", ["6.6.6.6"], []) == "127.0.0.1"
    with pytest.raises(ValueError, match="QA_TRUSTED_PROXIES"):
        parse_networks("10.0.0.0/8, proxy.example")


def test_sqlite_counters_expire_one_by_one(tmp_path):
    store = SQLiteStorage(f"sqlite:///{tmp_path}/c.db")
    assert [store.incr("a", 1) for _ in range(3)] == [1, 2, 3]
    for i in range(2000):  # many clients never reset the others' counts
        store.incr(f"client-{i}", 60)
    assert store.get("a") == 3 and store.get("client-7") == 1
    time.sleep(1.1)
    assert store.get("a") == 0 and store.incr("a", 1) == 1  # a new window for this key only
    assert store.get("client-7") == 1
    other = SQLiteStorage(f"sqlite:///{tmp_path}/c.db")  # another process, in effect
    assert other.incr("client-7", 60) == 2 and other.check()


# ---------------------------------------------------------------- 11. long GETs, gunicorn's errors

def test_the_request_line_fits_the_longest_question():
    # 500 characters of 4-byte UTF-8, percent-encoded, with the path and top_k
    line = f"GET /api/ask?q={quote(chr(0x20000) * 500)}&top_k=50 HTTP/1.1"
    assert len(line) <= request_line_limit(500) <= 8190


@pytest.mark.slow
def test_every_documented_question_length_is_accepted_on_the_real_server(server):
    base = f"http://127.0.0.1:{server}"
    for n in (452, 453, 500):
        status, _, body = _get(f"{base}/api/ask?q={quote('问' * n)}&top_k=50")
        assert status == 200, (n, body[:200])
        status, _, body = _get(f"{base}/?q={quote('问' * n)}")
        assert status == 200, n
    status, _, body = _get(f"{base}/api/ask?q={quote('问' * 501)}")
    assert status == 400 and b"the limit is 500" in body


@pytest.mark.slow
def test_gunicorns_own_errors_carry_the_envelope_and_headers(server):
    cases = [
        (b"GET /api/ask?q=" + b"x" * 9000 + b" HTTP/1.1\r\nHost: t\r\n\r\n", 414),
        (b"GET /api/ask?q=x HTTP/1.1\r\nHost: t\r\nX-Big: " + b"y" * 9000 + b"\r\n\r\n", 431),
        (b"GET /api/ask?q=x HTTP/1.1\r\nHost: t\r\nBad Header: z\r\n\r\n", 400),
        (b"GARBAGE\r\n\r\n", 400),
    ]
    for request, expected in cases:
        status, headers, body = _raw(server, request)
        assert status == expected, body
        assert headers["content-type"] == "application/json"
        error = orjson.loads(body)["error"]
        assert error["code"] == expected and error["type"] and error["message"]
        for name in SECURITY:
            assert name.lower() in headers, (expected, name)


# ---------------------------------------------------------------- 12. smaller holes

def test_head_ask_answers_like_get(client):
    get = client.get("/api/ask", query_string={"q": Q})
    head = client.head("/api/ask", query_string={"q": Q})
    assert head.status_code == get.status_code == 200
    assert head.data == b"" and head.headers["Content-Type"] == get.headers["Content-Type"]
    assert client.head("/api/ask").status_code == 400  # same errors as GET


@pytest.mark.slow
def test_head_on_the_real_server(server):
    req = urllib.request.Request(f"http://127.0.0.1:{server}/api/ask?q={quote(Q)}",
                                 method="HEAD")
    with urllib.request.urlopen(req, timeout=5) as r:
        assert r.status == 200 and r.read() == b""


def test_openapi_servers_never_copy_the_host_header(built, settings):
    client = create_app(settings.with_(reload_interval=0)).test_client()
    doc = client.get("/openapi.json", headers={"Host": "evil.example"}).json
    assert doc["servers"] == [{"url": "/"}]
    validate(doc)
    public = create_app(settings.with_(reload_interval=0,
                                       public_url="https://qa.example.org/")).test_client()
    doc = public.get("/openapi.json", headers={"Host": "evil.example"}).json
    assert doc["servers"] == [{"url": "https://qa.example.org"}]
    assert "evil" not in orjson.dumps(doc).decode()


def test_public_messages_name_no_paths(settings, tmp_path, caplog):
    from qa.build import build

    client = create_app(settings.with_(reload_interval=0)).test_client()
    for r in (client.get("/healthz"), client.post("/api/ask", json={"question": Q}),
              client.get("/api/issues")):
        assert r.status_code == 503 and "no index" in r.text
        assert str(tmp_path) not in r.text
    build([CORPUS], settings, None)
    app = create_app(settings.with_(reload_interval=0))
    holder = app.extensions["qa.holder"]
    (Path(settings.index_dir) / "CURRENT").write_text("gen-000009\n")  # names a lost manifest
    caplog.set_level("ERROR")
    holder.refresh()
    r = app.test_client().get("/healthz")
    assert r.status_code == 200 and r.json["generation"] == "gen-000001"  # old one still serves
    assert "cannot load generation gen-000009" in r.json["error"]
    assert str(tmp_path) not in r.text
    assert str(tmp_path) in caplog.text  # the log keeps the whole story
    assert str(tmp_path) in holder.detail


def test_dockerfile_keeps_the_archive_on_a_volume_and_serves_with_gevent():
    text = (ROOT / "Dockerfile").read_text("utf-8")
    assert 'VOLUME ["/app/embeddings"]' in text
    assert "docker run" in text and "-v " in text  # the header shows how to mount it
    assert '"qa", "serve"' in text
    assert "gevent" in (ROOT / "pyproject.toml").read_text("utf-8")


# ---------------------------------------------------------------- 14. workers that disagree

def _story_of(answer: dict) -> tuple[str, int, str]:
    cite = answer["citation"]
    url = cite["url"]
    assert url.startswith(f"/story/{cite['file']}/{cite['story']}?generation=")
    return cite["file"], cite["story"], url.split("generation=")[1].split("#")[0]


def test_a_cited_story_is_served_by_a_worker_that_has_not_moved_yet(built, settings):
    a = create_app(settings.with_(reload_interval=0, rate_limit_per_minute=0))
    b = create_app(settings.with_(reload_interval=0, rate_limit_per_minute=0))
    add([EXTRA], settings, None)  # an editor publishes gen-000002 with a new issue
    a.extensions["qa.holder"].refresh()  # worker A notices first
    answer = a.test_client().get("/api/ask", query_string={"q": NEW_Q}).json
    assert answer["generation"] == "gen-000002"
    file, story, generation = _story_of(answer["answers"][0])
    assert (file, generation) == ("c_2024-03.txt", "gen-000002")

    bc = b.test_client()
    assert bc.get("/healthz").json["generation"] == "gen-000001"  # B is a moment behind
    r = bc.get(f"/api/story/{file}/{story}", query_string={"generation": generation})
    assert r.status_code == 200 and r.json["generation"] == "gen-000002"
    assert r.json["file"] == file and r.json["paragraphs"]
    # asked about a newer generation, B moved to it: the client never goes back
    assert bc.get("/healthz").json["generation"] == "gen-000002"
    page = bc.get(f"/story/{file}/{story}", query_string={"generation": generation, "p": 1})
    assert page.status_code == 200 and 'class="para cited"' in page.text


def test_an_older_cited_generation_is_served_while_on_disk(built, settings):
    app = create_app(settings.with_(reload_interval=0, rate_limit_per_minute=0))
    client = app.test_client()
    old = client.get("/api/ask", query_string={"q": Q}).json
    file, story, generation = _story_of(old["answers"][0])
    assert generation == "gen-000001"
    add([EXTRA], settings, None)
    app.extensions["qa.holder"].refresh()
    r = client.get(f"/api/story/{file}/{story}", query_string={"generation": generation})
    assert r.status_code == 200 and r.json["generation"] == "gen-000001"
    assert client.get("/healthz").json["generation"] == "gen-000002"


@pytest.mark.parametrize("generation", ["gen-000099", "gen-1", "../../etc", "gen-000001x",
                                        "gen-" + "9" * 5000])
def test_an_unknown_generation_is_a_clear_404(client, generation):
    r = client.get("/api/story/a_2024-01.txt/1", query_string={"generation": generation})
    assert r.status_code == 404
    assert r.json["error"]["type"] == "not_found"
    assert "is not on this server" in r.json["error"]["message"]
    page = client.get("/story/a_2024-01.txt/1", query_string={"generation": generation})
    assert page.status_code == 404 and "请重新提问" in page.text


def test_gunicorn_error_pages_use_the_apps_security_headers():
    from qa import serve, web

    assert serve.SECURITY_HEADERS == web.SECURITY_HEADERS


def test_the_model_note_names_no_directories(settings):
    from qa.runtime import open_encoder, without_paths

    status = open_encoder(settings.with_(model="/srv/secret/models/e5-small"))
    assert status.encoder is None and "lexical only" in status.note
    assert "/srv/secret" not in status.note and "e5-small" in status.note
    assert without_paths("see https://host/x and /a/b/c.json") == "see https://host/x and …/c.json"
