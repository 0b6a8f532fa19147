"""The `qa` command line: parse, index, add, info, verify, ask, eval, serve."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from .config import Settings
from .ingest import IngestError, parse_file


def _echo_json(obj: object) -> None:
    click.echo(json.dumps(obj, ensure_ascii=False, indent=2))


@click.group()
@click.option("--index-dir", envvar="QA_INDEX_DIR", default=None,
              help="Index directory (default: QA_INDEX_DIR or embeddings/default).")
@click.option("--model", envvar="QA_MODEL", default=None,
              help="Sentence-transformers model name or directory; 'none' for lexical only.")
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


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="qa")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
