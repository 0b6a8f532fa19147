"""Answer types: what kind of answer a question asks for, and whether a passage can give it.

Classic answer-type checking from question-answering systems, kept to closed classes that the
question's grammar marks unambiguously: a count or amount (多少 / 几 + measure word), and a time
(什么时候, 几点, 哪年, 几月, 多久). A passage that only shares the question's topic words but
holds no answer of the asked type cannot be the answer, so the search refuses it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .text import char_ngrams, fold, mask_question_words, pos_words, split_sentences

NUMERAL = "0-9０-９零〇一二两三四五六七八九十百千万亿几数半"
# Chinese measure words (a closed class): "多少份" asks for a count of 份.
UNITS = sorted("""人次 场次 户次 万元 亿元 平方米 平方公里 公里 千米 千瓦时 兆瓦 公顷 小时 分钟
    个 名 人 位 家 元 块 册 份 本 场 次 件 项 条 座 所 户 头 只 尾 辆 台 套 亩 米 吨 斤 克 篇 期 批
    张 间 栋 处 部 支 株 棵 种 类 届 轮 趟 遍 倍 岁 天 年 月 周 层 级""".split(), key=len, reverse=True)  # noqa: SIM905, E501
# 哪几 / 那几 / 这几 ask "which" or point back ("那几年"); 几月 / 几点 / 几号 ask for a time.
_QUANTITY_Q = re.compile(r"(?<![哪那这])(?:多少|几(?![乎点时号月]))(钱|" + "|".join(UNITS) + ")?")

# What each kind of time question accepts. A bare "27号" is a street number as often as a date,
# so a day counts as a date only after a month (3月27号) or as 日.
_CLOCK = (rf"[{NUMERAL}]+\s*(?:点|时)(?!间)|\d{{1,2}}[:：]\d{{2}}"
          r"|上午|下午|凌晨|清晨|傍晚|中午|早上|晚上")
_YEAR = rf"[{NUMERAL}]{{2,4}}\s*年|[今明去前后同当]年"
_DATE = (rf"[{NUMERAL}]+\s*(?:月|日)|月[{NUMERAL}]+号|[今明昨前后当]天|当日|近日|日前"
         r"|周[一二三四五六日末]|星期|春节|国庆|元旦")
_DURATION = rf"[{NUMERAL}]+\s*(?:个?月|年|天|日|周|小时|分钟|秒)|半年|半天|每个?[年月周天日]"
_ANY_TIME = "|".join((_CLOCK, _YEAR, _DATE, _DURATION, r"年[初底]|月[初底]|目前|上半年|下半年"))
TIME_PATTERNS = {name: re.compile(p) for name, p in (
    ("clock", _CLOCK), ("year", _YEAR), ("date", _DATE), ("duration", _DURATION),
    ("any", _ANY_TIME))}
# How a time question names the kind it wants; the first that matches decides.
_TIME_KIND = [(re.compile(p), kind) for p, kind in (
    (r"几点|几时", "clock"), (r"哪一?年", "year"), (r"几月|几号|哪一?天", "date"),
    (r"多久|多长时间", "duration"), (r"什么时候|何时", "any"))]

# A 多少 question with no measure word is typed by the attribute it asks about (classic
# numeric answer types: money, people, area, length, age).
# Rates are left out: they are as often bare numbers (收视率7.07) as percentages.
MONEY = ("元", "圆", "块", "镑", "盾", "币", "$", "¥", "€", "£")
LENGTH = ("米", "公里", "里", "公分", "英尺", "英寸", "英吋", "吋", "尺", "寸", "m", "km", "cm",
          "mm", "ft")
_ATTRIBUTE_UNITS = [
    (MONEY, "价格|价|费用|费|收费|钱|金额|收入|投资|产值|资金|成本|工资|利润|营收|销售额|花费"),
    (("人", "名", "万", "亿", "余", "多"), "人口|人数"),
    (("平方米", "平方公里", "平方英里", "亩", "公顷", "m²", "km²", "m2", "km2"), "面积"),
    (LENGTH, "长度|距离|里程|全长|身长|高度|深度|宽度"),
    (("岁",), "年龄|岁数"),
]
_ATTRIBUTE_Q = [(units, re.compile(rf"(?:{words})[^,，。、;；?？!！]{{0,6}}?(?:多少|几)"))
                for units, words in _ATTRIBUTE_UNITS]
_PHRASE_END = re.compile(r"[,，。?？!！;；:：、“”\"'《》()（）\s]")
_LEADING_PARTICLES = re.compile(r"^[的了呢吗啊呀]+")
COUNTED_CHARS = 6  # how much of the noun after the measure word names the thing counted


@dataclass(frozen=True)
class AnswerType:
    """The answer a question asks for.

    kind: "quantity" or "time". units: measure words a quantity must carry (empty: any number).
    counted: character bigrams of the noun being counted ("多少家外资企业" -> 外资, 资企, 企业);
    the number must stand in a sentence that names it. time: clock, year, date, duration or any.
    """

    kind: str
    units: tuple[str, ...] = ()
    counted: tuple[str, ...] = ()
    time: str = "any"
    # 个, the general classifier, answers a count of things (几家公益组织 -> 公益组织9个) only in
    # a sentence that names the thing: the noun after the question word, else the one before it
    loose: tuple[str, ...] = ()
    named: tuple[str, ...] = ()


# Measure words that count the same thing: 多少人 is answered by 261名 as well as by 261人.
# So do the measure words of abstract things: 几条增收路径 is answered by 5种, 几项措施 by 3条.
# 几个 itself stays 个 (it counts concrete things as often).
_ABSTRACT = ("条", "项", "种", "类")
SAME_UNIT = {"人": ("人", "名", "位", "人次"), "名": ("名", "人", "位"), "位": ("位", "名", "人"),
             **{u: (u, *(v for v in _ABSTRACT if v != u), "个") for u in _ABSTRACT}}
# A reader asks 几家公益组织 where the paper wrote 公益组织9个: 个 may answer a count of things
# (not people, money, sizes or times, which have words of their own), next to the thing's name.
THINGS = ("家", "处", "所", "座", "件", "支", "批", "部", "台", "套", "辆", "栋", "间", "本", "篇",
          "份", "张", "株", "棵", "场", "期", "届", "块", "户", "尾", "头", "只", "册")


# A counted noun ends at the first verb, adjective, adverb, particle, preposition or pronoun
# (多少家企业结了对子 counts 企业): the rest of a reworded question is not the passage's wording.
_NOT_NOUN = re.compile(r"(?:v(?!n)\w*|a|ad|d\w*|u\w*|p|c|r\w*|y|e|o|f|x|zg)")
# Before the question word only nouns name the thing (公益组织有几家; 一共/j is not one).
_IS_NOUN = re.compile(r"n\w*|vn")


def _noun_grams(noun: str) -> tuple[str, ...]:
    """The character bigrams a sentence must share with the counted noun (question words out)."""
    return tuple(g for g in char_ngrams(mask_question_words(noun)) if len(g) >= 2)


def _counted_noun(question: str, end: int) -> tuple[str, ...]:
    phrase = _PHRASE_END.split(question[end:], maxsplit=1)[0]
    phrase = _LEADING_PARTICLES.sub("", phrase)
    noun = ""
    for word in pos_words(phrase):
        if _NOT_NOUN.fullmatch(word.flag) or len(noun) >= COUNTED_CHARS:
            break
        noun += word.word
    return _noun_grams(noun[:COUNTED_CHARS])


def _noun_before(question: str, start: int) -> tuple[str, ...]:
    """The noun a count asks about when it comes first (公益组织有几家, 邻里食堂一共开了多少家):
    back from the question word past a few verbs and adverbs, then the nouns before them."""
    phrase = _PHRASE_END.split(question[:start])[-1]
    words = pos_words(phrase)
    for _ in range(4):  # 一共开了, 前前后后建起了
        if words and not _IS_NOUN.fullmatch(words[-1].flag):
            words.pop()
    noun = ""
    for word in reversed(words):
        if not _IS_NOUN.fullmatch(word.flag) or len(noun) >= COUNTED_CHARS:
            break
        noun = word.word + noun
    return _noun_grams(noun[-COUNTED_CHARS:])


def expected_answer(question: str) -> AnswerType | None:
    """The answer type a question asks for, or None when it asks for something else."""
    if m := _QUANTITY_Q.search(question):
        unit = m.group(1)
        if unit:
            units = ("元",) if unit == "钱" else SAME_UNIT.get(unit, (unit,))
            counted = _counted_noun(question, m.end())
            if unit not in THINGS:
                return AnswerType("quantity", units, counted)
            return AnswerType("quantity", units, counted, loose=("个",),
                              named=counted or _noun_before(question, m.start()))
        for units, pattern in _ATTRIBUTE_Q:
            if pattern.search(question):
                return AnswerType("quantity", units)
        return AnswerType("quantity")
    kind = next((k for pattern, k in _TIME_KIND if pattern.search(question)), None)
    return AnswerType("time", time=kind) if kind else None


def has_quantity(units: tuple[str, ...], text: str) -> bool:
    """Whether text holds a number, with one of units when any are given."""
    if not units:
        return bool(re.search(f"[{NUMERAL}]", text))
    alternatives = "|".join(map(re.escape, units))
    # a currency or unit may carry a qualifier first (12港元, 41,210亿越南盾, 15厘米) or a symbol
    # may lead ($4.9)
    number = rf"[{NUMERAL}][{NUMERAL}.,，余多近约超]*"
    return bool(re.search(rf"{number}\s*[\u4e00-\u9fff]{{0,2}}(?:{alternatives})", text)
                or re.search(rf"(?:{alternatives})\s*{number}", text))


def _names(counted: tuple[str, ...], sentence: str) -> bool:
    # Half the noun's bigrams: "驻村第一书记" still matches "驻村(社区)第一书记37名", while
    # "外资企业" does not match a sentence that only says "企业2714家".
    folded = fold(sentence)
    return 2 * sum(g in folded for g in counted) >= len(counted)


def supports(expected: AnswerType | None, text: str) -> bool:
    """Whether text can answer a question of this type: a number with the asked-for unit in a
    sentence that names what is counted, or a time phrase of the asked-for kind."""
    if expected is None:
        return True
    if expected.kind == "time":
        return bool(TIME_PATTERNS[expected.time].search(text))
    def holds(s: str) -> bool:
        if has_quantity(expected.units, s) and (not expected.counted
                                                or _names(expected.counted, s)):
            return True
        return bool(expected.named and has_quantity(expected.loose, s)
                    and _names(expected.named, s))
    return any(holds(s) for s in split_sentences(text) or [text])
