"""Fit the second-stage gate: `python -m qa.fit_rerank` (scikit-learn; `pip install -e '.[fit]'`).

Data: the answerable questions of CMRC 2018 (../shared/ext/cmrc2018), dev
(../shared/eval/dev.jsonl) and the team's set (bench/questions/seeds-team.jsonl), each archive
indexed with the bundled sentence model (vectors cached in bench/work/vectors/ as
bench/quality.py does). Split: validation when the first byte of sha256(id) is below 52 (qa.fit's
rule); never fitted on. Each question's first stage (focus-ordered BM25, dense top-k, convex
fusion; no second stage) is stored with every listed passage's story and label (right file,
holds the answer) and the answerability model's P(the lexical first answers); --rows reuses
them, so a refit takes seconds.

Fitted: a logistic gate, on training questions whose fused and lexical firsts differ and exactly
one is right, of P(the fused first is right) from first_logit (logit of that P) and same_story
(both firsts in one story). Below PROTECT / (1 + PROTECT) the lexical first goes back on top:
losing an answer lexical search had costs PROTECT gained ones (3 since the answerability refit
that added towns and posts: at 2 the refitted gate lost 4 validation answers lexical search had,
at 3 one; the part says "never drag the ranking down where it doesn't know better"). Inputs and
C by the one-standard-error rule on 5-fold CV (folds by hash of id) gain over today's hybrid;
"gate" is null unless that gain exceeds one standard error (sqrt of the weighted decisions it
changes).

Dropped: the listwise linear head over 23 ranking features (qa-rerank/1). Cross-validation found
no gain: hybrid CV recall@1 0.9488 against the first stage's 0.9485 (4 gained, 3 lost), lexical
0.9399 against 0.9396 (3 gained, 2 lost), both within one standard error; on validation the
lexical head lost (CMRC 0.9555 -> 0.9531). Writes qa/models/rerank.json (qa-rerank/2).
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import hashlib
import json
import math
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from . import rerank
from .answerability import MODEL_PATH as ANSWERABILITY
from .fit import SEEDS_WEIGHT, VALIDATION_SHARE, sources, split_of

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
FORMAT, GATE_INPUTS = rerank.FORMAT, rerank.GATE_INPUTS
GATE_SUBSETS = (("first_logit",), ("first_logit", "same_story"))
GATE_CS = (0.1, 1.0, 10.0)
FOLDS = 5
PROTECT = 3.0  # a question lexical alone gets right weighs this much: never lower recall@1


def question_row(searcher, q: dict, source: str, model_sha: str) -> dict:
    """One question's first stage (Searcher.first_stage, no filters), stored raw: both lists,
    the story and label of every passage either retriever listed, and the answerability
    model's P(the lexical first answers) as Searcher.confidence gives it."""
    from .text import normalise_question, strip_ws

    index = searcher.index
    r = searcher.first_stage(normalise_question(q["question"]))
    order, d_ids = r.rankings["lexical"], r.rankings["dense"]
    conf = searcher.confidence(r, order[0]) if order else 1.0
    ids = list(dict.fromkeys(order + d_ids))
    answer, recs = strip_ws(q["answer"]), [index.passage(g) for g in ids]
    return {"source": source, "id": q["id"], "split": split_of(q["id"]), "lexical": order,
            "lex_scores": [round(float(v), 5) for v in r.lex_scores], "dense": d_ids,
            "dense_scores": [round(float(v), 6) for v in r.dense_scores], "ids": ids,
            "story": index.story_ids(np.asarray(ids, dtype=np.int64)).tolist() if ids else [],
            "first_confidence": round(float(conf), 6),
            "answerability_sha256": model_sha,
            "y": [int(r_["file"] == q["file"] and answer in strip_ws(r_["text"]))
                  for r_ in recs]}


