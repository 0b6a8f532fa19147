"""deploy/bulk_load.py: batching, progress, resume, with a fake backend and encoder; and the
sentence-transformers encoder's `device` (and fp16), checked on the stand-in model on CPU."""

from __future__ import annotations

import importlib.util
import io
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from qa.build import FileOutcome
from qa.encoders import EncoderUnavailable, identity

from .conftest import ROOT


def _load_module():
    spec = importlib.util.spec_from_file_location("bulk_load", ROOT / "deploy" / "bulk_load.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["bulk_load"] = module
    spec.loader.exec_module(module)
    return module


bl = _load_module()


class FakeEncoder:
    """Four-dimensional unit vectors; records how many passages it was given."""

    name, dim = "fake-model", 4
    backend, model, quantisation, version = "fake", "fake/model", None, "1"

    def __init__(self):
        self.seen = 0

    def encode_queries(self, texts):
        return self.encode_passages(texts)

    def encode_passages(self, texts, progress=False):
        self.seen += len(texts)
        out = np.zeros((len(texts), 4), dtype=np.float32)
        out[:, 0] = 1.0
        return out


class FakeBackend:
    """Stands in for MilvusBackend.add: one passage per non-empty line, idempotent by content,
    a file whose text starts with REJECT is rejected, `fail_on` raises on that call."""

    def __init__(self, fail_on: int | None = None):
        self.calls: list[list[str]] = []
        self.indexed: dict[str, bytes] = {}
        self.fail_on = fail_on

    def add(self, paths, encoder, progress=True):
        self.calls.append([p.name for p in paths])
        if self.fail_on is not None and len(self.calls) == self.fail_on:
            raise RuntimeError("Milvus at http://milvus:19530 failed while inserting: boom")
        outcomes = []
        for p in paths:
            data = p.read_bytes()
            text = data.decode("utf-8")
            if text.startswith("REJECT"):
                outcomes.append(FileOutcome(p.name, "rejected", reason="no story text"))
                continue
            if self.indexed.get(p.name) == data:
                outcomes.append(FileOutcome(p.name, "unchanged"))
                continue
            lines = [line for line in text.splitlines() if line.strip()]
            encoder.encode_passages(lines)
            self.indexed[p.name] = data
            outcomes.append(FileOutcome(p.name, "added", passages=len(lines)))
        return SimpleNamespace(outcomes=outcomes, embedded=sum(o.passages for o in outcomes))


def _archive(root: Path, n: int = 7) -> Path:
    for i in range(n):
        sub = root / ("2020" if i < 2 else "2021")  # walk order is name order
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"issue_{i:03d}.txt").write_text(
            "\n".join(f"第{i}期第{j}段。" for j in range(i + 1)), "utf-8")
    return root


def _run(archive: Path, backend, *args: str, encoder=None) -> tuple[int, str]:
    out = io.StringIO()
    rc = bl.main([str(archive), *args], backend=backend, encoder=encoder or FakeEncoder(),
                 stream=out)
    return rc, out.getvalue()


def _log(archive: Path) -> list[dict]:
    path = archive / ".bulk_load.jsonl"
    return [json.loads(line) for line in path.read_text("utf-8").splitlines()]


def test_files_go_in_batches_and_progress_reports_rate_and_time_left(tmp_path):
    archive = _archive(tmp_path / "archive")
    backend, encoder = FakeBackend(), FakeEncoder()
    rc, out = _run(archive, backend, "--files-per-batch", "3", encoder=encoder)
    assert rc == 0, out
    assert [len(c) for c in backend.calls] == [3, 3, 1]
    assert sorted(sum(backend.calls, [])) == [f"issue_{i:03d}.txt" for i in range(7)]
    assert encoder.seen == sum(range(1, 8)) == 28
    assert "7 files to load" in out and "batch 3/3" in out
    assert "passages/s" in out and "left" in out
    assert "28 passages embedded" in out and "7 added" in out
    log = _log(archive)
    assert len(log) == 7 and {e["status"] for e in log} == {"added"}
    assert {e["batch"] for e in log} == {1, 2, 3}
    assert all(len(e["sha256"]) == 64 and "/" in e["file"] for e in log)  # relative paths


