"""The short answer: the shortest span of a passage that answers the question.

Classic rule-based answer extraction, in two readings of the question:

- What it asks for (`asked`): a count or amount with its measure word, a time of a given kind
  (both from `answertype`), a person, a place, an organisation, a list, a reason, a manner, or
  "a thing" (什么 + noun). The question word's neighbours in the question are kept: the words
  just before it (left) and just after it (right) within its clause.
- Where the passage says it (`_anchor`): a declarative sentence restates the question with the
  answer where the question word stood (由谁饰演 -> 由钱小宝饰演; 依托什么体系 -> 依托X体系). So
  the longest piece of the left context found in a sentence and the longest piece of the right
  context found after it bound the answer; with one side found, the clause on the other side.

Typed candidates (numbers with units, dates, names, titles, lists) are then looked for inside or
next to that gap; a typed question whose type is nowhere in the passage gets None. Sentences are
tried best first: the search's best sentence when given, then by how many of the question's
character bigrams they hold. Everything is pure string work plus jieba on a few short spans.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from .answertype import NUMERAL, UNITS, expected_answer
from .text import char_ngrams, fold, pos_words, split_sentences

# ---------------------------------------------------------------- question reading

# Question words, longest first; the last one in the question is the one asked.
_WH = ("什么时候", "多长时间", "什么地方", "什么原因", "为什么", "为何", "怎么样", "怎么", "怎样",
       "如何", "什么样", "什么", "哪一年", "哪一天", "哪些", "哪个", "哪家", "哪位", "哪里",
       "哪儿", "哪几", "哪两", "哪三", "哪四", "哪五", "哪", "何时", "何处", "何地", "何种",
       "多少", "多久", "几", "谁")
_WH_RE = re.compile("|".join(sorted(map(re.escape, _WH), key=len, reverse=True)))
_CLAUSE = re.compile(r"[,，;；:：。?？!！]")
_QUOTE_PAIRS = {"“": "”", "《": "》", "「": "」", '"': '"', "‘": "’", "『": "』"}

_PERSON_Q = re.compile(r"谁|哪位|哪一位|什么人|哪个人|叫什么名字|名字是什么|哪名|姓名")
_PLACE_Q = re.compile(r"哪里|哪儿|何处|何地|什么地方|哪个?(?:地方|城市|国家|省|市|县|区|镇|地区|洲)"
                      r"|在哪|哪些地方|哪些(?:城市|国家|地区)|位于|坐落")
_ORG_Q = re.compile(r"(?:哪家|哪个|哪些|什么|哪一家|哪所)(?:单位|公司|部门|机构|组织|企业|学校|大学"
                    r"|院校|银行|医院|集团|平台|球队|俱乐部|团体|政党|媒体)|由哪家|哪家")
_TIME_Q = re.compile(r"什么时间|哪个时候|何年|哪个年代|什么年代|哪一时期")
_REASON_Q = re.compile(r"为什么|为何|什么原因|原因是什么|何故")
_MANNER_Q = re.compile(r"怎么|怎样|如何|什么方式|什么措施|什么办法|哪些措施|什么途径|什么手段")
_LIST_Q = re.compile(r"哪些|哪几|哪[两三四五六]|有什么")
_ORDINAL_Q = re.compile(r"第(?:几|多少)|排(?:名|在|行)?(?:第)?(?:几|多少)(?:位|名)")


@dataclass(frozen=True)
class Asked:
    """What a question asks for and the words around its question word.

    kind: quantity, time, person, place, org, reason, manner, list or thing. units / time: as
    in answertype. left / right: the question's text before / after the question word within
    its clause. noun: the noun right after 什么/哪个/哪些 (什么体系 -> 体系), which the answer
    often ends with. grams: the question's character bigrams (question words masked).
    """

    kind: str
    left: str
    right: str
    noun: str = ""
    units: tuple[str, ...] = ()
    time: str = "any"
    grams: frozenset[str] = frozenset()
    ordinal: bool = False  # 第几 / 排多少位: the answer is a rank (第151位), 第 included
    # 选派了多少名干部、结对了多少家企业: the measure words of the first of two counts asked in
    # one breath; the answer runs from the first count to the second (379名干部结对665家)
    first: tuple[str, ...] | None = None


# A count of people is written with 名 or 位 as often as 人 (多少人 -> 261名).
_NOUN_AFTER = re.compile(r"(?:的)?([^的了是呢吗\W][\u4e00-\u9fffA-Za-z]{0,3}?)"
                         r"(?=[的了是呢吗,，?？。!！]|$|[来去在被用让把将使])")


@functools.lru_cache(maxsize=4096)
def asked(question: str) -> Asked | None:
    """Read a question: the kind of answer it wants and its question word's neighbours."""
    question = fold(question).strip()
    found = list(_WH_RE.finditer(question))
    if not found:
        return None
    wh = found[-1]
    # a "what is X" question put the other way (什么是X) asks about what follows
    left = _CLAUSE.split(question[: wh.start()])[-1]
    right = _CLAUSE.split(question[wh.end() :])[0]
    grams = frozenset(g for g in char_ngrams(_WH_RE.sub(" ", question)) if len(g) == 2)
    noun = ""
    if wh.group() in ("什么", "哪个", "哪些", "什么样", "哪家", "何种", "哪几", "哪两", "哪三"):
        m = _NOUN_AFTER.match(right)
        noun = m.group(1) if m else ""
    kind_text = question[max(0, wh.start() - 2) : wh.end() + 6]
    # typed from the question word's own neighbourhood: 几内亚…什么时候 is not a count
    # (and not by an earlier question word: 多少场次、覆盖多少人次 asks for 人次 last)
    floor = found[-2].end() if len(found) >= 2 else 0
    exp = expected_answer(question[max(floor, wh.start() - 8) :])
    if exp is not None and exp.kind == "quantity" and wh.group() in ("多少", "几"):
        units = exp.units + exp.loose  # measure words that count the same thing included
        ordinal = bool(_ORDINAL_Q.search(question, max(0, wh.start() - 4), wh.end() + 2))
        first = None
        if len(found) >= 2 and found[-2].group() in ("多少", "几"):
            between = question[found[-2].start() : wh.start()]
            prior = expected_answer(between)
            if prior is not None and prior.kind == "quantity" and not re.search("[?？。]", between):
                first = prior.units
        return Asked("quantity", left, right, noun, units, grams=grams, ordinal=ordinal,
                     first=first)
    if exp is not None and exp.kind == "time":
        return Asked("time", left, right, noun, time=exp.time, grams=grams)
    if _TIME_Q.search(kind_text):
        return Asked("time", left, right, noun, grams=grams)
    kinds = ((_REASON_Q, "reason"), (_PERSON_Q, "person"), (_ORG_Q, "org"),
             (_PLACE_Q, "place"), (_MANNER_Q, "manner"), (_LIST_Q, "list"))
    kind = next((k for pattern, k in kinds if pattern.search(kind_text)), None)
    if kind is None and exp is not None:  # 多少 with an attribute (价格是多少): a number
        return Asked("quantity", left, right, noun, exp.units, grams=grams)
    return Asked(kind or "thing", left, right, noun, grams=grams)


