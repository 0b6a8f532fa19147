"""Paragraph repair: rejoin what OCR split, lift floated captions, sort interleaved columns."""

from __future__ import annotations

import functools
from dataclasses import dataclass

from .text import is_finished, repair_spacing, split_sentences

# Documented chunking limits (see README).
MIN_PASSAGE_CHARS = 20  # shorter repaired paragraphs are merged into a neighbour
MAX_PASSAGE_CHARS = 500  # longer ones are split at sentence ends into near-equal parts
NARROW_LINE_CHARS = 20  # a run of >= 3 lines this short is a narrow column cut into the text


@dataclass
class Piece:
    """A run of body text with its source line range and the blank lines before it."""

    text: str
    first: int
    last: int
    gap: int


def repair(pieces: list[Piece]) -> tuple[list[Piece], list[str]]:
    """A story's body pieces -> clean paragraphs (joined, merged, split) and floated captions."""
    kept, floats = _drop_floating_captions(pieces)
    return _split_long(_merge_short(_join_pieces(kept))), floats


def _content_words(text: str) -> set[str]:
    from .text import jieba_words

    return {w for w in jieba_words(text) if len(w) >= 2}


@functools.lru_cache(maxsize=1)
def _general_idf() -> tuple[dict[str, float], float]:
    # jieba's IDF table, computed on a large general corpus: specific words (临浦, 乡贤) weigh
    # much more than the stock phrases of news writing (表示, 接下来, 持续)
    from jieba.analyse import default_tfidf

    return default_tfidf.idf_freq, default_tfidf.median_idf


def sort_interleaved(prev: list[Piece], story: list[Piece], before: int) -> None:
    """A story header printed again means two columns were read interleaved: of the pieces read
    under the first header, move to the previous story those that share clearly more specific
    words with it than with what follows the repeated header."""
    if not prev or before >= len(story):
        return
    idf, median = _general_idf()
    ref_prev = _content_words("".join(p.text for p in prev))
    ref_this = _content_words("".join(p.text for p in story[before:]))
    moved = []
    for p in story[:before]:
        words = _content_words(p.text)
        to_prev = sum(idf.get(w, median) for w in words & ref_prev)
        to_this = sum(idf.get(w, median) for w in words & ref_this)
        if to_prev > 1.25 * to_this:
            moved.append(p)
            ref_prev |= words
    for p in moved:
        story.remove(p)
        prev.append(p)
    prev.sort(key=lambda p: p.first)


def _drop_floating_captions(pieces: list[Piece]) -> tuple[list[Piece], list[str]]:
    """A short line set off by >= 2 blank lines that interrupts an unfinished sentence is a
    photo caption floated into the text (the sentence resumes after it)."""
    kept: list[Piece] = []
    floats: list[str] = []
    for k, p in enumerate(pieces):
        if (p.gap >= 2 and len(p.text) <= 40 and kept and not is_finished(kept[-1].text)
                and k + 1 < len(pieces)):
            floats.append(repair_spacing(p.text))
        else:
            kept.append(p)
    return kept, floats


def _join(a: Piece, b: Piece) -> Piece:
    return Piece(a.text + b.text, min(a.first, b.first), max(a.last, b.last), a.gap)


def _join_pieces(pieces: list[Piece]) -> list[Piece]:
    """Rejoin paragraphs that OCR split mid-sentence; a narrow column cut into a sentence becomes
    a paragraph of its own and the sentence is joined across it."""
    narrow = [len(p.text) <= NARROW_LINE_CHARS for p in pieces]
    out: list[Piece] = []
    k = 0
    while k < len(pieces):
        cur = pieces[k]
        k += 1
        while k < len(pieces) and not is_finished(cur.text):
            run = k
            while run < len(pieces) and narrow[run]:
                run += 1
            if run - k >= 3 and not narrow[k - 1] and run < len(pieces):
                column = pieces[k]
                for p in pieces[k + 1 : run]:
                    column = _join(column, p)
                out.append(column)
                cur = _join(cur, pieces[run])
                k = run + 1
            else:
                cur = _join(cur, pieces[k])
                k += 1
        out.append(cur)
    out.sort(key=lambda p: p.first)
    return [Piece(repair_spacing(p.text), p.first, p.last, p.gap) for p in out]


def _merge_short(paras: list[Piece]) -> list[Piece]:
    out: list[Piece] = []
    pending: Piece | None = None
    for p in paras:
        if pending is not None:
            p, pending = _join(pending, p), None
        if len(p.text) < MIN_PASSAGE_CHARS:
            pending = p
        else:
            out.append(p)
    if pending is not None:
        if out:
            out[-1] = _join(out[-1], pending)
        else:
            out.append(pending)
    return out


def _split_long(paras: list[Piece]) -> list[Piece]:
    out: list[Piece] = []
    for p in paras:
        if len(p.text) <= MAX_PASSAGE_CHARS:
            out.append(p)
            continue
        sentences = split_sentences(p.text)
        parts = -(-len(p.text) // MAX_PASSAGE_CHARS)
        target = len(p.text) / parts
        chunk = ""
        for s in sentences:
            if chunk and len(chunk) + len(s) > target * 1.15:
                out.append(Piece(chunk, p.first, p.last, p.gap))
                chunk = ""
            chunk += s
        if chunk:
            out.append(Piece(chunk, p.first, p.last, p.gap))
    return out
