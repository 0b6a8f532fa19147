"""Answer quality on every question set we have, in one table (lexical only, as runs here).

    python bench/quality.py            # dev, the team's held-out seed questions, CMRC 2018
    python bench/quality.py --json

Builds throwaway indexes of the seeds and of ../shared/ext/cmrc2018 in a temporary directory and
scores each question set with the same code as `qa eval`. dev.jsonl is what thresholds were set
on; bench/questions/seeds-team.jsonl was written by the team on other paragraphs of the seeds,
each batch before it was first scored (no rule is written from it; it and CMRC chose between
settings); CMRC 2018 is encyclopaedia text, a check that nothing is news-specific.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared"
CMRC = SHARED / "ext" / "cmrc2018"
SETS = [  # name, issue files, question file
    ("dev", ROOT / "seeds", SHARED / "eval" / "dev.jsonl"),
    ("team", ROOT / "seeds", BENCH / "questions" / "seeds-team.jsonl"),
    ("cmrc", CMRC / "issues", CMRC / "questions.jsonl"),
]


def measure(work: Path) -> dict:
    """Build each archive once, score each question set; {set: report without misses}."""
    from qa.build import build
    from qa.config import Settings
    from qa.evaluate import evaluate, load_questions
    from qa.index import Index
    from qa.search import Searcher

    searchers: dict[Path, Searcher] = {}
    out = {}
    for name, issues, questions in SETS:
        if not questions.is_file():
            print(f"skipped {name}: {questions} is missing", file=sys.stderr)
            continue
        if issues not in searchers:
            settings = Settings(index_dir=str(work / issues.name), model="none")
            build([issues], settings, None)
            searchers[issues] = Searcher(Index.load(settings.index_dir), None, settings)
        report = evaluate(searchers[issues], load_questions(questions))
        report.pop("misses", None)
        out[name] = report
    return out


def table(results: dict) -> str:
    """The figures side by side."""
    rows = [("answerable n", lambda r: str(r["n"])),
            ("recall@1", lambda r: f"{r['recall@1']:.3f}"),
            ("recall@5", lambda r: f"{r['recall@5']:.3f}"),
            ("MRR@10", lambda r: f"{r['mrr@10']:.3f}"),
            ("paraphrase recall@1", lambda r: f"{r['by_type']['paraphrase']['recall@1']:.3f}"
             if "paraphrase" in r["by_type"] else "-"),
            ("unanswerable refused", lambda r: f"{r['unanswerable']['refused']:.3f} of "
             f"{r['unanswerable']['n']}" if r["unanswerable"]["n"] else "-"),
            ("answerable wrongly refused", lambda r: f"{r['false_refusal']:.4f}")]
    names = list(results)
    lines = [f"{'':28}" + "".join(f"{n:>16}" for n in names)]
    for label, cell in rows:
        lines.append(f"{label:28}" + "".join(f"{cell(results[n]):>16}" for n in names))
    return "\n".join(lines)


def main() -> None:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="qa-quality-") as work:
        results = measure(Path(work))
    print(json.dumps(results, ensure_ascii=False, indent=1) if args.json else table(results))


if __name__ == "__main__":
    main()