# ---------------------------------------------------------------- typed candidates

_NUM = rf"(?:\d[\d,.]*\d|\d|[{NUMERAL}]+)"
# Qualifiers that change the amount belong to the answer (约450米, 超过90%); verbs that merely
# report it (达, 共计, 累计) do not.
_APPROX_BEFORE = r"(?:超过|超|约|近|逾|将近|不到|不足|仅)?"
_APPROX_AFTER = r"(?:以上|以下|左右|之多|多|余)?"
_MAGNITUDE = r"(?:余|多)?(?:万|亿|千|百)?(?:余|多)?"
# A range is one answer: 0.5至3公尺, 23~28℃.
_RANGE = rf"(?:\s*(?:至|到|~|～|-|－|—)\s*{_NUM}{_MAGNITUDE})?"
_ANY_UNIT = sorted(set(UNITS) | {"%", "％", "元", "美元", "港元", "欧元", "英镑", "日元", "万元",
                                 "亿元", "平方米", "平方公里", "公里", "千米", "厘米", "毫米", "米",
                                 "公顷", "吨", "千克", "公斤", "克", "岁", "度", "倍", "人次",
                                 "公尺", "公分", "英尺", "℃"},
                   key=len, reverse=True)


@functools.lru_cache(maxsize=256)
def _quantity_re(units: tuple[str, ...]) -> re.Pattern[str]:
    alternatives = "|".join(map(re.escape, units or _ANY_UNIT))
    # a qualifier may sit between number and unit (12港元, 3个国家级); bare numbers with a
    # magnitude (8.57万) answer unit-less questions such as 人口多少
    unit = rf"(?:[\u4e00-\u9fff]{{0,2}}?(?:{alternatives}))"
    if not units:
        unit = rf"(?:{unit}|(?<=[万亿]))"
    return re.compile(rf"{_APPROX_BEFORE}{_NUM}{_MAGNITUDE}{_RANGE}{unit}{_APPROX_AFTER}")


