"""Editors (issue 12, items 1, 2, 6): issue metadata, the source archive, `qa reindex`, explicit
replacement, what `qa add DIR` takes and skips, encodings, and the command line's manners."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from qa import __version__
from qa.api_schema import answer_json, issue_json
from qa.build import SourcesMissing, add, build, given_meta, reindex
from qa.cli import cli
from qa.filters import FilterError, Filters, matches, parse_filters
from qa.generations import generation_names, manifest_checksum
from qa.index import Index, current_generation
from qa.ingest import IngestError, parse_bytes
from qa.search import Searcher

from .conftest import CORPUS, EXTRA, ROOT, wait_for_job

NEW = EXTRA / "c_2024-03.txt"
META = {"paper": "台州日报", "date": "2024-03-05", "edition": "A3"}
TOKEN = "k" * 32
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def qa(runner, settings):
    env = {"QA_INDEX_DIR": settings.index_dir, "QA_MODEL": "none"}

    def invoke(*args, **extra_env):
        return runner.invoke(cli, [str(a) for a in args], env={**env, **extra_env})

    return invoke


def _manifest(settings) -> dict:
    return Index.load(settings.index_dir, verify=False).manifest


def _records(index: Index, file: str) -> list[dict]:
    return [r for r in (index.passage(g) for g in range(index.n_passages)) if r["file"] == file]


class CountingEncoder:
    """A tiny deterministic encoder that counts the passages it embeds."""

    name, dim = "counting-test-encoder", 8

    def __init__(self):
        self.embedded = 0

    def _vectors(self, texts):
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            for ch in t:
                out[i, ord(ch) % self.dim] += 1.0
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)

    def encode_queries(self, texts):
        return self._vectors(texts)

    def encode_passages(self, texts, progress=False):
        self.embedded += len(texts)
        return self._vectors(texts)


# ------------------------------------------------------------------ item 1: metadata

def test_metadata_given_on_add_is_in_the_manifest_every_record_and_every_citation(built, settings,
                                                                                  qa):
    result = qa("add", NEW, "--paper", " 台州日报 ", "--date", "2024-03-05", "--edition", "A3")
    assert result.exit_code == 0, result.output
    index = Index.load(settings.index_dir)
    entry = index.manifest["issues"][NEW.name]
    assert {k: entry[k] for k in META} == META  # trimmed
    records = _records(index, NEW.name)
    assert records and all({k: r[k] for k in META} == META for r in records)
    for other in ("a_2024-01.txt", "b_2024-02.txt"):  # no metadata given: none invented
        assert all(r["paper"] is None and r["date"] is None and r["edition"] is None
                   for r in _records(index, other))
        assert index.issue_meta(other) == dict.fromkeys(META)
    answer = Searcher(index, None, settings).ask("白云乡中心小学的孩子们和谁一起上课?", 1).answers[0]
    assert answer.record["file"] == NEW.name
    citation = answer_json(answer)["citation"]
    assert {k: citation[k] for k in META} == META
    assert issue_json(NEW.name, entry) == {
        "file": NEW.name, "issue": "c_2024-03", "sha256": entry["sha256"], **META,
        "stories": entry["stories"], "passages": entry["passages"]}
    ask = json.loads(qa("ask", "白云乡中心小学的孩子们和谁一起上课?", "--json", "--top-k", "1").stdout)
    assert {k: ask["answers"][0]["citation"][k] for k in META} == META
    assert "台州日报 2024-03-05 A3" in qa("ask", "白云乡中心小学的孩子们和谁一起上课?").stdout


def test_a_sidecar_gives_metadata_and_options_override_it(settings, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    (src / NEW.name).write_bytes(NEW.read_bytes())
    (src / (NEW.name + ".meta.json")).write_text(json.dumps(META, ensure_ascii=False), "utf-8")
    build([CORPUS], settings, None)
    report = add([src], settings, None, meta={"edition": "第3版"})
    assert [(o.file, o.status) for o in report.outcomes] == [(NEW.name, "added")]  # sidecar: no
    entry = _manifest(settings)["issues"][NEW.name]                              # "skipped"
    assert (entry["paper"], entry["date"], entry["edition"]) == ("台州日报", "2024-03-05", "第3版")
    # a shell glob that names the sidecar too (`qa add 005*`) does not index it as an issue
    report = add(sorted(src.iterdir()), settings, None, meta={"edition": "第3版"})
    assert [(o.file, o.status) for o in report.outcomes] == [
        (NEW.name, "unchanged"), (NEW.name + ".meta.json", "skipped")]


@pytest.mark.parametrize("args, message", [
    (("--date", "2024-3-5"), "Error: date '2024-3-5' is not a date in the form YYYY-MM-DD"),
    (("--date", "2024-02-30"), "Error: date '2024-02-30' is not a date in the form YYYY-MM-DD"),
    (("--paper", "报" * 41), "Error: paper is 41 characters; the limit is 40"),
    (("--edition", "A" * 21), "Error: edition is 21 characters; the limit is 20"),
])
def test_bad_metadata_is_one_clear_line_and_nothing_is_published(built, qa, settings, args,
                                                                 message):
    result = qa("add", NEW, *args)
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [result.output.strip()]
    assert result.output.startswith(message), result.output
    assert current_generation(Path(settings.index_dir)) == "gen-000001"


def test_a_bad_sidecar_rejects_its_file_with_the_reason(built, settings, tmp_path):
    path = tmp_path / NEW.name
    path.write_bytes(NEW.read_bytes())
    (tmp_path / (NEW.name + ".meta.json")).write_text('{"date": "05.03.2024", "page": 3}',
                                                      "utf-8")
    report = add([path], settings, None)
    assert [(o.file, o.status) for o in report.outcomes] == [(NEW.name, "rejected")]
    assert "unknown field(s) page" in report.outcomes[0].reason


def test_changing_only_the_metadata_relabels_the_issue_without_embedding_again(settings):
    encoder = CountingEncoder()
    build([CORPUS], settings, encoder)
    add([NEW], settings, encoder, meta={"paper": "台州日报"})
    before = Index.load(settings.index_dir)
    embedded = encoder.embedded
    vectors_before = {(r["story"], r["paragraph"]): v for r, v in zip(
        [before.passage(g) for g in range(before.n_passages)],
        np.concatenate([np.asarray(s.dense.vectors) for s in before.segments]), strict=True)
        if r["file"] == NEW.name}

    report = add([NEW], settings, encoder, meta={"date": "2024-03-05"})
    assert [(o.file, o.status, o.reason) for o in report.outcomes] == [
        (NEW.name, "replaced", "new date 2024-03-05")]
    assert encoder.embedded == embedded and report.embedded == 0  # vectors reused
    after = Index.load(settings.index_dir)
    assert after.n_passages == before.n_passages
    records = _records(after, NEW.name)
    assert all((r["paper"], r["date"]) == ("台州日报", "2024-03-05") for r in records)  # paper kept
    vectors_after = {(r["story"], r["paragraph"]): v for r, v in zip(
        [after.passage(g) for g in range(after.n_passages)],
        np.concatenate([np.asarray(s.dense.vectors) for s in after.segments]), strict=True)
        if r["file"] == NEW.name}
    assert vectors_after.keys() == vectors_before.keys()
    assert all(np.array_equal(vectors_after[k], vectors_before[k]) for k in vectors_before)
    # the same again is a no-op; an empty value clears a field
    assert add([NEW], settings, encoder, meta={"date": "2024-03-05"}).outcomes[0].status == \
        "unchanged"
    add([NEW], settings, encoder, meta={"paper": None})
    assert _manifest(settings)["issues"][NEW.name]["paper"] is None


def test_the_seeds_carry_no_metadata(settings):
    build([ROOT / "seeds"], settings, None)
    index = Index.load(settings.index_dir)
    assert all(index.issue_meta(f) == dict.fromkeys(META) for f in index.manifest["issues"])
    answer = Searcher(index, None, settings).ask("玉环市有几个国家4A级旅游景区?", 1).answers[0]
    citation = answer_json(answer)["citation"]
    assert (citation["paper"], citation["date"], citation["edition"]) == (None, None, None)


# ------------------------------------------------------------------ item 1: filters

def test_filters_validate_and_match():
    assert not parse_filters(None) and not parse_filters({})
    f = parse_filters({"paper": "台州日报", "date_from": "2024-03-01", "date_to": "2024-03-31"})
    assert f == Filters("台州日报", "2024-03-01", "2024-03-31")
    assert f.matches({"paper": "台州日报", "date": "2024-03-05"})
    assert not f.matches({"paper": "台州日报", "date": "2024-04-01"})
    assert not f.matches({"paper": "浙江日报", "date": "2024-03-05"})
    assert not f.matches({"paper": "台州日报", "date": None})  # undated: never guessed in
    assert matches({"paper": None, "date": None})  # no condition: everything
    for raw, message in [
        ({"date_from": "2024-3-1"}, "filters.date_from: date '2024-3-1' is not a date"),
        ({"date_from": "2024-04-01", "date_to": "2024-03-01"}, "is after date_to"),
        ({"papr": "x"}, "unknown filter field(s): papr"),
        ({"paper": 3}, "filters.paper must be a string"),
        ([1], "filters must be an object"),
    ]:
        with pytest.raises(FilterError, match=re.escape(message)):
            parse_filters(raw)


def test_the_passage_mask_and_dense_search_keep_only_what_the_filter_allows(settings):
    encoder = CountingEncoder()
    build([CORPUS], settings, encoder)
    add([NEW], settings, encoder, meta=META)
    index = Index.load(settings.index_dir)
    assert index.passage_mask(Filters()) is None
    mask = index.passage_mask(Filters(paper="台州日报"))
    files = [index.passage(g)["file"] for g in range(index.n_passages)]
    assert [f == NEW.name for f in files] == mask.tolist()
    assert not index.passage_mask(Filters(date_to="2024-03-04")).any()
    query = encoder.encode_queries(["老街引入了哪些非遗工坊"])[0]
    ids, _ = index.dense_search(query, 5, mask=mask)
    assert len(ids) == 2 and all(files[i] == NEW.name for i in ids)
    everything, _ = index.dense_search(query, 5)
    assert len(everything) == 5


# ------------------------------------------------------------------ item 2: the source archive

def test_every_published_issue_is_kept_and_reindex_rebuilds_it_without_the_files(
        settings, tmp_path, qa):
    work = tmp_path / "work"
    work.mkdir()
    for p in [*CORPUS.iterdir(), NEW]:
        (work / p.name).write_bytes(p.read_bytes())
    assert qa("index", work / "a_2024-01.txt", work / "b_2024-02.txt").exit_code == 0
    assert qa("add", work / NEW.name, "--paper", "台州日报", "--date", "2024-03-05").exit_code == 0
    root = Path(settings.index_dir)
    before = Index.load(root).manifest
    for file, entry in before["issues"].items():
        kept = root / entry["source"]
        assert entry["source"] == f"sources/{entry['sha256']}.txt"
        assert kept.read_bytes() == (CORPUS / file if file != NEW.name else NEW).read_bytes()
        assert hashlib.sha256(kept.read_bytes()).hexdigest() == entry["sha256"]  # raw bytes
    for p in work.iterdir():
        p.unlink()  # the editor's files are gone

    result = qa("reindex")
    assert result.exit_code == 0, result.output
    after = Index.load(root, verify=True)
    assert after.generation == "gen-000003"
    assert after.manifest["issues"].keys() == before["issues"].keys()
    for file, entry in after.manifest["issues"].items():
        old = before["issues"][file]
        assert {k: entry[k] for k in ("sha256", "stories", "passages", "paper", "date",
                                       "edition", "source")} == \
            {k: old[k] for k in ("sha256", "stories", "passages", "paper", "date", "edition",
                                 "source")}
    assert {r["paper"] for r in _records(after, NEW.name)} == {"台州日报"}
    assert qa("verify").output.startswith("ok: gen-000003, 10 passages, 1 segments, 3 sources")


def test_uploads_are_kept_in_the_source_archive_too(built, settings, tmp_path):
    client = _admin(settings, tmp_path).test_client()
    job = _upload(client, [(NEW.name, NEW.read_bytes())], {"paper": "台州日报",
                                                          "date": "2024-03-05"})
    assert [f["status"] for f in job["files"]] == ["added"]
    entry = _manifest(settings)["issues"][NEW.name]
    assert (Path(settings.index_dir) / entry["source"]).read_bytes() == NEW.read_bytes()
    assert (entry["paper"], entry["date"], entry["edition"]) == ("台州日报", "2024-03-05", None)


def test_reindex_names_every_issue_it_cannot_rebuild_and_publishes_nothing(built, settings, qa):
    root = Path(settings.index_dir)
    entry = Index.load(root).manifest["issues"]["a_2024-01.txt"]
    (root / entry["source"]).unlink()
    result = qa("reindex")
    assert result.exit_code == 1
    assert result.output.startswith("Error: cannot rebuild gen-000001 from its sources; nothing "
                                    "was published: a_2024-01.txt: its source sources/")
    assert current_generation(root) == "gen-000001"
    verify = qa("verify")
    assert verify.exit_code == 1 and "a_2024-01.txt: its source" in verify.output
    with pytest.raises(SourcesMissing):
        reindex(settings, None)


def test_an_archive_from_before_sources_were_kept_gets_them_by_adding_the_files_again(
        built, settings, qa):
    root = Path(settings.index_dir)
    path = root / "generations" / "gen-000001.json"
    m = json.loads(path.read_text("utf-8"))
    for entry in m["issues"].values():
        del entry["source"]
    m["checksum"] = manifest_checksum(m)
    path.write_text(json.dumps(m, ensure_ascii=False), "utf-8")
    assert "no source kept" in qa("reindex").output
    result = qa("verify")
    assert result.exit_code == 0 and "2 issue(s) have no kept source" in result.output
    added = qa("add", CORPUS)
    assert added.exit_code == 0, added.output
    assert "unchanged a_2024-01.txt" in added.output.replace("  ", " ")
    assert "published gen-000002" in added.output  # the sources are recorded
    assert qa("reindex").exit_code == 0


def test_other_content_under_an_indexed_name_needs_replace(built, settings, qa, tmp_path):
    other = tmp_path / "elsewhere" / "a_2024-01.txt"
    other.parent.mkdir()
    other.write_text((CORPUS / "a_2024-01.txt").read_text("utf-8").replace("1200万元", "1300万元"),
                     "utf-8")
    refused = qa("add", other)
    assert refused.exit_code == 1
    assert ("rejected  a_2024-01.txt: already indexed with other content; pass --replace "
            "(upload: replace=true) to replace it") in refused.output
    assert current_generation(Path(settings.index_dir)) == "gen-000001"
    replaced = qa("add", other, "--replace")
    assert replaced.exit_code == 0 and "replaced  a_2024-01.txt" in replaced.output
    assert "1300万元" in " ".join(r["text"] for r in _records(Index.load(settings.index_dir),
                                                             "a_2024-01.txt"))


def test_add_dir_takes_txt_in_any_case_and_reports_what_it_skipped(built, qa, tmp_path):
    d = tmp_path / "drop"
    (d / "old").mkdir(parents=True)
    (d / "C_2024-03.TXT").write_bytes(NEW.read_bytes())
    (d / "photo.png").write_bytes(b"\x89PNG")
    (d / "notes.md").write_text("# x", "utf-8")
    (d / ".DS_Store").write_bytes(b"\x00")
    result = qa("add", d)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "added     C_2024-03.TXT (2 passages)" in lines
    assert "skipped   notes.md: not a .txt issue file" in lines
    assert "skipped   photo.png: not a .txt issue file" in lines
    assert "skipped   old/: a directory (sub-directories are not searched)" in lines
    assert not any(".DS_Store" in x for x in lines)
    nothing = qa("add", d / "old")
    assert nothing.exit_code == 1 and "nothing to index" in nothing.output


def test_utf16_with_a_bom_is_read_and_other_encodings_say_what_to_do(tmp_path):
    text = "# 编码测试标题\n\n张三\n\n这是一段用来测试编码的正文内容。\n"
    for data, enc in [(b"\xff\xfe" + text.encode("utf-16-le"), "utf-16-le"),
                      (b"\xfe\xff" + text.encode("utf-16-be"), "utf-16-be")]:
        issue = parse_bytes(data, "u.txt")
        assert issue.encoding == enc
        assert issue.stories[0].passages[0].text == "这是一段用来测试编码的正文内容。"
    with pytest.raises(IngestError, match="looks binary .*save it with a byte-order mark or as "
                                          "UTF-8"):
        parse_bytes(text.encode("utf-16-le"), "u.txt")  # no BOM
    with pytest.raises(IngestError, match=r"save it as UTF-8, e.g. `iconv -f BIG5 -t UTF-8"):
        parse_bytes(b"\x81\x20" * 40, "big5.txt")


def test_a_rejected_file_is_named_once(built, qa, tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    result = qa("add", empty, NEW)
    assert result.exit_code == 1
    assert "rejected  empty.txt: file is empty" in result.output.splitlines()
    assert qa("parse", empty).output.strip() == "Error: empty.txt: file is empty"


def test_bylines_at_both_ends_of_a_story_are_not_repeated():
    text = ("# 乡村振兴有新招\n\n林晓东\n\n村里新建了合作社,带动二百户村民增收。"
            "合作社负责人说,明年还要扩大规模。(林晓东 潘婷)\n")
    story = parse_bytes(text.encode(), "b.txt").stories[0]
    assert story.byline == "林晓东 潘婷"


# ------------------------------------------------------------------ item 2: crash safety, GC

@pytest.mark.parametrize("stage", ["source-write", "sources-written", "segment-write",
                                   "segment-written", "manifest-written", "collect-garbage"])
def test_a_killed_add_never_leaves_a_generation_naming_a_source_not_on_disk(built, settings,
                                                                            stage):
    env = dict(os.environ, QA_FAULT_INJECT=stage, QA_INDEX_DIR=settings.index_dir,
               QA_MODEL="none")
    proc = subprocess.run([sys.executable, "-m", "qa.cli", "add", str(NEW), "--paper", "台州日报"],
                          env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 137, proc.stderr
    root = Path(settings.index_dir)
    for name in generation_names(root):  # published or not, every manifest on disk
        m = json.loads((root / "generations" / f"{name}.json").read_text("utf-8"))
        for file, entry in m["issues"].items():
            assert (root / entry["source"]).is_file(), (stage, name, file)
    # the next writer cleans up and publishes; the archive rebuilds from its sources
    report = add([NEW], settings, None, meta={"paper": "台州日报"})
    assert report.outcomes[0].status in ("added", "unchanged")
    assert not list((root / "sources").glob(".*.tmp"))
    assert reindex(settings, None).generation is not None
    assert Index.load(root, verify=True).issue_meta(NEW.name) == \
        {"paper": "台州日报", "date": None, "edition": None}


def test_a_source_stays_while_a_kept_generation_names_it(settings, tmp_path):
    keep2 = settings.with_(keep_generations=2)
    path = tmp_path / "n.txt"
    shas = []
    for n in range(3):
        path.write_text(f"# 新闻标题第{n}号\n\n正文内容第{n}号,用于测试。", "utf-8")
        shas.append(hashlib.sha256(path.read_bytes()).hexdigest())
        (build if n == 0 else add)([path], keep2, None, **({} if n == 0 else {"replace": True}))
    sources = Path(settings.index_dir) / "sources"
    assert generation_names(Path(settings.index_dir)) == ["gen-000002", "gen-000003"]
    assert {p.stem for p in sources.glob("*.txt")} == set(shas[1:])  # gen-000001's is gone


# ------------------------------------------------------------------ uploads

def _admin(settings, tmp_path):
    from qa.web import create_app

    return create_app(settings.with_(reload_interval=0, rate_limit_per_minute=0,
                                     admin_token=TOKEN, upload_dir=str(tmp_path / "uploads")))


def _upload(client, files, form=None, status=202):
    data = {"files": [(io.BytesIO(b), n) for n, b in files], **(form or {})}
    r = client.post("/api/admin/issues", headers=AUTH, data=data,
                    content_type="multipart/form-data")
    assert r.status_code == status, r.json
    if status != 202:
        return r.json
    return wait_for_job(client, r.json["id"], AUTH)


def test_uploads_take_metadata_and_replace_fields(built, settings, tmp_path):
    client = _admin(settings, tmp_path).test_client()
    bad = _upload(client, [(NEW.name, NEW.read_bytes())], {"date": "March 5"}, status=400)
    assert "date 'March 5' is not a date in the form YYYY-MM-DD" in bad["error"]["message"]
    assert "replace must be true or false" in _upload(
        client, [(NEW.name, NEW.read_bytes())], {"replace": "maybe"}, status=400)["error"]["message"]

    changed = (CORPUS / "b_2024-02.txt").read_text("utf-8").replace("12元", "15元").encode()
    job = _upload(client, [("b_2024-02.txt", changed)], {"edition": "第3版"})
    assert [(f["status"], f["reason"]) for f in job["files"]] == [
        ("rejected", "already indexed with other content; pass --replace (upload: "
                     "replace=true) to replace it")]
    job = _upload(client, [("b_2024-02.txt", changed)], {"edition": "第3版", "replace": "true"})
    assert [f["status"] for f in job["files"]] == ["replaced"]
    assert _manifest(settings)["issues"]["b_2024-02.txt"]["edition"] == "第3版"
    png = _upload(client, [("picture.png", b"\x89PNG")], status=202)
    assert [(f["file"], f["status"]) for f in png["files"]] == [("picture.png", "rejected")]


# ------------------------------------------------------------------ item 6: the command line

def test_version_short_help_and_examples(runner):
    assert runner.invoke(cli, ["--version"]).output.strip() == f"qa {__version__}"
    for cmd in ([], ["add"], ["ask"], ["index"], ["reindex"], ["serve"], ["parse"], ["eval"],
                ["mcp"]):
        short, long = runner.invoke(cli, [*cmd, "-h"]), runner.invoke(cli, [*cmd, "--help"])
        assert short.exit_code == 0 and short.output == long.output
        assert "Examples:" in short.output or "Example:" in short.output, cmd


def test_json_output_is_clean_and_notes_go_to_stderr_after_the_result(built, qa):
    result = qa("ask", "光伏电站总投资多少?", "--json", QA_MODEL="multilingual-e5-small-q4")
    assert result.exit_code == 0
    json.loads(result.stdout)  # nothing but the JSON document on stdout
    assert result.stderr.strip() == (
        "note: QA_MODEL=multilingual-e5-small-q4 is not used: gen-000001 was built without a "
        "sentence model (lexical only), so search is lexical only; `qa reindex` with that "
        "model rebuilds it with one")
    added = qa("add", NEW, "--json")
    assert json.loads(added.stdout)["files"][0]["status"] == "added"


def test_model_on_a_lexical_only_index_is_said_in_one_line(built, runner, settings):
    result = runner.invoke(cli, ["--model", "multilingual-e5-small-q4", "ask", "光伏电站总投资多少?"],
                           env={"QA_INDEX_DIR": settings.index_dir})
    assert result.exit_code == 0
    notes = [x for x in result.stderr.splitlines() if x.startswith("note: ")]
    assert notes == [x for x in result.stderr.splitlines() if x]
    assert len(notes) == 1 and notes[0].startswith(
        "note: --model multilingual-e5-small-q4 is not used: gen-000001 was built without a "
        "sentence model")
    added = runner.invoke(cli, ["--model", "multilingual-e5-small-q4", "add", str(NEW)],
                          env={"QA_INDEX_DIR": settings.index_dir})
    assert "so new passages are not embedded" in added.stderr


def test_a_note_never_precedes_an_error(built, qa, tmp_path):
    for args, model in ((("ask", ""), "multilingual-e5-small-q4"),
                        (("ask", "老街", "--top-k", "0"), "multilingual-e5-small-q4"),
                        (("index", tmp_path / "missing-dir"), "none")):  # "switched off" note
        result = qa(*args, QA_MODEL=model)
        assert result.exit_code == 1
        assert result.output.strip().splitlines() == [result.output.strip()], result.output
        assert result.output.startswith("Error: ")


def test_a_busy_port_is_one_line(built, qa):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = qa("serve", "--port", port)
    assert result.exit_code == 1
    assert result.output.strip() == (f"Error: 127.0.0.1:{port} is already in use (another `qa "
                                     "serve`?); stop it or pass --port")


def test_reindex_keeps_the_archives_model_unless_asked(settings):
    from click.testing import CliRunner

    from qa.cli import cli

    build([CORPUS], settings, None)  # lexical only
    env = {"QA_INDEX_DIR": settings.index_dir, "QA_MODEL": None}  # no model asked for
    result = CliRunner().invoke(cli, ["reindex"], env=env)
    assert result.exit_code == 0, result.output
    assert Index.load(settings.index_dir).manifest["model"] is None  # not the default e5


def test_a_sidecar_naming_one_field_keeps_the_others(settings, tmp_path):
    f = tmp_path / "a_2024-01.txt"
    f.write_bytes((CORPUS / "a_2024-01.txt").read_bytes())
    build([CORPUS / "b_2024-02.txt"], settings, None)
    add([f], settings, None, meta=given_meta("台州日报", "2024-03-01", "A3"))
    (tmp_path / "a_2024-01.txt.meta.json").write_text('{"edition": "A5"}', "utf-8")
    add([f], settings, None)
    meta = Index.load(settings.index_dir).manifest["issues"]["a_2024-01.txt"]
    assert (meta["paper"], meta["date"], meta["edition"]) == ("台州日报", "2024-03-01", "A5")


@pytest.mark.parametrize("damage", ["deleted", "flipped"])
def test_adding_the_file_again_repairs_a_lost_or_damaged_kept_source(settings, damage):
    build([CORPUS], settings, None)
    root = Path(settings.index_dir)
    entry = Index.load(root).manifest["issues"]["a_2024-01.txt"]
    kept = root / entry["source"]
    if damage == "deleted":
        kept.unlink()
    else:
        kept.write_bytes(b"x" + kept.read_bytes()[1:])
    report = add([CORPUS / "a_2024-01.txt"], settings, None)
    assert [(o.file, o.status) for o in report.outcomes] == [("a_2024-01.txt", "unchanged")]
    assert hashlib.sha256(kept.read_bytes()).hexdigest() == entry["sha256"]
    assert reindex(settings, None).generation == "gen-000002"


def test_a_narrow_filter_on_an_hnsw_segment_gets_its_k_best():
    # HNSW with a selector walked a graph of excluded nodes and returned 1-6 of 10
    from qa.dense import build_dense, load_dense
    from qa.index import _search_among

    rng = np.random.default_rng(3)
    vectors = rng.standard_normal((3000, 32)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        build_dense(Path(tmp), vectors, exact_max=100)  # HNSW above 100 passages
        dense = load_dense(Path(tmp))
        allowed = np.sort(rng.choice(3000, 30, replace=False)).astype(np.int64)
        query = vectors[allowed[0]] + 0.1 * vectors[allowed[1]]
        ids, _ = _search_among(dense, query, 10, allowed)
    exact = allowed[np.argsort(-(vectors[allowed] @ query), kind="stable")[:10]]
    assert ids.tolist() == exact.tolist()


def test_filter_masks_are_safe_to_build_from_several_threads(settings):
    import threading

    from qa.filters import parse_filters

    build([CORPUS], settings, None)
    index = Index.load(settings.index_dir)
    errors = []

    def work(n: int) -> None:
        try:
            for day in range(1, 29):
                index.passage_mask(parse_filters({"date_from": f"2024-0{n}-{day:02d}"}))
        except Exception as exc:  # noqa: BLE001 - any error is the failure
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(1, 9)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
