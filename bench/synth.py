"""A deterministic synthetic archive: issue files whose words follow jieba's dictionary frequencies.

Recombining the seeds' few hundred sentences gives ~9 k distinct terms and postings far longer
than a real archive's; drawing words from jieba's 349 k-word dictionary by frequency gives a
realistic Zipf vocabulary. Each story also has a handful of topic words that recur in its
paragraphs (what makes one story findable among a million paragraphs), numbers with measure
words, and a headline and byline in the seeds' format.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SURNAMES = list("王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董"
                "袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹"
                "孟熊秦邱江尹薛段雷侯龙史陶黎贺顾毛郝龚邵")
GIVEN = list("伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰萍红鹏飞建国宇晨欣怡浩然子轩梓涵")
UNITS = ["名", "个", "家", "万元", "亿元", "人次", "场", "项", "户", "公里", "亩", "吨", "册", "份"]
PASSAGES_PER_ISSUE = 100
TOPIC_SHARE = 0.18  # share of a story's words drawn from its own topic words
_CJK_WORD = re.compile(r"^[\u4e00-\u9fff]{1,4}$")


@dataclass
class Lexicon:
    """jieba's dictionary words with their sampling distribution."""

    words: np.ndarray  # object array of str
    cdf: np.ndarray  # cumulative probabilities

    @classmethod
    def load(cls) -> Lexicon:
        """Read jieba's dict.txt: Chinese words of 1-4 characters, weighted by frequency."""
        import jieba

        path = Path(jieba.__file__).parent / "dict.txt"
        words, freqs = [], []
        for line in path.read_text(encoding="utf-8").splitlines():
            parts = line.split(" ")
            if len(parts) >= 2 and _CJK_WORD.match(parts[0]):
                words.append(parts[0])
                freqs.append(float(parts[1]))
        p = np.asarray(freqs)
        return cls(np.asarray(words, dtype=object), np.cumsum(p / p.sum()))

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """n words drawn by frequency."""
        return self.words[np.minimum(np.searchsorted(self.cdf, rng.random(n)), len(self.cdf) - 1)]


def _name(rng: np.random.Generator) -> str:
    return rng.choice(SURNAMES) + "".join(rng.choice(GIVEN, size=int(rng.integers(1, 3))))


def _sentence(rng: np.random.Generator, lex: Lexicon, topic: np.ndarray) -> str:
    n = int(rng.integers(8, 20))
    words = lex.sample(rng, n)
    own = rng.random(n) < TOPIC_SHARE
    words[own] = rng.choice(topic, size=int(own.sum()))
    out = []
    for i, w in enumerate(words):
        out.append(w)
        if rng.random() < 0.06:
            out.append(f"{int(rng.integers(2, 5000))}{rng.choice(UNITS)}")
        if i and i < n - 1 and rng.random() < 0.12:
            out.append(",")
    return "".join(out) + "。"


def write_issue(path: Path, rng: np.random.Generator, lex: Lexicon, passages: int) -> int:
    """One issue file of about `passages` paragraphs in stories of 3-8 paragraphs."""
    lines: list[str] = []
    written = 0
    while written < passages:
        topic = lex.sample(rng, 40)
        topic = np.array([w for w in topic if len(w) >= 2][:8] or ["新闻"], dtype=object)
        head = "".join(rng.choice(topic, size=2)) + " " + "".join(lex.sample(rng, 2))
        byline = " ".join(_name(rng) for _ in range(int(rng.integers(1, 4))))
        lines += [f"## {head}", "", byline, ""]
        for _ in range(min(int(rng.integers(3, 9)), passages - written)):
            n = int(rng.integers(2, 6))
            lines += ["".join(_sentence(rng, lex, topic) for _ in range(n)), ""]
            written += 1
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return written


def generate(out: Path, n_passages: int, seed: int = 0) -> dict:
    """Write issue files totalling about n_passages paragraphs into out (cached by a stamp)."""
    stamp = out / "SYNTH.json"
    if stamp.exists():
        info = json.loads(stamp.read_text())
        if info["passages"] == n_passages and info["seed"] == seed:
            return info
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.txt"):
        old.unlink()
    lex = Lexicon.load()
    rng = np.random.default_rng(seed)
    files, chars = 0, 0
    for i in range(0, n_passages, PASSAGES_PER_ISSUE):
        path = out / f"synth-{i // PASSAGES_PER_ISSUE:06d}.txt"
        write_issue(path, rng, lex, min(PASSAGES_PER_ISSUE, n_passages - i))
        files += 1
        chars += path.stat().st_size // 3
    info = {"passages": n_passages, "seed": seed, "files": files, "approx_chars": chars,
            "lexicon_words": int(len(lex.words))}
    tmp = stamp.with_suffix(".tmp")
    tmp.write_text(json.dumps(info))
    os.replace(tmp, stamp)
    return info


def make_questions(index_dir: str, n: int, seed: int = 1) -> list[dict]:
    """Questions in the eval format, each written from one random passage: half of a sentence's
    words in a new order plus an interrogative (lexical by construction; for latency and a
    scale sanity check, not for quality claims)."""
    from qa.index import Index
    from qa.text import jieba_words, split_sentences

    index = Index.load(index_dir, verify=False)
    rng = np.random.default_rng(seed)
    out = []
    for gid in rng.choice(index.n_passages, size=min(n, index.n_passages), replace=False):
        rec = index.passage(int(gid))
        sentences = [s for s in split_sentences(rec["text"]) if len(s) >= 12] or [rec["text"]]
        sentence = sentences[int(rng.integers(len(sentences)))]
        words = [w for w in jieba_words(sentence) if len(w) >= 2]
        keep = sorted(rng.choice(len(words), size=max(2, len(words) // 2), replace=False)) \
            if len(words) > 2 else range(len(words))
        out.append({"id": f"s{gid}", "question": "".join(words[i] for i in keep) + "是什么?",
                    "file": rec["file"], "title": rec["title"], "answer": sentence.strip(),
                    "type": "synthetic"})
    return out


def vocabulary_size(index_dir: str) -> dict:
    """Distinct jieba words and bigrams in a built index."""
    from qa.index import Index

    index = Index.load(index_dir, verify=False)
    keys = np.unique(np.concatenate([np.asarray(s.postings.vocab.keys) for s in index.segments]))
    bigrams = int(np.count_nonzero(keys >= np.uint64(1 << 63)))  # bigram keys carry the top bit
    return {"words": int(keys.size) - bigrams, "bigrams": bigrams}