def collect(work: Path, cmrc: Path, dev: Path, team: Path, model_sha: str,
            log=print) -> list[dict]:
    """Build each archive with the sentence model (vectors cached as bench/quality.py does)
    and turn every answerable question into a row (model_sha: the answerability model's)."""
    from .build import build
    from .config import Settings
    from .encoders import load_encoder
    from .evaluate import load_questions
    from .index import Index
    from .search import Searcher

    sys.path.insert(0, str(ROOT))
    from bench.quality import CachedEncoder

    base = Settings.from_env()
    if not base.dense_enabled:
        raise SystemExit("the gate is fitted with the sentence model on: unset QA_MODEL=none")
    base = base.with_(second_stage=False)  # the first stage alone, never a gate fitted before
    encoder = CachedEncoder(load_encoder(base.model, base.embed_batch_size, base.encoder_threads))
    searchers: dict[Path, Searcher] = {}
    rows: list[dict] = []
    for name, issues, path in sources(cmrc, dev, team):
        if not path.is_file():
            raise SystemExit(f"{path} is missing: it is part of the training data")
        t = time.perf_counter()
        if issues not in searchers:
            settings = base.with_(index_dir=str(work / issues.name))
            build([issues], settings, encoder)
            searchers[issues] = Searcher(Index.load(settings.index_dir), encoder, settings)
        qs = [q for q in load_questions(path) if q.get("answer") is not None]
        rows.extend(question_row(searchers[issues], q, name, model_sha) for q in qs)
        log(f"{name}: {len(qs)} answerable questions ({issues.name} built if new) in "
            f"{time.perf_counter() - t:.1f} s")
    return rows


def questions(rows: list[dict], dense_weight: float) -> list[dict]:
    """Each stored question with both lists non-empty: labels of its fused first (convex, as the
    service fuses; yh) and lexical first (yl), and the gate's inputs z (order: GATE_INPUTS)."""
    from .fusion import convex

    out = []
    for r in rows:
        fused = convex((r["lexical"], r["lex_scores"]), (r["dense"], r["dense_scores"]),
                       dense_weight)
        if not fused or not r["lexical"]:
            continue
        first, lex_first = int(fused[0][0]), int(r["lexical"][0])
        label, story = (dict(zip(r["ids"], r[k], strict=True)) for k in ("y", "story"))
        p = min(max(float(r["first_confidence"]), 1e-6), 1 - 1e-6)
        same = story[first] == story[lex_first]
        out.append({"source": r["source"], "id": r["id"], "split": r["split"],
                    "differ": first != lex_first, "yh": label[first], "yl": label[lex_first],
                    "p": p, "same": same,
                    "z": np.asarray([math.log(p / (1 - p)), float(same)])})
    return out


def as_gate(gate: dict | None) -> rerank.Gate | None:
    """The runtime's Gate for fitted parameters (None: no gate)."""
    if gate is None:
        return None
    return rerank.Gate(tuple(gate["inputs"]), tuple(gate["coef"]), gate["intercept"],
                       gate["threshold"])


def keeps_lexical(gate: rerank.Gate | None, e: dict) -> bool:
    """True when the gate puts the lexical first back on top: the runtime's own rule."""
    return gate is not None and gate.keeps_lexical(e["p"], e["same"])


