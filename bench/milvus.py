"""The Milvus backend on milvus-lite beside the embedded backend: quality and cost, for reference.

    python bench/milvus.py                 # seeds, lexical only (about a minute)
    python bench/milvus.py --model default # with the bundled sentence model
    python bench/milvus.py --sets dev,team,reworded

Builds the seeds on both backends in a temporary directory and scores each question set with
the same code as `qa eval`. milvus-lite is a pure-Python development engine: its timings say
nothing about a Milvus server and are printed for reference only; the quality figures must
match the embedded backend's (the answer layer and the exact BM25 are the application's).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from qa import backends  # noqa: E402
from qa.config import DEFAULT_MODEL, Settings  # noqa: E402
from qa.evaluate import evaluate, load_questions  # noqa: E402
from qa.search import Searcher  # noqa: E402

SETS = {"dev": ROOT.parent / "shared" / "eval" / "dev.jsonl",
        "team": ROOT / "bench" / "questions" / "seeds-team.jsonl",
        "reworded": ROOT / "bench" / "questions" / "seeds-reworded.jsonl",
        "nearmiss": ROOT / "bench" / "questions" / "seeds-nearmiss.jsonl"}


def main() -> None:
    """Build, score and time both backends; print one table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="none", help="'none' (lexical) or 'default'")
    parser.add_argument("--sets", default="dev,team,reworded,nearmiss")
    args = parser.parse_args()
    model = DEFAULT_MODEL if args.model == "default" else args.model
    encoder = None
    if model != "none":
        from qa.encoders import load_encoder

        encoder = load_encoder(model)
    work = Path(tempfile.mkdtemp(prefix="qa-milvus-bench-"))
    rows = []
    for name in ("embedded", "milvus"):
        settings = Settings(index_dir=str(work / name / "index"), model=model)
        if name == "milvus":
            settings = settings.with_(backend="milvus", milvus_uri=str(work / name / "lite.db"))
        started = time.perf_counter()
        backends.build([ROOT / "seeds"], settings, encoder)
        build_s = time.perf_counter() - started
        searcher = Searcher(backends.load_index(settings), encoder, settings)
        searcher.ask("预热")
        timings = []
        for question in ("玉环市有几个国家4A级旅游景区?", "西商学堂什么时候启动?",
                         "被抽调到重点工作专班的滨江干部有多少人?") * 10:
            t = time.perf_counter()
            searcher.ask(question)
            timings.append((time.perf_counter() - t) * 1000)
        timings.sort()
        row = {"backend": name, "build_s": round(build_s, 1),
               "p50_ms": round(statistics.median(timings), 1),
               "p99_ms": round(timings[int(len(timings) * 0.99) - 1], 1)}
        for set_name in args.sets.split(","):
            report = evaluate(searcher, load_questions(SETS[set_name]))
            unanswerable = report["unanswerable"]
            row[set_name] = (report["recall@1"],
                             unanswerable["refused"] if unanswerable["n"] else None,
                             report["false_refusal"])
        rows.append(row)
    print(f"seeds, {searcher.mode}; cells: recall@1 / unanswerable refused / answerable "
          "wrongly refused")
    head = ["backend", "build s", "p50 ms", "p99 ms", *args.sets.split(",")]
    print(" | ".join(head))
    for r in rows:
        cells = [r["backend"], str(r["build_s"]), str(r["p50_ms"]), str(r["p99_ms"])]
        for set_name in args.sets.split(","):
            r1, refused, wrong = r[set_name]
            cells.append(f"{r1:.3f} / {refused if refused is not None else '-'} / {wrong:.3f}")
        print(" | ".join(cells))


if __name__ == "__main__":
    main()
