"""The three Milvus collections and the sealed manifests that say which rows a reader sees.

- `<name>`: one row per passage: its citation fields as scalars, the whole stored record,
  `terms` (our index terms as key tokens) with a BM25 Function, and the passage vector.
  Every row carries `gen`, the generation that wrote it; rows are never updated.
- `<name>_df`: document-frequency deltas per (term, generation): + for passages a generation
  added, - for those it replaced. The archive's DF at generation G is the sum over the rows
  of the visible generations, one query per question, exact and versioned like the passages.
- `<name>_meta`: manifests in chunks (key manifest:G:i) and one `published:G` row per publish.

A generation G is visible as: rows with floor <= gen <= G, minus the superseded rows of
replaced issues (`hidden`: file and the generation below which its rows are old). Publishing
is inserting the one `published` row after everything else is written and flushed, so a
reader sees either the old generation or the new one whole, never half an issue; a writer
that dies leaves rows above the published generation that no reader sees and the next writer
deletes. Superseded rows are deleted by a later writer, once no generation still kept shows
them (a citation may name any kept generation).
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from typing import Any

from ... import __version__
from ...errors import IndexCorrupt, IndexMismatch, IndexMissing
from .dialect import DUMMY_DIM, MAX_VARCHAR, Dialect, quote, unavailable

FORMAT = "milvus-1"
CHUNK = 60_000  # manifest characters per meta row (ASCII JSON: bytes = characters)
STRONG = "Strong"  # every read sees every write acknowledged before it (publish order holds)


def names(collection: str) -> tuple[str, str, str]:
    """(passages, df, meta) collection names."""
    return collection, f"{collection}_df", f"{collection}_meta"


def create_collections(client: Any, dialect: Dialect, collection: str, dim: int | None) -> None:
    """Create whichever of the three collections is missing; refuse a passage collection whose
    vectors do not fit (another model or lexical only)."""
    from pymilvus import DataType, Function, FunctionType  # noqa: PLC0415

    passages, df, meta = names(collection)
    if client.has_collection(passages):
        have = _dense_dim(client.describe_collection(passages))
        if have != dim:
            holds = f"{have}-d vectors" if have else "no vectors"
            needs = f"{dim}-d" if dim else "none (lexical only)"
            raise IndexMismatch(f"Milvus collection {passages} holds {holds}, the build needs "
                                f"{needs}: use another QA_MILVUS_COLLECTION, or drop this one")
    else:
        s = client.create_schema(auto_id=False)
        s.add_field("pid", DataType.INT64, is_primary=True)
        s.add_field("gen", DataType.INT64)
        s.add_field("file", DataType.VARCHAR, max_length=512)
        s.add_field("story", DataType.INT64)
        s.add_field("paragraph", DataType.INT64)
        for field in ("paper", "date", "edition"):
            s.add_field(field, DataType.VARCHAR, max_length=512)
        s.add_field("record", DataType.VARCHAR, max_length=MAX_VARCHAR)
        s.add_field("terms", DataType.VARCHAR, max_length=MAX_VARCHAR, enable_analyzer=True,
                    analyzer_params=dialect.analyzer)
        s.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
        s.add_function(Function(name="terms_bm25", function_type=FunctionType.BM25,
                                input_field_names=["terms"], output_field_names=["sparse"]))
        ip = client.prepare_index_params()
        ip.add_index("sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25",
                     params={"bm25_k1": 1.2, "bm25_b": 0.75})
        if dim:
            s.add_field("dense", DataType.FLOAT_VECTOR, dim=dim)
            kind, params = dialect.dense_index()
            ip.add_index("dense", index_type=kind, metric_type="COSINE", params=params)
        client.create_collection(passages, schema=s, index_params=ip, consistency_level=STRONG)
    if not client.has_collection(df):
        s = client.create_schema(auto_id=True)
        s.add_field("id", DataType.INT64, is_primary=True)
        s.add_field("term", DataType.INT64)
        s.add_field("gen", DataType.INT64)
        s.add_field("df", DataType.INT64)
        s.add_field("v", DataType.FLOAT_VECTOR, dim=DUMMY_DIM)
        ip = client.prepare_index_params()
        ip.add_index("v", index_type="FLAT", metric_type="L2")
        client.create_collection(df, schema=s, index_params=ip, consistency_level=STRONG)
    if not client.has_collection(meta):
        s = client.create_schema(auto_id=False)
        s.add_field("key", DataType.VARCHAR, is_primary=True, max_length=128)
        s.add_field("kind", DataType.VARCHAR, max_length=32)
        s.add_field("gen", DataType.INT64)
        s.add_field("body", DataType.VARCHAR, max_length=MAX_VARCHAR)
        s.add_field("v", DataType.FLOAT_VECTOR, dim=DUMMY_DIM)
        ip = client.prepare_index_params()
        ip.add_index("v", index_type="FLAT", metric_type="L2")
        client.create_collection(meta, schema=s, index_params=ip, consistency_level=STRONG)


def load(client: Any, collection: str) -> None:
    """Load whichever of the collections exist into memory (Milvus answers nothing before)."""
    for name in names(collection):
        if client.has_collection(name):
            client.load_collection(name)


def _dense_dim(description: dict) -> int | None:
    for f in description.get("fields", []):
        if f.get("name") == "dense":
            return int(f.get("params", {}).get("dim"))
    return None


def generation_name(number: int) -> str:
    """gen-000007, as the embedded backend names generations."""
    return f"gen-{number:06d}"


def published(client: Any, collection: str) -> int | None:
    """The newest published generation number, or None."""
    meta = names(collection)[2]
    if not client.has_collection(meta):
        return None
    rows = client.query(meta, filter='kind == "published"', output_fields=["gen"],
                        consistency_level=STRONG)
    return max((int(r["gen"]) for r in rows), default=None)


def high_water(client: Any, collection: str) -> int:
    """The highest generation number ever handed out (0 when none)."""
    rows = client.query(names(collection)[2], filter='kind == "manifest" or kind == "claimed"',
                        output_fields=["gen"], consistency_level=STRONG)
    return max((int(r["gen"]) for r in rows), default=0)


def checksum(manifest: dict) -> str:
    """SHA-256 of the manifest's canonical JSON, its own checksum left out."""
    body = {k: v for k, v in manifest.items() if k != "checksum"}
    raw = json.dumps(body, sort_keys=True, ensure_ascii=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(raw.encode()).hexdigest()


def new_manifest(number: int, *, collection: str, tokenizer: str, model: str | None,
                 dim: int | None, encoder: dict | None, issues: dict, floor: int,
                 hidden: list[list], tokens: int) -> dict:
    """A sealed manifest for generation `number`."""
    import jieba  # noqa: PLC0415
    import pymilvus  # noqa: PLC0415

    manifest = {
        "format": FORMAT, "backend": "milvus", "collection": collection,
        "generation": generation_name(number), "number": number,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "versions": {"qa": __version__, "pymilvus": pymilvus.__version__,
                     "jieba": jieba.__version__},
        "tokenizer": tokenizer, "model": model, "dim": dim, "encoder": encoder,
        "retrievers": ["lexical", "dense"] if model else ["lexical"],
        "counts": {"issues": len(issues), "stories": sum(i["stories"] for i in issues.values()),
                   "passages": sum(i["passages"] for i in issues.values()), "segments": 0,
                   "tokens": tokens},
        "issues": issues, "floor": floor, "hidden": hidden,
    }
    return manifest | {"checksum": checksum(manifest)}


def write_manifest(client: Any, collection: str, manifest: dict) -> None:
    """Store a manifest in chunks (not yet published)."""
    raw = json.dumps(manifest, sort_keys=True, ensure_ascii=True, separators=(",", ":"))
    n = manifest["number"]
    rows = [{"key": f"manifest:{n:09d}:{i:05d}", "kind": "manifest", "gen": n,
             "body": raw[start:start + CHUNK], "v": [0.0] * DUMMY_DIM}
            for i, start in enumerate(range(0, len(raw), CHUNK))]
    client.insert(names(collection)[2], rows)


def publish(client: Any, collection: str, number: int) -> None:
    """The switch: one row saying generation `number` is published."""
    client.insert(names(collection)[2], [{"key": f"published:{number:09d}", "kind": "published",
                                           "gen": number, "body": "", "v": [0.0] * DUMMY_DIM}])


def read_manifest(client: Any, dialect: Dialect, collection: str,
                  number: int | None = None) -> dict:
    """The checked manifest of a generation (default: the published one)."""
    try:
        number = number if number is not None else published(client, collection)
        if number is None:
            raise IndexMissing(f"nothing published in Milvus collection {collection} at "
                               f"{dialect.uri}: build it with `qa index`")
        rows = client.query(names(collection)[2],
                            filter=f'kind == "manifest" and gen == {int(number)}',
                            output_fields=["key", "body"], consistency_level=STRONG)
    except (IndexMissing, IndexMismatch):
        raise
    except Exception as exc:
        raise unavailable(exc, dialect.uri, "reading the manifest") from None
    where = f"Milvus {collection} {generation_name(number)}"
    if not rows:
        raise IndexCorrupt(f"{where}: its manifest is missing")
    try:
        manifest = json.loads("".join(r["body"] for r in sorted(rows, key=lambda r: r["key"])))
    except json.JSONDecodeError as exc:
        raise IndexCorrupt(f"{where}: manifest is not valid JSON ({exc})") from None
    if manifest.get("format") != FORMAT:
        raise IndexMismatch(f"{where}: format {manifest.get('format')!r}, this qa reads "
                            f"{FORMAT!r}; rebuild with `qa index`")
    if manifest.get("checksum") != checksum(manifest):
        raise IndexCorrupt(f"{where}: manifest checksum does not match (altered or damaged)")
    issues = manifest["issues"]
    if manifest["counts"]["passages"] != sum(i["passages"] for i in issues.values()):
        raise IndexCorrupt(f"{where}: manifest counts disagree with its issues")
    return manifest


def visible(manifest: dict) -> str:
    """The filter expression for the rows generation `manifest` shows."""
    parts = [f"gen >= {int(manifest['floor'])}", f"gen <= {int(manifest['number'])}"]
    parts += [f"not (file == {quote(f)} and gen < {int(below)})"
              for f, below in manifest["hidden"]]
    return " and ".join(parts)
