"""Attack the service as a careless operator or a hostile client would; print tried/survived/failed.

    python bench/reliability.py                 # about two minutes
    python bench/reliability.py --kills 60      # a longer kill campaign

Everything runs on this machine, against a throw-away index of the seeds and a `qa serve` on a
free loopback port; every loop is bounded in count and time.

- kill: `qa add` killed with SIGKILL at a random moment, and at each fault-injection stage;
  afterwards `qa verify` must pass and the archive must be the old or the new generation, whole.
- lost-current: CURRENT deleted, then `qa add`: must refuse, `qa recover` must restore.
- stalled: 2, 10 and 100 connections that send half a request and stall; /healthz and /api/ask
  must keep answering (each within 5 s).
- chunked: 1, 10 and 19 MiB bodies with chunked framing: 413 in the JSON envelope.
- rate-limit: twice the per-minute limit from one client, across workers: exactly the limit
  answered, the rest 429 — on the API and the web form.
- long-question: GET of 500 Chinese characters: 200.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from qa.generations import current_generation  # noqa: E402 - after the sys.path line

QA = [sys.executable, "-m", "qa.cli"]
STAGES = ["segment-write", "segment-written", "manifest-written", "collect-garbage"]
RATE = 30


def _env(index: Path, **extra: str) -> dict[str, str]:
    return dict(os.environ, QA_INDEX_DIR=str(index), QA_MODEL="none", **extra)


def _qa(index: Path, *args: str, **extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([*QA, *args], env=_env(index, **extra), cwd=ROOT, capture_output=True,
                          text=True, timeout=300, check=False)


def _issue(work: Path, n: int) -> Path:
    path = work / f"extra-{n:04d}.txt"
    path.write_text(f"# 测试新闻第{n}号\n\n这是第{n}号测试报道的正文,记者在现场看到了新的变化。\n\n"
                    f"第{n}号报道的第二段,说明项目总投资{n}万元。\n", "utf-8")
    return path


def kill_campaign(work: Path, kills: int) -> tuple[int, int, list[str]]:
    """Kill writers at random moments and at every stage; check the archive after each."""
    index = work / "kill-index"
    _qa(index, "index", str(ROOT / "seeds"))
    start = time.monotonic()
    _qa(index, "add", str(_issue(work, 0)))
    duration = time.monotonic() - start
    tried = survived = 0
    failures = []
    plans = [("stage", s) for s in STAGES] + [("random", None)] * kills
    for n, (kind, stage) in enumerate(plans, 1):
        before = current_generation(index)
        issue = _issue(work, n)
        extra = {"QA_FAULT_INJECT": stage} if stage else {}
        proc = subprocess.Popen([*QA, "add", str(issue)], env=_env(index, **extra), cwd=ROOT,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if kind == "random":
            time.sleep(random.uniform(0, duration))
            proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=300)
        tried += 1
        verify = _qa(index, "verify")
        after = current_generation(index)
        info = json.loads(_qa(index, "info", "--json").stdout or "{}")
        whole = after == before or issue.name in info.get("files", [])
        if verify.returncode == 0 and whole:
            survived += 1
        else:
            failures.append(f"kill #{n} ({stage or 'random'}): {verify.stdout}{verify.stderr}")
    # the next writer after all that must clean up and publish
    last = _qa(index, "add", str(_issue(work, len(plans) + 1)))
    tried += 1
    leftovers = list((index / "segments").glob(".tmp-*")) + list(index.glob(".*.tmp"))
    if last.returncode == 0 and not leftovers:
        survived += 1
    else:
        failures.append(f"writer after the campaign: rc {last.returncode}, leftovers {leftovers}")
    return tried, survived, failures


def lost_current(work: Path) -> tuple[int, int, list[str]]:
    """Delete CURRENT: writers refuse, recover restores, nothing is lost."""
    index = work / "lost-index"
    _qa(index, "index", str(ROOT / "seeds"))
    _qa(index, "add", str(_issue(work, 9001)))
    (index / "CURRENT").unlink()
    refused = _qa(index, "add", str(_issue(work, 9002)))
    recovered = _qa(index, "recover")
    info = json.loads(_qa(index, "info", "--json").stdout or "{}")
    ok = (refused.returncode == 1 and "qa recover" in refused.stderr
          and recovered.returncode == 0 and "extra-9001.txt" in info.get("files", []))
    return 1, int(ok), [] if ok else [f"{refused.stderr}{recovered.stdout}{recovered.stderr}"]


# ------------------------------------------------------------------ the server

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`qa serve` on a free loopback port, stopped on exit."""

    def __init__(self, index: Path, **extra: str):
        self.port = _free_port()
        self.proc = subprocess.Popen(
            [*QA, "serve", "--host", "127.0.0.1", "--port", str(self.port), "--workers", "2"],
            env=_env(index, QA_RELOAD_INTERVAL="0", **extra), cwd=ROOT,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.get("/healthz")[0] == 200:
                return
            time.sleep(0.3)
        self.stop()
        raise RuntimeError("qa serve did not come up")

    def get(self, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}",
                                        timeout=timeout) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()
        except OSError:
            return 0, b""

    def stop(self) -> None:
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)


