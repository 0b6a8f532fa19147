"""The learned second stage: when the sentence model's fused ranking would change the first
passage, a fitted gate decides whether the lexical first stays first.

Fusion (qa.fusion.convex) lets the model overturn a close lexical ranking. Where the fused
first and the lexical first differ, the model's pick is right about 2 times in 3 on CMRC,
but not when the answerability model is already sure of the lexical first: a logistic model
of P(the fused first is right) from the logit of that confidence (and, if fitted, whether both
are in one story) keeps the lexical first below `threshold`. The threshold prices losing an
answer lexical search had at three times gaining one it missed: a protective trade that gives
up some of the model's gains (CMRC training recall@1 0.9488 -> 0.9429 against fusion alone,
3 answers lost against lexical search) so that the model rarely drags the ranking down where
lexical search was right (the validation split: +7, -3 against fusion, 1 lost against
lexical). A linear re-ordering of the whole head was fitted too and found no gain in
cross-validation (qa/fit_rerank.py).
Parameters: qa/models/rerank.json, numpy only at run time.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from pathlib import Path

from .answerability import ModelFileError, read_model_file

FORMAT = "qa-rerank/2"
MODEL_PATH = Path(__file__).resolve().parent / "models" / "rerank.json"
GATE_INPUTS = ("first_logit", "same_story")


@dataclass(frozen=True)
class Gate:
    """P(the fused first is right rather than the lexical first) = sigmoid(coef . x + b)."""

    inputs: tuple[str, ...]
    coef: tuple[float, ...]
    intercept: float
    threshold: float
    provenance: dict = field(default_factory=dict)

    def p_fused_right(self, lexical_confidence: float, same_story: bool) -> float:
        """The gate's probability for one disagreement."""
        p = min(max(float(lexical_confidence), 1e-6), 1 - 1e-6)
        values = {"first_logit": math.log(p / (1 - p)), "same_story": float(same_story)}
        z = self.intercept + sum(c * values[n] for n, c in zip(self.inputs, self.coef,
                                                               strict=True))
        return 1.0 / (1.0 + math.exp(-max(min(z, 50.0), -50.0)))

    def keeps_lexical(self, lexical_confidence: float, same_story: bool) -> bool:
        """True when the lexical first should stay first."""
        return self.p_fused_right(lexical_confidence, same_story) < self.threshold

    @classmethod
    def load(cls, path: str | Path = MODEL_PATH) -> Gate | None:
        """Read and check the parameters file (None: the fit kept no gate); ModelFileError
        (one line) when it is unusable."""
        return cls.from_dict(read_model_file(path, "second-stage model", "qa.fit_rerank"),
                             str(path))

    @classmethod
    def from_dict(cls, data: object, where: str = "<dict>") -> Gate | None:
        """Check format, inputs, coefficients and provenance; None when the fit kept no gate
        (cross-validation found no gain: the fused order stands)."""
        def bad(why: str) -> ModelFileError:
            return ModelFileError(f"second-stage model {where} is corrupt: {why}")

        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise bad(f"format is not {FORMAT!r} (refit: python -m qa.fit_rerank)")
        prov = data.get("provenance")
        needed = ("data", "split", "command", "libraries", "date")
        if not isinstance(prov, dict) or any(k not in prov for k in needed):
            raise bad("provenance must name " + ", ".join(needed))
        g = data.get("gate", False)
        if g is None:
            return None
        if not isinstance(g, dict):
            raise bad("no gate")
        names, coef = g.get("inputs"), g.get("coef")
        numbers = [*coef, g.get("intercept"), g.get("threshold")] if isinstance(coef, list) \
            else []
        if (not isinstance(names, list) or not names or any(n not in GATE_INPUTS for n in names)
                or not isinstance(coef, list) or len(coef) != len(names)
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                           and math.isfinite(v) for v in numbers)
                or not 0.0 <= g["threshold"] <= 1.0):
            raise bad(f"the gate needs inputs from {GATE_INPUTS}, as many finite coefficients, "
                      "a finite intercept and a threshold in [0, 1]")
        return cls(tuple(names), tuple(float(c) for c in coef), float(g["intercept"]),
                   float(g["threshold"]), prov)


def lexical_first_back(fused: list[tuple[int, float, dict[str, int]]],
                       lexical_first: int) -> list[tuple[int, float, dict[str, int]]]:
    """The fused list with the lexical first moved to the top (keeping its own score)."""
    at = next((i for i, (d, _, _) in enumerate(fused) if d == lexical_first), None)
    if not at:  # already first, or not listed: nothing to move
        return fused
    return [fused[at], *fused[:at], *fused[at + 1:]]


@functools.lru_cache(maxsize=4)
def load_gate(path: str = str(MODEL_PATH)) -> Gate | None:
    """The parameters file, loaded once per process (None: the fit kept no gate)."""
    return Gate.load(path)
