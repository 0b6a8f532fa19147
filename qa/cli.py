"""The `qa` command line: parse, index, add, info, verify, ask, eval, serve."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from .build import NothingToIndex, WriteReport, add, build
from .config import Settings, validate_admin_token
from .evaluate import EvalFileError, evaluate, format_report, load_questions
from .generations import recover as recover_index
from .index import Index, IndexCorrupt, IndexError_, current_generation, read_manifest
from .ingest import IngestError, parse_file
from .runtime import SearcherHolder, open_encoder
from .search import QuestionError


def _echo_json(obj: object) -> None:
    click.echo(json.dumps(obj, ensure_ascii=False, indent=2))


@click.group()
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


@cli.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="One JSON object instead of an outline.")
def parse(file: Path, as_json: bool) -> None:
    """Show what ingest makes of an issue FILE before it goes live."""
    try:
        issue = parse_file(file)
    except IngestError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        obj = issue.to_json()
        obj["file"] = str(file)
        _echo_json(obj)
        return
    n = sum(len(s.passages) for s in issue.stories)
    click.echo(f"{file}  ({issue.encoding}, {len(issue.stories)} stories, {n} passages)")
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
        click.echo(f"note: {status.note}", err=True)
    return status.encoder


def _report(report: WriteReport, as_json: bool) -> None:
    if as_json:
        _echo_json(report.to_json())
        return
    for o in report.outcomes:
        extra = f" ({o.passages} passages)" if o.passages else ""
        click.echo(f"{o.status:9} {o.file}{extra}" + (f": {o.reason}" if o.reason else ""))
    mode = report.model or "lexical only"
    for w in report.warnings:
        click.echo(f"warning: {w}", err=True)
    if report.generation == report.previous:
        click.echo(f"no change: generation {report.generation} ({mode})")
    else:
        click.echo(f"published {report.generation} ({mode}; {report.embedded} passages embedded; "
                   f"{report.seconds:.1f} s)")


@cli.command("index")
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--if-missing", is_flag=True, help="Do nothing when an index is already published.")
@click.option("--require-model", is_flag=True,
              help="Fail instead of building lexical only when the model cannot be loaded.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_obj
def index_cmd(settings: Settings, paths: tuple[Path, ...], if_missing: bool, require_model: bool,
              as_json: bool) -> None:
    """Build a new index generation from scratch (default: the seeds directory)."""
    root = Path(settings.index_dir)
    if if_missing and current_generation(root):
        click.echo(f"index {root} is already built ({current_generation(root)})")
        return
    if require_model:
        status = open_encoder(settings)
        if status.encoder is None:
            raise click.ClickException(f"--require-model: {status.note}")
        encoder = status.encoder
    else:
        encoder = _write_encoder(settings)
    try:
        report = build(list(paths) or [settings.seeds_dir], settings, encoder, progress=not as_json)
    except (NothingToIndex, IndexError_) as exc:
        raise _fail(exc) from None
    _report(report, as_json)


@cli.command("add")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_obj
def add_cmd(settings: Settings, files: tuple[Path, ...], as_json: bool) -> None:
    """Add new issues (or replace changed ones) without a rebuild; only new text is embedded."""
    root = Path(settings.index_dir)
    try:
        model = read_manifest(root)["model"] if current_generation(root) else None
    except IndexCorrupt:
        model = None  # add() refuses under the lock, naming the generation to recover
    except IndexError_ as exc:
        raise _fail(exc) from None
    encoder = _write_encoder(settings, model) if (model or not current_generation(root)) else None
    try:
        report = add(list(files), settings, encoder, progress=not as_json)
    except (NothingToIndex, IndexError_) as exc:
        raise _fail(exc) from None
    _report(report, as_json)
    if any(o.status == "rejected" for o in report.outcomes):
        sys.exit(1)


def _load(settings: Settings, verify: bool | None = None) -> Index:
    try:
        return Index.load(settings.index_dir, verify=verify)
    except IndexError_ as exc:
        raise _fail(exc) from None


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_obj
def info(settings: Settings, as_json: bool) -> None:
    """What is indexed: generation, model or lexical only, issues, stories, passages."""
    index = _load(settings, verify=False)
    m = index.manifest
    obj = {"index_dir": str(settings.index_dir), "generation": m["generation"],
           "created": m["created"], "model": m["model"] or "lexical only", "dim": m["dim"],
           "encoder": m.get("encoder"), "tokenizer": m["tokenizer"],
           "retrievers": m["retrievers"],
           "issues": m["counts"]["issues"], "stories": m["counts"]["stories"],
           "passages": m["counts"]["passages"], "segments": m["counts"]["segments"],
           "files": sorted(m["issues"]), "versions": m["versions"]}
    if as_json:
        _echo_json(obj)
        return
    for key in ("index_dir", "generation", "created", "model", "tokenizer", "issues", "stories",
                "passages", "segments"):
        click.echo(f"{key:11} {obj[key]}")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print the outcome as JSON.")
@click.pass_obj
def recover(settings: Settings, as_json: bool) -> None:
    """Publish the newest generation that verifies (after a lost CURRENT or a damaged segment)."""
    try:
        previous, now, failures = recover_index(Path(settings.index_dir), settings.lock_timeout)
    except IndexError_ as exc:
        raise _fail(exc) from None
    except OSError as exc:
        raise click.ClickException(f"cannot write the index: {exc.strerror or exc}") from None
    if as_json:
        _echo_json({"previous": previous, "current": now, "failed": failures})
        return
    for name, why in failures.items():
        click.echo(f"skipped {name}: {why}")
    if previous == now:
        click.echo(f"ok: {now} is published and verifies; nothing to do")
    else:
        click.echo(f"recovered: CURRENT now names {now} (was {previous or 'missing'})")


@cli.command()
@click.pass_obj
def verify(settings: Settings) -> None:
    """Check every file of the published generation against its manifest checksums."""
    index = _load(settings, verify=True)
    click.echo(f"ok: {index.generation}, {index.n_passages} passages, "
               f"{len(index.segments)} segments verified")


def _searcher(settings: Settings):
    holder = SearcherHolder(settings)
    try:
        searcher = holder.refresh()
    except IndexError_ as exc:
        raise _fail(exc) from None
    if searcher is None:  # the operator may see paths: the detail, not the public message
        raise click.ClickException(holder.detail or holder.error or "index could not be loaded")
    if holder.note:
        click.echo(f"note: {holder.note}", err=True)
    return searcher


def _citation(r: dict) -> str:
    return (f"{r['title'] or '(无标题)'} · {r['file']} · 第{r['paragraph']}段"
            + (f" · {r['byline']}" if r.get("byline") else ""))


@cli.command()
@click.argument("question")
@click.option("--top-k", default=None, type=int, help="How many passages (default 5).")
@click.option("--json", "as_json", is_flag=True, help="Print the API's JSON shape.")
@click.pass_obj
def ask(settings: Settings, question: str, top_k: int | None, as_json: bool) -> None:
    """Answer a QUESTION from the archive, with citations."""
    searcher = _searcher(settings)
    try:
        result = searcher.ask(question, top_k)
    except QuestionError as exc:
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


@cli.command("eval")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_obj
def eval_cmd(settings: Settings, file: Path, as_json: bool) -> None:
    """Score the index against a question FILE (JSONL, ../shared/eval/README.md format)."""
    try:
        questions = load_questions(file)
    except EvalFileError as exc:
        raise _fail(exc) from None
    report = evaluate(_searcher(settings), questions)
    if as_json:
        _echo_json(report)
    else:
        click.echo(format_report(report))


@cli.command()
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
    from .serve import run_gunicorn

    run_gunicorn(settings, host, port, workers or settings.workers)


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="qa")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
