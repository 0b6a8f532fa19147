"""The archive loses nothing: lost CURRENT, racing writers, damaged segments, a deleted lock,
hand-edited manifests, leftovers and OS errors (issue 9, items 1-3, 6, 7, 13)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import qa.build as build_module
from qa.build import ArchiveMoved, add, build
from qa.cli import cli
from qa.generations import generation_names, manifest_checksum
from qa.index import Index, IndexCorrupt, IndexLocked, IndexLost, current_generation, writer_lock

from .conftest import CORPUS, EXTRA, ROOT


@pytest.fixture
def qa(runner, settings):
    env = {"QA_INDEX_DIR": settings.index_dir, "QA_MODEL": "none"}

    def invoke(*args):
        return runner.invoke(cli, [str(a) for a in args], env=env)

    return invoke


@pytest.fixture
def two_generations(settings) -> Path:
    """gen-000001 (the corpus) and gen-000002 (+ the extra issue in its own segment)."""
    build([CORPUS], settings, None)
    add([EXTRA / "c_2024-03.txt"], settings, None)
    return Path(settings.index_dir)


def _segments(root: Path) -> set[str]:
    return {p.name for p in (root / "segments").iterdir()}


def _manifest(root: Path, gen: str) -> dict:
    return json.loads((root / "generations" / f"{gen}.json").read_text("utf-8"))


def _extra_segment(root: Path) -> Path:
    name = _manifest(root, "gen-000002")["issues"]["c_2024-03.txt"]["segment"]
    return root / "segments" / name


# ------------------------------------------------------------------ 1. a lost CURRENT

@pytest.mark.parametrize("damage", ["missing", "empty", "names a generation that is gone"])
def test_a_lost_current_stops_every_writer_and_recover_restores_it(qa, two_generations, damage,
                                                                   tmp_path):
    root = two_generations
    current = root / "CURRENT"
    if damage == "missing":
        current.unlink()
    elif damage == "empty":
        current.write_text("", "utf-8")
    else:
        current.write_text("gen-000000\n", "utf-8")
    segments = _segments(root)
    other = tmp_path / "d_2024-04.txt"
    other.write_text("# 新闻标题\n\n正文内容,用于测试。", "utf-8")
    for args in (("add", other), ("index", CORPUS)):
        result = qa(*args)
        assert result.exit_code == 1
        errors = [x for x in result.output.splitlines() if not x.startswith("note: ")]
        assert len(errors) == 1 and errors[0].startswith("Error: "), result.output
        assert "nothing was written. The newest generation that verifies is gen-000002: " \
               "`qa recover` publishes it" in errors[0]
    assert _segments(root) == segments  # nothing collected
    assert generation_names(root) == ["gen-000001", "gen-000002"]

    result = qa("recover")
    assert result.exit_code == 0, result.output
    assert "recovered: CURRENT now names gen-000002" in result.output
    assert Index.load(root, verify=True).manifest["counts"]["issues"] == 3
    added = qa("add", other)
    assert added.exit_code == 0, added.output
    assert "published gen-000003" in added.output  # a new name, never gen-000001 again


def test_readers_say_how_to_recover(qa, two_generations):
    (two_generations / "CURRENT").unlink()
    with pytest.raises(IndexLost, match="qa recover"):
        Index.load(two_generations)
    assert "qa recover" in qa("info").output


def test_generation_names_are_never_reused(settings, two_generations):
    (_extra_segment(two_generations) / "passages.jsonl").write_bytes(b"")  # gen-000002 is bad
    from qa.generations import recover

    assert recover(two_generations)[1] == "gen-000001"
    assert generation_names(two_generations) == ["gen-000001"]
    report = add([EXTRA / "c_2024-03.txt"], settings, None)
    assert report.generation == "gen-000003"


# ------------------------------------------------------------------ 2. rebuild racing an add

def test_a_rebuild_never_drops_an_add_that_published_while_it_ran(settings, monkeypatch,
                                                                  tmp_path):
    build([CORPUS], settings, None)
    real_embed = build_module._embed

    def embed_while_an_editor_adds(encoder, records, progress):
        monkeypatch.setattr(build_module, "_embed", real_embed)
        add([EXTRA / "c_2024-03.txt"], settings, None)  # publishes gen-000002 meanwhile
        return real_embed(encoder, records, progress)

    monkeypatch.setattr(build_module, "_embed", embed_while_an_editor_adds)
    with pytest.raises(ArchiveMoved, match="changed while this build ran .gen-000001 -> "
                                           "gen-000002.*nothing was published"):
        build([CORPUS], settings, None)
    index = Index.load(settings.index_dir, verify=True)
    assert index.generation == "gen-000002"
    assert "c_2024-03.txt" in index.manifest["issues"]


# ------------------------------------------------------------------ 3. damaged segments

def _flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", ["flipped byte", "truncated", "missing"])
def test_writers_never_publish_on_a_damaged_segment(settings, two_generations, damage, qa,
                                                    tmp_path):
    root = two_generations
    base = root / "segments" / _manifest(root, "gen-000002")["segments"][0]["name"]
    target = base / ("passages.jsonl" if damage != "missing" else "lexical.docs.npy")
    if damage == "flipped byte":
        _flip_byte(target)
    elif damage == "truncated":
        target.write_bytes(target.read_bytes()[:50])
    else:
        target.unlink()
    other = tmp_path / "d_2024-04.txt"
    other.write_text("# 新闻标题\n\n正文内容,用于测试。", "utf-8")
    result = qa("add", other)
    assert result.exit_code == 1
    assert result.output.startswith("Error: segment seg-")
    assert "nothing was published" in result.output
    assert current_generation(root) == "gen-000002"
    assert generation_names(root) == ["gen-000001", "gen-000002"]


def test_recover_skips_generations_that_fail_and_garbage_collection_keeps_the_good_one(
        settings, two_generations, qa):
    _flip_byte(_extra_segment(two_generations) / "passages.jsonl")  # only gen-000002 uses it
    result = qa("recover")
    assert result.exit_code == 0, result.output
    assert "skipped gen-000002: segment seg-" in result.output
    assert "recovered: CURRENT now names gen-000001 (was gen-000002)" in result.output
    assert qa("verify").output.startswith("ok: gen-000001")
    for n in range(4):  # more publishes than keep_generations: gen-000001's data survives
        extra = Path(settings.index_dir).parent / f"n{n}.txt"
        extra.write_text(f"# 新闻标题第{n}号\n\n正文内容第{n}号,用于测试。", "utf-8")
        assert qa("add", extra).exit_code == 0
    assert qa("verify").exit_code == 0


def test_recover_with_nothing_good_is_a_clear_error(built, settings, qa):
    root = Path(settings.index_dir)
    _flip_byte(root / "segments" / _manifest(root, "gen-000001")["segments"][0]["name"]
               / "passages.jsonl")
    result = qa("recover")
    assert result.exit_code == 1
    assert result.output.startswith("Error: no generation in ")
    assert "rebuild with `qa index`" in result.output


# ------------------------------------------------------------------ 6. lock and manifest seal

def test_deleting_the_lock_file_does_not_let_a_second_writer_in(built, settings):
    root = Path(settings.index_dir)
    with writer_lock(root):
        (root / "LOCK").unlink()
        with pytest.raises(IndexLocked, match="being written by another process"):
            add([EXTRA], settings, None)
    assert add([EXTRA], settings, None).generation == "gen-000002"


def _drop_a_segment(m: dict) -> None:
    gone = m["segments"].pop()
    m["issues"] = {f: i for f, i in m["issues"].items() if i["segment"] != gone["name"]}
    m["counts"] = {"issues": len(m["issues"]), "segments": len(m["segments"]),
                   "passages": sum(s["passages"] for s in m["segments"]),
                   "stories": sum(i["stories"] for i in m["issues"].values())}


@pytest.mark.parametrize("edit", [
    _drop_a_segment,
    lambda m: m.update(tokenizer="bigram"),
    lambda m: m["counts"].update(passages=m["counts"]["passages"] + 100),
    lambda m: m.update(checksum="sha256:" + "0" * 64),
    lambda m: m.pop("checksum"),
], ids=["segment removed", "tokenizer changed", "counts inflated", "checksum forged",
        "checksum removed"])
def test_a_hand_edited_manifest_fails_verify_and_load(qa, two_generations, edit):
    path = two_generations / "generations" / "gen-000002.json"
    m = json.loads(path.read_text("utf-8"))
    edit(m)
    path.write_text(json.dumps(m, ensure_ascii=False), "utf-8")
    result = qa("verify")
    assert result.exit_code == 1
    assert "manifest checksum does not match (edited by hand or damaged)" in result.output
    with pytest.raises(IndexCorrupt, match="manifest checksum does not match"):
        Index.load(two_generations, verify=False)


def test_consistent_counts_are_checked_even_under_a_valid_seal(two_generations):
    path = two_generations / "generations" / "gen-000002.json"
    m = json.loads(path.read_text("utf-8"))
    m["counts"]["passages"] += 1
    m["checksum"] = manifest_checksum(m)  # resealed: a writer bug, not a hand edit
    path.write_text(json.dumps(m), "utf-8")
    with pytest.raises(IndexCorrupt, match="counts disagree"):
        Index.load(two_generations)


# ------------------------------------------------------------------ 7. leftovers

def test_any_writer_removes_leftovers_even_when_it_publishes_nothing(built, settings):
    root = Path(settings.index_dir)
    (root / ".CURRENT.0badf00d.tmp").write_text("gen-000009", "utf-8")
    (root / ".LAST_GENERATION.0badf00d.tmp").write_text("gen-000009", "utf-8")
    (root / "generations" / ".gen-000002.json.0badf00d.tmp").write_text("{}", "utf-8")
    (root / "generations" / "gen-000002.json").write_text("{}", "utf-8")  # never published
    (root / "segments" / ".tmp-seg-0123456789ab").mkdir()
    (root / "segments" / "seg-orphan000000").mkdir()  # renamed into place, never published
    (root / "sources" / ".0badf00d.txt.0badf00d.tmp").write_text("x", "utf-8")
    (root / "sources" / f"{'0' * 64}.txt").write_text("x", "utf-8")  # kept, never published
    before = _segments(root) - {".tmp-seg-0123456789ab", "seg-orphan000000"}
    sources = {p.name for p in (root / "sources").glob("*.txt")} - {f"{'0' * 64}.txt"}
    report = add([CORPUS / "a_2024-01.txt"], settings, None)
    assert report.generation == report.previous == "gen-000001"  # published nothing
    assert sorted(p.name for p in root.iterdir()) == [
        "CURRENT", "LAST_GENERATION", "LAST_PUBLISHED", "generations", "segments", "sources"]
    assert {p.name for p in (root / "sources").iterdir()} == sources
    assert [p.name for p in (root / "generations").iterdir()] == ["gen-000001.json"]
    assert _segments(root) == before


# ------------------------------------------------------------------ 13. OS errors

def _qa_add(settings, fault: str, *files: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, QA_FAULT_INJECT=fault, QA_INDEX_DIR=settings.index_dir,
               QA_MODEL="none")
    return subprocess.run([sys.executable, "-m", "qa.cli", "add", *map(str, files)], env=env,
                          cwd=ROOT, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("fault, message", [
    ("segment-write:ENOSPC", "No space left on device"),
    ("segment-written:EROFS", "Read-only file system"),
    ("manifest-written:EIO", "Input/output error"),
])
def test_os_errors_are_one_line_and_say_nothing_was_published(built, settings, fault, message):
    proc = _qa_add(settings, fault, EXTRA / "c_2024-03.txt")
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        f"Error: cannot write the index: {message}; nothing was published, gen-000001 still "
        "serves"], proc.stderr
    root = Path(settings.index_dir)
    assert current_generation(root) == "gen-000001"
    assert not list((root / "segments").glob(".tmp-*"))  # a failed write cleans up after itself
    report = add([EXTRA / "c_2024-03.txt"], settings, None)  # the next writer succeeds
    assert Index.load(root, verify=True).generation == report.generation != "gen-000001"


def test_a_failure_after_the_switch_is_a_warning_not_a_failed_publish(built, settings):
    proc = _qa_add(settings, "collect-garbage:EIO", EXTRA / "c_2024-03.txt")
    assert proc.returncode == 0, proc.stderr
    assert "published gen-000002" in proc.stdout
    assert proc.stderr.strip().splitlines() == [
        "warning: old generations were not collected (Input/output error); the next writer "
        "retries"]
    assert Index.load(settings.index_dir, verify=True).generation == "gen-000002"


# ------------------------------------------------------------------ from the review

def test_current_moved_back_by_hand_stops_writers_instead_of_deleting_newer_generations(
        qa, two_generations, tmp_path):
    (two_generations / "CURRENT").write_text("gen-000001\n", "utf-8")
    other = tmp_path / "d_2024-04.txt"
    other.write_text("# 新闻标题\n\n正文内容,用于测试。", "utf-8")
    result = qa("add", other)
    assert result.exit_code == 1
    assert "CURRENT names gen-000001 but gen-000002 was published after it" in result.output
    assert generation_names(two_generations) == ["gen-000001", "gen-000002"]
    assert qa("recover").exit_code == 0
    assert current_generation(two_generations) == "gen-000002"


def test_recover_sets_a_failing_generation_aside_with_its_data_and_names_what_it_held(
        qa, two_generations):
    extra = _extra_segment(two_generations)
    (extra / "stories.json").write_bytes(b"[]" + (extra / "stories.json").read_bytes()[2:])
    result = qa("recover")
    assert result.exit_code == 0, result.output
    assert ("moved to quarantine/gen-000002.json, its data kept; not in gen-000001: "
            "c_2024-03.txt") in result.output
    assert (two_generations / "quarantine" / "gen-000002.json").is_file()
    assert (extra / "passages.jsonl").is_file()  # the intact files are still there
    assert qa("add", CORPUS / "a_2024-01.txt").exit_code == 0  # a writer keeps them too
    assert (extra / "passages.jsonl").is_file()


def test_recover_never_publishes_what_a_killed_writer_left(settings, two_generations, qa):
    env = dict(os.environ, QA_FAULT_INJECT="manifest-written", QA_INDEX_DIR=settings.index_dir,
               QA_MODEL="none")
    extra = Path(settings.index_dir).parent / "late.txt"
    extra.write_text("# 新闻标题\n\n正文内容,用于测试。", "utf-8")
    proc = subprocess.run([sys.executable, "-m", "qa.cli", "add", str(extra)], env=env,
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 137
    assert "gen-000003" in generation_names(two_generations)  # written, never published
    result = qa("recover")
    assert "ok: gen-000002 is published and verifies" in result.output
    assert current_generation(two_generations) == "gen-000002"


def test_a_first_build_killed_before_it_published_leaves_nothing_in_the_way(settings):
    root = Path(settings.index_dir)
    (root / "segments" / "seg-0123456789ab").mkdir(parents=True)  # renamed, then killed
    assert build([CORPUS], settings, None).generation == "gen-000001"
    assert not (root / "segments" / "seg-0123456789ab").exists()


def test_an_unreadable_file_fails_its_generation_and_recover_goes_back(
        two_generations, monkeypatch):
    from qa import segment

    bad = _extra_segment(two_generations) / "passages.jsonl"
    real = segment.sha256_file

    def eio(path):
        if Path(path) == bad:
            raise OSError(5, "Input/output error")
        return real(path)

    monkeypatch.setattr(segment, "sha256_file", eio)
    (two_generations / "CURRENT").unlink()
    from qa.generations import recover

    previous, now, failures, _ = recover(two_generations)
    assert (previous, now) == (None, "gen-000001")
    assert failures == {"gen-000002": "cannot be read (Input/output error)"}


def test_a_full_build_replaces_an_archive_of_an_older_format(qa, built, settings):
    root = Path(settings.index_dir)
    path = root / "generations" / "gen-000001.json"
    m = json.loads(path.read_text("utf-8"))
    m["format"] = 2  # what the previous release wrote
    m.pop("checksum")
    path.write_text(json.dumps(m), "utf-8")
    assert "index format 2" in qa("add", EXTRA / "c_2024-03.txt").output
    result = qa("index", CORPUS)
    assert result.exit_code == 0, result.output
    assert Index.load(root, verify=True).generation == "gen-000002"
