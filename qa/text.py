"""Text utilities for every stage: CJK spacing repair, width folding, sentences, tokenisers."""

from __future__ import annotations

import functools
import re
import threading
import unicodedata
from collections.abc import Callable

# CJK ideographs (basic block, extension A, compatibility) — what "Chinese character" means here.
CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
CJK_RE = re.compile(f"[{CJK}]")
_CJK_RUN = re.compile(f"[{CJK}]+")
_ASCII_WORD = re.compile(r"[a-z0-9]+(?:[.%][a-z0-9]+)*")

# Sentence-final marks, full- and half-width; closing quotes/brackets may follow them.
FINAL_PUNCT = "。!?!?…;;"
_CLOSERS = "\"'”’」』)）》】"
_FINISHED_RE = re.compile(f"[{re.escape(FINAL_PUNCT)}][{re.escape(_CLOSERS)}]*$")
_SENTENCE_RE = re.compile(
    f"[^{re.escape(FINAL_PUNCT)}]*(?:[{re.escape(FINAL_PUNCT)}]+[{re.escape(_CLOSERS)}]*|$)"
)
_WS = re.compile(r"\s+")

# Interrogatives and particles that only shape a question: they carry no evidence, and as rare
# words in news text they would otherwise earn a high IDF and pull in any passage that has them.
QUESTION_WORDS = (
    "什么时候", "多长时间", "多久", "何时", "几点", "哪一年", "哪年", "哪天",
    "为什么", "为何", "什么样", "什么", "哪些", "哪个", "哪里", "哪儿", "哪家", "哪位", "哪",
    "多少", "几个", "几", "谁", "怎么样", "怎么", "怎样", "如何", "是否", "吗", "呢", "请问",
)
_QUESTION_RE = re.compile("|".join(sorted(map(re.escape, QUESTION_WORDS), key=len, reverse=True)))


def fold(text: str) -> str:
    """Fold width and case for matching (NFKC + lower): full-width 'ＡＢ１' matches 'ab1'."""
    if unicodedata.is_normalized("NFKC", text):  # fast C check; most Chinese text is already
        return text.lower()
    return unicodedata.normalize("NFKC", text).lower()


def strip_ws(text: str) -> str:
    """Delete every whitespace character (the eval's comparison form)."""
    return _WS.sub("", text)


def _keep_space(left: str, right: str) -> bool:
    # A space is real only between two Latin letters/digits ("AI 下棋" loses it, "Leandro Netto"
    # keeps it); OCR inserts spaces everywhere else in Chinese text.
    return left.isascii() and right.isascii() and left.isalnum() and right.isalnum()


def repair_spacing(text: str) -> str:
    """Remove OCR spaces inside Chinese text; keep one space between Latin words or numbers."""
    text = text.strip()
    out: list[str] = []
    pos = 0
    for m in _WS.finditer(text):
        out.append(text[pos : m.start()])
        left = text[m.start() - 1]
        right = text[m.end()] if m.end() < len(text) else ""
        if right and _keep_space(left, right):
            out.append(" ")
        pos = m.end()
    out.append(text[pos:])
    return "".join(out)


def cjk_count(text: str) -> int:
    """Number of Chinese characters in text."""
    return len(CJK_RE.findall(text))


def is_finished(text: str) -> bool:
    """True when text ends a sentence (final mark, optionally followed by closing quotes)."""
    return bool(_FINISHED_RE.search(text.rstrip()))


def split_sentences(text: str) -> list[str]:
    """Split text after sentence-final marks, keeping the marks and closing quotes attached."""
    return [s for s in _SENTENCE_RE.findall(text) if s.strip()]


def mask_question_words(text: str) -> str:
    """Replace interrogatives with a space so they yield no tokens and break no real bigram."""
    return _QUESTION_RE.sub(" ", text)


_CLAUSE_END = re.compile(r"[,，;；:：、。?？!！]")
FOCUS_CHARS = 2  # at least this many characters, in whole words, on each side of the question word


@functools.lru_cache(maxsize=4096)
def question_focus(question: str, window: int = FOCUS_CHARS) -> str:
    """The words next to the last interrogative, within its clause: what is asked about.

    "《梦回越王》中,勾践由谁饰演?" -> "勾践由 饰演": the clause before the comma names the
    setting (which story), the words beside 谁 name the fact asked (which paragraph). Whole
    words are taken outward from the interrogative until `window` characters are covered on
    each side. Empty when the question has no interrogative.
    """
    found = list(_QUESTION_RE.finditer(question))
    if not found:
        return ""
    last = found[-1]
    left = mask_question_words(_CLAUSE_END.split(question[: last.start()])[-1]).strip()
    right = mask_question_words(_CLAUSE_END.split(question[last.end() :])[0]).strip()
    # one segmentation for both sides: jieba never joins words across a line break
    words = _jieba_module().lcut(f"{left}\n{right}", HMM=True)
    cut = words.index("\n")
    before = _take(words[:cut][::-1], window)[::-1]  # nearest word first, then back in order
    after = _take(words[cut + 1 :], window)
    return f"{''.join(before)} {''.join(after)}".strip()


