"""``relforge data ...`` commands."""
from __future__ import annotations

import typer

data_app = typer.Typer(help="Inspect data sets.", no_args_is_help=True)


@data_app.command("stats")
def stats(name: str = typer.Argument(..., help="Dataset name.")) -> None:
    """Counts per split, label distribution, multi-relation pairs, length percentiles."""
    typer.echo("error: `relforge data stats` is not implemented yet (the data layer is issue #3)", err=True)
    raise typer.Exit(2)
