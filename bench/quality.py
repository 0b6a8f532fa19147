"""Answer quality on every question set we have: lexical, dense and hybrid side by side.

    python bench/quality.py                 # every set below with the default model
    python bench/quality.py --model none    # lexical only (about 40 s)
    python bench/quality.py --sets dev,team --json

Builds throwaway indexes of the seeds and of ../shared/ext/cmrc2018 in a temporary directory and
scores each question set with the same code as `qa eval`, three ways on the same index: lexical
only, dense only (the sentence model's ranking alone) and hybrid (what the service runs).
dev.jsonl is what thresholds were set on; bench/questions/seeds-team.jsonl was written by the team
on other paragraphs of the seeds, each batch before it was first scored; seeds-reworded.jsonl
(ids r…) was written the way readers reword questions before the model first scored it; CMRC
2018 is encyclopaedia text, a check that nothing is news-specific. seeds-reworded2 (ids a…) and
seeds-nearmiss (ids n…, all unanswerable: one detail of a real fact changed) were written before
the answerability model was first scored, and are never fitted on; seeds-fresh (ids f…,
25 reworded, 20 near-miss) was written blind after every change to ranking and answers, as
the test of them; seeds-blind3 (ids blind3-…, 32 reworded, 42 unanswerable) was written blind
by a helper who never ran the system, before the learned second stage was first scored on
it; seeds-blind4 (ids blind4-…, 30 reworded, 40 unanswerable) the same way, before the
answerability model was refitted with the sentence model; seeds-blind5 (ids blind5-…, 40
reworded with short answers, 30 unanswerable) the same way, before the constraint and
counted-noun changes of the refit after it were first scored; seeds-blind6 (ids blind6-…, 35
reworded, 35 unanswerable) the same way, then scored once with that model and once with a
variant fitted on the team's news training paragraphs too (not kept); seeds-blind7 (ids
blind7-…, 30 reworded, 30 unanswerable) the same way, scored once with the final code;
seeds-blind8 (ids blind8-…, 50 reworded with short answers, 50 unanswerable) the same way,
before the short-answer and measure-word changes after it were first scored on it;
seeds-blind9 (ids blind9-…, 50 reworded, 50 unanswerable) the same way, scored once with the
final code; seeds-blind10 (ids blind10-…, 30 reworded, 30 unanswerable) the same way, after the
review that followed, scored once.
cmrc-val is the validation split of `python -m qa.fit` (CMRC questions it never fitted on);
`--cmrc-all` scores all of CMRC.
After the table: the reliability of `confidence` on the validation split (CMRC, dev and team
questions the model was not fitted on): predicted probability against observed share of top
passages that hold the answer, by decile. Passage vectors are cached in bench/work/vectors/
(keyed by model and text), so only the first run with a model embeds.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared"
CMRC = SHARED / "ext" / "cmrc2018"
QUESTIONS = BENCH / "questions"
SETS = [  # name, issue files, question file
    ("dev", ROOT / "seeds", SHARED / "eval" / "dev.jsonl"),
    ("team", ROOT / "seeds", QUESTIONS / "seeds-team.jsonl"),
    ("reworded", ROOT / "seeds", QUESTIONS / "seeds-reworded.jsonl"),
    ("reworded2", ROOT / "seeds", QUESTIONS / "seeds-reworded2.jsonl"),
    ("nearmiss", ROOT / "seeds", QUESTIONS / "seeds-nearmiss.jsonl"),
    ("fresh", ROOT / "seeds", QUESTIONS / "seeds-fresh.jsonl"),
    ("blind3", ROOT / "seeds", QUESTIONS / "seeds-blind3.jsonl"),
    ("blind4", ROOT / "seeds", QUESTIONS / "seeds-blind4.jsonl"),
    ("blind5", ROOT / "seeds", QUESTIONS / "seeds-blind5.jsonl"),
    ("blind6", ROOT / "seeds", QUESTIONS / "seeds-blind6.jsonl"),
    ("blind7", ROOT / "seeds", QUESTIONS / "seeds-blind7.jsonl"),
    ("blind8", ROOT / "seeds", QUESTIONS / "seeds-blind8.jsonl"),
    ("blind9", ROOT / "seeds", QUESTIONS / "seeds-blind9.jsonl"),
    ("blind10", ROOT / "seeds", QUESTIONS / "seeds-blind10.jsonl"),
    ("cmrc-val", CMRC / "issues", CMRC / "questions.jsonl"),
]
FITTED_ON = ("dev", "team", "cmrc-val")  # sets whose questions qa.fit split into train / val
# fused: hybrid without the fitted second stage (QA_SECOND_STAGE off), to show what it changes
MODES = ("lexical", "dense", "fused", "hybrid")
CACHE = BENCH / "work" / "vectors"


class CachedEncoder:
    """Wraps an encoder; passage vectors are kept on disk by (model, text) between runs."""

    def __init__(self, encoder, cache_dir: Path = CACHE):
        self.inner = encoder
        self.name, self.dim = encoder.name, encoder.dim
        for attr in ("backend", "model", "quantisation", "version", "batch_size"):
            if hasattr(encoder, attr):
                setattr(self, attr, getattr(encoder, attr))
        tag = hashlib.sha1(json.dumps([encoder.name, getattr(encoder, "version", None)])
                           .encode()).hexdigest()[:12]
        self.path = cache_dir / f"{tag}.npz"
        self.vectors: dict[str, np.ndarray] = {}
        if self.path.exists():
            data = np.load(self.path)
            self.vectors = dict(zip(data["keys"].tolist(), data["vectors"], strict=True))
        self.embedded = 0

    @staticmethod
    def _key(text: str) -> str:
        return hashlib.sha1(text.encode()).hexdigest()

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        """Questions are never cached: their encode is part of every query."""
        return self.inner.encode_queries(texts)

    def encode_passages(self, texts: list[str], progress: bool = False) -> np.ndarray:
        """Cached vectors, embedding (in batches, with progress) only the texts not seen."""
        from qa.encoders import embed_passages

        keys = [self._key(t) for t in texts]
        todo = list(dict.fromkeys(k for k in keys if k not in self.vectors))
        if todo:
            texts_by_key = dict(zip(keys, texts, strict=True))
            fresh = embed_passages(self.inner, [texts_by_key[k] for k in todo], progress=True)
            self.vectors.update(zip(todo, fresh, strict=True))
            self.embedded += len(todo)
            self.save()
        return np.stack([self.vectors[k] for k in keys]).astype(np.float32)

    def save(self) -> None:
        """Write the cache (temp file, then rename)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp.npz")
        np.savez(tmp, keys=np.array(list(self.vectors)),
                 vectors=np.stack(list(self.vectors.values())))
        tmp.replace(self.path)