_YEAR = rf"(?:公元前?)?[{NUMERAL}]{{2,4}}\s*年"
_MONTH_DAY = rf"[{NUMERAL}]{{1,3}}\s*月(?:[{NUMERAL}]{{1,3}}\s*[日号])?(?:[上中下]旬|[初底])?"
_CLOCK = (rf"(?:上午|下午|凌晨|清晨|傍晚|中午|早上|晚上)?"
          rf"(?:[{NUMERAL}]+\s*[点时](?:[{NUMERAL}]+分|半)?|\d{{1,2}}[:：]\d{{2}})")
_FULL_DATE = rf"(?:{_YEAR}(?:{_MONTH_DAY})?|{_MONTH_DAY})(?:{_CLOCK})?|{_CLOCK}"
_DURATION = (rf"[{NUMERAL}]+\s*(?:多|余)?(?:个多?月|个?小时|年|天|日|周|分钟|秒|个星期)(?:左右|多)?"
             r"|半年|半天|每个?[年月周天日]|每[年月周天日]")
_SEASON = (r"(?:[今明去前后同当]年)?(?:年[初底中]|[春夏秋冬]季|[上下]半年)"
           r"|[今明昨前后当]天|春节|国庆|元旦")
_TIME_RES = {
    "year": re.compile(rf"{_YEAR}(?:{_MONTH_DAY})?|[今明去前后同当]年"),
    "date": re.compile(rf"{_FULL_DATE}|{_SEASON}"),
    "clock": re.compile(_CLOCK),
    "duration": re.compile(_DURATION),
    "any": re.compile(rf"{_FULL_DATE}|{_SEASON}|{_DURATION}"),
}
_TITLE_RE = re.compile(r"《[^《》]{1,30}》(?:[、和与及]《[^《》]{1,30}》)*"
                       r"|“[^“”]{1,30}”|「[^「」]{1,30}」|\"[^\"]{1,30}\"")
# A list: two or more items joined by 、 (and optionally 和/及/与/以及 before the last).
_ITEM = r"[^,，。;；:：!！?？、()（）\s]{1,20}"
_LIST_RE = re.compile(rf"{_ITEM}(?:、{_ITEM})+(?:(?:和|及|与|以及|或){_ITEM})?"
                      rf"|{_ITEM}(?:和|及|与|以及){_ITEM}")
_PUNCT = ",，。;；:：!！?？()（）\n"
_BOUND = re.compile(r"[,，。;；:：!！?？()（）\n]")
_ORG_SUFFIX = re.compile(r"(?:集团|公司|大学|学院|研究院|研究所|委员会|管理局|局|厅|委|部|院|中心"
                         r"|协会|学会"
                         r"|银行|医院|学校|政府|办公室|大队|支队|分局|队|所|站|联盟|基金会|俱乐部|电视台|报社)$")