def test_a_failed_batch_stops_the_run_and_a_rerun_sends_only_what_is_left(tmp_path):
    archive = _archive(tmp_path / "archive")
    first = FakeBackend(fail_on=2)
    rc, out = _run(archive, first, "--files-per-batch", "3")
    assert rc == 1 and "boom" in out and "run again to resume" in out
    assert len(_log(archive)) == 3  # only the batch that published

    second = FakeBackend()
    rc, out = _run(archive, second, "--files-per-batch", "3")
    assert rc == 0, out
    assert "4 files to load" in out and "3 already done" in out
    assert sum(second.calls, []) == [f"issue_{i:03d}.txt" for i in range(3, 7)]

    third = FakeBackend()
    rc, out = _run(archive, third)
    assert rc == 0 and third.calls == [] and "0 files to load" in out and "7 already done" in out


def test_a_batch_published_but_not_logged_is_sent_again_and_comes_back_unchanged(tmp_path):
    archive = _archive(tmp_path / "archive", 4)
    backend = FakeBackend()
    assert _run(archive, backend, "--files-per-batch", "2")[0] == 0
    log = archive / ".bulk_load.jsonl"
    lines = log.read_text("utf-8").splitlines()
    # a kill after the second publish, with the log line half written
    log.write_text("\n".join(lines[:2]) + "\n" + lines[2][:15], "utf-8")
    rc, out = _run(archive, backend, "--files-per-batch", "2")
    assert rc == 0, out
    assert backend.calls[-1] == ["issue_002.txt", "issue_003.txt"]
    assert "2 unchanged" in out and "0 passages embedded" in out
    # the torn line is left as it was; what follows it is whole
    rc, out = _run(archive, backend)
    assert rc == 0 and "0 files to load" in out and "4 already done" in out


def test_changed_files_are_sent_again_and_rejected_ones_only_when_asked(tmp_path):
    archive = _archive(tmp_path / "archive", 3)
    bad = archive / "2021" / "zz_bad.txt"
    bad.write_text("REJECT\n乱码", "utf-8")
    backend = FakeBackend()
    rc, out = _run(archive, backend)
    assert rc == 0 and "1 rejected" in out and "zz_bad.txt: no story text" in out
    assert "--retry-rejected" in out

    changed = archive / "2020" / "issue_000.txt"
    changed.write_text("新的内容。\n第二段。", "utf-8")
    rc, out = _run(archive, backend)
    assert backend.calls[-1] == ["issue_000.txt"] and "1 files to load" in out

    rc, out = _run(archive, backend, "--retry-rejected")
    assert backend.calls[-1] == ["zz_bad.txt"]


def test_the_walk_is_recursive_and_leaves_out_hidden_entries_sidecars_and_other_files(tmp_path):
    root = tmp_path / "archive"
    (root / "a" / "b").mkdir(parents=True)
    (root / ".hidden").mkdir()
    (root / "a" / "b" / "deep.TXT").write_text("x", "utf-8")
    (root / "top.txt").write_text("x", "utf-8")
    (root / "top.txt.meta.json").write_text("{}", "utf-8")
    (root / "notes.md").write_text("x", "utf-8")
    (root / ".hidden" / "h.txt").write_text("x", "utf-8")
    (root / ".dot.txt").write_text("x", "utf-8")
    found = [p.relative_to(root).as_posix() for p in bl.find_issues(root)]
    assert found == ["top.txt", "a/b/deep.TXT"]


