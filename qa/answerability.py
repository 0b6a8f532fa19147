"""Answerability: P(this passage answers this question), from evidence, by a fitted logistic model.

The evidence (features) is pure string and arithmetic work on what the search already has:

- coverage of the question's terms (IDF-weighted) in the passage, in its best sentence and in
  its story, and the rarest question word its story lacks (a word no passage has counts as the
  rarest possible);
- the question's specific constraints — numbers, grades (4A), ordinals and phases (第二批, 二期),
  years and relative years (2023年, 去年, 近五年), levels (省级, 全国), quoted names and titles,
  places / people / organisations (jieba POS) — and how many are missing from the passage and
  from its whole story: a near-miss question (5A where the archive says 4A) differs from a real
  one in exactly one such detail;
- whether a short answer of the asked type exists and whether the passage holds the asked type;
- the lexical score, normalised, and its margin over the best passage of any other story;
- the sentence model's cosine when one is loaded (0 and a 0 flag otherwise).

The model is fitted offline by `python -m qa.fit` (scikit-learn) and stored as plain numbers in
qa/models/answerability.json with its provenance; run time needs only numpy.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .answertype import AnswerType, expected_answer, supports
from .errors import IndexError_
from .fusion import coverage
from .text import fold, pos_words, strip_ws

FORMAT = "qa-answerability/1"
MODEL_PATH = Path(__file__).resolve().parent / "models" / "answerability.json"

FEATURES = (
    "cov_passage",  # IDF share of the question's terms found in the passage
    "cov_sentence",  # bigram-IDF share found in the passage's best sentence
    "cov_story",  # IDF share found anywhere in the passage's story
    "missing_idf_story",  # largest IDF of a question word absent from the story, / max IDF
    "n_constraints",  # specific constraints in the question
    "missing_passage",  # constraints the passage does not state
    "missing_story",  # exact constraints (not names) neither the passage nor its story states
    "missing_names",  # places / organisations (jieba POS, noisy) the story lacks
    "missing_share",  # constraints the story lacks / n_constraints (0 when there are none)
    "has_short",  # a short answer of the asked type was found in the passage
    "typed",  # the question asks for a closed type (a count, an amount, a time)
    "supports",  # the passage holds an answer of that type (1 when untyped)
    "margin",  # (this passage's BM25 - best BM25 of another story) / top BM25, in [-1, 1]
    "bm25_norm",  # BM25 / the question's total term IDF
    "log_terms",  # log(1 + distinct query terms): short questions cover by accident
    "dense",  # the sentence model's cosine (0 without a model)
    "has_dense",  # 1 when a sentence model scored the passage
)


def read_model_file(path: str | Path, what: str, fit_module: str) -> object:
    """The JSON of a fitted model's parameters file; ModelFileError (one line) when it is
    missing or unreadable."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelFileError(f"{what} {path} is missing; fit it with `python -m {fit_module}` "
                             "or reinstall the package") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFileError(f"{what} {path} is unreadable ({exc})") from None


class ModelFileError(IndexError_):
    """A fitted model's parameters file (answerability, second stage) is missing, unreadable
    or not what this code expects."""


# ---------------------------------------------------------------- constraints

_CN_DIGITS = "零一二三四五六七八九"
_CN_NUM = "〇零一二两三四五六七八九十百"


def _cn_to_int(text: str) -> int | None:
    """一 -> 1, 十二 -> 12, 二十 -> 20, 两 -> 2 (up to 99); None for anything else."""
    text = text.replace("两", "二").replace("〇", "零")
    if text.isdigit():
        return int(text)
    if not text or any(c not in _CN_DIGITS + "十" for c in text):
        return None
    if "十" not in text:
        return int("".join(str(_CN_DIGITS.index(c)) for c in text)) if len(text) == 1 else None
    tens, _, units = text.partition("十")
    t = _CN_DIGITS.index(tens) if tens else 1
    u = _CN_DIGITS.index(units) if units else 0
    return t * 10 + u if len(tens) <= 1 and len(units) <= 1 else None