_REASON_RE = re.compile(r"(?:因为|由于|为了|因)([^,，。;；!！?？]{1,40}?)(?:等?原因|[,，。;；]|$)")
_PERSON_CUES = re.compile(r"(?:表示|说|介绍|指出|认为|称|告诉记者|坦言|透露)")
# Words that start a gap without belonging to the answer (依托X: 依托 is the question's own).
_LEAD = re.compile(r"(?:了|的|是|为|在|位于|于|呈|有|从|由|把|将|被|到|向|对|给|以|用|叫|称|叫做"
                   r"|称为|即|就是|共|和|也|都|还|又|成为|作为)+")
_TRAIL = re.compile(r"(?:的|了|是|在|等人|们|着|之|而|来|去|中|上)+$")


def _strip_quotes(text: str, start: int, end: int) -> tuple[int, int]:
    """Drop one pair of enclosing quotes or title marks: the eval ignores them anyway."""
    if end - start >= 3 and _QUOTE_PAIRS.get(text[start]) == text[end - 1]:
        return start + 1, end - 1
    return start, end


def _trim(text: str, start: int, end: int) -> tuple[int, int]:
    """Trim spaces, punctuation and function words from both ends of a span."""
    while start < end and (text[start].isspace() or text[start] in _PUNCT + "、"):
        start += 1
    while end > start and (text[end - 1].isspace() or text[end - 1] in _PUNCT + "、"):
        end -= 1
    if (m := _LEAD.match(text, start, end)) and m.end() < end:
        start = m.end()
    if (m := _TRAIL.search(text[start:end])) and m.start() > 0:
        end = start + m.start()
    return start, end


def _drop_context(a: Asked, sent: str, start: int, end: int) -> tuple[int, int]:
    """Drop the question's own words from the ends of a span, keeping two characters at least:
    大比武在杭州市萧山区 (asked 大比武在哪里) -> 杭州市萧山区. A trailing piece that the
    question has right after its question word is the answer's head noun and stays
    (依托什么体系 -> X体系)."""
    for k in range(end - start - 2, 1, -1):  # the longest piece first
        if sent[start : start + k] in a.left:
            start += k
            break
    for k in range(end - start - 2, 1, -1):
        piece = sent[end - k : end]
        if piece in a.right and not a.right.startswith(piece):
            end -= k
            break
    return _trim(sent, start, end)


def _clause_bounds(text: str, pos: int, lo: int, hi: int) -> tuple[int, int]:
    """The clause of text[lo:hi] that holds pos, bounded by punctuation."""
    left = lo
    for m in _BOUND.finditer(text, lo, pos):
        left = m.end()
    m = _BOUND.search(text, pos, hi)
    return left, (m.start() if m else hi)


# ---------------------------------------------------------------- alignment


_FUNCTION_CHARS = set("的是了在有为和与及也都被把将从由对于以")


def _find_pieces(src: str, sent: str, lo: int, hi: int,
                 from_end: bool) -> list[tuple[int, int, int]]:
    """Pieces of the question context found in sent[lo:hi], best first: (start, end, length).

    Longer pieces win, and pieces nearer the question word (the end of the left context, the
    start of the right one): each character between costs one matched character, and of two
    equal pieces the nearer wins (火斑笛鲷的俗名是 -> 俗名: the predicate, not the topic). A
    lone character counts only right beside the question word (王处直的字是 -> 字).
    """
    n = len(src)
    region = sent[lo:hi]
    scored: list[tuple[float, int, tuple[int, int, int]]] = []
    i = 0
    while i < n:
        k = 0
        while i + k < n and k < 24 and src[i : i + k + 1] in region:
            k += 1
        if k >= 2 or (k == 1 and src[i] not in _FUNCTION_CHARS and "\u4e00" <= src[i] <= "\u9fff"):
            distance = n - (i + k) if from_end else i
            score = k - distance if k >= 2 else (0.5 if distance <= 1 else -9)
            if score > 0 or (k >= 3 and score > -3):
                piece = src[i : i + k]
                pos = sent.rfind(piece, lo, hi) if from_end else sent.find(piece, lo, hi)
                scored.append((score, i if from_end else -i, (pos, pos + k, k)))
        i += max(k, 1)
    scored.sort(reverse=True)
    return [s[2] for s in scored]


