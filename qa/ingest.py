"""Issue file -> stories -> clean, citable paragraphs (OCR repaired here, never in the source)."""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from dataclasses import asdict, dataclass, field
from datetime import date as _date
from pathlib import Path

from .repair import Piece, repair, sort_interleaved
from .text import CJK, cjk_count, repair_spacing

# Documented chunking limits (see README "Ingest").
MAX_HEADLINE_CHARS = 32  # an unmarked headline is a short line
MAX_FILE_BYTES = 20 * 1024 * 1024
# Issue metadata an editor gives (报名, 日期, 版次): bounded, so a citation line stays a line.
MAX_PAPER_CHARS = 40
MAX_EDITION_CHARS = 20
META_FIELDS = ("paper", "date", "edition")
SIDECAR_SUFFIX = ".meta.json"  # 005.txt's metadata may sit beside it in 005.txt.meta.json


class IngestError(ValueError):
    """An issue file that cannot be ingested; the message names the file."""

    def __init__(self, name: str, reason: str):
        super().__init__(f"{name}: {reason}")
        self.name = name
        self.reason = reason  # without the name: a report that already names the file uses this


class MetaError(ValueError):
    """Issue metadata that is not acceptable (a bad date, an over-long paper name)."""


@dataclass
class Passage:
    """One clean paragraph with where it came from."""

    paragraph: int
    text: str
    lines: tuple[int, int]


@dataclass
class Story:
    """A headline and its paragraphs."""

    title: str
    subtitle: str | None = None
    byline: str | None = None
    captions: list[str] = field(default_factory=list)
    level: int = 0  # number of '#' marks; 0 for an unmarked headline
    line: int = 0  # source line of the headline (0: untitled)
    passages: list[Passage] = field(default_factory=list)


@dataclass
class Issue:
    """One issue file, parsed."""

    file: str
    sha256: str
    encoding: str
    stories: list[Story]
    paper: str | None = None  # 报名, given by the editor (never guessed from the text)
    date: str | None = None  # YYYY-MM-DD
    edition: str | None = None  # 版次 / page, as the editor writes it ("A3", "第3版")
    raw: bytes = field(default=b"", repr=False)  # the file's bytes, kept in the source archive

    @property
    def meta(self) -> dict[str, str | None]:
        """The editor's metadata: paper, date, edition (None where not given)."""
        return {"paper": self.paper, "date": self.date, "edition": self.edition}

    def to_json(self) -> dict:
        """The `qa parse --json` shape."""
        return {
            "file": self.file,
            "sha256": self.sha256,
            "encoding": self.encoding,
            **self.meta,
            "stories": [
                {k: v for k, v in asdict(s).items() if k not in ("level", "line")}
                | {"passages": [{"paragraph": p.paragraph, "text": p.text, "lines": list(p.lines)}
                                for p in s.passages]}
                for s in self.stories
            ],
        }


# ---------------------------------------------------------------- decoding

def _utf16(data: bytes) -> str | None:
    # A BOM says UTF-16; text that decodes into unassigned or private code points was not
    # UTF-16 after all (random bytes can start with FF FE), so the other decoders get it.
    try:
        text = data.decode("utf-16")
    except UnicodeDecodeError:
        return None
    odd = sum(1 for ch in text if ch != "\ufeff" and unicodedata.category(ch) in ("Cn", "Co",
                                                                                 "Cs", "Cf"))
    return text.lstrip("\ufeff") if odd <= len(text) // 100 else None


