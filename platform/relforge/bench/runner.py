"""Running a suite: one parent run, one child run per cell, a comparison table.

Resumable: a cell whose configuration hash already has a FINISHED run (in
MLflow when tracking is on, else a ``result.json`` in the cell's folder) is
skipped and its metrics reused; a failed or interrupted cell runs again (and
its trainer resumes from the cell folder's checkpoint). Shardable: ``shard=(i,
n)`` takes every n-th cell starting at the i-th, so n machines that share a
tracking server cover every cell exactly once.
"""
from __future__ import annotations

import json
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from relforge.bench.suite import Cell, CompareSpec, SuiteFile, expand


@dataclass
class CellResult:
    cell: Cell
    status: str  # FINISHED, FAILED, SKIPPED (finished earlier)
    metrics: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    error: str | None = None


def parse_shard(text: str | None) -> tuple[int, int]:
    if not text:
        return (1, 1)
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard must look like i/n (e.g. 2/4), got {text!r}") from None
    if not 1 <= i <= n:
        raise ValueError(f"--shard {text}: need 1 <= i <= n")
    return i, n


def shard_cells(cells: Sequence[Cell], shard: tuple[int, int]) -> list[Cell]:
    i, n = shard
    return [c for j, c in enumerate(cells) if j % n == i - 1]


def cell_dir(root: Path, cell: Cell) -> Path:
    return root / cell.cell_id.replace("/", "_")


def run_suite(spec: SuiteFile, *, registry=None, output_dir: str | Path = "runs/bench",
              data_dir: str | Path | None = None, extra_overrides: Sequence[str] = (),
              console: Console | None = None, progress: bool = True, shard: tuple[int, int] = (1, 1),
              rerun: bool = False) -> list[CellResult]:
    from relforge import progress as shown
    from relforge.bench import store
    from relforge.config import validate_config
    from relforge.engine.pipeline import train_run, write_result
    from relforge.registry import get_registry
    from relforge.run import Run

    registry = registry or get_registry()
    console = console or Console()
    cells = shard_cells(expand(spec, registry=registry, extra_overrides=list(extra_overrides)), shard)
    root = Path(output_dir) / spec.name
    tracking = dict(spec.base.get("tracking", {}))
    client = store.client_for(tracking)
    shard_tag = f"{shard[0]}/{shard[1]}"
    done = store.finished_cells(client, tracking, spec.name) if client is not None and not rerun else {}
    parent_tags = {"relforge.suite": spec.name, "relforge.role": "suite", "relforge.shard": shard_tag}
    previous_parent = store.find_parent(client, tracking, spec.name, shard_tag) if client is not None else None
    if previous_parent:
        parent_tags["resume_run_id"] = previous_parent
    parent_cfg = validate_config({"name": f"suite-{spec.name}", "tracking": tracking, "output_dir": str(root)},
                                 registry=registry)
    results: list[CellResult] = []
    run_ids: dict[str, str] = {}  # cell id -> its MLflow run
    with Run(parent_cfg, registry=registry, output_dir=root / "suite", name=f"suite-{spec.name}",
             tags=parent_tags) as parent:
        parent_id = parent.state.get("mlflow", {}).get("run_id")
        with shown.task(f"suite {spec.name}", total=len(cells), unit="cells") as suite_task:
            # each cell advances the suite step once it is done, however it ended (progress.batches)
            for i, (cell,) in enumerate(shown.batches(cells, 1), 1):
                suite_task.update(status=_cell_counts(results))
                console.print(f"[bold]cell {i}/{len(cells)}[/] {cell.cell_id}", highlight=False)
                if cell.error:
                    console.print(f"[red]invalid configuration:[/] {cell.error}", highlight=False)
                    results.append(CellResult(cell, "FAILED", error=cell.error))
                    continue
                folder = cell_dir(root, cell)
                earlier = _earlier_result(done, cell, folder) if not rerun else None
                if earlier is not None:
                    console.print(f"  finished earlier ({earlier[1]}); skipped", highlight=False)
                    results.append(CellResult(cell, "SKIPPED", earlier[0]))
                    if cell.config_hash in done:
                        run_ids[cell.cell_id] = done[cell.config_hash].info.run_id
                    continue
                tags = {"relforge.suite": spec.name, "relforge.role": "cell", "relforge.config_hash": cell.config_hash,
                        **{f"cell.{k}": str(v) for k, v in cell.coordinates.items()}}
                if parent_id:
                    tags["parent_run_id"] = parent_id
                try:
                    outcome = train_run(cell.resolved, registry=registry, data_dir=data_dir, output_dir=folder,
                                        tags=tags, progress=progress, resume=not rerun)
                except Exception as exc:  # noqa: BLE001 - a failing cell is recorded, the suite goes on
                    msg = f"{type(exc).__name__}: {exc}"
                    console.print(f"[red]cell failed:[/] {msg}", highlight=False)
                    (root / "errors").mkdir(parents=True, exist_ok=True)
                    (root / "errors" / f"{folder.name}.txt").write_text(traceback.format_exc(), encoding="utf-8")
                    results.append(CellResult(cell, "FAILED", error=msg))
                    continue
                # the names the run logged to MLflow, so suites name metrics one way
                metrics = write_result(outcome, config_hash=cell.config_hash)
                if outcome.tracking.get("run_id"):
                    run_ids[cell.cell_id] = outcome.tracking["run_id"]
                results.append(CellResult(cell, "FINISHED", metrics, outcome.seconds))
        console.print(comparison_table(spec, results))
        summary = root / f"summary-shard{shard[0]}of{shard[1]}.json"
        summary.write_text(json.dumps([{"cell": r.cell.cell_id, "coordinates": r.cell.coordinates,
                                        "config_hash": r.cell.config_hash, "status": r.status,
                                        "seconds": round(r.seconds, 1), "error": r.error, "metrics": r.metrics}
                                       for r in results], indent=2), encoding="utf-8")
        parent.log_artifact(summary, "report")
        rows = [{"coordinates": r.cell.coordinates, "metrics": r.metrics, "dataset": cell_dataset(r.cell)}
                for r in results if r.status in ("FINISHED", "SKIPPED")]
        if rows:
            paths, figures = write_suite_report(spec, rows, root, registry=registry)
            for path in paths:
                parent.log_artifact(path, "report")
            parent.log_metrics(figures, 0)
        if spec.register_best is not None:
            register_best(spec, results, run_ids, client, console, parent)
    failed = [r for r in results if r.status == "FAILED"]
    if failed:
        console.print(f"[red]{len(failed)} of {len(results)} cells failed[/]; their errors are in {root / 'errors'}",
                      highlight=False)
    return results