def _find_piece(src: str, sent: str, lo: int, hi: int, from_end: bool) -> tuple[int, int, int]:
    found = _find_pieces(src, sent, lo, hi, from_end) if len(src) >= 1 else []
    return found[0] if found else (-1, -1, 0)


@dataclass
class _Gap:
    start: int
    end: int
    strength: int  # characters of question context matched around it
    closed: bool = False  # bounded by the right context too, not only by punctuation


def _list_end(sent: str, start: int, clause_end: int) -> int:
    """A list may run on past one comma (ETC办理、咨询、激活,电子发票打印): the next clause end."""
    if "、" not in sent[start:clause_end]:
        return clause_end
    stop = _BOUND.search(sent, clause_end + 1)
    return stop.start() if stop else len(sent)


def _anchor(a: Asked, sent: str) -> _Gap | None:
    """Where in sent the question word's place is: between the matched left and right context."""
    lefts = _find_pieces(a.left, sent, 0, len(sent), True)[:3] if a.left else []
    for left in lefts or [(-1, -1, 0)]:
        gap = _anchor_from(a, sent, left)
        if gap is not None and gap.end > gap.start:
            return gap
    return None


def _anchor_from(a: Asked, sent: str, left: tuple[int, int, int]) -> _Gap | None:
    n = len(sent)
    if left[2]:
        right = _find_piece(a.right, sent, left[1], n, False)
        stop = _BOUND.search(sent, left[1])
        clause_end = stop.start() if stop else n
        limit = _list_end(sent, left[1], clause_end) if a.kind == "list" else clause_end
        if right[2] and right[0] <= limit:
            end = right[0]
            # 什么体系 -> "X体系": the asked noun belongs to the answer when it follows the gap
            if (a.noun and sent.startswith(a.noun, right[0]) and right[0] > left[1]
                    and sent[right[0] - 1] not in "”》」\"'"):
                end = right[0] + len(a.noun)
            if end > left[1]:
                return _Gap(left[1], end, left[2] + right[2], closed=True)
        # the answer may come before both, in the same clause (勾践由谁饰演 -> 钱小宝饰演的勾践)
        lo, _ = _clause_bounds(sent, left[0], 0, n)
        before = _find_piece(a.right, sent, lo, left[0], False) if a.right else (-1, -1, 0)
        if before[2] >= 2 and before[0] > lo:
            return _Gap(lo, before[0], left[2] + before[2], closed=True)
        if clause_end > left[1]:
            return _Gap(left[1], clause_end, left[2])
    right = _find_piece(a.right, sent, 0, n, False)
    if right[2]:
        lo, _ = _clause_bounds(sent, right[0], 0, n)
        end = right[0]
        if (a.noun and sent.startswith(a.noun, right[0]) and end > lo
                and sent[end - 1] not in "”》」\"'"):
            end = right[0] + len(a.noun)
        if end > lo:
            return _Gap(lo, end, right[2], closed=True)
    if left[2]:
        # the answer may come before the context it was asked after (钱小宝饰演的勾践)
        lo, _ = _clause_bounds(sent, left[0], 0, n)
        if left[0] > lo:
            return _Gap(lo, left[0], left[2])
    return None


# ---------------------------------------------------------------- typed extraction


def _regex_spans(pattern: re.Pattern[str], sent: str) -> list[tuple[int, int]]:
    return [(m.start(), m.end()) for m in pattern.finditer(sent) if m.end() > m.start()]


