"""The `qa` command line: parse, index, add, reindex, info, verify, recover, ask, eval, serve.

Results go to stdout (and only the result: `--json` output is one clean JSON document); notes
and warnings go to stderr, after the result, so a failing command shows only its one-line error.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from click.core import ParameterSource

from . import __version__, backends
from .build import NothingToIndex, WriteReport, given_meta, reindex
from .config import Settings, validate_admin_token
from .evaluate import EvalFileError, evaluate, format_report, load_questions
from .generations import recover as recover_index
from .index import IndexCorrupt, IndexError_
from .ingest import IngestError, MetaError, parse_file, read_sidecar
from .runtime import SearcherHolder, open_encoder
from .search import QuestionError, validate_question
from .sources import check_sources

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def _echo_json(obj: object) -> None:
    click.echo(json.dumps(obj, ensure_ascii=False, indent=2))


def _note(text: str, kind: str = "note") -> None:
    """Queue a note for stderr, printed once the command has succeeded (never before an error)."""
    click.get_current_context().find_root().meta.setdefault("qa.notes", []).append(
        f"{kind}: {text}")


def _flush_notes() -> None:
    ctx = click.get_current_context().find_root()
    for line in dict.fromkeys(ctx.meta.pop("qa.notes", [])):
        click.echo(line, err=True)


def _model_given() -> str | None:
    """How the user named a model (`--model X` or `QA_MODEL=X`), when they did."""
    ctx = click.get_current_context().find_root()
    return ctx.meta.get("qa.model_given")


def _unused_model_note(generation: str, what: str) -> None:
    # a model the user asked for that a lexical-only index cannot use must not pass unnoticed
    given = _model_given()
    if given:
        _note(f"{given} is not used: {generation} was built without a sentence model (lexical "
              f"only), so {what}; `qa reindex` with that model rebuilds it with one")


@click.group(context_settings=CONTEXT, epilog="""\b
Examples:
  qa index                                  build the seeds index
  qa add new-issue.txt --paper 台州日报 --date 2024-03-05 --edition A3
  qa ask "玉环市有几个国家4A级旅游景区?"
  qa reindex                                rebuild exactly what is published, from its sources
""")
@click.version_option(__version__, "-V", "--version", prog_name="qa",
                      message="%(prog)s %(version)s")
@click.option("--index-dir", envvar="QA_INDEX_DIR", default=None,
              help="Index directory (default: QA_INDEX_DIR or embeddings/default).")
@click.option("--model", envvar="QA_MODEL", default=None,
              help="Sentence model: multilingual-e5-small-q4 (bundled, the default), a "
                   "sentence-transformers name or directory; 'none' for lexical only.")
@click.pass_context
def cli(ctx: click.Context, index_dir: str | None, model: str | None) -> None:
    """Question answering over an archive of Chinese newspaper issues."""
    overrides = {k: v for k, v in {"index_dir": index_dir, "model": model}.items() if v}
    try:
        ctx.obj = Settings.from_env(**overrides)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    source = ctx.get_parameter_source("model")
    if model and ctx.obj.dense_enabled:
        if source == ParameterSource.COMMANDLINE:
            ctx.meta["qa.model_given"] = f"--model {model}"
        elif source == ParameterSource.ENVIRONMENT:
            ctx.meta["qa.model_given"] = f"QA_MODEL={model}"


@cli.result_callback()
def _after(*_args: object, **_kwargs: object) -> None:
    _flush_notes()


@cli.command(epilog="""\b
Examples:
  qa parse seeds/002_fcb78bd655ccb902.txt
  qa parse new-issue.txt --json