def decode_issue(data: bytes, name: str) -> tuple[str, str]:
    """Decode UTF-8 (with or without BOM), UTF-16 with a BOM, or GB18030; reject empty, binary
    or undecodable data."""
    if len(data) > MAX_FILE_BYTES:
        raise IngestError(name, f"file is {len(data)} bytes, over the {MAX_FILE_BYTES} limit")
    if not data.strip():
        raise IngestError(name, "file is empty")
    text: str | None = None
    encoding = ""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        text = _utf16(data)
        encoding = "utf-16-le" if data.startswith(b"\xff\xfe") else "utf-16-be"
    if text is None:
        if b"\x00" in data:
            raise IngestError(name, "looks binary (NUL bytes), not a text issue file; if it is "
                                    "UTF-16 text, save it with a byte-order mark or as UTF-8")
        encoding = "utf-8-sig" if data.startswith(b"\xef\xbb\xbf") else "utf-8"
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError:
            try:
                text, encoding = data.decode("gb18030"), "gb18030"
            except UnicodeDecodeError:
                raise IngestError(
                    name, "not valid UTF-8 or GB18030 text (nor UTF-16 with a byte-order mark); "
                          f"save it as UTF-8, e.g. `iconv -f BIG5 -t UTF-8 {name} > "
                          f"utf8-{name}` for Big5") from None
    controls = sum(1 for ch in text if ord(ch) < 32 and ch not in "\r\n\t\f")
    if controls > max(8, len(text) // 100):
        raise IngestError(name, f"looks binary ({controls} control characters), not text")
    if cjk_count(text) == 0:
        raise IngestError(name, "contains no Chinese text")
    return text, encoding


# ---------------------------------------------------------------- issue metadata

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def clean_meta(paper: object = None, date: object = None, edition: object = None) -> dict:
    """Checked metadata: stripped strings or None; MetaError says what is wrong."""
    out: dict[str, str | None] = {}
    for key, value, limit in (("paper", paper, MAX_PAPER_CHARS), ("date", date, 10),
                              ("edition", edition, MAX_EDITION_CHARS)):
        if value is None:
            out[key] = None
            continue
        if not isinstance(value, str):
            raise MetaError(f"{key} must be a string")
        value = " ".join(value.split())  # one line: newlines or tabs would break a citation
        if any(unicodedata.category(ch) == "Cc" for ch in value):
            raise MetaError(f"{key} holds control characters")
        if len(value) > limit:
            raise MetaError(f"{key} is {len(value)} characters; the limit is {limit}")
        out[key] = value or None
    if out["date"] is not None:
        try:
            if not _DATE.match(out["date"]):
                raise ValueError
            _date.fromisoformat(out["date"])
        except ValueError:
            raise MetaError(f"date {out['date']!r} is not a date in the form YYYY-MM-DD "
                            "(e.g. 2024-03-05)") from None
    return out


def sidecar_path(path: Path) -> Path:
    """Where an issue file's metadata sidecar sits: X.txt -> X.txt.meta.json."""
    return path.with_name(path.name + SIDECAR_SUFFIX)


def read_sidecar(path: Path) -> dict | None:
    """The checked metadata in an issue file's sidecar, or None when it has none."""
    side = sidecar_path(path)
    if not side.is_file():
        return None
    try:
        obj = json.loads(side.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise MetaError(f"{side.name} is not readable JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise MetaError(f"{side.name} must hold a JSON object")
    unknown = sorted(set(obj) - set(META_FIELDS))
    if unknown:
        raise MetaError(f"{side.name}: unknown field(s) {', '.join(unknown)}; it may hold "
                        "paper, date, edition")
    try:
        cleaned = clean_meta(obj.get("paper"), obj.get("date"), obj.get("edition"))
    except MetaError as exc:
        raise MetaError(f"{side.name}: {exc}") from None
    # only the fields the sidecar names: one it leaves out keeps what the archive holds (an
    # explicit null or "" clears it)
    return {k: v for k, v in cleaned.items() if k in obj}


# ---------------------------------------------------------------- line classification

_MARKED = re.compile(r"^(#{1,6})\s*(.+?)\s*#*$")
_NAME_TOKEN = re.compile(f"^[{CJK}]{{1,4}}$")
_PAREN_BYLINE = re.compile(
    rf"(?:^|(?<=[\s。!?!?…”\"』」]))[(（]\s*([{CJK}]{{2,4}}(?:\s+[{CJK}]{{2,4}}){{0,5}}|[{CJK}]{{2,8}})"
    rf"\s*[)）]\s*$"
)
_CAPTION = re.compile(
    r"[(（]\s*图片由.{1,40}?提供\s*[)）]\s*$|供图\s*$|[(（][^()（）]{0,20}摄\s*[)）]\s*$")
_NO_HEADLINE_END = set("。,,、;;:!?!?…")


def _byline_of_line(line: str) -> str | None:
    """Return the names if the whole line is a byline ('沈梦旦 荀筱筱', '彭妍', '陈 烨')."""
    tokens = line.split()
    if not 1 <= len(tokens) <= 6 or not all(_NAME_TOKEN.match(t) for t in tokens):
        return None
    if all(len(t) == 1 for t in tokens):  # '陈 烨': one name with an OCR space inside
        return "".join(tokens) if 2 <= len(tokens) <= 3 else None
    if any(len(t) == 1 for t in tokens) or (len(tokens) == 1 and len(tokens[0]) > 3):
        return None
    return " ".join(tokens)


def _headline_candidate(line: str) -> bool:
    return (
        4 <= len(line) <= MAX_HEADLINE_CHARS
        and line[-1] not in _NO_HEADLINE_END
        and cjk_count(line) >= 4
        and not line.startswith(("(", "（"))
        and not _CAPTION.search(line)
    )


@dataclass
class _Line:
    no: int  # 1-based source line
    text: str
    gap: int  # blank lines before it


def _lines(text: str) -> list[_Line]:
    out, gap = [], 0
    for no, raw in enumerate(text.replace("\r\n", "\n").replace("\r", "\n").split("\n"), 1):
        line = raw.replace("\u3000", " ").replace("\ufeff", "").strip()
        if not line:
            gap += 1
            continue
        out.append(_Line(no, line, gap))
        gap = 0
    return out


def _merge_names(byline: str | None, more: str) -> str:
    # A story may carry its bylines at the top and again at the end: each name once.
    names = (byline or "").split()
    names += [n for n in more.split() if n not in names]
    return " ".join(dict.fromkeys(names))


def _same_title(a: str, b: str) -> bool:
    return re.sub(r"\s+", "", a) == re.sub(r"\s+", "", b)


# ---------------------------------------------------------------- parse

def parse_text(text: str, name: str, sha256: str = "", encoding: str = "utf-8") -> Issue:
    """Parse decoded issue text into stories and repaired passages."""
    lines = _lines(text)
    stories: list[Story] = []
    pieces: dict[int, list[Piece]] = {}
    current: Story | None = None
    closed = False  # the current story's closing byline has been seen
    repeats: list[tuple[Story, int]] = []  # (story, its pieces before the repeated header)
    i = 0

    def start(title: str, line_no: int, level: int) -> Story:
        nonlocal current, closed
        for s in stories:  # a repeated story header continues that story
            if title and _same_title(s.title, title):
                repeats.append((s, len(pieces[id(s)])))
                current, closed = s, False
                return s
        current, closed = Story(title=title, level=level, line=line_no), False
        stories.append(current)
        pieces[id(current)] = []
        return current

    while i < len(lines):
        ln = lines[i]
        nxt = lines[i + 1].text if i + 1 < len(lines) else ""
        nxt2 = lines[i + 2].text if i + 2 < len(lines) else ""
        marked = _MARKED.match(ln.text)
        headline = None
        if marked:
            headline, level = marked.group(2).strip(), len(marked.group(1))
        elif _headline_candidate(ln.text) and (
            _byline_of_line(nxt) or (_headline_candidate(nxt) and _byline_of_line(nxt2))
        ):
            headline, level = ln.text, 0
        if headline is not None:
            story = start(re.sub(r"\s+", " ", headline), ln.no, level)
            i += 1
            # optional subtitle, then a byline line
            if (i + 1 < len(lines) and _headline_candidate(lines[i].text)
                    and not _byline_of_line(lines[i].text) and _byline_of_line(lines[i + 1].text)):
                story.subtitle = story.subtitle or lines[i].text
                i += 1
            if i < len(lines) and (names := _byline_of_line(lines[i].text)):
                story.byline = story.byline or names
                i += 1
            continue
        if current is None or closed:
            start("", 0, 0)
        assert current is not None
        if _CAPTION.search(ln.text) and len(ln.text) <= 80:
            current.captions.append(repair_spacing(ln.text))
            i += 1
            continue
        body = ln.text
        if m := _PAREN_BYLINE.search(body):
            current.byline = _merge_names(current.byline, m.group(1))
            body = body[: m.start()].rstrip()
            closed = True
        if body:
            pieces[id(current)].append(Piece(body, ln.no, ln.no, ln.gap))
        i += 1

    for story, before in repeats:
        k = stories.index(story)
        if k > 0:
            sort_interleaved(pieces[id(stories[k - 1])], pieces[id(story)], before)
    for story in stories:
        paras, floats = repair(pieces[id(story)])
        story.captions.extend(floats)
        story.passages = [Passage(n, p.text, (p.first, p.last)) for n, p in enumerate(paras, 1)]
    stories = [s for s in stories if s.passages or s.title]
    if not any(s.passages for s in stories):
        raise IngestError(name, "no story text found")
    return Issue(file=name, sha256=sha256, encoding=encoding, stories=stories)


def parse_bytes(data: bytes, name: str) -> Issue:
    """Decode and parse one issue file's bytes."""
    text, encoding = decode_issue(data, name)
    issue = parse_text(text, name, hashlib.sha256(data).hexdigest(), encoding)
    issue.raw = data
    return issue


def parse_file(path: str | Path) -> Issue:
    """Read and parse one issue file; errors name the file."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise IngestError(path.name, f"cannot read ({exc.strerror or exc})") from exc
    return parse_bytes(data, path.name)


def is_issue_name(name: str) -> bool:
    """An issue file's name ends in .txt, in any case (X.TXT too)."""
    return name.lower().endswith(".txt") and not name.startswith(".")


def scan(paths: list[str | Path]) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Expand files and directories (their *.txt, any case) into a sorted, de-duplicated file
    list, and what was skipped in the directories, with why."""
    out: list[Path] = []
    skipped: list[tuple[Path, str]] = []
    for p in map(Path, paths):
        if not p.is_dir():
            if p.name.lower().endswith(".txt" + SIDECAR_SUFFIX):  # `qa add 005*` names both
                skipped.append((p, "a metadata sidecar (read with its issue file)"))
            else:
                out.append(p)
            continue
        for q in sorted(p.iterdir()):
            if q.name.startswith(".") or q.name.lower().endswith(".txt" + SIDECAR_SUFFIX):
                continue  # hidden files, and the metadata sidecars read with their issue
            if q.is_dir():
                skipped.append((q, "a directory (sub-directories are not searched)"))
            elif not is_issue_name(q.name):
                skipped.append((q, "not a .txt issue file"))
            elif q.is_file():
                out.append(q)
    return list(dict.fromkeys(out)), skipped


def issue_files(paths: list[str | Path]) -> list[Path]:
    """Expand files and directories (their *.txt, any case) into a sorted, de-duplicated list."""
    return scan(paths)[0]