def _int_to_cn(n: int) -> str:
    if n < 10:
        return _CN_DIGITS[n]
    tens, units = divmod(n, 10)
    return ("" if tens == 1 else _CN_DIGITS[tens]) + "十" + (_CN_DIGITS[units] if units else "")


def numeral_forms(numeral: str) -> tuple[str, ...]:
    """The ways a small number is written: 二 / 2 (两 too for 2)."""
    n = _cn_to_int(numeral)
    if n is None or n > 99:
        return (numeral,)
    forms = [numeral, str(n), _int_to_cn(n)] + (["两"] if n == 2 else [])
    return tuple(dict.fromkeys(forms))


@dataclass(frozen=True)
class Constraint:
    """One specific detail of a question; `forms` are the ways a passage may state it."""

    kind: str  # grade, ordinal, phase, year, relyear, period, number, level, quoted, role, name
    text: str
    forms: tuple[str, ...]


_NUMERAL = f"[0-9{_CN_NUM}]"
_GRADE = re.compile(r"([1-5])\s*a(?:级)?(?![a-z])")
_ORDINAL = re.compile(rf"第({_NUMERAL}{{1,3}})"
                      r"(批|期|届|次|轮|季|阶段|代|号|个|名|位|年|条|章|部|集)?")
_PHASE = re.compile(rf"(?<![第0-9{_CN_NUM}])([一二三四五六七八九十0-9])期(?![间待望货刊限])")
_YEAR = re.compile(r"((?:19|20)\d{2})\s*年")
_RELYEAR = re.compile(r"(今|去|前|明|后)年|([上下])半年")
_PERIOD = re.compile(rf"近({_NUMERAL}{{1,2}})(年|个月|天)")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
# administrative or recognition levels: "省级" where the archive says "市级" is a near-miss
_LEVEL = re.compile(r"国家级|省级|市级|区级|县级|全国|全省|全市|全区")
# a post: "院长" is not stated by "常务副院长", nor "会长" by "副会长"
_ROLE = re.compile(r"(?:常务)?副?(?:理事长|秘书长|董事长|总经理|总编剧|总编辑|会长|院长|局长|书记"
                   r"|主任|编剧|导演|校长|主席|组长|队长|站长|所长|厅长|部长|市长|县长|区长|镇长"
                   r"|乡长|村长|社长|总监|馆长|行长|处长|科长|主编)")
_QUOTED = re.compile(r"“([^”]{2,30})”|《([^》]{1,30})》|\"([^\"]{2,30})\"|「([^」]{2,30})」")


@functools.lru_cache(maxsize=4096)
def constraints(question: str) -> tuple[Constraint, ...]:
    """The specific details a passage must state to answer the (normalised) question."""
    q = fold(question)
    out: list[Constraint] = []
    taken: list[tuple[int, int]] = []

    def add(kind: str, m: re.Match[str], text: str, forms: Sequence[str]) -> None:
        if any(m.start() < e and s < m.end() for s, e in taken):
            return  # already part of a more specific constraint (第二期 is not also 二期)
        taken.append((m.start(), m.end()))
        out.append(Constraint(kind, text, tuple(dict.fromkeys(forms))))

    for m in _QUOTED.finditer(q):
        inner = next(g for g in m.groups() if g)
        add("quoted", m, inner, (strip_ws(inner),))
    for m in _GRADE.finditer(q):
        add("grade", m, f"{m.group(1)}a", (f"{m.group(1)}a",))
    for m in _ORDINAL.finditer(q):
        unit = m.group(2) or ""
        forms = [f"第{f}{unit}" for f in numeral_forms(m.group(1))]
        if _cn_to_int(m.group(1)) == 1:  # 第一次 is also written 首次
            forms.append(f"首{unit}")
        add("ordinal", m, m.group(), forms)
    for m in _PHASE.finditer(q):
        add("phase", m, m.group(), [f"{f}期" for f in numeral_forms(m.group(1))])
    for m in _PERIOD.finditer(q):
        add("period", m, m.group(), [f"近{f}{m.group(2)}" for f in numeral_forms(m.group(1))])
    for m in _YEAR.finditer(q):
        add("year", m, m.group(1), (m.group(1),))
    for m in _RELYEAR.finditer(q):
        add("relyear", m, m.group(), (m.group(),))
    for m in _LEVEL.finditer(q):
        add("level", m, m.group(), (m.group(),))
    for m in _NUMBER.finditer(q):
        add("number", m, m.group(), (m.group(),))
    for m in _ROLE.finditer(q):
        add("role", m, m.group(), (m.group(),))
    for word in _names(q):
        if not any(word in c.text or c.text in word for c in out):
            out.append(Constraint("name", word, _name_forms(word)))
    return tuple(out)