""")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="One JSON object instead of an outline.")
def parse(file: Path, as_json: bool) -> None:
    """Show what ingest makes of an issue FILE before it goes live."""
    try:
        issue = parse_file(file)
        for key, value in (read_sidecar(file) or {}).items():
            setattr(issue, key, value)
    except IngestError as exc:
        raise click.ClickException(str(exc)) from None
    except MetaError as exc:
        raise click.ClickException(f"{file.name}: {exc}") from None
    if as_json:
        obj = issue.to_json()
        obj["file"] = str(file)
        _echo_json(obj)
        return
    n = sum(len(s.passages) for s in issue.stories)
    click.echo(f"{file}  ({issue.encoding}, {len(issue.stories)} stories, {n} passages)")
    if any(issue.meta.values()):
        click.echo("   " + " · ".join(v for v in issue.meta.values() if v))
    for i, s in enumerate(issue.stories, 1):
        click.echo(f"\n{i}. {s.title or '(无标题)'}")
        if s.subtitle:
            click.echo(f"   副标题: {s.subtitle}")
        click.echo(f"   作者: {s.byline or '—'}")
        for c in s.captions:
            click.echo(f"   图注: {c}")
        for p in s.passages:
            text = p.text if len(p.text) <= 60 else p.text[:58] + "…"
            click.echo(f"   ¶{p.paragraph} [行 {p.lines[0]}-{p.lines[1]}] {text}")


def _fail(exc: Exception) -> click.ClickException:
    return click.ClickException(str(exc))


def _write_encoder(settings: Settings, index_model: str | None = None):
    try:
        status = open_encoder(settings, index_model)
    except IndexError_ as exc:
        raise _fail(exc) from None
    if status.note:
        _note(status.note)
    return status.encoder


def _report(report: WriteReport, as_json: bool) -> None:
    for w in report.warnings:
        _note(w, "warning")  # after the result, on stderr
    if as_json:
        _echo_json(report.to_json())
        return
    for o in report.outcomes:
        extra = f" ({o.passages} passages)" if o.passages else ""
        click.echo(f"{o.status:9} {o.file}{extra}" + (f": {o.reason}" if o.reason else ""))
    mode = report.model or "lexical only"
    if report.generation == report.previous:
        click.echo(f"no change: generation {report.generation} ({mode})")
    else:
        click.echo(f"published {report.generation} ({mode}; {report.embedded} passages embedded; "
                   f"{report.seconds:.1f} s)")


@cli.command("index", epilog="""\b
Examples:
  qa index                       the seeds directory (QA_SEEDS_DIR)
  qa index issues/ --if-missing  build only when no index is published yet
  qa --model none index issues/  lexical only
A full build from files: metadata comes from each file's X.txt.meta.json sidecar, if any.
To rebuild what is published (every issue added since, with its metadata), use `qa reindex`.
""")
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--if-missing", is_flag=True, help="Do nothing when an index is already published.")
@click.option("--require-model", is_flag=True,
              help="Fail instead of building lexical only when the model cannot be loaded.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_obj
def index_cmd(settings: Settings, paths: tuple[Path, ...], if_missing: bool, require_model: bool,
              as_json: bool) -> None:
    """Build a new index generation from scratch (default: the seeds directory)."""
    try:
        built = backends.current_generation(settings) if if_missing else None
    except IndexError_ as exc:
        raise _fail(exc) from None
    if built:
        click.echo(f"index {_where(settings)} is already built ({built})")
        return
    encoder = _require_model(settings) if require_model else _write_encoder(settings)
    try:
        report = backends.build(list(paths) or [settings.seeds_dir], settings, encoder,
                                progress=not as_json)
    except (NothingToIndex, IndexError_) as exc:
        raise _fail(exc) from None
    _report(report, as_json)


def _require_model(settings: Settings):
    status = open_encoder(settings)
    if status.encoder is None:
        raise click.ClickException(f"--require-model: {status.note}")
    return status.encoder


@cli.command("add", epilog="""\b
Examples:
  qa add new-issue.txt
  qa add 2024-03-05.txt --paper 台州日报 --date 2024-03-05 --edition A3
  qa add issues/                 every *.txt in it (any case); other files are listed as skipped
  qa add 005.txt --replace       005.txt is indexed with other content: replace it
  qa add 005.txt --date 2024-03-06   same file, corrected date: its metadata is replaced
\b
Metadata may also sit beside a file, in X.txt.meta.json:
  {"paper": "台州日报", "date": "2024-03-05", "edition": "A3"}
