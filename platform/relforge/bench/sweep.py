"""One cell of a suite as a job any executor can run, and the sweep's record.

The driver (:func:`relforge.bench.runner.run_suite`) turns each cell that is
still to run into a :class:`CellJob`: plain data (picklable for submitit,
JSON for a worker process) that says everything the cell needs: the suite
itself (not its file, which may change while a sweep runs), the cell's id and
configuration hash, the folders, where to log (the tracking URI the driver
chose) and the parent run to attach to. :func:`run_job` runs a job in
whatever process it lands in and writes its result record to
``<suite folder>/jobs/<cell>.json`` whether the cell finished or failed (not
when its process was killed): the one signal of a cell's end that every
executor, and ``relforge bench --attach``, read.

:class:`Sweep` is the driver's record of a running sweep (``sweep.json`` in
the suite's folder): the executor and its settings, the parent run, the
tracking URI and store, the jobs and their handles (process or scheduler job
ids), so ``--attach`` can find them after the driver is gone.
"""
from __future__ import annotations

import json
import os
import time
import traceback
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

#: the record of a sweep, in the suite's output folder (``sweep-shard<i>of<n>.json`` for a shard)
SWEEP_FILE = "sweep.json"


def sweep_file(shard: str = "1/1") -> str:
    i, n = shard.split("/")
    return SWEEP_FILE if shard == "1/1" else f"sweep-shard{i}of{n}.json"
#: where the cells' result records (and local workers' logs) go, in the suite's output folder
JOBS_DIR = "jobs"
#: the tag that says which store a cell logged to when it logs through a server (its resume identity)
STORE_TAG = "relforge.tracking_store"


def cell_folder_name(cell_id: str) -> str:
    return cell_id.replace("/", "_")


@dataclass
class CellJob:
    """Everything a process needs to run one cell of a suite."""

    suite: dict[str, Any]
    cell_id: str
    config_hash: str
    root: str  # the suite's output folder (output_dir/<suite name>)
    data_dir: str | None = None
    overrides: list[str] = field(default_factory=list)
    #: where the cell logs (the driver's tracking server); None: the cell configuration's own store
    tracking_uri: str | None = None
    #: the store behind ``tracking_uri`` (a cell folder's run is continued only in the same store)
    tracking_store: str | None = None
    parent_run_id: str | None = None
    rerun: bool = False
    #: torch / OpenMP threads for the cell (None: leave as they are)
    threads: int | None = None

    @property
    def result_path(self) -> Path:
        return Path(self.root) / JOBS_DIR / f"{cell_folder_name(self.cell_id)}.json"

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, default=str)

    @classmethod
    def from_json(cls, text: str) -> CellJob:
        return cls(**json.loads(text))