def stalled(server: Server) -> tuple[int, int, list[str]]:
    """Stalled connections must not stop /healthz and /api/ask."""
    tried = survived = 0
    failures = []
    q = "/api/ask?q=" + quote("玉环市有几个国家4A级旅游景区?")
    for n in (2, 10, 100):
        socks = []
        for i in range(n):
            s = socket.create_connection(("127.0.0.1", server.port), timeout=5)
            # half the connections stall in the headers, half in the body
            s.sendall(b"POST /api/ask HTTP/1.1\r\nHost: x\r\n" if i % 2 else
                      b"POST /api/ask HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      b"Content-Length: 100\r\n\r\n{\"q")
            socks.append(s)
        time.sleep(0.5)
        for path in ("/healthz", q, q, "/healthz", q):
            tried += 1
            t0 = time.monotonic()
            status, _ = server.get(path, timeout=5)
            if status == 200:
                survived += 1
            else:
                failures.append(f"{n} stalled: {path[:20]} -> {status} after "
                                f"{time.monotonic() - t0:.1f} s")
        for s in socks:
            s.close()
    return tried, survived, failures


def chunked(server: Server) -> tuple[int, int, list[str]]:
    """Chunked bodies over the limit get 413 in the envelope, whatever their size."""
    tried = survived = 0
    failures = []
    for mib in (1, 10, 19):
        tried += 1
        s = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        s.sendall(b"POST /api/ask HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
        block = b"x" * 65536
        try:
            for _ in range(mib * 16):
                s.sendall(b"10000\r\n" + block + b"\r\n")
            s.sendall(b"0\r\n\r\n")
        except OSError:
            pass  # the server answered and closed early: read what it said
        head = b""
        try:  # read the whole answer: the envelope may come in a second packet
            while chunk := s.recv(65536):
                head += chunk
        except OSError:
            pass
        s.close()
        status = head.split(b" ", 2)[1:2]
        if status == [b"413"] and b"payload_too_large" in head:
            survived += 1
        else:
            failures.append(f"{mib} MiB chunked -> {head[:60]!r}")
    return tried, survived, failures


def rate_limit(server: Server) -> tuple[int, int, list[str]]:
    """Twice the limit from one client: exactly the limit answered, on API and form together."""
    codes = []
    for i in range(2 * RATE):
        path = "/api/ask?q=" if i % 2 else "/?q="
        codes.append(server.get(path + quote(f"测试问题{i}"))[0])
    ok = codes.count(200) == RATE and codes.count(429) == RATE
    return 1, int(ok), [] if ok else [f"{codes.count(200)} answered, {codes.count(429)} 429, "
                                      f"limit {RATE}/min"]


def long_question(server: Server) -> tuple[int, int, list[str]]:
    """The longest question the API documents is answered."""
    status, body = server.get("/api/ask?q=" + quote("玉环市旅游景区" * 71 + "有几个"))
    ok = status == 200
    return 1, int(ok), [] if ok else [f"500 characters -> {status} {body[:60]!r}"]


def main() -> None:
    """Run every probe and print the table."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--kills", type=int, default=20, help="random-moment kills of `qa add`")
    args = p.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="qa-reliability-") as tmp:
        work = Path(tmp)
        rows.append(("kill -9 a writer", *kill_campaign(work, args.kills)))
        rows.append(("lost CURRENT", *lost_current(work)))
        index = work / "serve-index"
        _qa(index, "index", str(ROOT / "seeds"))
        server = Server(index, QA_RATE_LIMIT_PER_MINUTE="0")
        try:
            rows.append(("stalled connections", *stalled(server)))
            rows.append(("chunked bodies", *chunked(server)))
            rows.append(("long question", *long_question(server)))
        finally:
            server.stop()
        server = Server(index, QA_RATE_LIMIT_PER_MINUTE=str(RATE),
                        QA_RATE_LIMIT_STORAGE=f"sqlite:///{work / 'ratelimit.sqlite3'}")
        try:
            rows.append(("rate limit", *rate_limit(server)))
        finally:
            server.stop()
    print(f"{'probe':22} {'tried':>6} {'survived':>9} {'failed':>7}")
    for name, tried, ok, _ in rows:
        print(f"{name:22} {tried:6d} {ok:9d} {tried - ok:7d}")
    for name, _, _, failures in rows:
        for f in failures[:5]:
            print(f"  {name}: {f}")
    sys.exit(1 if any(t != ok for _, t, ok, _ in rows) else 0)


if __name__ == "__main__":
    main()