Options override the sidecar; fields given neither way keep what the archive holds;
an empty value (--edition "") clears a field.
""")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--paper", default=None, help="Newspaper (报名) of every file given.")
@click.option("--date", default=None, help="Issue date, YYYY-MM-DD, of every file given.")
@click.option("--edition", default=None, help="Edition or page (版次), e.g. A3 or 第3版.")
@click.option("--replace", is_flag=True,
              help="Replace an indexed issue of the same name that has other content.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_obj
def add_cmd(settings: Settings, files: tuple[Path, ...], paper: str | None, date: str | None,
            edition: str | None, replace: bool, as_json: bool) -> None:
    """Add new issues, or replace changed ones, without a rebuild; only new text is embedded.

    Each file is reported as added, unchanged, replaced, rejected (with the reason) or skipped;
    the exit status is 1 when any file was rejected. Every published file is kept in the
    index's source archive, so `qa reindex` can rebuild the archive without it."""
    try:
        meta = given_meta(paper, date, edition)
    except MetaError as exc:
        raise click.ClickException(str(exc)) from None
    try:
        current = backends.current_generation(settings)
        model = backends.read_published_manifest(settings)["model"] if current else None
    except IndexCorrupt:
        model = None  # add() refuses under the lock, naming the generation to recover
    except IndexError_ as exc:
        raise _fail(exc) from None
    if model or not current:
        encoder = _write_encoder(settings, model)
    else:
        encoder = None
        _unused_model_note(current or "the index", "new passages are not embedded")
    try:
        report = backends.add(list(files), settings, encoder, progress=not as_json, meta=meta,
                              replace=replace)
    except (NothingToIndex, IndexError_) as exc:
        raise _fail(exc) from None
    _report(report, as_json)
    if any(o.status == "rejected" for o in report.outcomes):
        _flush_notes()
        sys.exit(1)