def read_result(job: CellJob) -> dict[str, Any] | None:
    """A job's result record, or None while it has none (running, or killed)."""
    try:
        data = json.loads(job.result_path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return data if data.get("config_hash") == job.config_hash else None


def _write_json(path: Path, data: Any) -> None:
    """``data`` as JSON at ``path``, whole or not at all (readers poll these files)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2, default=str), encoding="utf-8")
    tmp.replace(path)


def failed_record(job: CellJob | Any, error: str | None) -> dict[str, Any]:
    """The result record of a job (or an expanded cell: anything with
    ``cell_id`` and ``config_hash``) that did not run its cell to the end."""
    return {"cell": job.cell_id, "config_hash": job.config_hash, "status": "FAILED", "metrics": {},
            "seconds": 0.0, "error": error, "run_id": None}


def pid_alive(pid: Any) -> bool:
    """Whether a process with this id exists (True when it is another user's)."""
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, TypeError, ValueError):
        return False
    except PermissionError:
        return True
    return True


def write_result_record(job: CellJob, record: Mapping[str, Any]) -> None:
    _write_json(job.result_path, dict(record))


def run_cell(cell, *, suite_name: str, root: Path, registry=None, data_dir: str | Path | None = None,
             parent_run_id: str | None = None, rerun: bool = False, progress: bool = True,
             tracking_store: str | None = None) -> dict[str, Any]:
    """Train one expanded cell (:class:`relforge.bench.suite.Cell`) into its
    folder under ``root``; its result record: cell, config_hash, status
    (FINISHED or FAILED), metrics, seconds, error, run_id. A failure is
    recorded (the traceback in ``root/errors/``), not raised."""
    from relforge.engine.pipeline import train_run, write_result

    folder = root / cell_folder_name(cell.cell_id)
    record = failed_record(cell, cell.error)
    if cell.error:
        return record
    tags = {"relforge.suite": suite_name, "relforge.role": "cell", "relforge.config_hash": cell.config_hash,
            **{f"cell.{k}": str(v) for k, v in cell.coordinates.items()}}
    if parent_run_id:
        tags["parent_run_id"] = parent_run_id
    if tracking_store:
        tags[STORE_TAG] = tracking_store
    try:
        outcome = train_run(cell.resolved, registry=registry, data_dir=data_dir, output_dir=folder, tags=tags,
                            progress=progress, resume=not rerun)
    except Exception as exc:  # noqa: BLE001 - a failing cell is recorded, the suite goes on
        record["error"] = f"{type(exc).__name__}: {exc}"
        (root / "errors").mkdir(parents=True, exist_ok=True)
        (root / "errors" / f"{folder.name}.txt").write_text(traceback.format_exc(), encoding="utf-8")
        return record
    # the names the run logged to MLflow, so suites name metrics one way
    record.update(status="FINISHED", metrics=write_result(outcome, config_hash=cell.config_hash),
                  seconds=round(outcome.seconds, 1), run_id=outcome.tracking.get("run_id"))
    return record


def find_cell(job: CellJob, registry=None):
    """The job's cell, expanded again from the suite it carries (refused when
    its configuration no longer hashes the same: the code or the plugins
    changed between the driver and the worker)."""
    from relforge.bench.suite import SuiteFile, expand

    spec = SuiteFile.model_validate(job.suite)
    overrides = list(job.overrides)
    if job.tracking_uri:
        overrides.append(f"tracking.tracking_uri={job.tracking_uri}")
    for cell in expand(spec, registry=registry, extra_overrides=overrides):
        if cell.cell_id == job.cell_id:
            if cell.config_hash != job.config_hash and not cell.error:
                raise RuntimeError(f"cell {job.cell_id}: its configuration hashes to {cell.config_hash} here, "
                                   f"{job.config_hash} in the driver (different code or plugins on this node?)")
            return cell
    raise RuntimeError(f"cell {job.cell_id} is not in suite {spec.name} as expanded here")


def run_job(job: CellJob, *, registry=None, cell=None, progress: bool = True) -> dict[str, Any]:
    """Run one job in this process (a worker, a cluster job, or the driver
    itself for the inline executor: it then passes the ``cell`` it expanded)
    and write its result record. Returns the record."""
    if job.threads:
        os.environ["OMP_NUM_THREADS"] = str(job.threads)
        os.environ["MKL_NUM_THREADS"] = str(job.threads)
        import torch

        torch.set_num_threads(job.threads)
    t0 = time.time()
    try:
        if cell is None:
            cell = find_cell(job, registry=registry)
    except Exception as exc:  # noqa: BLE001 - the driver learns it from the record
        record = failed_record(job, f"{type(exc).__name__}: {exc}")
    else:
        record = run_cell(cell, suite_name=job.suite["name"], root=Path(job.root), registry=registry, data_dir=job.data_dir,
                          parent_run_id=job.parent_run_id, rerun=job.rerun, progress=progress,
                          tracking_store=job.tracking_store)
    record["wall_seconds"] = round(time.time() - t0, 1)
    write_result_record(job, record)
    return record


@dataclass
class Sweep:
    """The driver's record of a sweep (``<suite folder>/sweep.json``)."""

    root: str
    suite: str
    executor: str
    executor_settings: dict[str, Any]
    parent_run_id: str | None
    tracking_uri: str | None
    tracking_store: str | None
    jobs: list[dict[str, Any]] = field(default_factory=list)  # CellJob fields
    handles: dict[str, Any] = field(default_factory=dict)  # cell id -> the executor's handle
    #: the process group of a tracking server the driver started (stopped by whoever ends the sweep)
    server_pid: int | None = None
    shard: str = "1/1"
    driver_pid: int | None = None
    started_at: float = field(default_factory=time.time)
    #: set when the driver (or --attach) ended the sweep: its process ids mean nothing any more
    finished: bool = False

    @property
    def path(self) -> Path:
        return Path(self.root) / sweep_file(self.shard)

    def cell_jobs(self) -> list[CellJob]:
        return [CellJob(**j) for j in self.jobs]

    def started(self, job: CellJob, handle: Any = None) -> None:
        """An executor says ``job`` started (``handle``: how to find it again)."""
        self.handles[job.cell_id] = handle
        self.save()

    def save(self) -> None:
        _write_json(self.path, asdict(self))

    def driver_alive(self) -> bool:
        """Whether another process is this sweep's driver and still runs."""
        return bool(self.driver_pid) and self.driver_pid != os.getpid() and pid_alive(self.driver_pid)

    def stop_leftover_server(self) -> None:
        """Stop the tracking server a dead driver left behind, if it still answers at its address (a
        recorded process id alone may since belong to another process)."""
        from relforge.tracking.server import is_up, stop_process_group

        if self.server_pid and self.tracking_uri and is_up(self.tracking_uri):
            stop_process_group(self.server_pid)

    def finish(self) -> None:
        """The sweep is over: nothing of it runs any more."""
        self.finished, self.server_pid, self.driver_pid = True, None, None
        self.save()

    @classmethod
    def load(cls, root: Path, shard: str = "1/1") -> Sweep | None:
        path = Path(root) / sweep_file(shard)
        if not path.is_file():
            return None
        return cls(**json.loads(path.read_text(encoding="utf-8")))
