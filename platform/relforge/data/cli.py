"""``relforge data ...`` commands."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

data_app = typer.Typer(help="Inspect data sets; export predictions in official answer formats.", no_args_is_help=True)

DataDirOption = Annotated[Optional[Path], typer.Option(
    "--data-dir", help="Folder holding the data sets (default: $RELFORGE_DATA_DIR).")]


def _fail(message: str, code: int = 2) -> None:
    from rich.console import Console

    Console(stderr=True).print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True, markup=True)
    raise typer.Exit(code)


def _settings(pairs: list[str]) -> dict:
    """``--set key.path=value`` options as nested dataset settings."""
    from relforge.config import ConfigError, settings_from_pairs

    try:
        return settings_from_pairs(pairs)
    except ConfigError as exc:
        _fail(str(exc))
        raise AssertionError from None


@data_app.command("stats")
def stats(
    name: Annotated[str, typer.Argument(help="Dataset name (see `relforge plugins`).")],
    data_dir: DataDirOption = None,
    split: Annotated[Optional[list[str]], typer.Option("--split", help="Only these splits (repeatable).")] = None,
    setting: Annotated[Optional[list[str]], typer.Option(
        "--set", help="A dataset setting, key=value (repeatable), e.g. --set na_pairs=true.")] = None,
    top: Annotated[int, typer.Option(help="Labels shown per split (0: all).")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
) -> None:
    """Counts per split, label distribution, multi-relation pairs, length percentiles."""
    from rich.console import Console
    from rich.table import Table

    from relforge.config import ConfigError
    from relforge.data.errors import DataError
    from relforge.data.paths import resolve_data_dir
    from relforge.data.stats import dataset_stats
    from relforge.registry import RegistryError, get_registry

    try:
        dataset = get_registry().create("dataset", name, _settings(setting or []))
        root = resolve_data_dir(data_dir) if data_dir is not None else None
        result = dataset_stats(dataset, root, split or None)
    except (RegistryError, ConfigError, DataError, FileNotFoundError) as exc:
        _fail(str(exc))
    if as_json:
        typer.echo(json.dumps(result, indent=2, ensure_ascii=False))
        return
    console = Console()
    console.print(f"[bold]{result['dataset']}[/]", highlight=False)
    overview = Table("split", "records", "examples", "skipped", "no relation", "multi-relation pairs",
                     "tokens p50/p90/p99/max")
    for s, st in result["splits"].items():
        lt = st["length_tokens"]
        overview.add_row(s, str(st.get("records", "")), str(st["examples"]),
                         str(sum(st.get("skipped", {}).values())), str(st["no_relation"]),
                         str(st["multi_relation_pairs"]),
                         f"{lt['p50']:.0f}/{lt['p90']:.0f}/{lt['p99']:.0f}/{lt['p100']:.0f}")
    console.print(overview)
    for s, st in result["splits"].items():
        for reason, n in st.get("skipped", {}).items():
            console.print(f"[yellow]{s}: skipped {n} record(s): {reason}[/]", highlight=False)
        for note in st.get("notes", []):
            console.print(f"{s}: {note}", highlight=False)
        table = Table("label", "count", "share", title=f"labels in {s}")
        labels = list(st["labels"].items())
        for lab, n in labels[:top] if top else labels:
            table.add_row(lab, str(n), f"{n / max(st['examples'], 1):.1%}")
        console.print(table)
    for s, why in result["missing"].items():
        console.print(f"[dim]{s}: not available ({why.splitlines()[0]})[/]", highlight=False)


@data_app.command("export")
def export(
    predictions: Annotated[Path, typer.Argument(help="A prediction file (JSON lines from `relforge evaluate "
                           "--output`) or a run folder (its predictions-test.jsonl).")],
    fmt: Annotated[str, typer.Option("--format", help="semeval (id<TAB>label, for the official Perl scorer) or "
                   "tacred (one label a line, for the official score.py).")] = "semeval",
    output: Annotated[Path, typer.Option("--output", "-o", help="The proposed answers.")] = Path("proposed.txt"),
    key: Annotated[Optional[Path], typer.Option("--key", help="Also write the gold answers (the key) here.")] = None,
) -> None:
    """Write a split's predictions in the official answer format, e.g. for SemEval:
    relforge data export runs/RUN --format semeval -o proposed.txt --key key.txt, then
    perl semeval2010_task8_scorer-v1.2.pl proposed.txt key.txt"""
    from relforge.data.export import official_answers

    path = predictions / "predictions-test.jsonl" if predictions.is_dir() else predictions
    if not path.is_file():
        _fail(f"{path}: no such file" + (" (was the run scored on a test split?)" if predictions.is_dir() else ""))
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            _fail(f"{path}:{n}: not valid JSON ({exc.msg})")
        if not isinstance(row, dict):
            _fail(f"{path}:{n}: expected a JSON object")
        rows.append(row)
    try:
        proposed, gold, note = official_answers(rows, fmt, where=str(path))
    except ValueError as exc:
        _fail(str(exc))
    for target, lines in ((output, proposed), (key, gold)):
        if target is not None:
            target.parent.mkdir(parents=True, exist_ok=True)
            with target.open("w", encoding="utf-8", newline="\n") as fh:
                fh.writelines(lines)
    from rich.console import Console

    err = Console(stderr=True)
    if note:
        err.print(f"note: {note}", highlight=False, soft_wrap=True)
    err.print(f"{len(proposed)} answers written to {output}" + (f", the key to {key}" if key else ""),
              highlight=False, soft_wrap=True)
