"""The executors the core ships (``relforge bench SUITE --executor NAME``).

* ``inline`` (the default): the cells one after another in this process.
* ``local``: each cell in a process of its own on this machine, ``jobs`` at
  once, the machine's cores divided among them (``OMP_NUM_THREADS`` and
  ``torch.set_num_threads``): for many small CPU cells.
* ``slurm``: the cells as one SLURM job array through submitit (partition,
  GPUs, time limit, array parallelism, extra sbatch parameters). A preempted
  or timed-out cell is requeued by submitit's checkpointing and resumes from
  its folder's checkpoint. ``cluster: local`` / ``debug`` runs the same code
  path without SLURM (submitit's local and in-process executors).

Every executor runs :func:`relforge.bench.sweep.run_job` on
:class:`relforge.bench.sweep.CellJob` values; the driver in
:mod:`relforge.bench.runner` owns the parent run, the tracking server and
the report.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from relforge.bench.sweep import (JOBS_DIR, CellJob, Sweep, cell_folder_name, failed_record, pid_alive, read_result,
                                  run_job)
from relforge.components import Executor, Settings

#: how often the driver looks at its jobs (seconds)
POLL_S = 0.5


def usable_cores() -> int:
    """The cores this process may run on (a SLURM allocation or a cgroup
    limit, not the whole host)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class InlineExecutor(Executor):
    """Every cell in this process, one after another (today's behaviour)."""

    name = "inline"
    separate_processes = False

    class Settings(Settings):
        pass

    def run(self, jobs: Sequence[CellJob], sweep: Any) -> Iterator[dict[str, Any]]:
        for job in jobs:
            sweep.started(job, os.getpid())
            yield run_job(job, registry=sweep.registry, cell=sweep.cells.get(job.cell_id),
                          progress=getattr(sweep, "progress", True))

    def alive(self, handle: Any, sweep: Any) -> bool:
        return pid_alive(handle)