def register_best(spec: SuiteFile, results: Sequence[CellResult], run_ids: Mapping[str, str], client,
                  console: Console, parent) -> str | None:
    """The suite's ``register``: the model of the cell best on the dev
    metric (by its direction) as a new version of the registered model;
    returns "name vN", or None (said) when no cell qualifies."""
    from relforge.bench.report import metric_direction

    reg = spec.register_best
    if client is None:
        console.print("register: tracking is off (no MLflow store); nothing registered", highlight=False)
        return None
    direction = metric_direction(reg.metric) or 1
    scored = [(r.metrics[reg.metric], r.cell.cell_id) for r in results
              if r.status in ("FINISHED", "SKIPPED") and reg.metric in r.metrics and r.cell.cell_id in run_ids]
    with_model = [(v, c) for v, c in scored
                  if any(f.path == "model/MLmodel" for f in client.list_artifacts(run_ids[c], "model"))]
    if not with_model:
        why = "no finished cell logged it" if not scored else "no cell logged an MLflow model (tracking.log_model)"
        console.print(f"register: nothing registered as {reg.name!r}: {reg.metric} -- {why}", highlight=False)
        return None
    value, cell_id = max(with_model, key=lambda vc: direction * vc[0])
    run_id = run_ids[cell_id]
    from mlflow.exceptions import MlflowException

    try:
        client.create_registered_model(reg.name, description=f"RelForge suite {spec.name}: the cell best on "
                                                             f"{reg.metric}")
    except MlflowException as exc:
        if "already exists" not in str(exc).lower() and "RESOURCE_ALREADY_EXISTS" not in str(exc):
            raise
    source = f"{client.get_run(run_id).info.artifact_uri.rstrip('/')}/model"
    version = client.create_model_version(reg.name, source, run_id=run_id,
                                          tags={"relforge.suite": spec.name, "relforge.cell": cell_id,
                                                reg.metric: f"{value:.6g}"})
    label = f"{reg.name} v{version.version}"
    parent.set_tags({"relforge.registered_model": label, "relforge.registered_cell": cell_id})
    console.print(f"registered {label}: cell {cell_id} ({reg.metric} = {value:.4f}, best of {len(with_model)})",
                  highlight=False)
    return label


