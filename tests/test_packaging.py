"""What can be checked of the packaging without a Docker engine, and the README's promises."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from qa.config import describe

from .conftest import ROOT


def _dockerfile() -> str:
    return (ROOT / "Dockerfile").read_text("utf-8")


def test_dockerfile_runs_offline_as_non_root_with_the_model_baked_in():
    text = _dockerfile()
    instructions = [line.split()[0] for line in text.splitlines()
                    if line and not line.startswith((" ", "#"))]
    assert instructions[0] == "FROM"
    assert "ARG MODEL=multilingual-e5-small-q4" in text  # the bundled model: nothing downloaded
    assert "load_encoder('${MODEL}')" in text
    assert re.search(r"ENV HF_HUB_OFFLINE=1", text)
    assert "download.pytorch.org/whl/cpu" in text and "PIP_CONSTRAINT" in text
    assert "qa index --require-model" in text
    # USER comes after the last RUN: nothing at run time is root
    assert instructions.index("USER") > max(i for i, k in enumerate(instructions) if k == "RUN")
    assert re.search(r"^USER 10001$", text, re.M) and "--uid 10001" in text
    assert "HEALTHCHECK" in instructions and "/healthz" in text
    assert '"--host", "0.0.0.0"' in text


def test_hadolint_finds_nothing():
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    proc = subprocess.run([hadolint, "--no-color", str(ROOT / "Dockerfile")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_dockerignore_keeps_build_outputs_out():
    ignored = (ROOT / ".dockerignore").read_text("utf-8").split()
    assert {".venv", ".git", "embeddings/*"} <= set(ignored)


def test_readme_documents_every_setting_and_the_two_commands():
    readme = (ROOT / "README.md").read_text("utf-8")
    for env, _default, _help in describe():
        assert f"`{env}`" in readme, env
    assert "make run" in readme and "make test" in readme
    assert "make test" in (ROOT / ".ci" / "run").read_text("utf-8")