class LocalExecutor(Executor):
    """Each cell in a process of its own on this machine, ``jobs`` at once."""

    name = "local"

    class Settings(Settings):
        jobs: int = Field(2, ge=1, description="Cells running at once.")
        threads: int | None = Field(None, ge=1, description="Threads per cell (default: this machine's cores "
                                    "divided by jobs, at least 1).")

    def threads_per_cell(self) -> int:
        return self.settings.threads or max(1, usable_cores() // self.settings.jobs)

    def command(self, job_file: Path) -> list[str]:
        return [sys.executable, "-m", "relforge.bench.worker", str(job_file)]

    def describe(self, jobs: Sequence[CellJob], sweep: Any) -> list[str]:
        t = self.threads_per_cell()
        return [f"local ({self.settings.jobs} at once, {t} thread{'s' * (t > 1)} each): {job.cell_id}"
                for job in jobs]

    def run(self, jobs: Sequence[CellJob], sweep: Any) -> Iterator[dict[str, Any]]:
        threads = self.threads_per_cell()
        queue = list(jobs)
        running: dict[str, tuple[CellJob, subprocess.Popen, Path]] = {}
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
               "RELFORGE_QUIET": os.environ.get("RELFORGE_QUIET", "")}
        try:
            while queue or running:
                while queue and len(running) < self.settings.jobs:
                    job = queue.pop(0)
                    job.threads = threads
                    folder = Path(job.root) / JOBS_DIR
                    folder.mkdir(parents=True, exist_ok=True)
                    name = cell_folder_name(job.cell_id)
                    job_file = folder / f"{name}.job.json"
                    job_file.write_text(job.to_json(), encoding="utf-8")
                    log = folder / f"{name}.log"
                    with open(log, "ab") as out:
                        # a process group of its own: the driver's Ctrl-C is not the cell's; the driver ends it
                        proc = subprocess.Popen(self.command(job_file), stdout=out, stderr=subprocess.STDOUT,
                                                env=env, start_new_session=True)
                    running[job.cell_id] = (job, proc, log)
                    sweep.started(job, proc.pid)
                for cell_id, (job, proc, log) in list(running.items()):
                    code = proc.poll()
                    if code is None:
                        continue
                    del running[cell_id]
                    yield read_result(job) or failed_record(job, f"its process exited with code {code} without "
                                                                 f"a result; log: {log}")
                time.sleep(POLL_S)
        finally:
            # the driver ends (done, Ctrl-C, an error): no cell outlives it unseen. SIGINT first, to every
            # cell at once (a run interrupted that way is marked KILLED in MLflow), then one shared grace
            import signal

            left = [proc for _job, proc, _log in running.values() if proc.poll() is None]
            for proc in left:
                try:
                    os.killpg(proc.pid, signal.SIGINT)
                except ProcessLookupError:
                    pass
            deadline = time.time() + 30
            while time.time() < deadline and any(p.poll() is None for p in left):
                time.sleep(0.2)
            for proc in left:
                if proc.poll() is None:
                    try:
                        os.killpg(proc.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass

    def alive(self, handle: Any, sweep: Any) -> bool:
        return pid_alive(handle)


def _submitit():
    try:
        import submitit
    except ImportError:
        from relforge.config import ConfigError

        raise ConfigError("the slurm executor needs submitit: pip install 'relforge[cluster]' "
                          "(scripts/setup.sh installs it)") from None
    return submitit


class CellTask:
    """What a submitit job runs: one cell. Checkpointable: on preemption or
    time-out submitit calls :meth:`checkpoint`, which requeues the same job;
    the cell then resumes from its folder's checkpoint (its MLflow run
    continues)."""

    def __call__(self, job: CellJob) -> dict[str, Any]:
        return run_job(job, progress=False)

    def checkpoint(self, job: CellJob):
        import dataclasses

        # the requeued attempt continues the cell (its checkpoint, its MLflow run), even under --rerun
        return _submitit().helpers.DelayedSubmission(type(self)(), dataclasses.replace(job, rerun=False))


class SlurmExecutor(Executor):
    """The cells as one SLURM job array, through submitit."""

    name = "slurm"
    remote = True

    class Settings(Settings):
        jobs: int = Field(8, ge=1, description="Cells running at once (slurm_array_parallelism).")
        partition: str | None = Field(None, description="SLURM partition (sbatch --partition).")
        gpus_per_node: int = Field(0, ge=0, description="GPUs per cell.")
        cpus_per_task: int | None = Field(None, ge=1, description="CPU cores per cell.")
        mem_gb: float | None = Field(None, gt=0, description="Memory per cell, GB.")
        timeout_min: int = Field(24 * 60, ge=1, description="Time limit per cell attempt (minutes); a cell that "
                                 "reaches it is requeued and resumes from its checkpoint.")
        max_timeouts: int = Field(3, ge=0, description="Requeues after time-outs before a cell counts as failed.")
        additional: dict[str, Any] = Field(default_factory=dict, description="Further sbatch parameters "
                                           "(slurm_additional_parameters, e.g. {account: abc, qos: high}).")
        setup: list[str] = Field(default_factory=list, description="Shell lines run before each cell (module "
                                 "load, source .venv/bin/activate).")
        cluster: Literal["slurm", "local", "debug"] | None = Field(
            None, description="submitit's cluster: slurm (default where sbatch exists), local (processes on this "
            "machine, for tests), debug (in the driver's process).")
        folder: str | None = Field(None, description="submitit's job folder (logs, pickles); default "
                                   "<suite folder>/submitit.")

    @property
    def remote_cluster(self) -> bool:
        return self.settings.cluster in (None, "slurm")

    @property
    def separate_processes(self) -> bool:  # type: ignore[override]
        return self.settings.cluster != "debug"  # debug runs the jobs inside the driver

    def check(self) -> None:
        import shutil

        _submitit()
        if self.remote_cluster and shutil.which("sbatch") is None:
            from relforge.config import ConfigError

            raise ConfigError("executor slurm: no SLURM here (sbatch is not on PATH); run `relforge bench` on a "
                              "node that submits jobs, or try the same code path on this machine with "
                              "--executor-set cluster=local")

    def executor(self, root: Path):
        self.check()
        submitit = _submitit()
        folder = self.settings.folder or str(root / "submitit" / "%j")
        ex = submitit.AutoExecutor(folder=folder, cluster=self.settings.cluster,
                                   slurm_max_num_timeout=self.settings.max_timeouts,
                                   local_max_num_timeout=self.settings.max_timeouts)
        params: dict[str, Any] = {"timeout_min": self.settings.timeout_min, "name": f"relforge-{Path(root).name}",
                                  "slurm_array_parallelism": self.settings.jobs,
                                  "gpus_per_node": self.settings.gpus_per_node}
        if self.settings.partition:
            params["slurm_partition"] = self.settings.partition
        if self.settings.cpus_per_task:
            params["cpus_per_task"] = self.settings.cpus_per_task
        if self.settings.mem_gb:
            params["mem_gb"] = self.settings.mem_gb
        if self.settings.additional:
            params["slurm_additional_parameters"] = dict(self.settings.additional)
        if self.settings.setup:
            params["slurm_setup"] = list(self.settings.setup)
        ex.update_parameters(**params)
        return ex

    def describe(self, jobs: Sequence[CellJob], sweep: Any) -> list[str]:
        s = self.settings
        head = (f"slurm job array of {len(jobs)} (cluster {s.cluster or 'slurm'}, at most {s.jobs} at once, "
                f"partition {s.partition or '(default)'}, {s.gpus_per_node} GPU(s), {s.timeout_min} min"
                + (f", cpus {s.cpus_per_task}" if s.cpus_per_task else "") + (f", mem {s.mem_gb} GB" if s.mem_gb
                                                                             else "")
                + (f", sbatch {s.additional}" if s.additional else "") + ")")
        return [head] + [f"  {job.cell_id}" for job in jobs]

    def run(self, jobs: Sequence[CellJob], sweep: Any) -> Iterator[dict[str, Any]]:
        ex = self.executor(Path(jobs[0].root) if jobs else Path("."))
        queue = list(jobs)
        waiting: dict[str, tuple[CellJob, Any]] = {}

        def submit(batch: list[CellJob]) -> None:
            # SLURM: one job array, its parallelism bounded by the scheduler; submitit's local and debug
            # executors know no bound, so the driver keeps at most `jobs` of them in flight
            try:
                submitted = ex.map_array(CellTask(), batch) if len(batch) > 1 else [ex.submit(CellTask(),
                                                                                               batch[0])]
            except _submitit().core.utils.FailedJobError as exc:  # sbatch refused it (partition, account, ...)
                from relforge.validation import UserFacingError

                raise UserFacingError(f"executor slurm: sbatch refused the job array: "
                                      f"{' '.join(str(exc).split())[:400]} -- check --executor-set partition, "
                                      f"gpus_per_node, timeout_min and additional.*") from None
            for job, sj in zip(batch, submitted):
                waiting[job.cell_id] = (job, sj)
                sweep.started(job, {"job_id": str(sj.job_id), "folder": str(sj.paths.folder)})

        if queue and self.remote_cluster:
            submit(queue)
            queue = []
        try:
            yield from self._wait(queue, waiting, submit)
        finally:
            if waiting and self.settings.cluster == "local":
                # submitit's local jobs are the driver's children: interrupted with it (a SLURM job goes on;
                # --attach follows it)
                for _job, sj in waiting.values():
                    sj.cancel(check=False)

    def _wait(self, queue: list[CellJob], waiting: dict[str, tuple[CellJob, Any]], submit
              ) -> Iterator[dict[str, Any]]:
        while waiting or queue:
            free = self.settings.jobs - len(waiting)
            if queue and free > 0:
                submit(queue[:free])
                queue = queue[free:]
            for cell_id, (job, sj) in list(waiting.items()):
                if not sj.done():
                    continue
                del waiting[cell_id]
                try:
                    record = sj.result()
                except Exception as exc:  # noqa: BLE001 - submitit raises the job's failure here
                    record = read_result(job) or failed_record(job, f"job {sj.job_id} failed: "
                                                              f"{' '.join(str(exc).split())[:500]}")
                yield record
            if waiting:
                time.sleep(POLL_S)

    def alive(self, handle: Any, sweep: Any) -> bool:
        if not isinstance(handle, dict):
            return False
        job_id = str(handle.get("job_id", ""))
        if self.settings.cluster == "local":
            return pid_alive(job_id)  # submitit's local jobs are named by their controller's process id
        if self.settings.cluster == "debug":
            return False  # it ran inside the driver
        submitit = _submitit()
        try:
            return not submitit.SlurmJob(folder=handle.get("folder", "."), job_id=job_id).done()
        except Exception:  # noqa: BLE001 - sacct missing or the job forgotten: not waiting on it
            return False


def register_executors(register) -> None:
    register(InlineExecutor, description="every cell in this process, one after another (the default)")
    register(LocalExecutor, description="each cell in a process of its own on this machine, jobs at once")
    register(SlurmExecutor, description="a SLURM job array through submitit (the cluster extra); requeues "
                                        "preempted cells")


__all__ = ["InlineExecutor", "LocalExecutor", "SlurmExecutor", "CellTask", "register_executors", "Sweep"]