@cli.command("reindex", epilog="""\b
Examples:
  qa reindex                       same model, fresh parse (e.g. after an ingest fix)
  qa --model BAAI/bge-small-zh-v1.5 reindex   switch the sentence model
""")
@click.option("--require-model", is_flag=True,
              help="Fail instead of building lexical only when the model cannot be loaded.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_obj
def reindex_cmd(settings: Settings, require_model: bool, as_json: bool) -> None:
    """Rebuild the published archive from its kept sources into a new generation.

    The same issues with the same metadata, parsed and embedded afresh with the index's own
    model (or the one --model / QA_MODEL names: how to move an archive to another model); the
    original files are not needed."""
    if settings.backend != "embedded":
        raise click.ClickException("qa reindex rebuilds from the embedded backend's kept "
                                   "sources; on Milvus, rebuild with `qa index FILES`")
    try:
        base = backends.read_published_manifest(settings)
    except IndexError_ as exc:
        raise _fail(exc) from None
    if click.get_current_context().find_root().params.get("model") is None:
        # no model asked for: keep the archive's, never switch it to the default silently
        settings = settings.with_(model=base["model"] or "none")
    encoder = _require_model(settings) if require_model else _write_encoder(settings)
    if encoder is None and base["model"] and settings.dense_enabled:
        raise click.ClickException(
            f"{base['model']} cannot be loaded, and rebuilding without it would drop dense "
            "search; load it, or pass --model none to rebuild lexical only")
    try:
        report = reindex(settings, encoder, progress=not as_json)
    except (NothingToIndex, IndexError_) as exc:
        raise _fail(exc) from None
    _report(report, as_json)


def _where(settings: Settings) -> str:
    if settings.backend == "milvus":
        return f"{settings.milvus_uri} ({settings.milvus_collection})"
    return str(settings.index_dir)


def _load(settings: Settings, verify: bool | None = None) -> backends.Archive:
    try:
        return backends.load_index(settings, verify=verify)
    except IndexError_ as exc:
        raise _fail(exc) from None


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_obj
def info(settings: Settings, as_json: bool) -> None:
    """What is indexed: generation, model or lexical only, issues, stories, passages."""
    index = _load(settings, verify=False)
    m = index.manifest
    obj = {"index_dir": _where(settings), "backend": settings.backend,
           "generation": m["generation"],
           "created": m["created"], "model": m["model"] or "lexical only", "dim": m["dim"],
           "encoder": m.get("encoder"), "tokenizer": m["tokenizer"],
           "retrievers": m["retrievers"],
           "issues": m["counts"]["issues"], "stories": m["counts"]["stories"],
           "passages": m["counts"]["passages"], "segments": m["counts"]["segments"],
           "files": sorted(m["issues"]), "versions": m["versions"],
           "papers": sorted({i["paper"] for i in m["issues"].values() if i.get("paper")}),
           "dates": _date_range(m["issues"].values())}
    if as_json:
        _echo_json(obj)
        return
    for key in ("index_dir", "generation", "created", "model", "tokenizer", "issues", "stories",
                "passages", "segments"):
        click.echo(f"{key:11} {obj[key]}")
    if obj["papers"]:
        click.echo(f"{'papers':11} {', '.join(obj['papers'])}")
    if obj["dates"]:
        click.echo(f"{'dates':11} {obj['dates'][0]} – {obj['dates'][1]}")


def _date_range(entries) -> list[str] | None:
    dates = sorted(e["date"] for e in entries if e.get("date"))
    return [dates[0], dates[-1]] if dates else None


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print the outcome as JSON.")
@click.pass_obj
def recover(settings: Settings, as_json: bool) -> None:
    """Publish the newest generation that verifies (after a lost CURRENT or a damaged segment)."""
    if settings.backend != "embedded":
        raise click.ClickException("qa recover repairs the embedded backend's files; a Milvus "
                                   "generation is published by one row and never half-written")
    try:
        previous, now, failures, set_aside = recover_index(Path(settings.index_dir),
                                                           settings.lock_timeout)
    except IndexError_ as exc:
        raise _fail(exc) from None
    except OSError as exc:
        raise click.ClickException(f"cannot write the index: {exc.strerror or exc}") from None
    if as_json:
        _echo_json({"previous": previous, "current": now, "failed": failures,
                    "quarantined": set_aside})
        return
    for name, why in failures.items():
        click.echo(f"skipped {name}: {why}")
        files = set_aside.get(name) or []
        click.echo(f"  moved to quarantine/{name}.json, its data kept"
                   + (f"; not in {now}: {', '.join(files)} (their sources are kept in "
                      "sources/: `qa add` them again)" if files else ""))
    if previous == now:
        click.echo(f"ok: {now} is published and verifies; nothing to do")
    else:
        click.echo(f"recovered: CURRENT now names {now} (was {previous or 'missing'})")


@cli.command()
@click.pass_obj
def verify(settings: Settings) -> None:
    """Check every file of the published generation, and every kept source of its issues,
    against the manifest's checksums."""
    if settings.backend == "milvus":
        from .backends.milvus import MilvusBackend  # noqa: PLC0415

        try:
            index = MilvusBackend.from_settings(settings).verify()
        except IndexError_ as exc:
            raise _fail(exc) from None
        click.echo(f"ok: {index.generation}, {index.n_passages} passages, "
                   f"{len(index.manifest['issues'])} issues, each with every passage in Milvus")
        return
    index = _load(settings, verify=True)
    problems = check_sources(Path(settings.index_dir), index.manifest)
    damaged = [p for p in problems if "no source kept" not in p]
    if damaged:
        raise click.ClickException(f"{index.generation}: the index verifies but `qa reindex` "
                                   "could not rebuild it: " + "; ".join(damaged))
    if problems:
        _note(f"{len(problems)} issue(s) have no kept source (indexed before sources were "
              "kept): `qa add` their files again, unchanged, to keep them")
    click.echo(f"ok: {index.generation}, {index.n_passages} passages, "
               f"{len(index.segments)} segments, {len(index.manifest['issues']) - len(problems)} "
               "sources verified")


def _searcher(settings: Settings):
    holder = SearcherHolder(settings)
    try:
        searcher = holder.refresh()
    except IndexError_ as exc:
        raise _fail(exc) from None
    if searcher is None:  # the operator may see paths: the detail, not the public message
        raise click.ClickException(holder.detail or holder.error or "index could not be loaded")
    if searcher.index.model is None and _model_given():
        _unused_model_note(searcher.index.generation, "search is lexical only")
    elif holder.note:
        _note(holder.note)
    return searcher


def _citation(r: dict) -> str:
    where = " ".join(v for v in (r.get("paper"), r.get("date"), r.get("edition")) if v)
    return (f"{r['title'] or '(无标题)'} · " + (f"{where} · " if where else "")
            + f"{r['file']} · 第{r['paragraph']}段"
            + (f" · {r['byline']}" if r.get("byline") else ""))


@cli.command(epilog="""\b
Examples:
  qa ask "玉环市有几个国家4A级旅游景区?"
  qa ask "玉环市有几个国家4A级旅游景区?" --top-k 3 --json
""")
@click.argument("question")
@click.option("--top-k", default=None, type=int, help="How many passages (default 5).")
@click.option("--json", "as_json", is_flag=True, help="Print the API's JSON shape.")
@click.pass_obj
def ask(settings: Settings, question: str, top_k: int | None, as_json: bool) -> None:
    """Answer a QUESTION from the archive, with citations."""
    try:  # a bad question is reported before anything is loaded
        validate_question(settings, question, top_k)
    except QuestionError as exc:
        raise _fail(exc) from None
    searcher = _searcher(settings)
    try:
        result = searcher.ask(question, top_k)
    except (QuestionError, IndexError_) as exc:  # IndexError_: e.g. Milvus went away
        raise _fail(exc) from None
    if as_json:
        from .api_schema import result_json

        _echo_json(result_json(result))
        return
    top = result.answers[0] if result.answers else None
    if not result.answerable:
        click.echo("没有把握的答案 (no confident answer). Closest passages:")
    elif top is not None and top.short is not None:
        click.echo(f"答案：{top.record['text'][top.short[0]:top.short[1]]}")
    for n, a in enumerate(result.answers, 1):
        click.echo(f"\n{n}. [{a.confidence:.2f}] {_citation(a.record)}")
        click.echo(f"   ▶ {a.highlight}")
    click.echo(f"\n({result.generation}, {result.mode}, {result.took_ms:.0f} ms)")


@cli.command("eval", epilog="""\b
Example:
  qa eval ../shared/eval/dev.jsonl
""")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_obj
def eval_cmd(settings: Settings, file: Path, as_json: bool) -> None:
    """Score the index against a question FILE (JSONL, ../shared/eval/README.md format)."""
    try:
        questions = load_questions(file)
    except EvalFileError as exc:
        raise _fail(exc) from None
    try:
        report = evaluate(_searcher(settings), questions)
    except IndexError_ as exc:
        raise _fail(exc) from None
    if as_json:
        _echo_json(report)
    else:
        click.echo(format_report(report))


@cli.command(epilog="""\b
Examples:
  qa serve                                   http://127.0.0.1:8000
  qa serve --host 0.0.0.0 --port 9000 --workers 4
""")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=int, help="Port to listen on.")
@click.option("--workers", default=None, type=int, help="Worker processes (default QA_WORKERS).")
@click.pass_obj
def serve(settings: Settings, host: str, port: int, workers: int | None) -> None:
    """Serve the web form and the JSON API under gunicorn (index and model loaded per worker)."""
    if settings.debug:
        raise click.ClickException("refusing to serve in production with QA_DEBUG on; use "
                                   "`flask --app qa.web run --debug` for development")
    try:  # one line at start, not a silently disabled admin API
        validate_admin_token(settings)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    _check_port(host, port)
    from .serve import run_gunicorn

    workers = workers or settings.workers
    if settings.backend == "milvus" and "://" not in settings.milvus_uri and workers > 1:
        # milvus-lite opens a database in one process only
        _note(f"a milvus-lite path is served by one worker, not {workers}; for more, run "
              "`milvus-lite server` (or a Milvus server) and set QA_MILVUS_URI to its URL")
        _flush_notes()
        workers = 1
    run_gunicorn(settings, host, port, workers)


