"""Retrieval: lexical and dense candidates, fusion, duplicate collapse, best sentence, and each
passage's probability of answering (qa.answerability), which decides refusal."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from .answerability import (
    AnswerabilityModel,
    QuestionEvidence,
    load_model,
    passage_features,
    question_evidence,
)
from .config import Settings
from .encoders import Encoder, mismatch
from .filters import Filters
from .fusion import convex, order_within_groups, rrf
from .index import Index, IndexMismatch
from .lexical import Match
from .rerank import Gate, lexical_first_back, load_gate
from .shortanswer import short_answer
from .text import (
    BIGRAM_PREFIX,
    char_ngrams,
    fold,
    jieba_words,
    mask_question_words,
    normalise_question,
    question_focus,
    split_sentences,
)
from .text import strip_ws as _strip_ws


class QuestionError(ValueError):
    """A question or parameter the service cannot accept (empty, too long, bad top_k)."""


@dataclass
class Answer:
    """One ranked passage with its citation, evidence and confidence."""

    gid: int
    record: dict
    score: float
    confidence: float  # P(this passage answers the question), from the fitted model
    highlight: str
    highlight_span: tuple[int, int]
    terms: list[str]
    retrievers: dict[str, dict] = field(default_factory=dict)
    short: tuple[int, int] | None = None  # the answer itself: offsets into record["text"]
    features: np.ndarray | None = None  # the evidence behind confidence (answerability.FEATURES)

    @property
    def passage_id(self) -> str:
        """Stable id: file, story number, paragraph number."""
        r = self.record
        return f"{r['file']}:{r['story']}:{r['paragraph']}"


@dataclass
class Result:
    """The answers to one question."""

    question: str
    answers: list[Answer]
    answerable: bool
    generation: str
    mode: str  # "dense" or "lexical only"
    took_ms: float


def validate_question(s: Settings, question: object, top_k: object = None) -> tuple[str, int]:
    """Check a question and top_k; raise QuestionError with a message a user can act on."""
    if not isinstance(question, str):
        raise QuestionError("question must be a string")
    question = question.strip()
    if not question:
        raise QuestionError("question is empty")
    if len(question) > s.max_question_chars:
        raise QuestionError(f"question is {len(question)} characters; the limit is "
                            f"{s.max_question_chars}")
    if top_k is None:
        top_k = s.default_top_k
    if isinstance(top_k, bool) or not isinstance(top_k, int):
        raise QuestionError("top_k must be an integer")
    if not 1 <= top_k <= s.max_top_k:
        raise QuestionError(f"top_k must be between 1 and {s.max_top_k}")
    return question, top_k


@dataclass
class Ranked:
    """One question's first stage: both retrievers' lists and what each passage's evidence
    reads (Searcher.first_stage)."""

    question: str  # normalised
    masked: str  # question words masked out
    match: Match
    rankings: dict[str, list[int]]  # retriever -> ids best first (lexical in focus order)
    scores: dict[str, dict[int, float]]  # retriever -> id -> its score
    lex_scores: list[float]  # the lexical scores best first (convex reads them by rank)
    dense_scores: list[float]
    gram_weights: dict[str, float]
    evidence: QuestionEvidence
    top_lex: float
    story_best: dict[int, float]


class _Seen:
    """Texts already answered; a candidate whose bigrams overlap one of them >= 90 % is a copy."""

    def __init__(self) -> None:
        self.texts: list[list] = []  # [key, bigram set or None until needed]

    @staticmethod
    def _grams(entry: list) -> set[str]:
        if entry[1] is None:
            entry[1] = set(char_ngrams(entry[0]))
        return entry[1]

    def is_copy(self, text: str) -> bool:
        mine = [_strip_ws(fold(text)), None]
        for other in self.texts:
            if mine[0] == other[0]:
                return True
            if abs(len(mine[0]) - len(other[0])) > 0.2 * max(len(mine[0]), len(other[0])):
                continue  # Jaccard >= 0.9 is impossible between such different lengths
            probes = [mine[0][i : i + 2] for i in range(0, len(mine[0]) - 1, 9)]
            if sum(p in other[0] for p in probes) < 0.8 * len(probes):
                continue  # a cheap sample of its bigrams already says "not a copy"
            a, b = self._grams(mine), self._grams(other)
            if a and len(a & b) / len(a | b) >= 0.9:
                return True
        self.texts.append(mine)
        return False


class Searcher:
    """Answers questions from one loaded index generation (and its sentence model, if any)."""

    def __init__(self, index: Index, encoder: Encoder | None, settings: Settings,
                 only: str | None = None, answerability: AnswerabilityModel | None = None,
                 gate: Gate | None = None):
        if index.model and encoder is not None and encoder.name != index.model:
            raise IndexMismatch(f"index {index.generation} was embedded with {index.model}, "
                                f"but the loaded model is {encoder.name}")
        if encoder is not None and index.model is None:
            encoder = None  # a lexical-only index: the model has no vectors to search
        if index.model and encoder is not None and index.manifest.get("dim") != encoder.dim:
            raise IndexMismatch(f"index dimension {index.manifest.get('dim')} != model "
                                f"dimension {encoder.dim}")
        if index.model and encoder is not None:
            why = mismatch(index.manifest.get("encoder"), encoder)
            if why:
                raise IndexMismatch(f"index {index.generation}: {why}")
        if settings.fusion not in ("scores", "rrf"):
            raise ValueError(f"QA_FUSION={settings.fusion!r}: 'scores' or 'rrf'")
        if only not in (None, "dense"):
            raise ValueError(f"only={only!r}: None (fusion) or 'dense'")
        if only == "dense" and encoder is None:
            raise ValueError("a dense-only searcher needs a sentence model and a dense index")
        self.index = index
        self.encoder = encoder
        self.settings = settings
        self.only = only  # "dense": the model's ranking alone (bench/quality.py compares it)
        # loaded (and checked) at start-up: a missing or corrupt file fails here, not mid-query
        self.answerability = answerability if answerability is not None else load_model()
        # None: switched off (QA_SECOND_STAGE), no second ranking to gate (lexical or dense
        # alone, rank fusion), or the fit kept no gate
        applies = (settings.second_stage and encoder is not None and only is None
                   and settings.fusion == "scores")
        self.gate = (gate if gate is not None else load_gate()) if applies else None
        self._story_text: dict[tuple[str, int], str] = {}

    @property
    def mode(self) -> str:
        """'dense' when a sentence model is in use, else 'lexical only'."""
        return "dense" if self.encoder is not None else "lexical only"

    def validate(self, question: object, top_k: object = None) -> tuple[str, int]:
        """Check a question and top_k against this searcher's settings."""
        return validate_question(self.settings, question, top_k)

    def ask(self, question: str, top_k: int | None = None,
            filters: Filters | None = None) -> Result:
        """Rank passages for a question; flag the result unanswerable when nothing is confident.

        With filters (newspaper, date range), only passages of matching issues are ranked."""
        started = time.perf_counter()
        typed, top_k = self.validate(question, top_k)
        # traditional -> simplified, full width -> half, Latin case folded: the archive's form
        q = self.first_stage(normalise_question(typed), filters)
        index, s = self.index, self.settings
        assessed: dict[int, tuple] = {}  # gid -> passage evidence, computed once
        if "dense" in q.rankings and "lexical" in q.rankings and s.fusion != "rrf":
            fused = convex((q.rankings["lexical"], q.lex_scores),
                           (q.rankings["dense"], q.dense_scores), s.dense_weight)
            fused = self._second_stage(q, fused, assessed)
        else:  # rank fusion; with one retriever this keeps its order
            fused = rrf(q.rankings, k=s.rrf_k,
                        weights={"lexical": 1.0, "dense": s.dense_weight})

        marked = self._question_words(q.masked)
        seen = _Seen()
        picked: list[tuple[int, float, dict, dict]] = []
        for gid, score, ranks in fused:
            if len(picked) >= top_k:
                break
            record = index.passage(gid)
            if not seen.is_copy(record["text"]):  # the same story printed twice: keep one
                picked.append((gid, score, ranks, record))
        # the postings and story ids of every new passage in one pass each
        new = [(gid, record) for gid, _, _, record in picked if gid not in assessed]
        assessed.update(self._assess_all(q, new))
        answers: list[Answer] = []
        for gid, score, ranks, record in picked:
            x, sentence, span, short = assessed[gid]
            folded = fold(record["text"])
            answers.append(Answer(
                gid=gid, record=record, score=score,
                confidence=round(self.answerability.probability(x), 4),
                highlight=sentence, highlight_span=span,
                terms=[w for w in marked if w in folded],
                retrievers={name: {"rank": r, "score": round(float(q.scores[name][gid]), 4)}
                            for name, r in ranks.items()},
                short=short, features=x))
        # the threshold is on a probability: QA_MIN_CONFIDENCE = 0.2 refuses when the best
        # passage answers with probability below 20 %
        answerable = bool(answers) and answers[0].confidence >= s.min_confidence
        return Result(typed, answers, answerable, index.generation, self.mode,
                      round((time.perf_counter() - started) * 1000, 2))

    def first_stage(self, question: str, filters: Filters | None = None) -> Ranked:
        """Both retrievers' candidates for a normalised question, and what each passage's
        evidence reads; fusion and the second stage come after (ask)."""
        index, s = self.index, self.settings
        masked = mask_question_words(question)
        terms = index.tokenizer(masked)
        # with filters only matching passages rank; the statistics stay the archive's
        match = index.lexical(terms, s.candidates, filters)
        lex_ids, lex_scores = match.top(s.candidates)
        scores = {"lexical": dict(zip(lex_ids.tolist(), lex_scores.tolist(), strict=True))}
        rankings = {"lexical": self._focus_order(question, match, lex_ids, lex_scores)}
        dense_scores: list[float] = []
        if self.encoder is not None:
            qvec = self.encoder.encode_queries([question])[0]
            d_ids, d_scores = index.dense_search(qvec, s.candidates, filters=filters)
            rankings["dense"] = d_ids.tolist()
            dense_scores = d_scores.tolist()
            scores["dense"] = dict(zip(rankings["dense"], dense_scores, strict=True))
            if self.only == "dense":
                del rankings["lexical"]
        gram_weights = self._bigram_weights(masked)
        return Ranked(question, masked, match, rankings, scores, lex_scores.tolist(),
                      dense_scores, gram_weights,
                      self._evidence(question, self._term_weights(terms), gram_weights),
                      float(lex_scores[0]) if len(lex_scores) else 0.0,
                      self._story_best(lex_ids, lex_scores))

    def confidence(self, q: Ranked, gid: int, assessed: dict[int, tuple] | None = None
                   ) -> float:
        """P(passage gid answers q's question), as ask computes it for an answer (assessed:
        evidence already computed for this question, added to)."""
        assessed = {} if assessed is None else assessed
        if gid not in assessed:
            assessed.update(self._assess_all(q, [(gid, self.index.passage(gid))]))
        return self.answerability.probability(assessed[gid][0])

    def _assess_all(self, q: Ranked, passages: list[tuple[int, dict]]
                    ) -> dict[int, tuple[np.ndarray, str, tuple[int, int],
                                         tuple[int, int] | None]]:
        """Each passage's evidence: (answerability features, marked sentence, its span, short
        answer span); postings and story ids are read once for all of them."""
        if not passages:
            return {}
        gids = [gid for gid, _ in passages]
        present = q.match.present(gids)  # the query terms each has, from the postings
        stories = self.index.story_ids(np.asarray(gids, dtype=np.int64)).tolist()
        out = {}
        for (gid, record), has, story in zip(passages, present, stories, strict=True):
            text = record["text"]
            sentence, span = self._best_sentence(text, q.gram_weights)
            short = short_answer(q.question, text, span)
            other = max((v for k, v in q.story_best.items() if k != story), default=0.0)
            dense = q.scores["dense"].get(gid) if "dense" in q.scores else None
            if "dense" in q.scores and dense is None:  # outside the dense list: below its last
                dense = min(q.scores["dense"].values(), default=0.0)
            x = passage_features(q.evidence, text, self._story(record), has, sentence,
                                 short is not None, q.match.score(gid), q.top_lex, other, dense)
            # the evidence keeps the best-matching sentence; the mark holds the answer
            out[gid] = (x, *self._mark(text, span, short), short)
        return out

    def _second_stage(self, q: Ranked, fused: list, assessed: dict[int, tuple]) -> list:
        # When the model's fused ranking changes the first passage, the fitted gate
        # (qa.rerank) keeps the lexical first on top where the answerability model is sure
        # of it: the model helps on close calls and never overturns a confident answer.
        lexical = q.rankings["lexical"]
        if self.gate is None or not fused or not lexical or fused[0][0] == lexical[0]:
            return fused
        first = lexical[0]
        confidence = self.confidence(q, first, assessed)
        stories = self.index.story_ids(np.asarray([fused[0][0], first], dtype=np.int64))
        if self.gate.keeps_lexical(confidence, bool(stories[0] == stories[1])):
            return lexical_first_back(fused, first)
        return fused

    def _focus_order(self, question: str, match: Match, ids: np.ndarray,
                     scores: np.ndarray) -> list[int]:
        # Two levels: the whole question chooses the story (a question often restates its
        # setting at length, which the story's lead paragraph matches best), and the words
        # beside the question word choose among that story's paragraphs. So paragraphs of one
        # story are re-ordered by their BM25 with those words weighted up; every story keeps
        # the ranks it held, so the order between stories is BM25's.
        weight = self.settings.focus_weight
        if weight <= 0 or len(ids) < 2:
            return ids.tolist()
        text = fold(question_focus(question))
        if not text:
            return ids.tolist()
        # the query terms (words, §bigrams) that lie inside the focus: no second tokenising
        focus = {t for t in match.terms if t.removeprefix("§") in text}
        keys = scores + weight * match.partial(ids, focus)
        return order_within_groups(ids.tolist(), self.index.story_ids(ids).tolist(),
                                   keys.tolist())

    def _evidence(self, question: str, weights: dict[str, float],
                  gram_weights: dict[str, float]) -> QuestionEvidence:
        # a term no passage has gets the largest IDF: the scale of missing_idf_story
        return question_evidence(question, weights, self.index.idf_many(["\x00"])["\x00"],
                                 gram_weights)

    def _story_best(self, ids: np.ndarray, scores: np.ndarray) -> dict[int, float]:
        # best BM25 of each story among the lexical candidates (ids arrive best first)
        best: dict[int, float] = {}
        for story, score in zip(self.index.story_ids(ids).tolist(), scores.tolist(), strict=True):
            best.setdefault(story, float(score))
        return best

    def _story(self, record: dict) -> str:
        # the whole story's text, kept per generation (a Searcher serves one generation)
        key = (record["file"], record["story"])
        text = self._story_text.get(key)
        if text is None:
            if len(self._story_text) >= 4096:
                self._story_text.clear()
            text = "\n".join(r["text"] for r in self.index.story(*key))
            self._story_text[key] = text
        return text

    def _term_weights(self, terms: list[str]) -> dict[str, float]:
        # Archive IDF of each distinct query term; a term no passage has gets the largest IDF,
        # so a question about something the archive never mentions cannot look covered.
        return self.index.idf_many(list(dict.fromkeys(terms)))

    def _bigram_weights(self, masked: str) -> dict[str, float]:
        # Sentences are scored on character bigrams (cheap, no segmentation), weighted by the
        # archive IDF of the same bigrams when the index has them.
        prefix = BIGRAM_PREFIX.get(self.index.manifest["tokenizer"])
        grams = dict.fromkeys(char_ngrams(masked))
        if prefix is None:
            return dict.fromkeys(grams, 1.0)
        idf = self.index.idf_many([prefix + g for g in grams])
        return {g: idf[prefix + g] for g in grams}

    @classmethod
    def _mark(cls, text: str, span: tuple[int, int], short: tuple[int, int] | None
              ) -> tuple[str, tuple[int, int]]:
        """The sentence to mark: the best-matching one (span), or, when the short answer
        stands elsewhere, its own sentence — joined to the best one when they are neighbours
        — so the bold answer is always inside the mark."""
        if short is None or (span[0] <= short[0] and short[1] <= span[1]):
            return text[span[0]:span[1]], span
        _, at = cls._sentence_at(text, short)
        if not text[min(at[1], span[1]):max(at[0], span[0])].strip(" \t\n"):
            at = (min(at[0], span[0]), max(at[1], span[1]))
        return text[at[0]:at[1]], at

    @staticmethod
    def _sentence_at(text: str, short: tuple[int, int]) -> tuple[str, tuple[int, int]]:
        """The sentence of text holding the span short (widened to cover it whole)."""
        pos, start, end = 0, short[0], short[1]
        for sentence in split_sentences(text):
            s0 = text.find(sentence, pos)
            pos = s0 + len(sentence)
            if s0 <= short[0] < pos:
                start, end = s0, max(pos, short[1])
                break
        lead = len(text[start:end]) - len(text[start:end].lstrip())
        trail = len(text[start:end]) - len(text[start:end].rstrip())
        start, end = start + lead, end - trail
        return text[start:end], (start, end)

    @staticmethod
    def _best_sentence(text: str, weights: dict[str, float]) -> tuple[str, tuple[int, int]]:
        best, best_score, pos, span = text, -1.0, 0, (0, len(text))
        for sentence in split_sentences(text):
            start = text.find(sentence, pos)
            pos = start + len(sentence)
            folded = fold(sentence)
            score = sum(w for g, w in weights.items() if g in folded)
            if score > best_score:
                best, best_score, span = sentence, score, (start, start + len(sentence))
        lead = len(best) - len(best.lstrip())
        trail = len(best) - len(best.rstrip())
        return best.strip(), (span[0] + lead, span[1] - trail)

    @staticmethod
    def _question_words(masked: str) -> list[str]:
        """Question words of two characters or more, longest first (marked in the passage)."""
        words = {w for w in jieba_words(masked) if len(w) >= 2}
        return sorted(words, key=lambda w: (-len(w), w))
