"""The ``relforge`` command line."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from relforge.components import ComponentKind

app = typer.Typer(
    name="relforge",
    help="RelForge: a plugin-registry research platform for relation extraction.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
    add_completion=False,
)
config_app = typer.Typer(help="Inspect configurations.", no_args_is_help=True)
app.add_typer(config_app, name="config")

from relforge.data.cli import data_app  # noqa: E402

app.add_typer(data_app, name="data")

console = Console()
err_console = Console(stderr=True)


def _fail(message: str, code: int = 1) -> None:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


@app.command()
def plugins(
    as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
) -> None:
    """List installed plugins, their versions and their components by kind."""
    from relforge.registry import get_registry

    reg = get_registry()
    info = reg.as_dict()
    if as_json:
        typer.echo(json.dumps(info, indent=2))
        raise typer.Exit(1 if reg.errors else 0)
    for p in info["plugins"]:
        status = f"[red]failed: {p['error']}[/]" if p["error"] else "[green]ok[/]"
        console.print(f"[bold]{p['name']}[/] {p['version'] or '?'}  ({p['source']})  {status}", highlight=False)
        if not p["components"]:
            lifecycle = [h for h in p.get("hooks", []) if h.startswith("on_")]
            console.print(f"    lifecycle hooks: {', '.join(lifecycle)}" if lifecycle else "    (no components)",
                          highlight=False)
        for kind, comps in p["components"].items():
            table = Table(show_header=False, box=None, padding=(0, 1))
            for c in comps:
                alias = f" [dim](aliases: {', '.join(c['aliases'])})[/]" if c["aliases"] else ""
                table.add_row(f"    [cyan]{c['short']}[/]", f"{c['description']}{alias}")
            console.print(f"  {kind}:")
            console.print(table)
    if reg.errors:
        err_console.print(f"[red]{len(reg.errors)} plugin problem(s):[/]")
        for e in reg.errors:
            err_console.print(f"  - {e}", highlight=False, soft_wrap=True)
        raise typer.Exit(1)


def _split_args(args: list[str]) -> tuple[list[str], list[str]]:
    files = [a for a in args if "=" not in a]
    overrides = [a for a in args if "=" in a]
    return files, overrides


@config_app.command("show")
def config_show(
    args: Annotated[Optional[list[str]], typer.Argument(
        help="Config files (YAML) and key=value overrides, in order.")] = None,
) -> None:
    """Print the resolved, validated configuration (method defaults + files + overrides)."""
    from relforge.config import ConfigError, load_config

    files, overrides = _split_args(args or [])
    try:
        resolved = load_config(files, overrides)
    except ConfigError as exc:
        _fail(str(exc))
    typer.echo(resolved.to_yaml(), nl=False)


@app.command("new-plugin")
def new_plugin(
    name: Annotated[str, typer.Argument(help="Plugin name (a Python identifier, e.g. my_method).")],
    directory: Annotated[Optional[Path], typer.Option("--dir", help="Where to create it "
                                                      "(default: ./relforge-<name>).")] = None,
) -> None:
    """Scaffold a working third-party plugin package with one component of each kind and a test."""
    from relforge.scaffold import ScaffoldError, scaffold_plugin

    try:
        path = scaffold_plugin(name, directory)
    except ScaffoldError as exc:
        _fail(str(exc))
    console.print(f"Created plugin [bold]{name}[/] in {path}\n"
                  f"Next: pip install -e {path} && relforge plugins && pytest {path}", highlight=False)


def _not_implemented(command: str, issue: str) -> None:
    _fail(f"`relforge {command}` is not implemented yet ({issue}); nothing was run.", code=2)


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def train(ctx: typer.Context) -> None:
    """Train a model from a config: relforge train CONFIG \\[key=value ...]."""
    _not_implemented("train", "the training engine is issue #5")


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def evaluate(ctx: typer.Context) -> None:
    """Evaluate a trained run or model on a data split."""
    _not_implemented("evaluate", "the training engine is issue #5")


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def predict(ctx: typer.Context) -> None:
    """Predict relations for a JSON-lines file (or stdin) with a trained model."""
    _not_implemented("predict", "the training engine is issue #5")


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def bench(ctx: typer.Context) -> None:
    """Run a benchmark suite (methods x data sets x settings x seeds)."""
    _not_implemented("bench", "benchmark suites are issue #9")


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def quickstart(ctx: typer.Context) -> None:
    """Train and compare every method on the embedded data set (alias of the quickstart suite)."""
    _not_implemented("quickstart", "the quickstart is issue #5")


@app.command()
def ui() -> None:
    """Start the MLflow UI on 127.0.0.1 for the run store."""
    _not_implemented("ui", "MLflow tracking is issue #5")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
