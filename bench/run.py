"""Benchmarks: build, add, query latency, memory, start-up and HTTP throughput, beside a plain peer.

    python bench/run.py --quick                  # the seeds, under a minute
    python bench/run.py --scale 100k [--dense]   # a synthetic archive (10k, 100k, 1m passages)
    python bench/run.py --quick --dense          # the seeds with the real model (QA_MODEL)
    python bench/run.py --scale cmrc --dense     # CMRC 2018 (../shared/ext/cmrc2018), real text
    python bench/run.py --scale 1m --dense --hashed   # hashed stand-in vectors at scale
    python bench/run.py --scale 1m --json

Prints a table (or one JSON object with --json) and writes bench/results/<date>-<scale>.json.
The peer is what a user gets by gluing the libraries together: bm25s over blank-line paragraphs
with jieba words, measured in the same run on the same archive.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import date
from pathlib import Path
from urllib.parse import quote

import numpy as np

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(ROOT))
SCALES = {"10k": 10_000, "100k": 100_000, "1m": 1_000_000}
DEV = ROOT.parent / "shared" / "eval" / "dev.jsonl"
CMRC = ROOT.parent / "shared" / "ext" / "cmrc2018"


def _run_measured(args: list[str], env: dict | None = None) -> tuple[dict, float]:
    """Run a worker step under /usr/bin/time; return its JSON line and peak RSS in MiB."""
    cmd = [sys.executable, str(BENCH / "worker.py"), *args]
    timer = ["/usr/bin/time", "-v"] if Path("/usr/bin/time").exists() else []
    proc = subprocess.run(timer + cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args[:1])} failed: {proc.stderr[-2000:]}")
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    return out, (int(m.group(1)) / 1024 if m else float("nan"))


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def query_latency(index_dir: str, questions: list[dict], encoder=None) -> dict:
    """In-process latency over the questions, and recall@1 where answers are known."""
    from qa.config import Settings
    from qa.evaluate import hit_rank
    from qa.index import Index
    from qa.search import Searcher

    index = Index.load(index_dir, verify=False)
    settings = Settings(index_dir=index_dir, model="none")
    searcher = Searcher(index, encoder, settings)
    searcher.ask("预热", 5)  # jieba and caches
    took, encode, hits, answerable = [], [], 0, 0
    for q in questions:
        t = time.perf_counter()
        if encoder is not None:
            encoder.encode_queries([q["question"]])
        encode.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        result = searcher.ask(q["question"], 10)
        took.append((time.perf_counter() - t) * 1000)
        if q.get("answer"):
            answerable += 1
            hits += hit_rank(q, result, 1) == 1
    # the query's own encode runs inside ask(); report latency without it, as the target asks
    net = [a - b for a, b in zip(took, encode, strict=True)] if encoder is not None else took
    enc = {"encode_p50_ms": _pct(encode, 50), "encode_p99_ms": _pct(encode, 99),
           "encode_threads": getattr(encoder, "threads", None)} if encoder is not None else {}
    return {**enc, "query_p50_ms": _pct(net, 50), "query_p99_ms": _pct(net, 99),
            "query_with_encode_p50_ms": _pct(took, 50),
            "recall@1": hits / answerable if answerable else None, "queries": len(questions)}


def peer(issue_dir: Path, questions: list[dict]) -> dict:
    """bm25s over blank-line paragraphs, jieba words (`jieba.lcut`), numpy backend."""
    import bm25s
    import jieba

    from qa.text import strip_ws

    jieba.setLogLevel(60)
    paras, files = [], []
    for f in sorted(issue_dir.glob("*.txt")):
        for block in re.split(r"\n\s*\n", f.read_text("utf-8-sig")):
            if block.strip():
                paras.append(block.strip())
                files.append(f.name)
    t = time.perf_counter()
    corpus = [[w for w in jieba.lcut(p) if w.strip()] for p in paras]
    retriever = bm25s.BM25()
    retriever.index(corpus, show_progress=False)
    build_s = time.perf_counter() - t
    took, hits, answerable = [], 0, 0
    k = min(10, len(paras))
    for q in questions:
        t = time.perf_counter()
        tokens = [w for w in jieba.lcut(q["question"]) if w.strip()]
        docs, _ = retriever.retrieve([tokens], k=k, show_progress=False)
        took.append((time.perf_counter() - t) * 1000)
        if q.get("answer"):
            answerable += 1
            top = int(docs[0][0])
            hits += files[top] == q["file"] and strip_ws(q["answer"]) in strip_ws(paras[top])
    return {"peer_build_s": build_s, "peer_query_p50_ms": _pct(took, 50),
            "peer_query_p99_ms": _pct(took, 99),
            "peer_recall@1": hits / answerable if answerable else None}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_ready(url: str, timeout: float) -> float:
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return time.perf_counter() - start
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} not ready after {timeout} s")


def _rss_mib(pid: int) -> float:
    """RSS of a process and its children (gunicorn master + workers), MiB."""
    out = subprocess.run(["ps", "-o", "rss=", "--ppid", str(pid), "-p", str(pid)],
                         capture_output=True, text=True, check=False).stdout.split()
    return sum(int(x) for x in out) / 1024


def _worker_rss_mib(pid: int) -> list[float]:
    """RSS of each child (gunicorn worker) of a process, MiB."""
    out = subprocess.run(["ps", "-o", "rss=", "--ppid", str(pid)],
                         capture_output=True, text=True, check=False).stdout.split()
    return [int(x) / 1024 for x in out]


def _wrk(url: str, seconds: int) -> dict:
    if not shutil.which("wrk"):
        return {}
    out = subprocess.run(["wrk", "-t2", "-c16", f"-d{seconds}s", "--latency", url],
                         capture_output=True, text=True, check=False).stdout

    def ms(label: str) -> float:
        m = re.search(rf"{label}\s+([\d.]+)(us|ms|s)\b", out)
        if not m:
            return float("nan")
        return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]

    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": float(rps.group(1)) if rps else float("nan"), "p50_ms": ms("50%"),
            "p99_ms": ms("99%"), "non_2xx": int(errors.group(1)) if errors else 0}


def _start(cmd: list[str], env: dict | None = None, cwd: Path | None = None):
    return subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)


def serve_and_load(index_dir: str, question: str, seconds: int, rounds: int = 3,
                   model: str = "none") -> dict:
    """`qa serve` and the bare Flask endpoint side by side (same gunicorn settings): time to a
    ready /healthz, RSS, then wrk on each in turn, `rounds` times; medians and their ratio.
    Alternating keeps a noisy neighbour from favouring whichever ran in a quiet moment."""
    env = dict(os.environ, QA_INDEX_DIR=index_dir, QA_MODEL=model,
               QA_RATE_LIMIT_PER_MINUTE="0", QA_RELOAD_INTERVAL="0")
    bin_dir = Path(sys.executable).parent
    port, bare_port = _free_port(), _free_port()
    t0 = time.perf_counter()
    ours = _start([str(bin_dir / "qa"), "serve", "--port", str(port), "--workers", "2"], env)
    bare = _start([str(bin_dir / "gunicorn"), "-w", "2", "-k", "sync",
                   "--no-control-socket", "--access-logfile", "-", "-b",
                   f"127.0.0.1:{bare_port}", "bare_app:app"], cwd=BENCH)
    try:
        _wait_ready(f"http://127.0.0.1:{port}/healthz", 600)
        ready = time.perf_counter() - t0
        _wait_ready(f"http://127.0.0.1:{bare_port}/api/ask", 60)
        rss = _rss_mib(ours.pid)
        workers_rss = _worker_rss_mib(ours.pid)
        url = f"http://127.0.0.1:{port}/api/ask?q={quote(question)}&top_k=5"
        bare_url = f"http://127.0.0.1:{bare_port}/api/ask"
        _wrk(url, 2)  # warm every worker
        _wrk(bare_url, 2)
        runs = [(_wrk(url, seconds), _wrk(bare_url, seconds)) for _ in range(rounds)]
    finally:
        for proc in (ours, bare):
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(30)

    def med(side: int, key: str) -> float:
        return float(np.median([r[side].get(key, float("nan")) for r in runs]))

    return {"ready_s": ready, "serve_rss_mib": rss,
            "serve_worker_rss_mib": max(workers_rss) if workers_rss else float("nan"),
            "http_rps": med(0, "rps"), "http_p50_ms": med(0, "p50_ms"),
            "http_p99_ms": med(0, "p99_ms"),
            "http_non_2xx": sum(r[0].get("non_2xx", 0) for r in runs),
            "bare_rps": med(1, "rps"), "bare_p50_ms": med(1, "p50_ms"),
            "bare_p99_ms": med(1, "p99_ms"),
            "http_ratio": med(0, "rps") / med(1, "rps"),
            "http_rounds": [[round(a.get("rps", 0)), round(b.get("rps", 0))] for a, b in runs]}


def run(scale: str, dense: bool, n_queries: int, http_seconds: int, work: Path,
        with_peer: bool = True, hashed: bool = False) -> dict:
    """Every measurement at one scale."""
    from synth import generate, make_questions, vocabulary_size, write_issue

    from qa.config import Settings
    from qa.evaluate import load_questions

    model = Settings.from_env().model if dense and not hashed else "none"
    kind = "hash" if dense and hashed else model  # the worker's --encoder
    res: dict = {"scale": scale, "date": date.today().isoformat(), "dense": dense,
                 "model": "bench/hash-bigram-384" if hashed and dense else model,
                 "machine": f"{os.cpu_count()} cpu", "load": os.getloadavg()[0]}
    if scale == "quick":
        issues = ROOT / "seeds"
    elif scale == "cmrc":
        issues = CMRC / "issues"
    else:
        issues = work / scale / "issues"
        res["archive"] = generate(issues, SCALES[scale])
    index_dir = str(work / scale / ("index-dense" if dense else "index"))
    shutil.rmtree(index_dir, ignore_errors=True)
    built, peak = _run_measured(["build", "--index", index_dir, "--paths", str(issues),
                                 "--encoder", kind])
    res.update(passages=built["passages"], build_s=built["seconds"], build_peak_mib=peak,
               build_passages_per_s=built["passages"] / built["seconds"])
    res["vocabulary"] = vocabulary_size(index_dir)
    loaded, load_peak = _run_measured(["load", "--index", index_dir])
    res.update(load_s=loaded["seconds"], index_rss_mib=load_peak)

    if scale == "quick" and DEV.exists():
        questions = load_questions(DEV)
    elif scale == "cmrc":
        questions = load_questions(CMRC / "questions.jsonl")[:n_queries]
    else:
        questions = make_questions(index_dir, n_queries)
    reps = max(1, n_queries // max(1, len(questions)))
    encoder = None
    if dense and hashed:
        from hashenc import HashEncoder

        encoder = HashEncoder()
    elif dense:
        from qa.encoders import encoder_threads, load_encoder

        # one query at a time in this process, as in one worker of a 2-worker server
        encoder = load_encoder(model, threads=encoder_threads(0, processes=2))
    lat = query_latency(index_dir, questions * reps, encoder)
    res.update(lat)
    if with_peer:
        res.update(peer(issues, questions * reps))

    # add one new ~100-passage issue to the built archive
    from synth import Lexicon

    extra = work / scale / "extra"
    extra.mkdir(parents=True, exist_ok=True)
    new_issue = extra / "new-issue.txt"
    write_issue(new_issue, np.random.default_rng(12345), Lexicon.load(), 100)
    added, add_peak = _run_measured(["add", "--index", index_dir, "--paths", str(new_issue),
                                     "--encoder", kind])
    res.update(add_s=added["seconds"], add_excluding_embedding_s=added[
        "seconds_excluding_embedding"], add_bytes_written=added["bytes_written"],
        add_peak_mib=add_peak)
    if http_seconds and not (dense and hashed):
        q = questions[0]["question"]
        res.update(serve_and_load(index_dir, q, http_seconds, model=model))
    return res


def table(res: dict) -> str:
    """Readable figures."""
    def f(key, fmt="{:.1f}"):
        v = res.get(key)
        return "—" if v is None or (isinstance(v, float) and np.isnan(v)) else fmt.format(v)

    rows = [
        ("passages", f("passages", "{:,}")),
        ("vocabulary (words / bigrams)", f"{res['vocabulary']['words']:,} / "
                                         f"{res['vocabulary']['bigrams']:,}"),
        ("full build (s) / peak MiB", f"{f('build_s')} / {f('build_peak_mib', '{:.0f}')}"),
        ("build passages/s", f("build_passages_per_s")),
        ("query encode p50 / p99 (ms), threads", f"{f('encode_p50_ms')} / {f('encode_p99_ms')}"
                                                 f", {f('encode_threads', '{}')}"),
        ("index load (s) / RSS MiB", f"{f('load_s', '{:.2f}')} / {f('index_rss_mib', '{:.0f}')}"),
        ("add one 100-passage issue (s, excl. embed)",
         f("add_excluding_embedding_s", "{:.2f}")),
        ("  bytes written by the add", f("add_bytes_written", "{:,}")),
        ("query p50 / p99 (ms)", f"{f('query_p50_ms', '{:.2f}')} / {f('query_p99_ms', '{:.2f}')}"),
        ("peer query p50 / p99 (ms)", f"{f('peer_query_p50_ms', '{:.2f}')} / "
                                      f"{f('peer_query_p99_ms', '{:.2f}')}"),
        ("recall@1 / peer recall@1",
         f"{f('recall@1', '{:.3f}')} / {f('peer_recall@1', '{:.3f}')}"),
        ("serve: ready (s) / RSS MiB (largest worker)",
         f"{f('ready_s', '{:.2f}')} / {f('serve_rss_mib', '{:.0f}')} "
         f"({f('serve_worker_rss_mib', '{:.0f}')})"),
        ("/api/ask req/s, p50 / p99 ms", f"{f('http_rps', '{:.0f}')}, {f('http_p50_ms', '{:.1f}')}"
                                         f" / {f('http_p99_ms', '{:.1f}')}"),
        ("bare Flask req/s, p50 / p99 ms",
         f"{f('bare_rps', '{:.0f}')}, {f('bare_p50_ms', '{:.1f}')} / {f('bare_p99_ms', '{:.1f}')}"),
        ("ratio ours / bare", f("http_ratio", "{:.2f}")),
    ]
    width = max(len(r[0]) for r in rows)
    head = f"scale {res['scale']} ({res['model'] if res['dense'] else 'lexical only'})"
    return "\n".join([head] + [f"{a:<{width}}  {b}" for a, b in rows])


def main() -> None:
    """Command-line entry point."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--scale", choices=["quick", "cmrc", *SCALES], default="quick")
    p.add_argument("--quick", action="store_true", help="seeds scale, under a minute")
    p.add_argument("--dense", action="store_true", help="dense too, with the real model (QA_MODEL)")
    p.add_argument("--hashed", action="store_true",
                   help="with --dense: hashed 384-d stand-in vectors instead (for large scales)")
    p.add_argument("--queries", type=int, default=500)
    p.add_argument("--http-seconds", type=int, default=10, help="wrk duration; 0 skips HTTP")
    p.add_argument("--work", type=Path, default=BENCH / "work")
    p.add_argument("--out", type=Path, default=BENCH / "results")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--no-peer", action="store_true", help="skip the bm25s peer")
    a = p.parse_args()
    scale = "quick" if a.quick else a.scale
    res = run(scale, a.dense, a.queries, a.http_seconds, a.work, with_peer=not a.no_peer,
              hashed=a.hashed)
    a.out.mkdir(parents=True, exist_ok=True)
    name = f"{res['date']}-{scale}{('-hashed' if a.hashed else '-dense') if a.dense else ''}.json"
    (a.out / name).write_text(json.dumps(res, indent=1, ensure_ascii=False) + "\n")
    print(json.dumps(res, ensure_ascii=False) if a.json else table(res))


if __name__ == "__main__":
    main()
