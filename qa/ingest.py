"""Issue file -> stories -> clean, citable paragraphs (OCR repaired here, never in the source)."""

from __future__ import annotations

import hashlib
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .repair import Piece, repair, sort_interleaved
from .text import CJK, cjk_count, repair_spacing

# Documented chunking limits (see README "Ingest").
MAX_HEADLINE_CHARS = 32  # an unmarked headline is a short line
MAX_FILE_BYTES = 20 * 1024 * 1024


class IngestError(ValueError):
    """An issue file that cannot be ingested; the message names the file."""


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

    def to_json(self) -> dict:
        """The `qa parse --json` shape."""
        return {
            "file": self.file,
            "sha256": self.sha256,
            "encoding": self.encoding,
            "stories": [
                {k: v for k, v in asdict(s).items() if k not in ("level", "line")}
                | {"passages": [{"paragraph": p.paragraph, "text": p.text, "lines": list(p.lines)}
                                for p in s.passages]}
                for s in self.stories
            ],
        }


# ---------------------------------------------------------------- decoding

def decode_issue(data: bytes, name: str) -> tuple[str, str]:
    """Decode UTF-8 (with or without BOM) or GB18030; reject empty, binary or undecodable data."""
    if len(data) > MAX_FILE_BYTES:
        raise IngestError(f"{name}: file is {len(data)} bytes, over the {MAX_FILE_BYTES} limit")
    if not data.strip():
        raise IngestError(f"{name}: file is empty")
    if b"\x00" in data:
        raise IngestError(f"{name}: looks binary (NUL bytes), not a text issue file")
    encoding = "utf-8-sig" if data.startswith(b"\xef\xbb\xbf") else "utf-8"
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError:
        try:
            text, encoding = data.decode("gb18030"), "gb18030"
        except UnicodeDecodeError:
            raise IngestError(f"{name}: not valid UTF-8 or GB18030 text") from None
    controls = sum(1 for ch in text if ord(ch) < 32 and ch not in "\r\n\t\f")
    if controls > max(8, len(text) // 100):
        raise IngestError(f"{name}: looks binary ({controls} control characters), not text")
    if cjk_count(text) == 0:
        raise IngestError(f"{name}: contains no Chinese text")
    return text, encoding


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
            names = " ".join(m.group(1).split())
            current.byline = f"{current.byline} {names}" if current.byline else names
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
        raise IngestError(f"{name}: no story text found")
    return Issue(file=name, sha256=sha256, encoding=encoding, stories=stories)


def parse_bytes(data: bytes, name: str) -> Issue:
    """Decode and parse one issue file's bytes."""
    text, encoding = decode_issue(data, name)
    return parse_text(text, name, hashlib.sha256(data).hexdigest(), encoding)


def parse_file(path: str | Path) -> Issue:
    """Read and parse one issue file; errors name the file."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise IngestError(f"{path.name}: cannot read ({exc.strerror or exc})") from exc
    return parse_bytes(data, path.name)


def issue_files(paths: list[str | Path]) -> list[Path]:
    """Expand files and directories (their *.txt) into a sorted, de-duplicated file list."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out.extend(sorted(q for q in p.glob("*.txt") if q.is_file()))
        else:
            out.append(p)
    return list(dict.fromkeys(out))
