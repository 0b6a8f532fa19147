"""One measured step of the benchmark, run in its own process (so its peak memory is its own)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def _encoder(kind: str):
    if kind == "hash":
        from hashenc import HashEncoder

        return HashEncoder()
    if kind != "none":  # a real model by its QA_MODEL name
        from qa.encoders import load_encoder

        return load_encoder(kind)
    return None


def main() -> None:
    """build | add | load: print one JSON line of figures."""
    p = argparse.ArgumentParser()
    p.add_argument("step", choices=["build", "add", "load"])
    p.add_argument("--index", required=True)
    p.add_argument("--paths", nargs="*", default=[])
    p.add_argument("--encoder", default="none", help="none, hash, or a QA_MODEL name")
    a = p.parse_args()
    from qa.build import add, build
    from qa.config import Settings

    settings = Settings(index_dir=a.index, model="none", tokenizer="jieba+bigram")
    enc = _encoder(a.encoder)
    started = time.perf_counter()
    if a.step == "build":
        report = build(a.paths, settings, enc)
        print(json.dumps({"seconds": time.perf_counter() - started,
                          "passages": sum(o.passages for o in report.outcomes)}))
    elif a.step == "add":
        root = Path(a.index)
        before = {f for f in root.rglob("*") if f.is_file()}
        embed = 0.0
        if enc is not None:  # time the embedding of the new issue on its own
            from qa.build import issue_records
            from qa.ingest import parse_file

            recs = [r for f in a.paths for r in issue_records(parse_file(f))]
            t = time.perf_counter()
            enc.encode_passages([r["text"] for r in recs])
            embed = time.perf_counter() - t
        started = time.perf_counter()
        report = add(a.paths, settings, enc)
        seconds = time.perf_counter() - started
        written = sum(f.stat().st_size for f in root.rglob("*") if f.is_file() and f not in before)
        print(json.dumps({"seconds": seconds, "embed_seconds": embed,
                          "seconds_excluding_embedding": seconds - embed,
                          "bytes_written": written,
                          "statuses": [o.status for o in report.outcomes]}))
    else:
        from qa.index import Index

        index = Index.load(a.index, verify=False)
        print(json.dumps({"seconds": time.perf_counter() - started,
                          "passages": index.n_passages}))


if __name__ == "__main__":
    main()
