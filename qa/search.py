"""Retrieval: lexical and dense candidates, fusion, duplicate collapse, best sentence, refusal."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field

from .config import Settings
from .encoders import Encoder
from .fusion import coverage, rrf
from .index import Index, IndexMismatch
from .text import (
    BIGRAM_PREFIX,
    char_ngrams,
    fold,
    jieba_words,
    mask_question_words,
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
    confidence: float
    highlight: str
    highlight_span: tuple[int, int]
    terms: list[str]
    retrievers: dict[str, dict] = field(default_factory=dict)

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


_NUMERAL = "0-9０-９零〇一二两三四五六七八九十百千万亿几数半"
# Chinese measure words (a closed class): "多少份" asks for a count of 份.
_UNITS = sorted("""人次 场次 户次 万元 亿元 平方米 平方公里 公里 千米 千瓦时 兆瓦 公顷 小时 分钟
    个 名 人 位 家 元 块 册 份 本 场 次 件 项 条 座 所 户 头 只 尾 辆 台 套 亩 米 吨 斤 克 篇 期 批
    张 间 栋 处 部 支 株 棵 种 类 届 轮 趟 遍 倍 岁 天 年 月 周 层 级""".split(), key=len, reverse=True)  # noqa: SIM905, E501
_QUANTITY_Q = re.compile("(?:多少|几(?![乎点时号]))(钱|" + "|".join(_UNITS) + ")?")  # noqa: E501
_TIME_Q = re.compile(r"什么时候|何时|几点|几时|哪一?年|哪一?天|几月|几号|多久|多长时间")
_TIME_A = re.compile(rf"[{_NUMERAL}]+\s*(?:年|月|日|号|天|周|小时|时|点|分钟)"
                     r"|[今明去前后]年|年[初底]|月[初底]|近日|日前|目前|当天|上半年|下半年|春节|国庆|每[年月周天日]")


# A 多少 question with no measure word is typed by the attribute it asks about (classic
# numeric answer types: money, percentage, people, area, length, age).
# Rates are left out: they are as often bare numbers (收视率7.07) as percentages.
_MONEY = ("元", "圆", "块", "镑", "盾", "币", "$", "¥", "€", "£")
_LENGTH = ("米", "公里", "里", "公分", "英尺", "英寸", "英吋", "吋", "尺", "寸", "m", "km", "cm",
           "mm", "ft")
_ATTRIBUTE_UNITS = [
    (_MONEY, "价格|价|费用|费|收费|钱|金额|收入|投资|产值|资金|成本|工资|利润|营收|销售额|花费"),
    (("人", "名", "万", "亿", "余", "多"), "人口|人数"),
    (("平方米", "平方公里", "平方英里", "亩", "公顷", "m²", "km²", "m2", "km2"), "面积"),
    (_LENGTH, "长度|距离|里程|全长|身长|高度|深度|宽度"),
    (("岁",), "年龄|岁数"),
]
_ATTRIBUTE_Q = [(units, re.compile(rf"(?:{words})[^,，。、;；?？!！]{{0,6}}?(?:多少|几)"))
                for units, words in _ATTRIBUTE_UNITS]


def expected_answer(question: str) -> tuple[str, tuple[str, ...]] | None:
    """The answer type a question asks for: ('quantity', acceptable units; empty = any number),
    ('time', ()), or None when it asks for something else."""
    if m := _QUANTITY_Q.search(question):
        if m.group(1):
            return ("quantity", ("元",) if m.group(1) == "钱" else (m.group(1),))
        for units, pattern in _ATTRIBUTE_Q:
            if pattern.search(question):
                return ("quantity", units)
        return ("quantity", ())
    if _TIME_Q.search(question):
        return ("time", ())
    return None


def satisfies(expected: tuple[str, tuple[str, ...]] | None, text: str) -> bool:
    """Whether text can answer that type: a number (with the asked-for unit) or a time phrase.

    Classic answer-type checking: a "多少份" question needs "…份" in the evidence; a passage
    that only shares the question's topic words cannot be the answer.
    """
    if expected is None:
        return True
    kind, units = expected
    if kind == "time":
        return bool(_TIME_A.search(text))
    if not units:
        return bool(re.search(f"[{_NUMERAL}]", text))
    alternatives = "|".join(map(re.escape, units))
    # a currency or unit may carry a qualifier first (12港元, 41,210亿越南盾, 15厘米) or a symbol
    # may lead ($4.9)
    number = rf"[{_NUMERAL}][{_NUMERAL}.,，余多近约超]*"
    return bool(re.search(rf"{number}\s*[\u4e00-\u9fff]{{0,2}}(?:{alternatives})", text)
                or re.search(rf"(?:{alternatives})\s*{number}", text))


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

    def __init__(self, index: Index, encoder: Encoder | None, settings: Settings):
        if index.model and encoder is not None and encoder.name != index.model:
            raise IndexMismatch(f"index {index.generation} was embedded with {index.model}, "
                                f"but the loaded model is {encoder.name}")
        if encoder is not None and index.model is None:
            encoder = None  # a lexical-only index: the model has no vectors to search
        if index.model and encoder is not None and index.manifest.get("dim") != encoder.dim:
            raise IndexMismatch(f"index dimension {index.manifest.get('dim')} != model "
                                f"dimension {encoder.dim}")
        self.index = index
        self.encoder = encoder
        self.settings = settings

    @property
    def mode(self) -> str:
        """'dense' when a sentence model is in use, else 'lexical only'."""
        return "dense" if self.encoder is not None else "lexical only"

    def validate(self, question: object, top_k: object = None) -> tuple[str, int]:
        """Check a question and top_k against this searcher's settings."""
        return validate_question(self.settings, question, top_k)

    def ask(self, question: str, top_k: int | None = None) -> Result:
        """Rank passages for a question; flag the result unanswerable when nothing is confident."""
        started = time.perf_counter()
        question, top_k = self.validate(question, top_k)
        index, s = self.index, self.settings
        masked = mask_question_words(question)
        terms = index.tokenizer(masked)
        match = index.bm25.match(terms)
        lex_ids, lex_scores = match.top(s.candidates)
        rankings = {"lexical": lex_ids.tolist()}
        scores = {"lexical": dict(zip(lex_ids.tolist(), lex_scores.tolist(), strict=True))}
        if self.encoder is not None:
            qvec = self.encoder.encode_queries([question])[0]
            d_ids, d_scores = index.dense_search(qvec, s.candidates)
            rankings["dense"] = d_ids.tolist()
            scores["dense"] = dict(zip(d_ids.tolist(), d_scores.tolist(), strict=True))
        # with one retriever this keeps its order
        fused = rrf(rankings, k=s.rrf_k, weights={"lexical": 1.0, "dense": s.dense_weight})

        weights = self._term_weights(terms)
        gram_weights = self._bigram_weights(masked)
        marked = self._question_words(masked)
        seen = _Seen()
        picked: list[tuple[int, float, dict, dict]] = []
        for gid, score, ranks in fused:
            if len(picked) >= top_k:
                break
            record = index.passage(gid)
            if not seen.is_copy(record["text"]):  # the same story printed twice: keep one
                picked.append((gid, score, ranks, record))
        # which query terms each passage has, read from the postings (no re-tokenising)
        present = match.present([p[0] for p in picked])
        answers: list[Answer] = []
        for (gid, score, ranks, record), has in zip(picked, present, strict=True):
            sentence, span = self._best_sentence(record["text"], gram_weights)
            folded = fold(record["text"])
            answers.append(Answer(
                gid=gid, record=record, score=score,
                confidence=round(coverage(weights, has), 4),
                highlight=sentence, highlight_span=span,
                terms=[w for w in marked if w in folded],
                retrievers={name: {"rank": r, "score": round(float(scores[name][gid]), 4)}
                            for name, r in ranks.items()}))
        answerable = (bool(answers) and answers[0].confidence >= s.min_confidence
                      and satisfies(expected_answer(question), answers[0].record["text"]))
        return Result(question, answers, answerable, index.generation, self.mode,
                      round((time.perf_counter() - started) * 1000, 2))

    def _term_weights(self, terms: list[str]) -> dict[str, float]:
        # Archive IDF of each distinct query term; a term no passage has gets the largest IDF,
        # so a question about something the archive never mentions cannot look covered.
        bm25 = self.index.bm25
        return {t: bm25.idf_any(t) for t in dict.fromkeys(terms)}

    def _bigram_weights(self, masked: str) -> dict[str, float]:
        # Sentences are scored on character bigrams (cheap, no segmentation), weighted by the
        # archive IDF of the same bigrams when the index has them.
        prefix = BIGRAM_PREFIX.get(self.index.manifest["tokenizer"])
        bm25 = self.index.bm25
        grams = dict.fromkeys(char_ngrams(masked))
        if prefix is None:
            return dict.fromkeys(grams, 1.0)
        return {g: bm25.idf_any(prefix + g) for g in grams}

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
