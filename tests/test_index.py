"""Index generations: exact rankings, add, replace, atomic publish under crashes, integrity checks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from qa.build import NothingToIndex, add, build
from qa.index import (
    Index,
    IndexCorrupt,
    IndexLocked,
    IndexMismatch,
    IndexMissing,
    current_generation,
    writer_lock,
)
from qa.search import Searcher

from .conftest import CORPUS, EXTRA, ROOT

QUESTIONS = ["老街引入了哪些非遗工坊?", "图书馆的古籍修复体验课每期限报多少人?", "稻鱼米每斤卖多少钱?",
             "白云乡中心小学的孩子们和谁一起上课?", "光伏电站总投资多少?"]


def ranked(index: Index, settings, question: str, k: int = 3) -> list[str]:
    return [a.passage_id for a in Searcher(index, None, settings).ask(question, k).answers]


def test_exact_ranked_ids(built, settings):
    assert ranked(built, settings, "老街引入了哪些非遗工坊?") == [
        "a_2024-01.txt:2:2", "a_2024-01.txt:2:1", "b_2024-02.txt:1:1"]
    assert ranked(built, settings, "图书馆的古籍修复体验课每期限报多少人?") == [
        "b_2024-02.txt:2:2", "b_2024-02.txt:2:1", "a_2024-01.txt:1:2"]


def test_manifest_records_what_was_built(built):
    m = built.manifest
    assert m["generation"] == "gen-000001"
    assert m["tokenizer"] == "jieba+bigram"
    assert m["model"] is None and m["retrievers"] == ["lexical"]
    assert m["counts"] == {"issues": 2, "stories": 4, "passages": 8, "segments": 1}
    assert set(m["versions"]) >= {"qa", "numpy", "faiss", "jieba"}
    files = m["segments"][0]["files"]
    assert {"passages.jsonl", "lexical.keys.npy", "lexical.docs.npy"} <= set(files)
    assert all(len(f["sha256"]) == 64 for f in files.values())


def test_no_index_is_a_clear_error(settings):
    with pytest.raises(IndexMissing, match="no index in .*qa index"):
        Index.load(settings.index_dir)


def test_add_of_an_indexed_issue_is_a_no_op(built, settings):
    report = add([CORPUS / "a_2024-01.txt"], settings, None)
    assert [(o.file, o.status) for o in report.outcomes] == [("a_2024-01.txt", "unchanged")]
    assert report.generation == report.previous == "gen-000001"
    assert current_generation(Path(settings.index_dir)) == "gen-000001"


def test_build_plus_add_equals_full_build(tmp_path, settings):
    build([CORPUS], settings, None)
    report = add([EXTRA / "c_2024-03.txt"], settings, None)
    assert [(o.file, o.status) for o in report.outcomes] == [("c_2024-03.txt", "added")]
    incremental = Index.load(settings.index_dir)
    full_settings = settings.with_(index_dir=str(tmp_path / "full"))
    build([CORPUS, EXTRA], full_settings, None)
    full = Index.load(full_settings.index_dir)

    def passages(ix):
        return sorted((p["file"], p["story"], p["paragraph"], p["text"])
                      for p in (ix.passage(g) for g in range(ix.n_passages)))

    assert passages(incremental) == passages(full)
    assert incremental.manifest["counts"]["segments"] == 2
    for q in QUESTIONS:
        a = Searcher(incremental, None, settings).ask(q, 5)
        b = Searcher(full, None, full_settings).ask(q, 5)
        assert [x.passage_id for x in a.answers] == [x.passage_id for x in b.answers], q
        assert [x.score for x in a.answers] == pytest.approx([x.score for x in b.answers])


def test_changed_issue_replaces_its_passages(tmp_path, settings, corpus_copy):
    build([corpus_copy], settings, None)
    path = corpus_copy / "b_2024-02.txt"
    path.write_text(path.read_text("utf-8").replace("每斤售价12元", "每斤售价15元"), "utf-8")
    refused = add([path], settings, None)  # other content under an indexed name: not silently
    assert [(o.file, o.status) for o in refused.outcomes] == [("b_2024-02.txt", "rejected")]
    assert "pass --replace" in refused.outcomes[0].reason
    assert refused.generation == refused.previous
    report = add([path], settings, None, replace=True)
    assert [(o.file, o.status) for o in report.outcomes] == [("b_2024-02.txt", "replaced")]
    index = Index.load(settings.index_dir)
    texts = [index.passage(g)["text"] for g in range(index.n_passages)]
    assert sum("每斤售价15元" in t for t in texts) == 1
    assert not any("每斤售价12元" in t for t in texts)
    assert index.n_passages == 8
    assert index.manifest["counts"]["issues"] == 2


def test_bad_files_are_rejected_and_the_rest_go_through(tmp_path, built, settings):
    bad = tmp_path / "broken.txt"
    bad.write_bytes(b"\x00\x01binary")
    report = add([bad, EXTRA / "c_2024-03.txt"], settings, None)
    statuses = {o.file: (o.status, o.reason) for o in report.outcomes}
    assert statuses["c_2024-03.txt"] == ("added", None)
    assert statuses["broken.txt"][0] == "rejected"
    assert statuses["broken.txt"][1].startswith("looks binary")  # the name is not repeated
    with pytest.raises(NothingToIndex, match="broken.txt: looks binary"):
        build([bad], settings, None)
    assert current_generation(Path(settings.index_dir)) == report.generation  # untouched


@pytest.mark.parametrize("stage", ["segment-written", "manifest-written"])
def test_crash_half_way_leaves_previous_generation_serving(built, settings, stage):
    before = {q: ranked(built, settings, q) for q in QUESTIONS}
    env = dict(os.environ, QA_FAULT_INJECT=stage, QA_INDEX_DIR=settings.index_dir, QA_MODEL="none")
    proc = subprocess.run([sys.executable, "-m", "qa.cli", "add", str(EXTRA / "c_2024-03.txt")],
                          env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 137, proc.stderr
    assert current_generation(Path(settings.index_dir)) == "gen-000001"
    after = Index.load(settings.index_dir, verify=True)
    assert {q: ranked(after, settings, q) for q in QUESTIONS} == before
    # the next writer cleans up and succeeds
    report = add([EXTRA / "c_2024-03.txt"], settings, None)
    assert report.generation != "gen-000001"
    assert not list((Path(settings.index_dir) / "segments").glob(".tmp-*"))


def _segment_file(settings, name: str) -> Path:
    root = Path(settings.index_dir)
    manifest = json.loads((root / "generations" / "gen-000001.json").read_text("utf-8"))
    return root / "segments" / manifest["segments"][0]["name"] / name


def test_truncated_file_is_a_clear_error(built, settings):
    f = _segment_file(settings, "passages.jsonl")
    f.write_bytes(f.read_bytes()[:100])
    with pytest.raises(IndexCorrupt, match="passages.jsonl has 100 bytes, manifest says"):
        Index.load(settings.index_dir)


def test_altered_file_is_a_clear_error(built, settings):
    f = _segment_file(settings, "passages.jsonl")
    data = f.read_bytes()
    f.write_bytes(data.replace("老街".encode(), "新街".encode(), 1))
    with pytest.raises(IndexCorrupt, match="passages.jsonl checksum does not match"):
        Index.load(settings.index_dir)


def test_missing_file_and_bad_manifest(built, settings):
    _segment_file(settings, "lexical.docs.npy").unlink()
    with pytest.raises(IndexCorrupt, match="lexical.docs.npy is missing"):
        Index.load(settings.index_dir)
    gen = Path(settings.index_dir) / "generations" / "gen-000001.json"
    gen.write_text("{not json", "utf-8")
    with pytest.raises(IndexCorrupt, match="manifest is not valid JSON"):
        Index.load(settings.index_dir)


def test_format_mismatch(built, settings):
    gen = Path(settings.index_dir) / "generations" / "gen-000001.json"
    m = json.loads(gen.read_text("utf-8"))
    m["format"] = 99
    gen.write_text(json.dumps(m), "utf-8")
    with pytest.raises(IndexMismatch, match="index format 99"):
        Index.load(settings.index_dir)


def test_tokenizer_mismatch_on_add(built, settings):
    with pytest.raises(IndexMismatch, match="tokenizer 'jieba\\+bigram'"):
        add([EXTRA], settings.with_(tokenizer="bigram"), None)


def test_second_writer_gets_a_clear_error(settings):
    with writer_lock(Path(settings.index_dir)), pytest.raises(IndexLocked, match="being written by pid"):
        build([CORPUS], settings, None)


def test_old_generations_are_collected(settings, corpus_copy):
    build([corpus_copy], settings.with_(keep_generations=2), None)
    for n in range(3):
        (corpus_copy / f"n{n}.txt").write_text(f"# 新闻标题第{n}号\n\n正文内容第{n}号,用于测试。", "utf-8")
        add([corpus_copy / f"n{n}.txt"], settings.with_(keep_generations=2), None)
    root = Path(settings.index_dir)
    assert sorted(p.stem for p in (root / "generations").glob("*.json")) == [
        "gen-000003", "gen-000004"]
    live = set()
    for g in (root / "generations").glob("*.json"):
        live |= {s["name"] for s in json.loads(g.read_text("utf-8"))["segments"]}
    assert {p.name for p in (root / "segments").iterdir()} == live


def test_new_generation_reuses_loaded_segments(built, settings):
    add([EXTRA], settings, None)
    newer = Index.load(settings.index_dir, reuse=built)
    assert newer.segments[0] is built.segments[0]  # shared, not read again
    assert newer.segments[1] is not built.segments[0]
    assert newer.n_passages == built.n_passages + 2


def test_story_ids_group_the_passages_of_each_story(built):
    records = [built.passage(g) for g in range(built.n_passages)]
    ids = built.story_ids(np.arange(built.n_passages)).tolist()
    stories = [(r["file"], r["story"]) for r in records]
    # the same number exactly when the same story
    assert len(set(ids)) == len(set(stories))
    assert all((ids[i] == ids[j]) == (stories[i] == stories[j])
               for i in range(len(ids)) for j in range(len(ids)))