def _names(question: str) -> list[str]:
    # jieba's dictionary pass (HMM off, ~0.3 ms a question). Places and organisations only:
    # its person (nr) and other-name (nz) tags fall on common nouns too often (籍贯, 小学生)
    words = pos_words(question)
    found = [w.word for w in words
             if w.flag in ("ns", "nt") and 2 <= len(w.word) <= 8
             and re.fullmatch(r"[\u4e00-\u9fff]+", w.word) and not _ASKS.search(w.word)
             and not w.word.endswith(("里", "们")) and w.word not in _NOT_NAMES]
    return list(dict.fromkeys(found + _small_places(words)))


# Towns, villages, streets and district bureaux the dictionary does not know come out as two
# single characters before an administrative word (瓜/沥/镇, 柯/桥/区, 临/平/分局): a changed
# town is the commonest near-miss.
_ADMIN = frozenset(("镇", "乡", "村", "区", "县", "街道", "社区", "分局"))
# Common words (n, b, s) before 镇/街道 that do not name a town (乡镇街道, 属地街道, 当地街道)
_NOT_TOWNS = frozenset(("乡镇", "属地", "所在", "城乡", "集镇", "全国", "当地", "外地"))
_NOT_IN_NAME = re.compile(r"(?:u\w*|p|c|r\w*|m|q|x|d|y|e|o|f|eng)")


def _small_places(words: list) -> list[str]:
    out = []
    for i, w in enumerate(words):
        if w.word not in _ADMIN or i < 1:
            continue
        before = words[i - 1]
        if (w.word in ("街道", "社区", "镇", "乡", "村") and before.flag in ("nr", "ns", "nz")
                and len(before.word) == 2):  # 凯旋/nr 街道
            out.append(before.word + w.word)
            continue
        # a town named by a common word: 清波/n 街道, 三合/j 镇, 常绿/b 镇, 街头/n 镇 (not the
        # verbs before a street: 组织/v 街道, nor 乡镇/属地 街道)
        if (w.word in ("街道", "镇", "乡") and before.flag in ("n", "j", "b", "s")
                and len(before.word) == 2 and before.word not in _NOT_TOWNS):
            out.append(before.word + w.word)
            continue
        pair = words[i - 2 : i] if i >= 2 else []
        if len(pair) == 2 and all(len(x.word) == 1 and "\u4e00" <= x.word <= "\u9fff"
                                  and x.word not in _ADMIN and x.word not in "的了和与及在是"
                                  and not _NOT_IN_NAME.fullmatch(x.flag) for x in pair):
            out.append(pair[0].word + pair[1].word + w.word)
    return out


_ASKS = re.compile("哪|什么|多少|几|谁|怎")
# Common words jieba's dictionary tags as places or organisations (什么东西, 上门看望, 新建了):
# picked by hand from its two-character ns/nt words of frequency 300 or more.
_NOT_NAMES = frozenset("""
    城市 东西 平原 爱国 南北 英雄 朝廷 太阳 哥哥 海洋 湖泊 大桥 高原 上市 美丽 建国 山区
    江湖 大街 王国 开国 城镇 阿哥 庆典 南路 深度 山脉 回国 治安 大国 新鲜 古城 海峡 长度 山水
    长大 莫非 普及 商城 古典 阴阳 江山 高山 大海 山坡 河谷 上马 太平 福利 日志 云集 青春 山河
    神圣 新建 中断 河水 山洞 都城 关联 海湾 广义 湖水 上山 江水 新城 海关 舞美 大洋 山峰 内城
    下山 上台 山寨 契约 入口 入市 都市 重镇 大山 城堡 江河 伦理 泉水 渡江 城垣 大河 大湖 大江
    治国 天黑 法典 池塘 天桥 安宁 密封 上门 立马 海滨 湖区 沿河 党组织 东南 西北 西南 东北
    中路 西门 南门 北门 石桥 山口 深山 江中 广布 加盟 登山 黄沙 千古 城南 中和 兴国 中兴
""".split())  # noqa: SIM905 - a word table reads better as text
# 滨江区 is as often 滨江 (杭州高新区(滨江)); 玉环市 is 玉环
_PLACE_SUFFIX = re.compile(r"(?<=[\u4e00-\u9fff]{2})(?:省|市|县|区|镇|乡|村|街道|社区|分局)$")