@cli.command("mcp", epilog="""\b
Examples:
  qa mcp                                  stdio, for a desktop assistant's MCP settings
  qa mcp --http --port 8001               streamable HTTP at http://127.0.0.1:8001/mcp
""")
@click.option("--http", is_flag=True, help="Serve streamable HTTP at /mcp instead of stdio.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address for --http.")
@click.option("--port", default=8001, show_default=True, type=int, help="Port for --http.")
@click.pass_obj
def mcp_cmd(settings: Settings, http: bool, host: str, port: int) -> None:
    """Give chatbots the archive as MCP tools: ask, get_story, list_issues (stdio by default)."""
    if http:
        _check_port(host, port)
    from .mcp import serve as serve_mcp  # the MCP SDK is loaded only for this command

    serve_mcp(settings, http=http, host=host, port=port)


def _check_port(host: str, port: int) -> None:
    # gunicorn reports a taken port in a dozen log lines and retries for seconds: one line now
    import errno
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gunicorn binds
        try:
            probe.bind(address)
        except OSError as exc:
            why = ("is already in use (another `qa serve`?); stop it or pass --port"
                   if exc.errno == errno.EADDRINUSE else f"cannot be used: {exc.strerror}")
            raise click.ClickException(f"{host}:{port} {why}") from None


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="qa")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