def _cell_counts(results: Sequence[CellResult]) -> str:
    counts = {s: sum(r.status == s for r in results) for s in ("FINISHED", "SKIPPED", "FAILED")}
    return ", ".join(f"{n} {s.lower()}" for s, n in counts.items() if n)


def _earlier_result(done: dict[str, Any], cell: Cell, folder: Path) -> tuple[dict[str, float], str] | None:
    from relforge.bench.store import metrics_of

    if cell.config_hash in done:
        run = done[cell.config_hash]
        return metrics_of(run), f"MLflow run {run.info.run_id}"
    result = folder / "result.json"
    if result.is_file():
        data = json.loads(result.read_text(encoding="utf-8"))
        if data.get("config_hash") == cell.config_hash:
            return data["metrics"], str(result)
    return None


def cell_dataset(cell: Cell) -> str:
    """The data set a cell runs on (its resolved configuration's), as its runs tag it."""
    return cell.resolved.run.data.dataset_name if cell.resolved is not None else ""


def comparison_table(spec: SuiteFile, results: Sequence[CellResult]) -> Table:
    table = Table(title=f"suite {spec.name}")
    keys = list(results[0].cell.coordinates) if results else []
    for k in keys:
        table.add_column(k)
    for m in spec.metrics:
        table.add_column(m, justify="right")
    table.add_column("seconds", justify="right")
    table.add_column("status")
    # the best value is bold among the cells of one data set only (a suite may mix data sets)
    best: dict[tuple[str, str], float] = {}
    for r in results:
        for m, v in r.metrics.items():
            key = (m, cell_dataset(r.cell))
            best[key] = max(best.get(key, v), v)
    for r in results:
        row: list[Any] = [str(r.cell.coordinates[k]) for k in keys]
        for m in spec.metrics:
            v = r.metrics.get(m)
            row.append("" if v is None else (f"[bold]{v:.4f}[/]" if v == best[(m, cell_dataset(r.cell))]
                                             else f"{v:.4f}"))
        row += [f"{r.seconds:.0f}", r.status if not r.error else f"{r.status}: {r.error[:60]}"]
        table.add_row(*row)
    return table


def report_suite(spec: SuiteFile, *, registry=None, output_dir: str | Path = "runs/bench",
                 console: Console | None = None) -> list[Path]:
    """``relforge report``: aggregate every finished cell of the suite (from
    MLflow when tracking is on, else from the cells' result.json files),
    write the report and log it to the suite's parent run."""
    from relforge.bench import store

    console = console or Console()
    root = Path(output_dir) / spec.name
    tracking = dict(spec.base.get("tracking", {}))
    client = store.client_for(tracking)
    if client is not None:
        rows = store.cell_rows(client, tracking, spec.name)
    else:
        rows = []
        for cell in expand(spec, registry=registry):
            earlier = _earlier_result({}, cell, cell_dir(root, cell))
            if earlier is not None:
                rows.append({"coordinates": cell.coordinates, "metrics": earlier[0], "dataset": cell_dataset(cell)})
    if not rows:
        raise ValueError(f"suite {spec.name!r} has no finished cells yet (run `relforge bench` first)")
    paths, figures = write_suite_report(spec, rows, root, registry=registry, console=console)
    if client is not None:
        parent = store.find_parent(client, tracking, spec.name, "1/1") or next(
            iter(store.search(client, tracking, [f"tags.`relforge.suite` = '{spec.name}'",
                                                 "tags.`relforge.role` = 'suite'"])), None)
        parent_id = parent if isinstance(parent, str) else (parent.info.run_id if parent else None)
        if parent_id:
            for p in paths:
                client.log_artifact(parent_id, str(p), "report")
            for key, value in figures.items():
                client.log_metric(parent_id, key, value)
    return paths