def fit_gate(ex: list[dict], inputs: tuple[str, ...], c: float, seeds_weight: float,
             threshold: float) -> dict:
    """Logistic P(fused first right) on the disagreements where exactly one first is right;
    standardised inputs, coefficients folded back to raw units."""
    from sklearn.linear_model import LogisticRegression

    idx = [GATE_INPUTS.index(n) for n in inputs]
    use = [e for e in ex if e["yh"] != e["yl"]]
    z = np.asarray([e["z"][idx] for e in use])
    y = np.asarray([e["yh"] for e in use])
    w = np.asarray([1.0 if e["source"] == "cmrc" else seeds_weight for e in use])
    mean, scale = z.mean(axis=0), z.std(axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    clf = LogisticRegression(C=c, max_iter=5000).fit((z - mean) / scale, y, sample_weight=w)
    coef = clf.coef_[0] / scale
    return {"inputs": list(inputs), "coef": coef.tolist(),
            "intercept": float(clf.intercept_[0] - coef @ mean), "threshold": threshold}


def utility(ex: list[dict], gate: dict | None, protect: float) -> np.ndarray:
    """Per disagreement: what following the fused first earns against the lexical first
    (+1 an answer gained, -protect one lost, 0 when the gate keeps the lexical first)."""
    out, rule = np.zeros(len(ex)), as_gate(gate)
    for i, e in enumerate(ex):
        if not keeps_lexical(rule, e):
            d = e["yh"] - e["yl"]
            out[i] = d if d >= 0 else protect * d
    return out


def choose_gate(ex: list[dict], seeds_weight: float, protect: float, log=print) -> dict:
    """Inputs and C by 5-fold CV on training disagreements against always following the fused
    first (today's hybrid): the simplest setting (fewest inputs, then strongest penalty) within
    one standard error of the best. Kept when its gain exceeds one standard error."""
    train = [e for e in ex if e["split"] == "train"]
    fold = np.asarray([int(hashlib.sha256(e["id"].encode()).hexdigest(), 16) % FOLDS
                       for e in train])
    threshold = round(protect / (1.0 + protect), 6)  # follow fused when P > (1 - P) * protect
    base = utility(train, None, protect)
    grid: dict[tuple[tuple[str, ...], float], np.ndarray] = {}
    for inputs in GATE_SUBSETS:
        for c in GATE_CS:
            got = np.zeros(len(train))
            for k in range(FOLDS):
                held = np.flatnonzero(fold == k)
                gate = fit_gate([e for e, f in zip(train, fold, strict=True) if f != k],
                                inputs, c, seeds_weight, threshold)
                got[held] = utility([train[i] for i in held], gate, protect)
            grid[(inputs, c)] = got
            log(f"gate {'+'.join(inputs)} C {c}: CV gain over today's hybrid "
                f"{got.sum() - base.sum():+.0f}")
    best = max(grid.values(), key=lambda v: float(v.sum()))
    se = float(np.abs(best - base).sum()) ** 0.5
    (inputs, c), got = min(((k, v) for k, v in grid.items()
                            if float(v.sum()) >= float(best.sum()) - se),
                           key=lambda kv: (len(kv[0][0]), kv[0][1]))
    gain, changed = float(got.sum() - base.sum()), float(np.abs(got - base).sum())
    return {"inputs": list(inputs), "C": c, "threshold": threshold, "protect": protect,
            "seeds_weight": seeds_weight, "folds": FOLDS, "cv_disagreements": len(train),
            "cv_gain_over_hybrid": gain, "cv_changed": changed, "cv_standard_error":
            round(se, 2), "kept": gain > max(1.0, changed ** 0.5),
            "cv_gain_grid": {f"{'+'.join(i)}/{cc}": round(float(v.sum() - base.sum()), 1)
                             for (i, cc), v in grid.items()}}


def validation(qs: list[dict], gate: dict | None) -> dict:
    """Recall@1 of today's hybrid (before) and with the gate (after), per source and split,
    with the answers gained and lost against it and against lexical alone."""
    out: dict = {}
    rule = as_gate(gate)
    for q in qs:
        before, lex = q["yh"], q["yl"]
        after = lex if q["differ"] and keeps_lexical(rule, q) else before
        o = out.setdefault(f"{q['source']}/{q['split']}", dict.fromkeys(
            ("n", "before", "after", "gained", "lost", "lost_vs_lexical"), 0))
        for k, v in (("n", 1), ("before", before), ("after", after), ("gained", after > before),
                     ("lost", after < before), ("lost_vs_lexical", after < lex)):
            o[k] += int(v)
    for o in out.values():
        o["before"], o["after"] = round(o["before"] / o["n"], 4), round(o["after"] / o["n"], 4)
    return dict(sorted(out.items()))


def main(argv: list[str] | None = None) -> None:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name, default in (("cmrc", SHARED / "ext" / "cmrc2018"), ("out", rerank.MODEL_PATH),
                          ("dev", SHARED / "eval" / "dev.jsonl"),
                          ("team", ROOT / "bench" / "questions" / "seeds-team.jsonl")):
        parser.add_argument(f"--{name}", type=Path, default=default)
    parser.add_argument("--rows", type=Path, help="reuse (or write, if absent) the first "
                        "stage of every question (bench/work/rerank-rows.jsonl)")
    parser.add_argument("--seeds-weight", type=float, default=SEEDS_WEIGHT,
                        help="weight of a seeds (dev, team) question against a CMRC one")
    parser.add_argument("--protect", type=float, default=PROTECT,
                        help="cost of losing an answer lexical search had, in gained ones")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    log = functools.partial(print, file=sys.stderr, flush=True)
    from .config import Settings

    dense_weight = Settings.from_env().dense_weight
    # first_confidence comes from this model: rows collected with another one are not reused,
    # and the gate is refitted after refitting it
    raw = ANSWERABILITY.read_bytes()
    model_sha = hashlib.sha256(raw).hexdigest()
    if args.rows and args.rows.is_file():
        rows = [json.loads(line) for line in args.rows.read_text().splitlines()]
        if any(r.get("answerability_sha256") != model_sha for r in rows):
            raise SystemExit(f"{args.rows} was collected with another answerability model; "
                             "delete it (or pass another --rows) to collect afresh")
    else:
        with tempfile.TemporaryDirectory(prefix="qa-fit-rerank-") as work:
            rows = collect(Path(work), args.cmrc, args.dev, args.team, model_sha, log)
        if args.rows:
            args.rows.parent.mkdir(parents=True, exist_ok=True)
            args.rows.write_text("".join(json.dumps(r) + "\n" for r in rows))
    qs = questions(rows, dense_weight)
    ex = [q for q in qs if q["differ"]]
    pick = choose_gate(ex, args.seeds_weight, args.protect, log)
    gate = fit_gate([e for e in ex if e["split"] == "train"], tuple(pick["inputs"]),
                    pick["C"], args.seeds_weight, pick["threshold"])
    gate = {**gate, "coef": [round(float(v), 6) for v in gate["coef"]],
            "intercept": round(gate["intercept"], 6)} if pick["kept"] else None
    import sklearn

    counts: dict[str, dict[str, int]] = {}
    for r in rows:
        counts.setdefault(r["source"], {"train": 0, "val": 0})[r["split"]] += 1
    flags = "".join(f" --{k} {v}" for k, v, d in (
        ("seeds-weight", args.seeds_weight, SEEDS_WEIGHT), ("protect", args.protect, PROTECT))
        if v != d)
    data = {
        "format": FORMAT,
        "gate": gate,
        "selection": pick,
        "validation": {"hybrid": validation(qs, gate)},
        "provenance": {
            "data": {"sources": [os.path.relpath(p, ROOT)
                                 for _, _, p in sources(args.cmrc, args.dev, args.team)],
                     "answerable_questions": counts, "disagreements": len(ex),
                     "first_stage": f"convex fusion (QA_DENSE_WEIGHT={dense_weight}), default "
                                    "QA_MODEL; label: right file and holds the answer"},
            "split": f"validation: first byte of sha256(question id) < {VALIDATION_SHARE} "
                     "(of 256), as qa.fit; never fitted on",
            "command": "python -m qa.fit_rerank" + flags,
            "libraries": {"scikit-learn": sklearn.__version__, "numpy": np.__version__,
                          "python": platform.python_version()},
            "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "answerability_model": {"path": os.path.relpath(ANSWERABILITY, ROOT),
                                    "sha256": model_sha,
                                    "date": json.loads(raw).get("provenance", {}).get("date")},
            "seconds": round(time.perf_counter() - started, 1),
        },
    }
    rerank.Gate.from_dict(data)  # what is written must load
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(data, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    log(f"wrote {args.out} in {time.perf_counter() - started:.1f} s: gate {json.dumps(gate)}")
    for key, v in data["validation"]["hybrid"].items():
        print(f"{key}: {json.dumps(v)}")


if __name__ == "__main__":
    main()
