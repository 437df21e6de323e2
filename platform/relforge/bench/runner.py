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
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
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
    from relforge.bench.sweep import cell_folder_name

    return root / cell_folder_name(cell.cell_id)


def build_executor(spec: SuiteFile, name: str | None = None, settings: Mapping[str, Any] | None = None,
                   registry=None):
    """(full registered name, executor) for a suite: ``name``
    (``--executor``) or the suite file's ``executor.name`` (default
    ``inline``), its settings from the suite file's ``executor:`` section
    with ``settings`` (``--jobs``, ``--executor-set``) on top."""
    from relforge.components import ComponentKind
    from relforge.registry import get_registry

    registry = registry or get_registry()
    section = dict(spec.executor or {})
    file_name = section.pop("name", None)
    full_name = registry.get(ComponentKind.EXECUTOR, name or file_name or "inline").full_name
    if file_name and registry.get(ComponentKind.EXECUTOR, file_name).full_name != full_name:
        section = {}  # the suite file's settings are for another executor
    merged = {**section, **dict(settings or {})}
    return full_name, registry.create(ComponentKind.EXECUTOR, full_name, merged)


def _is_local_store(uri: str) -> bool:
    return uri.startswith(("sqlite:", "file:")) or "://" not in uri


def run_suite(spec: SuiteFile, *, registry=None, output_dir: str | Path = "runs/bench",
              data_dir: str | Path | None = None, extra_overrides: Sequence[str] = (),
              console: Console | None = None, progress: bool = True, shard: tuple[int, int] = (1, 1),
              rerun: bool = False, executor: str | None = None, executor_settings: Mapping[str, Any] | None = None,
              dry_run: bool = False) -> list[CellResult]:
    """The sweep's driver: expand the cells, skip those finished earlier, open
    the suite's parent run (and a tracking server when cells log from other
    processes into a local store), hand the rest to the executor, wait for
    them, then print the table and write the report. ``dry_run``: print what
    the executor would run and stop."""
    from relforge import progress as shown
    from relforge.bench import store
    from relforge.bench.sweep import CellJob, Sweep
    from relforge.config import ConfigError
    from relforge.registry import get_registry

    registry = registry or get_registry()
    console = console or Console()
    ex_name, ex = build_executor(spec, executor, executor_settings, registry)
    cells = shard_cells(expand(spec, registry=registry, extra_overrides=list(extra_overrides)), shard)
    root = Path(output_dir) / spec.name
    tracking = dict(spec.base.get("tracking", {}))
    client = store.client_for(tracking)
    store_uri = store.uri_for(tracking) if client is not None else None
    unreachable = None
    if ex.remote and getattr(ex, "remote_cluster", True) and store_uri is not None and _is_local_store(store_uri):
        unreachable = (
            f"executor {type(ex).name}: cells on other machines cannot log into {store_uri}; start a tracking "
            f"server they reach (`relforge server --host 0.0.0.0`, or PostgreSQL: README 'Sweeps on several "
            f"processes or a cluster') and set MLFLOW_TRACKING_URI=http://HOST:PORT")
        if not dry_run:
            raise ConfigError(unreachable)
    if not dry_run:
        ex.check()  # before the store is touched
    shard_tag = f"{shard[0]}/{shard[1]}"
    done = store.finished_cells(client, tracking, spec.name) if client is not None and not rerun else {}
    results: dict[str, CellResult] = {}
    run_ids: dict[str, str] = {}  # cell id -> its MLflow run
    to_run: list[Cell] = []
    for cell in cells:
        settled = _settled(cell, done, root, rerun)
        if settled is None:
            to_run.append(cell)
            continue
        results[cell.cell_id], run_id = settled
        if run_id:
            run_ids[cell.cell_id] = run_id

    def job_for(cell: Cell, parent_id: str | None = None, uri: str | None = None) -> CellJob:
        return CellJob(suite=spec.model_dump(mode="json", by_alias=True), cell_id=cell.cell_id,
                       config_hash=cell.config_hash, root=str(root),
                       data_dir=str(data_dir) if data_dir is not None else None, overrides=list(extra_overrides),
                       tracking_uri=uri, tracking_store=store_uri if uri else None, parent_run_id=parent_id,
                       rerun=rerun)

    if dry_run:
        for cell in cells:
            r = results.get(cell.cell_id)
            state = (f"[red]invalid: {cell.error}[/]" if cell.error else
                     "finished earlier; skipped" if r is not None else f"to run ({cell.config_hash})")
            console.print(f"{cell.cell_id}  {state}", highlight=False)
        if to_run:
            for line in ex.describe([job_for(c) for c in to_run], None):
                console.print(line, highlight=False)
        if unreachable:
            console.print(f"[yellow]note:[/] it would be refused: {unreachable}", highlight=False)
        return list(results.values())

    _no_sweep_running(root, shard_tag, registry)
    previous_parent = store.find_parent(client, tracking, spec.name, shard_tag) if client is not None else None
    order = {c.cell_id: i for i, c in enumerate(cells, 1)}
    by_id = {c.cell_id: c for c in to_run}
    with _parent_run(spec.name, tracking, root, registry, shard_tag, previous_parent) as parent:
        parent_id = parent.state.get("mlflow", {}).get("run_id")
        for cell in cells:
            r = results.get(cell.cell_id)
            if r is not None:
                console.print(f"[bold]cell {order[cell.cell_id]}/{len(cells)}[/] {cell.cell_id}", highlight=False)
                console.print(f"  [red]invalid configuration:[/] {cell.error}" if r.status == "FAILED" else
                              "  finished earlier; skipped", highlight=False)
        server = None
        cell_uri = None
        if ex.separate_processes and to_run and store_uri is not None:
            if _is_local_store(store_uri):
                from relforge.tracking.server import start_server

                (root / "jobs").mkdir(parents=True, exist_ok=True)
                console.print(f"starting a tracking server for {store_uri} (the cells log through it)",
                              highlight=False)
                server = start_server(store_uri, log=root / "jobs" / "tracking-server.log")
                cell_uri = server.uri
            else:
                cell_uri = store_uri
        try:
            jobs = [job_for(c, parent_id, cell_uri) for c in to_run]
            sweep = Sweep(root=str(root), suite=spec.name, executor=ex_name,
                          executor_settings=ex.settings.model_dump(mode="json"), parent_run_id=parent_id,
                          tracking_uri=cell_uri, tracking_store=store_uri, jobs=[asdict(j) for j in jobs],
                          server_pid=server.pid if server else None, shard=shard_tag, driver_pid=os.getpid())
            sweep.registry, sweep.cells, sweep.progress = registry, by_id, progress

            def started(job, handle, _sweep=sweep) -> None:
                Sweep.started(_sweep, job, handle)
                if ex.separate_processes:
                    console.print(f"[bold]cell {order[job.cell_id]}/{len(cells)}[/] {job.cell_id} started "
                                  f"({type(ex).name} {_handle_text(handle)})", highlight=False)
                else:
                    console.print(f"[bold]cell {order[job.cell_id]}/{len(cells)}[/] {job.cell_id}", highlight=False)

            sweep.started = started
            for job in jobs:  # a record left by an earlier sweep must not be read as this one's
                job.result_path.unlink(missing_ok=True)
            sweep.save()
            with shown.task(f"suite {spec.name}", total=len(cells), unit="cells",
                            done=len(cells) - len(to_run)) as suite_task:
                for record in ex.run(jobs, sweep):
                    result = _result_from(record, by_id)
                    if result is None:
                        continue
                    results[result.cell.cell_id] = result
                    if record.get("run_id"):
                        run_ids[result.cell.cell_id] = record["run_id"]
                    if result.status == "FAILED":
                        console.print(f"[red]cell failed:[/] {result.cell.cell_id}: {result.error}", highlight=False)
                    elif ex.separate_processes:
                        console.print(f"cell {result.cell.cell_id} finished ({result.seconds:.0f} s)", highlight=False)
                    running = len(sweep.handles) - sum(1 for c in by_id if c in results)
                    suite_task.advance(status=_cell_counts(list(results.values()), running))
            for cell in to_run:
                if cell.cell_id not in results:  # an executor that lost a job: said, never dropped
                    results[cell.cell_id] = CellResult(cell, "FAILED", error=f"executor {type(ex).name} "
                                                       "returned no result for it")
                    console.print(f"[red]cell failed:[/] {cell.cell_id}: {results[cell.cell_id].error}",
                                  highlight=False)
            sweep.finish()
        finally:
            if server is not None:
                server.stop()
        finish_suite(spec, [results[c.cell_id] for c in cells if c.cell_id in results], root, parent, client,
                     console, registry, shard, run_ids)
    ordered = [results[c.cell_id] for c in cells if c.cell_id in results]
    failed = [r for r in ordered if r.status == "FAILED"]
    if failed:
        console.print(f"[red]{len(failed)} of {len(ordered)} cells failed[/]; their errors are in {root / 'errors'}",
                      highlight=False)
    return ordered


