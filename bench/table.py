"""Print the README's performance table from bench/results/*.json (newest run of each kind)."""

from __future__ import annotations

import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
ORDER = ["quick", "10k", "100k", "1m", "10k-dense", "100k-dense", "1m-dense"]


def _f(v, fmt: str) -> str:
    return "—" if v is None else fmt.format(v)


def main() -> None:
    """Markdown table, one column per scale."""
    runs = {}
    for path in sorted(RESULTS.glob("*.json")):
        name = path.stem.split("-", 3)[3]  # <yyyy>-<mm>-<dd>-<scale>[-dense]
        runs[name] = json.loads(path.read_text())
    cols = [c for c in ORDER if c in runs]
    rows = [
        ("passages", "passages", "{:,}"),
        ("full build, s", "build_s", "{:.1f}"),
        ("build peak memory, MiB", "build_peak_mib", "{:.0f}"),
        ("index load, s", "load_s", "{:.2f}"),
        ("add a 100-passage issue, s (excl. embedding)", "add_excluding_embedding_s", "{:.2f}"),
        ("bytes the add writes", "add_bytes_written", "{:,}"),
        ("query p50 / p99, ms", ("query_p50_ms", "query_p99_ms"), "{:.2f}"),
        ("peer query p50 / p99, ms", ("peer_query_p50_ms", "peer_query_p99_ms"), "{:.2f}"),
        ("recall@1 (dev at quick, synthetic above)", "recall@1", "{:.3f}"),
        ("peer recall@1", "peer_recall@1", "{:.3f}"),
        ("serving RSS (master + 2 workers), MiB", "serve_rss_mib", "{:.0f}"),
        ("ready after start, s", "ready_s", "{:.2f}"),
        ("/api/ask req/s (p99 ms)", ("http_rps", "http_p99_ms"), "{:.0f}"),
        ("bare Flask req/s (p99 ms)", ("bare_rps", "bare_p99_ms"), "{:.0f}"),
        ("ours / bare", "http_ratio", "{:.2f}"),
    ]
    print("| | " + " | ".join(cols) + " |")
    print("| --- |" + " --- |" * len(cols))
    for label, key, fmt in rows:
        cells = []
        for c in cols:
            r = runs[c]
            if isinstance(key, tuple):
                a, b = r.get(key[0]), r.get(key[1])
                sep = " / " if "p50" in key[0] else " ("
                end = "" if "p50" in key[0] else ")"
                cells.append("—" if a is None else f"{_f(a, fmt)}{sep}{_f(b, '{:.1f}')}{end}")
            else:
                cells.append(_f(r.get(key), fmt))
        print(f"| {label} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