def _name_forms(word: str) -> tuple[str, ...]:
    stem = _PLACE_SUFFIX.sub("", word)
    return (word, stem) if stem != word else (word,)


def _fuzzy_in(needle: str, text: str) -> bool:
    """Exact, or (5 characters or more) all its bigrams but the two one OCR slip breaks
    (敲门入户行动 printed 敲门人户行动)."""
    if needle in text:
        return True
    if len(needle) < 5:
        return False
    grams = [needle[i : i + 2] for i in range(len(needle) - 1)]
    return sum(g in text for g in grams) >= len(grams) - 2


@functools.lru_cache(maxsize=1024)
def _whole_number(form: str) -> re.Pattern[str]:
    # compiled once per number form: this runs per passage and constraint on every query
    return re.compile(rf"(?<![0-9])(?<![0-9]\.){re.escape(form)}(?![0-9])")


@functools.lru_cache(maxsize=256)
def _not_deputy(form: str) -> re.Pattern[str]:
    return re.compile(rf"(?<!副){re.escape(form)}")


def stated(c: Constraint, text: str) -> bool:
    """Whether text (folded, whitespace removed) states the constraint in one of its forms."""
    if c.kind == "number":  # 60 must not match inside 160 or 2060 (nor 45 inside 1.45)
        return any(_whole_number(f).search(text) for f in c.forms)
    if c.kind == "quoted":
        return any(_fuzzy_in(f, text) for f in c.forms)
    if c.kind == "role":  # 院长 is not stated by 副院长
        return any(_not_deputy(f).search(text) for f in c.forms)
    return any(f in text for f in c.forms)


# ---------------------------------------------------------------- features


@dataclass(frozen=True)
class QuestionEvidence:
    """What the features need from the question, computed once per question."""

    weights: Mapping[str, float]  # query term -> archive IDF (df = 0: the largest IDF)
    max_idf: float  # IDF of a term no passage has: the scale for missing_idf_story
    constraints: tuple[Constraint, ...]
    expected: AnswerType | None
    gram_weights: Mapping[str, float] = field(default_factory=dict)


def question_evidence(question: str, weights: Mapping[str, float], max_idf: float,
                      gram_weights: Mapping[str, float]) -> QuestionEvidence:
    """Bundle the per-question evidence (question already normalised)."""
    return QuestionEvidence(dict(weights), max_idf, constraints(question),
                            expected_answer(question), dict(gram_weights))