def _nearest(spans: list[tuple[int, int]], gap: _Gap | None, sent: str,
             a: Asked) -> tuple[int, int] | None:
    """The span inside the gap, else the one nearest the question's words in the sentence."""
    if not spans:
        return None
    if gap is not None:
        inside = [s for s in spans if s[0] >= gap.start - 1 and s[1] <= gap.end + 1]
        if inside:
            return inside[0]
        return min(spans, key=lambda s: min(abs(s[0] - gap.end), abs(s[1] - gap.start)))
    # no alignment: the candidate with most question bigrams in its clause
    def near(s: tuple[int, int]) -> int:
        lo, hi = _clause_bounds(sent, s[0], 0, len(sent))
        window = range(max(0, lo - 8), min(len(sent), hi + 8))
        return sum(sent[i : i + 2] in a.grams for i in window)
    return max(spans, key=near)


_RANK = re.compile(rf"第{_NUM}[\u4e00-\u9fff]")
_ONE_OF = re.compile(r"一[\u4e00-\u9fff]")


def _quantities(a: Asked, sent: str) -> list[tuple[int, int]]:
    """Numbers with the asked measure word; a rank keeps its 第. With no measure word asked,
    一种 / 一个 (是一种鱼, 一个平台) is an article far more often than the amount asked for, so
    it is a candidate only when nothing else is."""
    spans = _regex_spans(_quantity_re(a.units), sent)
    if a.ordinal:  # any measure word counts a rank (第三对, 第20张)
        ranks = _regex_spans(_RANK, sent)
        return ranks or spans
    if not a.units:
        counted = [(s, e) for s, e in spans if not _ONE_OF.fullmatch(sent, s, e)]
        return counted or spans
    return spans


_NOT_NAME = set("的了在和与及说是为等")


# A name right after a post or trade (常务副院长尹建伟作…, 国家一级演员钱小宝饰演): jieba often
# splits names it does not know, but the post says one follows.
_TITLED = re.compile(r"(?:演员|院长|书记|主任|教授|研究员|记者|老师|医生|经理|专家|主席|委员|代表"
                     r"|[局部厅省市县区镇乡村社会校所站队组处科]长|董事长|负责人|民警|律师|导演)"
                     r"([\u4e00-\u9fff]{2,3}?)(?=作|说|表示|介绍|指出|饰演|带领|认为|坦言|告诉"
                     r"|等|和|与|在|[,，。、;；:：“(（]|$)")


def _people(sent: str, lo: int, hi: int) -> list[tuple[int, int]]:
    """Person names in sent[lo:hi]: names after a post (院长尹建伟), then _dictionary_people."""
    titled = [m.span(1) for m in _TITLED.finditer(sent, lo, hi)]
    rest = [s for s in _dictionary_people(sent, lo, hi)
            if not any(s[0] < t[1] and t[0] < s[1] for t in titled)]
    return sorted(titled + rest)


def _dictionary_people(sent: str, lo: int, hi: int) -> list[tuple[int, int]]:
    """Person names in sent[lo:hi]: jieba's nr words, a surname followed by one or two single
    characters (尹 建 伟), foreign names joined by ·. jieba's HMM finds more names but costs
    ~25 µs a character, too slow to run on every passage; the dictionary pass is ~3 µs."""
    words = pos_words(sent[lo:hi])
    offsets = [lo]
    for w in words:
        offsets.append(offsets[-1] + len(w.word))
    out: list[tuple[int, int]] = []
    i = 0
    while i < len(words):
        word, flag = words[i].word, words[i].flag
        j = i + 1
        if word == "·" and out and out[-1][1] == offsets[i] or (word == "·" and i > 0):
            # a foreign name: the word before the dot and the name-like words after it
            start = out.pop()[0] if out and out[-1][1] == offsets[i] else offsets[i - 1]
            while j < len(words) and words[j].flag[:1] not in "vpucxd" and len(words[j].word) <= 3:
                j += 1
            if j > i + 1:
                out.append((start, offsets[j]))
        elif flag.startswith("nr"):
            if len(word) == 1:  # a surname: the given name is the next one or two characters
                while (j < len(words) and j - i <= 2 and len(words[j].word) == 1
                       and _is_cjk(words[j].word) and words[j].word not in _NOT_NAME):
                    j += 1
            if offsets[j] - offsets[i] >= 2:
                out.append((offsets[i], offsets[j]))
        i = j
    return out


