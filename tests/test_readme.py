"""Every README example runs as written: the command line, the editors' add, the API call."""

from __future__ import annotations

import re
import shlex

import pytest
from click.testing import CliRunner

from qa import __version__
from qa.build import build
from qa.cli import cli

from .conftest import ROOT

README = (ROOT / "README.md").read_text("utf-8")


def _in_readme(text: str) -> str:
    assert text in README, f"the README no longer shows {text!r}: update this test with it"
    return text


@pytest.fixture(scope="module")
def seeds_index(tmp_path_factory):
    from qa.config import Settings

    root = tmp_path_factory.mktemp("readme")
    settings = Settings(index_dir=str(root / "index"), model="none")
    build([ROOT / "seeds"], settings, None)
    return settings


def _qa(settings, line: str):
    args = shlex.split(line)[1:]  # drop "qa"
    return CliRunner().invoke(cli, args, env={"QA_INDEX_DIR": settings.index_dir,
                                              "QA_MODEL": "none"})


@pytest.mark.slow
@pytest.mark.parametrize("line, expect", [
    ('qa ask "玉环市有几个国家4A级旅游景区?"', "答案：3个"),
    ("qa parse seeds/002_fcb78bd655ccb902.txt", "6 stories"),
    ("qa info", "passages"),
    ("qa verify", "ok: gen-"),
    ("qa recover", "is published and verifies"),
    ("qa --version", f"qa {__version__}"),
])
def test_command_line_examples(seeds_index, line, expect, monkeypatch):
    monkeypatch.chdir(ROOT)  # the examples name paths relative to the repository
    # the README block shows options in [brackets]; the runnable part is before them
    _in_readme(line.replace('"', '"'))
    result = _qa(seeds_index, line)
    assert result.exit_code == 0, result.output
    assert expect in result.output


@pytest.mark.slow
def test_the_editors_add_example(seeds_index, tmp_path, monkeypatch):
    example = _in_readme(".venv/bin/qa add new-issue.txt --paper 台州日报 --date 2024-03-05 "
                         "--edition A3")
    (tmp_path / "new-issue.txt").write_text("# 新闻标题\n\n记者走访了新建成的图书馆,馆内藏书十万册。",
                                            "utf-8")
    monkeypatch.chdir(tmp_path)
    result = _qa(seeds_index, example.replace(".venv/bin/qa", "qa"))
    assert result.exit_code == 0, result.output
    assert re.search(r"added\s+new-issue.txt", result.output)
    info = _qa(seeds_index, "qa info --json")
    assert "台州日报" in info.output


def test_the_api_example(seeds_index):
    import json

    from qa.web import create_app

    body = _in_readme('{"question": "玉环市有几个国家4A级旅游景区?", "top_k": 3}')
    client = create_app(seeds_index.with_(reload_interval=0, rate_limit_per_minute=0)).test_client()
    r = client.post("/api/ask", data=body, content_type="application/json")
    assert r.status_code == 200
    top = r.json["answers"][0]
    shown = _in_readme('"short": {"text": "3个", "span": [83, 85]}')
    assert {"short": top["short"]} == json.loads("{" + shown + "}")
    assert top["citation"]["title"] == "台州玉环创成省级全域旅游示范市"
    assert _in_readme('"id": "001_83ee49fea69f0aa9.txt:5:1"').split('"')[3] == top["id"]