def passage_features(ev: QuestionEvidence, passage: str, story: str, present: Collection[str],
                     sentence: str, has_short: bool, score: float, top_score: float,
                     other_story_score: float, dense: float | None = None) -> np.ndarray:
    """The feature vector (order: FEATURES) of one passage for one question.

    passage / story / sentence: raw text (folded here); present: the query terms the passage
    contains (from the postings); score: its BM25; other_story_score: the best BM25 of a
    passage from another story; dense: its cosine, None without a sentence model.
    """
    p = strip_ws(fold(passage))
    st = strip_ws(fold(story)) or p
    sent = fold(sentence)
    story_terms = {t for t in ev.weights if t in present or t.removeprefix("§") in st}
    grams = ev.gram_weights
    total_grams = sum(grams.values())
    cov_sentence = (sum(w for g, w in grams.items() if g in sent) / total_grams
                    if total_grams > 0 else 0.0)
    missing_idf = max((w for t, w in ev.weights.items()
                       if t not in story_terms and not t.startswith("§")), default=0.0)
    n = len(ev.constraints)
    in_passage = [stated(c, p) for c in ev.constraints]
    miss_p = in_passage.count(False)
    lacking = [c for c, here in zip(ev.constraints, in_passage, strict=True)
               if not here and not stated(c, st)]
    miss_names = sum(c.kind == "name" for c in lacking)
    top = top_score if top_score > 0 else 1.0
    total_idf = sum(ev.weights.values())
    return np.array([
        coverage(ev.weights, present),
        cov_sentence,
        coverage(ev.weights, story_terms),
        missing_idf / ev.max_idf if ev.max_idf > 0 else 0.0,
        float(n),
        float(miss_p),
        float(len(lacking) - miss_names),
        float(miss_names),
        len(lacking) / n if n else 0.0,
        float(has_short),
        float(ev.expected is not None),
        float(supports(ev.expected, passage)),
        max(-1.0, min(1.0, (score - other_story_score) / top)),
        score / total_idf if total_idf > 0 else 0.0,
        math.log1p(len(ev.weights)),
        float(dense) if dense is not None else 0.0,
        float(dense is not None),
    ], dtype=np.float64)


# ---------------------------------------------------------------- the fitted model


@dataclass(frozen=True)
class AnswerabilityModel:
    """Logistic model over FEATURES: P(passage answers question) = sigmoid(w . x + b)."""

    coef: np.ndarray
    intercept: float
    threshold: float  # the QA_MIN_CONFIDENCE chosen on validation
    provenance: dict = field(default_factory=dict)
    path: str = ""

    @classmethod
    def untrained(cls) -> AnswerabilityModel:
        """All weights 0 (every probability 0.5): what `qa.fit` measures features with."""
        return cls(np.zeros(len(FEATURES)), 0.0, 0.5, {"untrained": True})

    @classmethod
    def load(cls, path: str | Path = MODEL_PATH) -> AnswerabilityModel:
        """Read and check a parameters file; ModelFileError (one line) when it is unusable."""
        return cls.from_dict(read_model_file(path, "answerability model", "qa.fit"), str(path))

    @classmethod
    def from_dict(cls, data: object, path: str = "<dict>") -> AnswerabilityModel:
        """Check the format, feature names, shapes and provenance of loaded parameters."""
        def bad(why: str) -> ModelFileError:
            return ModelFileError(f"answerability model {path} is corrupt: {why}")

        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise bad(f"format is not {FORMAT!r}")
        if data.get("features") != list(FEATURES):
            raise bad("its features differ from this version's (refit with `python -m qa.fit`)")
        coef, intercept, threshold = data.get("coef"), data.get("intercept"), data.get("threshold")
        if (not isinstance(coef, list) or len(coef) != len(FEATURES)
                or not all(isinstance(c, (int, float)) and math.isfinite(c) for c in coef)):
            raise bad(f"coef must be {len(FEATURES)} finite numbers")
        for name, value in (("intercept", intercept), ("threshold", threshold)):
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                raise bad(f"{name} must be a finite number")
        if not 0.0 <= threshold <= 1.0:
            raise bad("threshold must lie in [0, 1]")
        prov = data.get("provenance")
        needed = ("data", "split", "command", "libraries", "date")
        if not isinstance(prov, dict) or any(k not in prov for k in needed):
            raise bad("provenance must name " + ", ".join(needed))
        return cls(np.asarray(coef, dtype=np.float64), float(intercept), float(threshold),
                   prov, path)

    def logit(self, x: np.ndarray) -> float:
        """w . x + b."""
        return float(np.dot(self.coef, x) + self.intercept)

    def probability(self, x: np.ndarray) -> float:
        """P(answers), in [0, 1], increasing in the logit."""
        return sigmoid(self.logit(x))


def sigmoid(z: float) -> float:
    """1 / (1 + e^-z), without overflow for large |z|."""
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


@functools.lru_cache(maxsize=4)
def load_model(path: str = str(MODEL_PATH)) -> AnswerabilityModel:
    """The parameters file, loaded once per process."""
    return AnswerabilityModel.load(path)
