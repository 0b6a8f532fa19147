"""What the reader's empty page says about the archive: its size, papers and dates, and three
example questions drawn from its own stories (each checked to be answered by the archive)."""

from __future__ import annotations

import hashlib
import re
import threading
from dataclasses import dataclass, field, replace

from ..index import Index
from ..search import Searcher
from ..text import split_sentences

# A count in a clause: Arabic digits (一个, 三篇 are as often figures of speech as counts), an
# optional 余/多 and magnitude, then a measure word that counts things. Years, months, days,
# ranks (级, 届) and percentages are left out: "多少年" or "多少级" made from a date or a grade
# reads badly.
_COUNT_UNITS = ("万元", "亿元", "平方米", "平方公里", "公里", "千米", "公顷", "人次", "场次",
                "个", "名", "位", "家", "所", "座", "项", "场", "件", "条", "户", "辆", "台",
                "套", "亩", "吨", "种", "批", "支", "篇", "本", "册", "份", "张", "处", "株",
                "棵", "栋", "间", "只", "元", "人")
_COUNT = re.compile(r"(?<![第前后近约\d.])(\d+(?:\.\d+)?)(余|多)?([万亿])?("
                    + "|".join(sorted(_COUNT_UNITS, key=len, reverse=True)) + ")")
_ANY_NUMBER = re.compile(r"\d+(?:\.\d+)?|[一二两三四五六七八九十百千万亿]{2,}")
_CLAUSE = re.compile(r"[^,，;；:：。!！?？]+")
# Clauses that lean on what came before (pronouns, connectives, prepositions, the first person)
# make questions with no subject.
_DEPENDENT = re.compile(r"^(?:这|那|其|他|她|它|该|此|我|咱|并|而|但|也|还|又|同时|其中|另外|此外|"
                        r"目前|如今|现在|今年|去年|截至|近年|此前|随后|之后|以及|和|及|与|共|总|已|"
                        r"将|在|从|对|向|把|被|像|如|以|利用|依托|通过|围绕|按照|根据|为了|为|包括|"
                        r"涵盖|其余)")
_ADMIN = re.compile(r"(?:省|市|区|县|镇|乡|村|街道)$")
_NAME_TAGS = ("ns", "nt")  # jieba's place and organisation tags: a subject a reader can place
_QUOTED = re.compile(r"[“”\"《》()（）…—]")  # half a quotation or an aside cut at a comma
_CJK = re.compile(r"[\u4e00-\u9fff]")
MIN_CONTEXT = 6  # Chinese characters before the number: enough to say what is counted where
CLAUSE_CHARS = (10, 32)  # shorter is vague, longer is a mouthful to read as an example
EXAMPLES = 3
MAX_TRIES = 15  # candidate questions asked to verify them, per generation
MAX_PASSAGES = 5000  # passages read looking for candidates, per generation


@dataclass
class Archive:
    """What one generation holds, for the empty page."""

    generation: str
    issues: int
    stories: int
    passages: int
    papers: list[str] = field(default_factory=list)
    first_date: str | None = None
    last_date: str | None = None
    examples: list[str] | None = None  # None until an empty page asks (they cost ~1 s)


def date_text(date: str | None) -> str:
    """'2024-03-05' as 2024年3月5日; anything else as given; '' for none."""
    if not date:
        return ""
    m = re.fullmatch(r"(\d{4})-(\d{1,2})-(\d{1,2})", str(date))
    if not m:
        return str(date)
    return f"{int(m[1])}年{int(m[2])}月{int(m[3])}日"


def edition_text(edition: str | None) -> str:
    """An edition or page as readers say it: A3 -> A3版, 第3版 kept as it is."""
    if not edition:
        return ""
    edition = str(edition).strip()
    return edition if edition.endswith(("版", "页")) else f"{edition}版"


def citation_source(record: dict) -> str:
    """'台州日报 · 2024年3月5日 · A3版' from a passage's issue metadata; '' when it has none."""
    parts = [str(record.get("paper") or "").strip(), date_text(record.get("date")),
             edition_text(record.get("edition"))]
    return " · ".join(p for p in parts if p)


def _issue_meta(index: Index) -> list[dict]:
    """Each issue's metadata: its manifest entry, or its first passage where the manifest has
    none (the same for every passage of one issue)."""
    entries = index.manifest.get("issues", {})
    # the manifest has every issue's metadata (always on Milvus, which has no local segments)
    out: dict[str, dict] = {f: e for f, e in entries.items() if "paper" in e}
    for seg in index.segments:
        for st in seg.stories:
            file = st["file"]
            if file in out or not st["count"]:
                continue
            entry = entries.get(file, {})
            out[file] = entry if "paper" in entry else seg.passage(st["start"])
    return list(out.values())


def _rank(generation: str, key: str) -> str:
    # a stable pseudo-random order, the same for every worker and every restart on a generation
    return hashlib.sha256(f"{generation}\0{key}".encode()).hexdigest()


def _named(text: str) -> int:
    """0 when text opens with a place or organisation, 1 when it names one later, 2 otherwise."""
    import jieba.posseg as pseg  # noqa: PLC0415 - loaded with jieba's dictionary, on first use

    words = [w for w in pseg.cut(text, HMM=False) if w.word.strip()]
    tags = [w.flag in _NAME_TAGS and len(w.word) >= 2 for w in words]
    return 0 if tags and tags[0] else 1 if any(tags) else 2