def _settled(cell: Cell, done: Mapping[str, Any], root: Path, rerun: bool
             ) -> tuple[CellResult, str | None] | None:
    """A cell that needs no run, with its MLflow run id when known: FAILED
    when its configuration is invalid, SKIPPED when it finished earlier
    (unless ``rerun``); None when it is to run."""
    if cell.error:
        return CellResult(cell, "FAILED", error=cell.error), None
    earlier = _earlier_result(done, cell, cell_dir(root, cell)) if not rerun else None
    if earlier is None:
        return None
    run = done.get(cell.config_hash)
    return CellResult(cell, "SKIPPED", earlier[0]), run.info.run_id if run is not None else None


def _parent_run(suite: str, tracking: Mapping[str, Any], root: Path, registry, shard: str, resume_id: str | None):
    """The suite's parent run (a :class:`relforge.run.Run` to enter),
    continuing ``resume_id`` when given."""
    from relforge.config import validate_config
    from relforge.run import Run

    cfg = validate_config({"name": f"suite-{suite}", "tracking": dict(tracking), "output_dir": str(root)},
                          registry=registry)
    tags = {"relforge.suite": suite, "relforge.role": "suite", "relforge.shard": shard}
    if resume_id:
        tags["resume_run_id"] = resume_id
    return Run(cfg, registry=registry, output_dir=root / "suite", name=f"suite-{suite}", tags=tags)