def _is_cjk(text: str) -> bool:
    return all("\u4e00" <= c <= "\u9fff" for c in text)


def _org(sent: str, start: int, end: int) -> tuple[int, int] | None:
    """The first organisation name in sent[start:end]: a piece between 的/——/、/和 and
    punctuation that ends with an organisation's suffix (国资运营平台——上城资本集团)."""
    pos = start
    for m in re.finditer(r"——|—|的|、|和|与|及|[,，。;；:：()（）]", sent[start:end] + "。"):
        piece_end = start + m.start()
        for k in range(piece_end, pos + 1, -1):  # the longest prefix with an org suffix
            if _ORG_SUFFIX.search(sent[pos:k]):
                return pos, k
        pos = start + m.end()
    return None


def _titles(sent: str, start: int, end: int) -> list[tuple[int, int]]:
    return [(m.start(), m.end()) for m in _TITLE_RE.finditer(sent, start, end)]


def _typed(a: Asked, sent: str, gap: _Gap | None) -> tuple[int, int] | None:
    """A candidate of the asked type in sent, or None."""
    if a.kind == "quantity":
        return _nearest(_quantities(a, sent), gap, sent, a)
    if a.kind == "time":
        return _nearest(_regex_spans(_TIME_RES.get(a.time, _TIME_RES["any"]), sent), gap, sent, a)
    if a.kind == "person":
        return _person(a, sent, gap)
    if a.kind == "reason":
        cues = list(_REASON_RE.finditer(sent))
        if cues:
            m = min(cues, key=lambda m: abs(m.start() - gap.start) if gap else 0)
            return m.start(1), m.end(1)
        return (gap.start, gap.end) if gap else None
    if gap is None:
        if a.kind == "list":
            return _nearest(_regex_spans(_LIST_RE, sent), gap, sent, a)
        return None
    start, end = gap.start, gap.end
    titles = _titles(sent, start, end)
    if a.kind == "list":
        if len(titles) >= 2:
            return titles[0][0], titles[-1][1]
        touching = [s for s in _regex_spans(_LIST_RE, sent) if s[0] < end and s[1] > start]
        if touching:
            s = max(touching, key=lambda s: s[1] - s[0])
            start, end = max(s[0], start), (min(s[1], end) if gap.closed else s[1])
        return _cut_etc(sent, start, end)
    if len(titles) == 1 and a.kind in ("thing", "org", "place"):
        return titles[0]
    if a.kind == "org":
        stop = _BOUND.search(sent, start)
        return _org(sent, start, stop.start() if stop else len(sent)) or (start, end)
    if a.kind == "place":
        return _cut_etc(sent, start, end)
    if a.kind == "thing":
        return _cut_etc(sent, start, end)
    return start, end


def _cut_etc(sent: str, start: int, end: int) -> tuple[int, int]:
    """A list ends at its 等 (上海、深圳、苏州等地 -> 上海、深圳、苏州等)."""
    cut = sent.rfind("等", start, end)
    if cut > start and sent.rfind("、", start, end) < cut and end - cut <= 12:
        return start, cut + 1
    return start, end