def arm_means(aggs) -> dict[str, float]:
    """``mean/<arm>/<metric>`` (and ``_std``, ``_seeds``) for the suite's
    parent run, so the experiment page shows the arms' numbers on it."""
    import re

    from relforge.bench.compare import arm_key, arm_name

    out = {}
    for a in aggs:
        key = re.sub(r"[^A-Za-z0-9_.\-/ ]", "_", f"mean/{arm_name(arm_key(a.group))}").replace(" ", "")
        metric = a.metric.replace("/", "_")
        out.update({f"{key}/{metric}": a.mean, f"{key}/{metric}_std": a.std, f"{key}/{metric}_seeds": a.count})
    return out


def write_suite_report(spec: SuiteFile, rows, root: Path, *, registry=None, console: Console | None = None):
    """The suite's report folder (tables over seeds, paired comparisons,
    figures) from finished cells' ``rows``; printed when ``console`` is
    given. Returns (paths written, the figures for the suite's parent run:
    each arm's means and the comparisons')."""
    from relforge.bench.compare import comparison_markdown, comparisons_csv, forest_plot, mlflow_metrics
    from relforge.bench.report import aggregate, markdown, write_report

    aggs = aggregate(rows, spec.metrics)
    comparisons, notes, significant = paired_comparisons(spec, aggs, root, registry=registry)
    extra = comparison_markdown(comparisons, notes, resamples=(spec.compare or CompareSpec()).resamples)
    paths = write_report(aggs, spec.metrics, root / "report", f"Suite {spec.name}", significant, extra)
    for extra_path in (comparisons_csv(comparisons, root / "report" / "comparisons.csv"),
                       forest_plot(comparisons, root / "report" / "forest.png")):
        if extra_path is not None:
            paths.append(extra_path)
    if console is not None:
        console.print(markdown(aggs, spec.metrics, f"Suite {spec.name} ({len(rows)} finished cells)", significant),
                      markup=False)
        console.print(extra, markup=False)
    return paths, {**arm_means(aggs), **mlflow_metrics(comparisons)}


def paired_comparisons(spec: SuiteFile, aggs, root: Path, *, registry=None):
    """(comparisons, notes, significant best cells) of a suite's finished
    cells, from the prediction files in their folders."""
    from relforge.bench.compare import PREDICTIONS, arm_key, arm_name, compare_cells, compare_groups
    from relforge.bench.report import best_and_runner_up, pivot

    finished = []
    for cell in expand(spec, registry=registry):
        folder = cell_dir(root, cell)
        if not cell.error and any((folder / name).exists() for name in PREDICTIONS):
            finished.append((cell.coordinates, folder))
    compare = spec.compare or CompareSpec()
    comparisons, notes = compare_cells(finished, spec.metrics, compare.baseline or None,
                                       n_resamples=compare.resamples)
    # a two-sided test is the same either way round: a pair compared above is not tested again
    done = {(c.result.metric, frozenset((c.arm, c.baseline))): c.result for c in comparisons}
    significant: set[tuple[str, str, str]] = set()
    for metric in spec.metrics:
        _, _, table = pivot(aggs, metric)
        for col, best, runner, _dataset in best_and_runner_up(aggs, metric):
            groups = table[(best, col)].group, table[(runner, col)].group
            result = done.get((metric, frozenset(arm_name(arm_key(g)) for g in groups))) or compare_groups(
                finished, *groups, metric, n_resamples=compare.resamples)
            if result is not None and result.p_value < 0.05:
                significant.add((metric, best, col))
    return comparisons, notes, significant