def _no_sweep_running(root: Path, shard: str, registry) -> None:
    """Refuse to start a sweep while an earlier one of the same suite and
    shard may still run (its driver or a job alive): two drivers would train
    the same cells into the same folders. A dead sweep's tracking server, if
    it still answers, is stopped."""
    from relforge.bench.sweep import Sweep, read_result
    from relforge.components import ComponentKind
    from relforge.config import ConfigError

    old = Sweep.load(root, shard)
    if old is None or old.finished:
        return
    alive = []
    if old.driver_alive():
        alive.append(f"its driver, process {old.driver_pid}")
    else:
        try:
            ex = registry.create(ComponentKind.EXECUTOR, old.executor, old.executor_settings)
        except Exception:  # noqa: BLE001 - an executor no longer installed: nothing to ask
            ex = None
        if ex is not None:
            alive += [f"cell {j.cell_id}" for j in old.cell_jobs()
                      if read_result(j) is None and ex.alive(old.handles.get(j.cell_id), old)]
    if alive:
        flag = "" if shard == "1/1" else f" --shard {shard}"
        raise ConfigError(f"a sweep of this suite is still running in {root} ({', '.join(alive[:3])}"
                          f"{', ...' if len(alive) > 3 else ''}): follow it with `relforge bench SUITE --attach"
                          f"{flag}`, or stop it before starting another")
    old.stop_leftover_server()
    old.finish()


