"""Score an index against a question file (format: ../shared/eval/README.md)."""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from pathlib import Path

from .search import Result, Searcher
from .text import strip_ws

KS = (1, 5, 10)
_SHORT_NOISE = re.compile(r"[\s“”‘’\"'《》「」()（）]")  # ../shared/eval/README.md


def normalise_short(text: str) -> str:
    """A short answer's comparison form: no whitespace, quotes or brackets, no trailing 等."""
    text = _SHORT_NOISE.sub("", text)
    return text[:-1] if text.endswith("等") else text


def char_f1(got: str, gold: str) -> float:
    """Character F1 of two normalised strings (shared characters as multisets)."""
    if not got or not gold:
        return float(got == gold)
    common = sum((Counter(got) & Counter(gold)).values())
    if not common:
        return 0.0
    precision, recall = common / len(got), common / len(gold)
    return 2 * precision * recall / (precision + recall)


class EvalFileError(ValueError):
    """The question file is missing or malformed; the message names the line."""


def load_questions(path: str | Path) -> list[dict]:
    """Read a JSONL question file, checking the fields every line needs."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise EvalFileError(f"{path}: cannot read ({exc})") from None
    out = []
    for no, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            q = json.loads(line)
        except json.JSONDecodeError as exc:
            raise EvalFileError(f"{path}:{no}: not JSON ({exc.msg})") from None
        if not isinstance(q, dict) or not isinstance(q.get("question"), str):
            raise EvalFileError(f"{path}:{no}: needs a 'question' string")
        if (q.get("answer") is None) != (q.get("file") is None):
            raise EvalFileError(f"{path}:{no}: 'file' and 'answer' are both set or both null")
        q.setdefault("id", f"line{no}")
        q.setdefault("type", "unanswerable" if q.get("answer") is None else "unknown")
        out.append(q)
    if not out:
        raise EvalFileError(f"{path}: no questions")
    return out


def hit_rank(question: dict, result: Result, k: int = 10) -> int | None:
    """1-based rank of the first passage from the right file containing the answer."""
    answer = strip_ws(question["answer"])
    for r, a in enumerate(result.answers[:k], 1):
        if a.record["file"] == question["file"] and answer in strip_ws(a.record["text"]):
            return r
    return None


def _cite(r: dict) -> str:
    return f"{r['file']} · {r['title']} ¶{r['paragraph']}"


def _metrics(ranks: list[int | None]) -> dict:
    n = len(ranks)
    out: dict = {"n": n}
    for k in KS:
        out[f"recall@{k}"] = round(sum(1 for r in ranks if r and r <= k) / n, 4) if n else 0.0
    out["mrr@10"] = round(sum(1 / r for r in ranks if r and r <= 10) / n, 4) if n else 0.0
    return out


def evaluate(searcher: Searcher, questions: list[dict]) -> dict:
    """Recall@1/5/10 and MRR@10 (overall and per type), refusals, the misses, and each
    question's top confidence beside whether that passage holds the answer (calibration)."""
    ranks: list[int | None] = []
    by_type: dict[str, list[int | None]] = defaultdict(list)
    unanswerable = refused = false_refusals = 0
    misses = []
    latencies = []
    # per question: the top passage's probability and whether it holds the answer (reliability)
    calibration: list[dict] = []
    shorts: list[tuple[bool, float, bool]] = []  # (exact match, char F1, highlight holds it)
    for q in questions:
        result = searcher.ask(q["question"], top_k=10)
        latencies.append(result.took_ms)
        top = result.answers[0].record if result.answers else None
        calibration.append({
            "id": q["id"], "answerable": q.get("answer") is not None,
            "p": result.answers[0].confidence if result.answers else 0.0,
            "hit": q.get("answer") is not None and hit_rank(q, result, k=1) == 1})
        if q.get("answer") is None:
            unanswerable += 1
            refused += not result.answerable
            if result.answerable:
                misses.append({"id": q["id"], "question": q["question"], "type": q["type"],
                               "why": "answered an unanswerable question",
                               "got": top and _cite(top)})
            continue
        if q.get("short"):  # a refused or missing short answer scores 0
            gold = normalise_short(q["short"])
            first = result.answers[0] if result.answers else None
            got = (normalise_short(first.record["text"][first.short[0]:first.short[1]])
                   if result.answerable and first and first.short else "")
            shorts.append((got == gold, char_f1(got, gold) if got else 0.0,
                           bool(first) and strip_ws(q["short"]) in strip_ws(first.highlight)))
        rank = hit_rank(q, result)
        ranks.append(rank)
        by_type[q["type"]].append(rank)
        false_refusals += not result.answerable
        if rank != 1 or not result.answerable:
            misses.append({
                "id": q["id"], "question": q["question"], "type": q["type"], "rank": rank,
                "why": "refused" if not result.answerable else f"hit at rank {rank}",
                "expected": f"{q['file']} · {q.get('title', '')}",
                "got": top and _cite(top)})
    report = _metrics(ranks)
    report["by_type"] = {t: _metrics(r) for t, r in sorted(by_type.items())}
    report["unanswerable"] = {"n": unanswerable,
                              "refused": round(refused / unanswerable, 4) if unanswerable else 0.0}
    report["false_refusal"] = round(false_refusals / len(ranks), 4) if ranks else 0.0
    n = len(shorts)
    report["short"] = {"n": n,
                       "em": round(sum(e for e, _, _ in shorts) / n, 4) if n else 0.0,
                       "f1": round(sum(f for _, f, _ in shorts) / n, 4) if n else 0.0,
                       "highlight_contains": round(sum(h for _, _, h in shorts) / n, 4)
                       if n else 0.0}
    report["mode"] = searcher.mode
    report["generation"] = searcher.index.generation
    latencies.sort()
    report["query_ms_p50"] = latencies[len(latencies) // 2] if latencies else 0.0
    report["misses"] = misses
    report["calibration"] = calibration
    return report


def format_report(report: dict) -> str:
    """A readable table of an evaluation report."""
    lines = [f"generation {report['generation']} ({report['mode']}), "
             f"{report['n']} answerable questions",
             f"{'':14}{'n':>5}{'R@1':>8}{'R@5':>8}{'R@10':>8}{'MRR@10':>8}"]
    rows = [("all", report)] + list(report["by_type"].items())
    for name, m in rows:
        lines.append(f"{name:14}{m['n']:>5}{m['recall@1']:>8.3f}{m['recall@5']:>8.3f}"
                     f"{m['recall@10']:>8.3f}{m['mrr@10']:>8.3f}")
    u = report["unanswerable"]
    lines.append(f"unanswerable refused: {u['refused']:.3f} of {u['n']}; "
                 f"answerable wrongly refused: {report['false_refusal']:.3f}")
    sh = report["short"]
    if sh["n"]:
        lines.append(f"short answers ({sh['n']} with a gold `short`): EM {sh['em']:.3f}, "
                     f"char F1 {sh['f1']:.3f}, highlight holds it {sh['highlight_contains']:.3f}")
    lines.append(f"query latency p50: {report['query_ms_p50']:.1f} ms")
    if report["misses"]:
        lines.append("misses:")
        for m in report["misses"]:
            lines.append(f"  {m['id']} [{m['type']}] {m['why']}: {m['question']}")
            lines.append(f"      got {m.get('got')}" + (f"; expected {m['expected']}"
                                                          if m.get("expected") else ""))
    return "\n".join(lines)
