"""Running a suite: one parent run, one child run per cell, a comparison table."""
from __future__ import annotations

import json
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from relforge.bench.suite import Cell, SuiteFile, expand


@dataclass
class CellResult:
    cell: Cell
    status: str  # FINISHED, FAILED, SKIPPED
    metrics: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    error: str | None = None


def run_suite(spec: SuiteFile, *, registry=None, output_dir: str | Path = "runs/bench",
              data_dir: str | Path | None = None, extra_overrides: Sequence[str] = (),
              console: Console | None = None, progress: bool = False) -> list[CellResult]:
    from relforge.config import validate_config
    from relforge.engine.pipeline import train_run
    from relforge.registry import get_registry
    from relforge.run import Run

    registry = registry or get_registry()
    console = console or Console()
    cells = expand(spec, registry=registry, extra_overrides=list(extra_overrides))
    root = Path(output_dir) / spec.name
    parent_cfg = validate_config({"name": f"suite-{spec.name}", "tracking": spec.base.get("tracking", {}),
                                  "output_dir": str(root)}, registry=registry)
    results: list[CellResult] = []
    with Run(parent_cfg, registry=registry, output_dir=root / "suite", name=f"suite-{spec.name}",
             tags={"relforge.suite": spec.name, "relforge.role": "suite"}) as parent:
        parent_id = parent.state.get("mlflow", {}).get("run_id")
        for i, cell in enumerate(cells, 1):
            console.print(f"[bold]cell {i}/{len(cells)}[/] {cell.cell_id}", highlight=False)
            if cell.error:
                console.print(f"[red]invalid configuration:[/] {cell.error}", highlight=False)
                results.append(CellResult(cell, "FAILED", error=cell.error))
                continue
            tags = {"relforge.suite": spec.name, "relforge.role": "cell", "relforge.config_hash": cell.config_hash,
                    **{f"cell.{k}": str(v) for k, v in cell.coordinates.items()}}
            if parent_id:
                tags["parent_run_id"] = parent_id
            try:
                outcome = train_run(cell.resolved, registry=registry, data_dir=data_dir,
                                    output_dir=root / cell.cell_id.replace("/", "_"), tags=tags, progress=progress)
            except Exception as exc:  # noqa: BLE001 - a failing cell is recorded, the suite goes on
                msg = f"{type(exc).__name__}: {exc}"
                console.print(f"[red]cell failed:[/] {msg}", highlight=False)
                (root / "errors").mkdir(parents=True, exist_ok=True)
                (root / "errors" / f"{cell.cell_id}.txt").write_text(traceback.format_exc(), encoding="utf-8")
                results.append(CellResult(cell, "FAILED", error=msg))
                continue
            metrics = {**{f"test/{k}": v for k, v in outcome.test_metrics.items()},
                       **{f"dev/{k}": v for k, v in outcome.dev_metrics.items()}}
            results.append(CellResult(cell, "FINISHED", metrics, outcome.seconds))
        table = comparison_table(spec, results)
        console.print(table)
        summary = root / "summary.json"
        summary.write_text(json.dumps([{"cell": r.cell.cell_id, "coordinates": r.cell.coordinates,
                                        "status": r.status, "seconds": round(r.seconds, 1), "error": r.error,
                                        "metrics": r.metrics} for r in results], indent=2), encoding="utf-8")
        parent.log_artifact(summary, "report")
    return results


def comparison_table(spec: SuiteFile, results: Sequence[CellResult]) -> Table:
    table = Table(title=f"suite {spec.name}")
    keys = list(results[0].cell.coordinates) if results else []
    for k in keys:
        table.add_column(k)
    for m in spec.metrics:
        table.add_column(m, justify="right")
    table.add_column("seconds", justify="right")
    table.add_column("status")
    best = {m: max((r.metrics[m] for r in results if m in r.metrics), default=None) for m in spec.metrics}
    for r in results:
        row: list[Any] = [str(r.cell.coordinates[k]) for k in keys]
        for m in spec.metrics:
            v = r.metrics.get(m)
            row.append("" if v is None else (f"[bold]{v:.4f}[/]" if v == best[m] else f"{v:.4f}"))
        row += [f"{r.seconds:.0f}", r.status if not r.error else f"{r.status}: {r.error[:60]}"]
        table.add_row(*row)
    return table