def test_dry_run_and_limit_load_nothing_or_only_a_few(tmp_path):
    archive = _archive(tmp_path / "archive")
    backend = FakeBackend()
    rc, out = _run(archive, backend, "--dry-run")
    assert rc == 0 and backend.calls == [] and "7 files to load" in out
    rc, out = _run(archive, backend, "--limit", "2")
    assert rc == 0 and sum(backend.calls, []) == ["issue_000.txt", "issue_001.txt"]


def test_the_same_issue_name_in_two_directories_is_warned_about(tmp_path):
    archive = _archive(tmp_path / "archive", 2)
    (archive / "2021").mkdir()
    (archive / "2021" / "issue_000.txt").write_text("另一份。", "utf-8")
    rc, out = _run(archive, FakeBackend(), "--dry-run")
    assert "issue_000.txt" in out and "more than one directory" in out


def test_a_second_loader_on_the_same_log_is_refused(tmp_path):
    archive = _archive(tmp_path / "archive", 1)
    log = bl.ProgressLog(archive / ".bulk_load.jsonl")
    with log.exclusive(), pytest.raises(SystemExit, match="another bulk_load"):
        _run(archive, FakeBackend())


def test_the_counting_wrapper_keeps_the_encoders_identity():
    inner = FakeEncoder()
    wrapped = bl.CountingEncoder(inner)
    assert identity(wrapped) == identity(inner)
    wrapped.encode_passages(["a", "b"])
    wrapped.encode_queries(["q"])
    assert wrapped.passages == 2


def test_the_bundled_model_is_refused_on_a_gpu_before_anything_loads():
    with pytest.raises(EncoderUnavailable, match="CPU only"):
        bl.make_encoder("multilingual-e5-small-q4", "cuda", 32, False, 0)


# --- the sentence-transformers backend's device ------------------------------------------------


def test_sentence_transformers_runs_on_cpu_by_default(stand_in_encoder):
    assert stand_in_encoder.device == "cpu" and stand_in_encoder._st.device.type == "cpu"
    assert stand_in_encoder.fp16 is False


def test_sentence_transformers_passes_the_device_through(monkeypatch, stand_in_model_path):
    import sentence_transformers

    from qa.encoders.sentence_transformers import SentenceTransformerEncoder

    real = sentence_transformers.SentenceTransformer
    devices: list[str | None] = []

    class Recording(real):
        def __init__(self, *args, device=None, **kwargs):
            devices.append(device)
            super().__init__(*args, device="cpu", **kwargs)  # no GPU here: load on CPU

    monkeypatch.setattr(sentence_transformers, "SentenceTransformer", Recording)
    enc = SentenceTransformerEncoder(stand_in_model_path, device="cuda:1", fp16=True)
    assert devices == ["cuda:1"] and enc.device == "cuda:1"
    # fp16 halves the weights; vectors come back unit-length float32, beside the fp32 ones
    assert next(enc._st.parameters()).dtype.itemsize == 2
    monkeypatch.setattr(sentence_transformers, "SentenceTransformer", real)
    full = SentenceTransformerEncoder(stand_in_model_path)
    texts = ["The solar plant powers the village.", "Rice and fish are farmed together."]
    half, ref = enc.encode_passages(texts), full.encode_passages(texts)
    assert half.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(half, axis=1), 1.0, atol=1e-5)
    assert float((half * ref).sum(axis=1).min()) > 0.999
    assert identity(enc)["quantisation"] is None  # a compute precision, not a quantisation


def test_fp16_without_cuda_and_a_missing_device_fail_in_one_sentence(stand_in_model_path):
    import torch

    from qa.encoders.sentence_transformers import SentenceTransformerEncoder

    with pytest.raises(EncoderUnavailable, match="fp16 needs a CUDA device"):
        SentenceTransformerEncoder(stand_in_model_path, device="cpu", fp16=True)
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(EncoderUnavailable, match="could not be loaded"):
        SentenceTransformerEncoder(stand_in_model_path, device="cuda")