def attach_suite(spec: SuiteFile, *, registry=None, output_dir: str | Path = "runs/bench",
                 console: Console | None = None, poll_s: float = 2.0, shard: tuple[int, int] = (1, 1)
                 ) -> list[CellResult]:
    """``relforge bench SUITE --attach``: the view of a sweep that is still
    running or whose driver died, from its ``sweep.json`` (the suite and
    overrides the driver used, the jobs and their handles), the cells' result
    records and the run store. Waits while any of its jobs may still run
    (the executor's ``alive``), then prints the table; when the driver is
    gone it also writes the report to the suite's parent run (and stops the
    tracking server the driver started, if it still answers)."""
    import time

    from relforge import progress as shown
    from relforge.bench import store
    from relforge.bench.sweep import Sweep, read_result, sweep_file
    from relforge.components import ComponentKind
    from relforge.config import ConfigError
    from relforge.registry import get_registry

    registry = registry or get_registry()
    console = console or Console()
    root = Path(output_dir) / spec.name
    shard_tag = f"{shard[0]}/{shard[1]}"
    sweep = Sweep.load(root, shard_tag)
    if sweep is None:
        raise ConfigError(f"no sweep recorded in {root} ({root / sweep_file(shard_tag)} is missing): start one "
                          f"with `relforge bench {spec.name} --executor local|slurm`")
    ex = registry.create(ComponentKind.EXECUTOR, sweep.executor, sweep.executor_settings)
    jobs = sweep.cell_jobs()
    # the suite and overrides the driver ran, not the file as it is now
    used = SuiteFile.model_validate(jobs[0].suite) if jobs else spec
    overrides = list(jobs[0].overrides) if jobs else []
    cells = {c.cell_id: c for c in shard_cells(expand(used, registry=registry, extra_overrides=overrides), shard)}
    console.print(f"sweep {spec.name}: {len(jobs)} cells handed to {sweep.executor}; parent run "
                  f"{sweep.parent_run_id or '(no tracking)'}{'; finished' if sweep.finished else ''}",
                  highlight=False)
    with shown.task(f"suite {spec.name}", total=len(jobs), unit="cells") as task:
        seen = 0
        while True:
            records = {j.cell_id: read_result(j) for j in jobs}
            finished = sum(r is not None for r in records.values())
            alive = [] if sweep.finished else [j for j in jobs if records[j.cell_id] is None
                                               and ex.alive(sweep.handles.get(j.cell_id), sweep)]
            failed = sum(1 for r in records.values() if r is not None and r.get("status") == "FAILED")
            task.advance(finished - seen, status=f"{len(alive)} running, {finished - failed} finished, "
                                                 f"{failed} failed")
            seen = finished
            if not alive:
                break
            time.sleep(poll_s)
    tracking = dict(used.base.get("tracking", {}))
    client = store.client_for(tracking)
    done = store.finished_cells(client, tracking, used.name) if client is not None else {}
    results: list[CellResult] = []
    run_ids: dict[str, str] = {}
    job_ids = {j.cell_id for j in jobs}
    for cell_id, cell in cells.items():
        record = records.get(cell_id)
        result = _result_from(record, cells) if record is not None else None
        if result is not None:
            results.append(result)
            if record.get("run_id"):
                run_ids[cell_id] = record["run_id"]
        elif cell_id in job_ids:
            results.append(CellResult(cell, "FAILED", error="its job ended without a result (killed?); "
                                      f"`relforge bench {spec.name}` runs it again, from its checkpoint"))
        else:
            settled = _settled(cell, done, root, rerun=False)
            if settled is not None:
                results.append(settled[0])
                if settled[1]:
                    run_ids[cell_id] = settled[1]
    if sweep.driver_alive():
        console.print(comparison_table(used, results))
        console.print(f"the driver (process {sweep.driver_pid}) is still running; it writes the report",
                      highlight=False)
        return results
    sweep.stop_leftover_server()
    with _parent_run(used.name, tracking, root, registry, sweep.shard, sweep.parent_run_id) as parent:
        finish_suite(used, results, root, parent, client, console, registry, shard, run_ids)
    sweep.finish()
    return results


def _handle_text(handle: Any) -> str:
    if isinstance(handle, dict) and handle.get("job_id"):
        return f"job {handle['job_id']}"
    return f"process {handle}" if handle is not None else ""


def _result_from(record: Mapping[str, Any], cells: Mapping[str, Cell]) -> CellResult | None:
    cell = cells.get(record.get("cell", ""))
    if cell is None:
        return None
    return CellResult(cell, record.get("status", "FAILED"), dict(record.get("metrics") or {}),
                      float(record.get("seconds") or 0.0), record.get("error"))


def finish_suite(spec: SuiteFile, results: Sequence[CellResult], root: Path, parent, client, console: Console,
                 registry, shard: tuple[int, int], run_ids: Mapping[str, str]) -> None:
    """The end of a sweep (the driver's, or ``--attach``'s): the table, the
    summary file, the report and the registered model, logged to the
    suite's parent run."""
    console.print(comparison_table(spec, results))
    summary = root / f"summary-shard{shard[0]}of{shard[1]}.json"
    summary.parent.mkdir(parents=True, exist_ok=True)
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


def _cell_counts(results: Sequence[CellResult], running: int = 0) -> str:
    counts = {s: sum(r.status == s for r in results) for s in ("FINISHED", "SKIPPED", "FAILED")}
    text = ", ".join(f"{n} {s.lower()}" for s, n in counts.items() if n)
    return f"{running} running, {text}" if running > 0 else text


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