def _person(a: Asked, sent: str, gap: _Gap | None) -> tuple[int, int] | None:
    """A name inside the gap, else one near it (within 24 characters), else a short gap."""
    if gap is not None:
        end = gap.end
        if m := _PERSON_CUES.search(sent, gap.start, gap.end):
            end = m.start()
        if 2 <= end - gap.start <= 4 and _is_cjk(sent[gap.start : end]):
            return gap.start, end  # 统战委员范镇平介绍: the name sits between title and verb
        names = _people(sent, gap.start, gap.end)
        if names:
            return names[-1]
        lo, hi = max(0, gap.start - 24), min(len(sent), gap.end + 24)
        # a long title between the name and the question's words counts as one word
        while (opened := sent.rfind("《", 0, lo)) >= 0 and sent.find("》", opened) >= lo:
            lo = max(0, opened - 12)
    else:
        lo, hi = 0, min(len(sent), 80)
    names = _people(sent, lo, hi)
    if names:
        cued = [n for n in names if _PERSON_CUES.match(sent, n[1])]
        return _nearest(cued or names, gap, sent, a)
    if gap is not None and gap.end - gap.start <= 12:
        end = gap.end
        if m := _PERSON_CUES.search(sent, gap.start, gap.end):
            end = m.start()
        return (gap.start, end) if end > gap.start else None
    return None


# ---------------------------------------------------------------- the short answer

MAX_SENTENCES = 4  # the best sentence and the three next most like the question


def _sentences(passage: str) -> list[tuple[int, int]]:
    """Sentence offsets; a sentence mark inside 《…》 or “…” does not end a sentence."""
    out: list[tuple[int, int]] = []
    pos = 0
    for s in split_sentences(passage):
        start = passage.find(s, pos)
        pos = start + len(s)
        if out and _open(passage[out[-1][0] : out[-1][1]]):
            out[-1] = (out[-1][0], pos)
        else:
            out.append((start, pos))
    return out or [(0, len(passage))]


def _open(text: str) -> bool:
    return text.count("《") > text.count("》") or text.count("“") > text.count("”")


def _overlap(a: Asked, sent: str) -> int:
    return sum(sent[i : i + 2] in a.grams for i in range(len(sent) - 1))


def _fold_char(c: str) -> str:
    f = fold(c)
    return f if len(f) == 1 else c


def short_answer(question: str, passage: str,
                 sentence_span: tuple[int, int] | None = None) -> tuple[int, int] | None:
    """Offsets in passage of the shortest text that answers question, or None when the passage
    holds nothing of the asked type."""
    a = asked(question)
    if a is None or not passage:
        return None
    folded = fold(passage)
    if len(folded) != len(passage):  # NFKC or lower() changed lengths (ﬁ, İ, …): fold char by
        folded = "".join(_fold_char(c) for c in passage)  # char so offsets still hold
    spans = _sentences(folded)
    ranked = sorted(spans, key=lambda s: -_overlap(a, folded[s[0] : s[1]]))
    if sentence_span is not None:
        best = [s for s in spans if s[0] < sentence_span[1] and s[1] > sentence_span[0]]
        ranked = best + [s for s in ranked if s not in best]
    candidates: list[tuple[float, int, int]] = []
    for rank, (s0, s1) in enumerate(ranked[:MAX_SENTENCES]):
        sent = folded[s0:s1]
        gap = _anchor(a, sent)
        found = _typed(a, sent, gap)
        if found is None:
            continue
        start, end = found
        if a.first is not None:
            before = [q for q in _regex_spans(_quantity_re(a.first), sent)
                      if q[1] <= start and start - q[1] <= 24]
            start = before[-1][0] if before else start
        if a.kind not in ("quantity", "time"):
            start, end = _drop_context(a, sent, *_trim(sent, start, end))
            start, end = _strip_quotes(sent, start, end)
        if end <= start:
            continue
        # the alignment first, then the sentence's likeness to the question, then its order;
        # a candidate the alignment points at beats one merely near it
        inside = gap is not None and gap.start <= start and end <= gap.end
        score = (2 * (gap.strength if gap else 0) + 0.5 * _overlap(a, sent) + 4 * inside
                 + 2 * (rank == 0 and sentence_span is not None) - rank
                 # one character (例, 将) is a slip of the alignment, not a name: last resort
                 - 50 * (end - start < 2 and a.kind not in ("quantity", "time")))
        candidates.append((score, s0 + start, s0 + end))
    if not candidates:
        return None
    _, start, end = max(candidates, key=lambda c: c[0])
    return start, end
