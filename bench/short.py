"""Short-answer quality and speed: EM, character F1, in-sentence share, per-passage time.

    python bench/short.py                # gold passage and top retrieved passage, every set
    python bench/short.py --misses dev   # also list the misses of one tuning set (dev, cmrc-train)

Scoring follows ../shared/eval/README.md: both sides lose whitespace, quotes and brackets and a
trailing 等; EM is equality, character F1 counts shared characters as multisets; a missing short
answer scores 0. Two readings per set:

- gold: the paragraph of the index that contains `answer` (the file's passage), with the best
  sentence chosen as the search does (question bigrams, uniform weights): extraction alone.
- top: the top passage of a lexical `Searcher` with its own highlight: what a reader sees.

CMRC 2018 is split by a hash of the question id: ids whose md5 starts with an even byte are
"train" (rules may be tuned on them, with dev); the odd half is held out and only scored.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared"
CMRC = SHARED / "ext" / "cmrc2018"

from qa.evaluate import char_f1  # noqa: E402 - after the sys.path line
from qa.evaluate import normalise_short as normalise  # noqa: E402
from qa.text import strip_ws  # noqa: E402


def is_train(qid: str) -> bool:
    """The fixed CMRC tuning half: md5 of the id starts with an even byte."""
    return hashlib.md5(qid.encode()).digest()[0] % 2 == 0


def _load(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip()]


def _gold_passage(by_file: dict[str, list[dict]], q: dict) -> dict | None:
    want = strip_ws(q["answer"])
    return next((r for r in by_file.get(q["file"], []) if want in strip_ws(r["text"])), None)


def _score(rows: list[tuple[str | None, str, bool]]) -> dict:
    """rows: (short answer or None, gold short, whether the span lies in the best sentence)."""
    n = len(rows)
    em = sum(got is not None and normalise(got) == normalise(gold) for got, gold, _ in rows)
    f1 = sum(char_f1(normalise(got), normalise(gold)) for got, gold, _ in rows if got is not None)
    inside = sum(i for _, _, i in rows)
    answered = sum(got is not None for got, _, _ in rows)
    return {"n": n, "em": round(em / n, 4), "f1": round(f1 / n, 4),
            "in_sentence": round(inside / n, 4), "answered": round(answered / n, 4)}


def run_set(name: str, questions: list[dict], index, searcher, misses: bool) -> dict:
    """Score one question set on its gold passage and on the top retrieved passage."""
    from qa.search import Searcher
    from qa.shortanswer import short_answer
    from qa.text import char_ngrams, mask_question_words

    by_file: dict[str, list[dict]] = {}
    for gid in range(index.n_passages):
        r = index.passage(gid)
        by_file.setdefault(r["file"], []).append(r)
    gold_rows, top_rows, times = [], [], []
    short_answer("谁作了专题授课?", "院长尹建伟作专题授课。")  # load jieba's dictionaries first
    for q in questions:
        if not q.get("answer") or not q.get("short"):
            continue
        record = _gold_passage(by_file, q)
        text = record["text"] if record else ""
        weights = dict.fromkeys(char_ngrams(mask_question_words(q["question"])), 1.0)
        _, sent = Searcher._best_sentence(text, weights) if text else ("", (0, 0))
        t0 = time.perf_counter()
        span = short_answer(q["question"], text, sent) if text else None
        times.append(time.perf_counter() - t0)
        got = text[span[0] : span[1]] if span else None
        inside = bool(span) and sent[0] <= span[0] and span[1] <= sent[1]
        gold_rows.append((got, q["short"], inside))
        if misses and (got is None or normalise(got) != normalise(q["short"])):
            print(f"  {q['id']} {q['question']}\n      gold {q['short']!r} got {got!r}"
                  f" f1={char_f1(normalise(got or ''), normalise(q['short'])):.2f}")
        result = searcher.ask(q["question"], 5)
        top = result.answers[0] if result.answers else None
        if top is None:
            top_rows.append((None, q["short"], False))
            continue
        span = short_answer(q["question"], top.record["text"], top.highlight_span)
        got = top.record["text"][span[0] : span[1]] if span else None
        hs = top.highlight_span
        top_rows.append((got, q["short"], bool(span) and hs[0] <= span[0] and span[1] <= hs[1]))
    times.sort()
    ms = [t * 1000 for t in times]
    out = {"gold": _score(gold_rows), "top": _score(top_rows),
           "ms_p50": round(ms[len(ms) // 2], 3), "ms_p99": round(ms[int(len(ms) * 0.99)], 3),
           "ms_mean": round(sum(ms) / len(ms), 3)}
    return out


def measure(work: Path, misses: str | None) -> dict:
    """Build the seeds and CMRC archives once; score dev, CMRC train and CMRC held-out."""
    from qa.build import build
    from qa.config import Settings
    from qa.index import Index
    from qa.search import Searcher

    cmrc = _load(CMRC / "questions.jsonl")
    sets = [("dev", ROOT / "seeds", _load(SHARED / "eval" / "dev.jsonl")),
            ("cmrc-train", CMRC / "issues", [q for q in cmrc if is_train(q["id"])]),
            ("cmrc-heldout", CMRC / "issues", [q for q in cmrc if not is_train(q["id"])])]
    loaded: dict[Path, tuple] = {}
    out = {}
    for name, issues, questions in sets:
        if issues not in loaded:
            settings = Settings(index_dir=str(work / issues.name), model="none")
            build([issues], settings, None)
            index = Index.load(settings.index_dir)
            loaded[issues] = (index, Searcher(index, None, settings))
        show = misses == name and name != "cmrc-heldout"  # held-out misses are never read
        out[name] = run_set(name, questions, *loaded[issues], show)
    return out


def table(results: dict) -> str:
    """The figures side by side."""
    lines = [f"{'':26}" + "".join(f"{n:>14}" for n in results)]
    for part in ("gold", "top"):
        for key, label in (("n", "n"), ("em", "EM"), ("f1", "char F1"),
                           ("in_sentence", "in best sentence"), ("answered", "answered")):
            lines.append(f"{part + ' ' + label:26}"
                         + "".join(f"{results[n][part][key]:>14}" for n in results))
    for key in ("ms_p50", "ms_p99", "ms_mean"):
        lines.append(f"{key + ' per passage':26}" + "".join(f"{results[n][key]:>14}"
                                                           for n in results))
    return "\n".join(lines)


def main() -> None:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--misses", choices=["dev", "cmrc-train"],
                        help="list the misses of one tuning set")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="qa-short-") as work:
        results = measure(Path(work), args.misses)
    print(json.dumps(results, ensure_ascii=False, indent=1) if args.json else table(results))


if __name__ == "__main__":
    main()