def _last_place(text: str) -> str | None:
    """The last administrative place named in text (西湖区, 开化县), if any."""
    import jieba.posseg as pseg  # noqa: PLC0415 - loaded with jieba's dictionary, on first use

    places = [w.word for w in pseg.cut(text, HMM=False)
              if w.flag == "ns" and len(w.word) >= 3 and _ADMIN.search(w.word)]
    return places[-1] if places else None


def count_questions(text: str, title: str = "") -> list[tuple[str, str, int]]:
    """(question, the number it asks for, how well it names its subject: 0 best) for each clause
    of text that states one count.

    Chinese asks in place: "慈溪市梳理确定11个履职项目" becomes "慈溪市梳理确定多少个履职项目？".
    A clause that names no place gets the one the story last named before it, as a topic
    ("开化县累计开展走读活动多少场？").
    """
    out = []
    pos = 0
    for sentence in split_sentences(text) or [text]:
        start = text.find(sentence, pos)
        pos = start + len(sentence)
        for m in _CLAUSE.finditer(sentence):
            clause = m.group().strip()
            if not CLAUSE_CHARS[0] <= len(clause) <= CLAUSE_CHARS[1] or _DEPENDENT.match(clause):
                continue
            counts = list(_COUNT.finditer(clause))
            if len(counts) != 1 or len(_ANY_NUMBER.findall(clause)) != 1:
                continue  # a second figure in the question would only confuse it
            c = counts[0]
            if (c.group(1) == "1" or len(_CJK.findall(clause[: c.start()])) < MIN_CONTEXT
                    or _QUOTED.search(clause)):  # "1名" is rarely the fact a story reports
                continue
            question = f"{clause[: c.start()]}多少{c.group(4)}{clause[c.end():]}"
            tier = _named(clause[: c.start()])
            if tier == 2 and (place := _last_place(f"{title}。{text[: start + m.start()]}")):
                question, tier = place + question, 1
            out.append((f"{question}？", c.group(1), tier))
    return out


def _answers(searcher: Searcher, question: str, record: dict, number: str) -> bool:
    """Whether the archive answers the question with the passage it came from and its number."""
    result = searcher.ask(question, 3)
    if not result.answerable or not result.answers:
        return False
    top = result.answers[0]
    same = (top.record["file"], top.record["story"], top.record["paragraph"]) == (
        record["file"], record["story"], record["paragraph"])
    return same and top.short is not None and number in top.record["text"][slice(*top.short)]


def example_questions(searcher: Searcher, n: int = EXAMPLES) -> list[str]:
    """Up to n questions from different stories that the archive answers, the same for one
    generation every time."""
    index = searcher.index
    gen = index.generation
    # stories in a stable shuffled order, read until enough candidates are found: a large
    # archive costs no more than a small one
    stories = sorted(((_rank(gen, f"{st['file']}:{st['story']}"), seg, st)
                      for seg in index.segments for st in seg.stories), key=lambda x: x[0])
    candidates, read = [], 0
    for _, seg, st in stories:
        if read >= MAX_PASSAGES or sum(c[0] == 0 for c in candidates) >= MAX_TRIES:
            break
        for i in range(st["start"], st["start"] + st["count"]):
            record = seg.passage(i)
            read += 1
            for question, number, tier in count_questions(record["text"]):
                if tier < 2:  # a question that names no place or body is too vague
                    candidates.append((tier, _rank(gen, question), question, number, record))
    candidates.sort(key=lambda c: c[:2])
    picked: list[str] = []
    asked: set[tuple[str, int]] = set()
    for _, _, question, number, record in candidates[:MAX_TRIES]:
        if len(picked) >= n:
            break
        if (record["file"], record["story"]) not in asked and _answers(
                searcher, question, record, number):
            picked.append(question)
            asked.add((record["file"], record["story"]))
    return picked


def describe(searcher: Searcher, examples: bool = True) -> Archive:
    """The archive summary of the searcher's generation (uncached: see ArchiveCache); the
    example questions only when asked for, since each is verified by asking it."""
    index = searcher.index
    counts = index.manifest.get("counts", {})
    issues = _issue_meta(index)
    papers = sorted({str(r["paper"]).strip() for r in issues if r.get("paper")})
    dates = sorted(str(r["date"]) for r in issues if r.get("date"))
    return Archive(
        generation=index.generation,
        issues=counts.get("issues", len(issues)),
        stories=counts.get("stories", sum(len(s.stories) for s in index.segments)),
        passages=index.n_passages, papers=papers,
        first_date=dates[0] if dates else None, last_date=dates[-1] if dates else None,
        examples=example_questions(searcher) if examples else None)


def date_range(archive: Archive) -> str:
    """2024年3月5日至2024年6月1日, one date when all are the same, '' when none is known."""
    first, last = date_text(archive.first_date), date_text(archive.last_date)
    return first if first == last else f"{first}至{last}"


class ArchiveCache:
    """One Archive per generation, computed on the first empty page after a switch."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: Archive | None = None

    def get(self, searcher: Searcher, examples: bool = False) -> Archive:
        """The summary of this searcher's generation; with its example questions on request
        (the empty page), so a result page never waits for them."""
        held = self._held
        if (held is not None and held.generation == searcher.index.generation
                and (held.examples is not None or not examples)):
            return held
        with self._lock:  # one worker thread computes it; the others wait a moment
            held = self._held
            if held is None or held.generation != searcher.index.generation:
                held = describe(searcher, examples)
            elif examples and held.examples is None:
                held = replace(held, examples=example_questions(searcher))
            self._held = held
            return held