def _take(words: list[str], window: int) -> list[str]:
    """Words from the start of the list until they cover window characters."""
    taken: list[str] = []
    for word in words:
        if sum(map(len, taken)) >= window:
            break
        taken.append(word)
    return taken


_jieba_lock = threading.Lock()
_jieba = None


def _jieba_module():
    # jieba builds its prefix dictionary lazily (~0.7 s); do it once, thread-safely.
    global _jieba
    if _jieba is None:
        with _jieba_lock:
            if _jieba is None:
                import logging

                import jieba

                jieba.setLogLevel(logging.WARNING)
                jieba.initialize()
                _jieba = jieba
    return _jieba


def pos_words(text: str) -> list:
    """jieba's part-of-speech words of text (`.word`, `.flag`): its dictionary pass, HMM off
    (~3 µs a character; the HMM finds more unknown words at ~25 µs)."""
    import jieba.posseg as pseg  # noqa: PLC0415 - loaded with jieba's dictionary, on first use

    _jieba_module()
    return list(pseg.cut(text, HMM=False))


def _is_token(tok: str) -> bool:
    return any(ch.isalnum() for ch in tok)


def jieba_words(text: str) -> list[str]:
    """jieba search-mode words of folded text (punctuation and spaces dropped)."""
    return list(_jieba_words_cached(text) if len(text) <= 200 else _jieba_words(text))


def _jieba_words(text: str) -> tuple[str, ...]:
    jieba = _jieba_module()
    return tuple(t for t in jieba.lcut_for_search(fold(text), HMM=True) if _is_token(t.strip()))


# Questions are short and segmented twice per query (index terms, marked words): cache them.
_jieba_words_cached = functools.lru_cache(maxsize=4096)(_jieba_words)


def char_ngrams(text: str) -> list[str]:
    """Character bigrams over each run of Chinese characters (a lone character stays a unigram),
    plus Latin words and numbers whole; immune to segmentation errors on names and OCR noise."""
    folded = fold(text)
    out: list[str] = []
    for m in _CJK_RUN.finditer(folded):
        run = m.group()
        if len(run) == 1:
            out.append(run)
        else:
            out.extend(run[i : i + 2] for i in range(len(run) - 1))
    out.extend(_ASCII_WORD.findall(folded))
    return out


Tokenizer = Callable[[str], list[str]]


def hybrid_tokens(text: str) -> list[str]:
    """The default lexical analyser: jieba search-mode words and, in their own namespace
    (prefixed '§'), character bigrams — the two evidence kinds are counted separately."""
    return jieba_words(text) + ["§" + g for g in char_ngrams(text)]


# How each analyser names a character bigram in the index (None: it has no bigrams).
BIGRAM_PREFIX: dict[str, str | None] = {"jieba+bigram": "§", "jieba": None, "bigram": ""}

TOKENIZERS: dict[str, Tokenizer] = {
    "jieba+bigram": hybrid_tokens,
    "jieba": jieba_words,
    "bigram": char_ngrams,
}


def get_tokenizer(name: str) -> Tokenizer:
    """Look up a tokenizer by the name recorded in an index manifest."""
    try:
        return TOKENIZERS[name]
    except KeyError:
        raise ValueError(f"unknown tokenizer {name!r}; known: {', '.join(TOKENIZERS)}") from None


_opencc_lock = threading.Lock()
_opencc = None


def _t2s(text: str) -> str:
    # OpenCC's converter loads its dictionaries once (~10 ms); a conversion is a few µs.
    global _opencc
    if _opencc is None:
        with _opencc_lock:
            if _opencc is None:
                import opencc

                _opencc = opencc.OpenCC("t2s")
    return _opencc.convert(text)


def normalise_question(text: str) -> str:
    """A question as the archive writes it: simplified characters, half-width, Latin lower-case.

    玉環市有幾個國家４Ａ級旅遊景區? -> 玉环市有几个国家4a级旅游景区?. Case is folded because
    matching is case-insensitive everywhere (fold); show the reader the question as typed.
    """
    return fold(_t2s(text))