def measure(work: Path, model: str = "default", sets: list[str] | None = None,
            modes: tuple[str, ...] = MODES, settings_overrides: dict | None = None,
            cmrc_all: bool = False) -> dict:
    """Build each archive once, score each question set each way; {set: {mode: report}}."""
    from qa.build import build
    from qa.config import Settings
    from qa.encoders import load_encoder
    from qa.evaluate import evaluate, load_questions
    from qa.fit import split_of
    from qa.index import Index
    from qa.search import Searcher

    base = Settings.from_env(**(settings_overrides or {}))
    if model != "default":
        base = base.with_(model=model)
    encoder = None
    if base.dense_enabled:
        encoder = CachedEncoder(load_encoder(base.model, base.embed_batch_size,
                                             base.encoder_threads))
    else:
        modes = ("lexical",)
    indexes: dict[Path, Index] = {}
    out: dict = {}
    for name, issues, questions in SETS:
        if sets and name not in sets:
            continue
        if not questions.is_file():
            print(f"skipped {name}: {questions} is missing", file=sys.stderr)
            continue
        settings = base.with_(index_dir=str(work / issues.name))
        if issues not in indexes:
            t = time.perf_counter()
            build([issues], settings, encoder)
            indexes[issues] = Index.load(settings.index_dir)
            print(f"built {issues.name} in {time.perf_counter() - t:.1f} s", file=sys.stderr)
        qs = load_questions(questions)
        if name == "cmrc-val" and not cmrc_all:
            qs = [q for q in qs if split_of(q["id"]) == "val"]
        out[name] = {}
        for mode in modes:
            searcher = Searcher(indexes[issues], None if mode == "lexical" else encoder,
                                settings.with_(second_stage=mode != "fused"),
                                only="dense" if mode == "dense" else None)
            report = evaluate(searcher, qs)
            report["missed"] = sorted(m["id"] for m in report.pop("misses", []))
            out[name][mode] = report
    return out


def _cell(report: dict, key: str) -> str:
    if key == "n":
        return str(report["n"])
    if not report["n"] and key not in ("refused",):
        return "-"
    if key == "paraphrase":
        t = report["by_type"].get("paraphrase")
        return f"{t['recall@1']:.3f}" if t else "-"
    if key == "refused":
        u = report["unanswerable"]
        return f"{u['refused']:.3f}/{u['n']}" if u["n"] else "-"
    if key == "false_refusal":
        return f"{report['false_refusal']:.4f}"
    if key.startswith("short_"):  # EM, char F1, highlight holds it: over questions with `short`
        sh = report.get("short") or {}
        return f"{sh[key[6:]]:.3f}" if sh.get("n") else "-"
    return f"{report[key]:.3f}"


def table(results: dict) -> str:
    """The figures side by side: one column per (set, mode)."""
    rows = [("answerable n", "n"), ("recall@1", "recall@1"), ("recall@5", "recall@5"),
            ("MRR@10", "mrr@10"), ("paraphrase recall@1", "paraphrase"),
            ("unanswerable refused", "refused"), ("answerable wrongly refused", "false_refusal"),
            ("short answer EM", "short_em"), ("short answer char F1", "short_f1"),
            ("highlight holds the answer", "short_highlight_contains")]
    cols = [(s, m) for s in results for m in results[s]]
    width = 13
    lines = [f"{'':28}" + "".join(f"{s:>{width}}" for s, _ in cols),
             f"{'':28}" + "".join(f"{m:>{width}}" for _, m in cols)]
    for label, key in rows:
        lines.append(f"{label:28}" + "".join(f"{_cell(results[s][m], key):>{width}}"
                                             for s, m in cols))
    return "\n".join(lines)


def reliability_table(results: dict, mode: str) -> str:
    """Predicted against observed on the validation split of the fitted sets, by decile."""
    from qa.fit import reliability, split_of

    rows = [c for s in FITTED_ON if s in results and mode in results[s]
            for c in results[s][mode]["calibration"]
            if s == "cmrc-val" or split_of(c["id"]) == "val"]
    if not rows:
        return ""
    p = np.asarray([c["p"] for c in rows])
    y = np.asarray([c["hit"] for c in rows], dtype=float)
    lines = [f"reliability ({mode}): validation questions of {', '.join(FITTED_ON)} "
             f"({len(rows)}); observed = top passage holds the answer",
             f"{'predicted':>12}{'n':>7}{'mean p':>9}{'observed':>10}"]
    for r in reliability(p, y):
        lines.append(f"{r['bin']:>12}{r['n']:>7}{r['predicted']:>9.3f}{r['observed']:>10.3f}")
    return "\n".join(lines)


def main() -> None:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default",
                        help="QA_MODEL to measure ('none': lexical only); default: the setting")
    parser.add_argument("--sets", default="", help="comma-separated subset of "
                        + ",".join(s[0] for s in SETS))
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--cmrc-all", action="store_true",
                        help="score all of CMRC, not only the validation split")
    args = parser.parse_args()
    sets = [s for s in args.sets.split(",") if s] or None
    with tempfile.TemporaryDirectory(prefix="qa-quality-") as work:
        results = measure(Path(work), args.model, sets, cmrc_all=args.cmrc_all)
    if args.json:
        print(json.dumps(results, ensure_ascii=False, indent=1))
        return
    print(table(results))
    for mode in MODES:
        text = reliability_table(results, mode)
        if text:
            print("\n" + text)
    print("\n" + fitted_reliability())


def fitted_reliability() -> str:
    """The table `python -m qa.fit` measured on its validation split, near-misses included."""
    from qa.answerability import load_model

    model = load_model()
    v = json.loads(Path(model.path).read_text(encoding="utf-8"))["validation"]
    lines = [f"reliability (qa.fit validation: {v['n']} top passages of held-out questions and "
             f"their generated near-misses; log loss {v['log_loss']}, Brier {v['brier']})",
             f"{'predicted':>12}{'n':>7}{'mean p':>9}{'observed':>10}"]
    for r in v["reliability"]:
        lines.append(f"{r['bin']:>12}{r['n']:>7}{r['predicted']:>9.3f}{r['observed']:>10.3f}")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
