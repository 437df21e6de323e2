"""Where a suite's cells run (issue #18): the executor hook, the local
executor (cells in processes of their own, logging through a tracking server),
and the slurm executor's code path through submitit's local and debug
clusters: a preempted cell requeued and resumed, a killed driver re-attached.
Every sweep ends with one parent run, each cell run once, and the numbers of
an inline run of the same cells."""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from relforge import hookimpl
from relforge.bench.runner import run_suite
from relforge.bench.suite import SuiteFile
from relforge.components import Executor, Settings
from relforge.registry import Registry

submitit = pytest.importorskip("submitit", reason="relforge[cluster] is not installed")

METRIC = "test/micro_f1"


def _suite(tmp_path: Path, backbone: Path, name: str, seeds: list[int], epochs: int = 1) -> Path:
    suite = {"name": name,
             "base": {"data": {"dataset": {"name": "quickstart", "train_size": 32, "dev_size": 8, "test_size": 8}},
                      "model": {"backbone": str(backbone), "max_source_length": 40},
                      "train": {"epochs": epochs, "batch_size": 8, "save_every": 4}},
             "matrix": {"method": ["marker_classifier"], "seed": seeds},
             "metrics": [METRIC]}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(suite), encoding="utf-8")
    return path


def _env(uri: str) -> dict[str, str]:
    return {**os.environ, "MLFLOW_TRACKING_URI": uri, "COLUMNS": "200", "RELFORGE_PROGRESS_INTERVAL": "5"}


def _bench(path: Path, out: Path, uri: str, *extra: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "relforge", "bench", str(path), "--output-dir", str(out), *extra],
                          capture_output=True, text=True, env=_env(uri), cwd=cwd, timeout=900)


def _sweep_runs(uri: str) -> tuple[list, dict[str, list]]:
    """(parent runs, seed -> that seed's cell runs)."""
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("relforge")
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if r.data.tags.get("relforge.role") == "suite"]
    cells: dict[str, list] = {}
    for r in runs:
        if r.data.tags.get("relforge.role") == "cell":
            cells.setdefault(r.data.tags["cell.seed"], []).append(r)
    return parents, cells


def _check_one_view(uri: str, seeds: list[int], reference: dict[str, float]) -> None:
    parents, cells = _sweep_runs(uri)
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    parent = parents[0].info.run_id
    assert sorted(cells) == sorted(str(s) for s in seeds)
    for seed, runs in cells.items():
        assert len(runs) == 1, f"seed {seed}: {len(runs)} runs (a cell ran twice)"
        run = runs[0]
        assert run.info.status == "FINISHED" and run.data.tags["mlflow.parentRunId"] == parent
        assert run.data.metrics[METRIC] == pytest.approx(reference[seed], abs=1e-9)
    # the report's arm means are on the parent, as after an inline sweep
    assert parents[0].data.metrics["mean/method_marker_classifier/test_micro_f1_seeds"] == len(seeds)


def _report_rows(root: Path) -> list[dict[str, str]]:
    with open(root / "report" / "report.csv", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def inline_four(tiny_bert_dir, tmp_path_factory):
    """The four-cell suite run inline: the reference every executor must match."""
    tmp = tmp_path_factory.mktemp("inline")
    path = _suite(tmp, tiny_bert_dir, "four", [1, 2, 3, 4])
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    res = _bench(path, tmp / "runs", uri, cwd=tmp)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    _, cells = _sweep_runs(uri)
    return {s: runs[0].data.metrics[METRIC] for s, runs in cells.items()}, _report_rows(tmp / "runs" / "four")


class Reversed(Executor):
    """A plugin's executor: the cells in this process, last first."""

    name = "reversed"
    separate_processes = False

    class Settings(Settings):
        label: str = "r"

    def run(self, jobs, sweep):
        from relforge.bench.sweep import run_job

        for job in reversed(list(jobs)):
            sweep.started(job, os.getpid())
            yield run_job(job, registry=sweep.registry, cell=sweep.cells.get(job.cell_id), progress=False)


def _with_executor(executor_cls, plugin: str) -> Registry:
    """The installed registry plus a plugin offering ``executor_cls``."""

    class Plugin:
        @hookimpl
        def register_executors(self, register):
            register(executor_cls)

    reg = Registry().load(entry_points=False)
    reg.add_plugin(Plugin(), plugin)
    return reg


def _untracked_spec(tmp_path: Path, backbone: Path, name: str, seeds: list[int]) -> SuiteFile:
    spec = SuiteFile.model_validate(yaml.safe_load(_suite(tmp_path, backbone, name, seeds).read_text()))
    spec.base["tracking"] = {"trackers": []}
    return spec


def test_hook_register_executors(tiny_bert_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    reg = _with_executor(Reversed, "extra")
    assert reg.get("executor", "reversed").full_name == "extra.reversed"
    assert {"relforge.inline", "relforge.local", "relforge.slurm"} <= {
        c.full_name for c in reg.components("executor")}
    spec = _untracked_spec(tmp_path, tiny_bert_dir, "rev", [1, 2])
    results = run_suite(spec, registry=reg, output_dir=tmp_path / "runs", executor="reversed",
                        executor_settings={"label": "x"})
    assert [r.status for r in results] == ["FINISHED", "FINISHED"]
    assert [r.cell.cell_id for r in results] == ["method=marker_classifier,seed=1", "method=marker_classifier,seed=2"]
    sweep = json.loads((tmp_path / "runs" / "rev" / "sweep.json").read_text())
    assert sweep["executor"] == "extra.reversed" and sweep["executor_settings"] == {"label": "x"}
    # the plugin ran them last first: seed 2's result record is the older one
    records = [tmp_path / "runs" / "rev" / "jobs" / f"method=marker_classifier,seed={s}.json" for s in (1, 2)]
    assert records[1].stat().st_mtime <= records[0].stat().st_mtime


def test_local_executor_runs_cells_in_two_processes_through_a_tracking_server(inline_four, tiny_bert_dir,
                                                                            tmp_path):
    from relforge.tracking.server import start_server

    reference, report = inline_four
    path = _suite(tmp_path, tiny_bert_dir, "four", [1, 2, 3, 4])
    with start_server(f"sqlite:///{tmp_path / 'store.db'}", log=tmp_path / "server.log") as server:
        res = _bench(path, tmp_path / "runs", server.uri, "--executor", "local", "--jobs", "2", cwd=tmp_path)
        assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
        assert res.stdout.count("started (local process") == 4
        # two processes at once, the cores divided between them
        jobs = [json.loads(p.read_text()) for p in (tmp_path / "runs" / "four" / "jobs").glob("*.job.json")]
        assert len(jobs) == 4 and {j["threads"] for j in jobs} == {max(1, (os.cpu_count() or 1) // 2)}
        assert {j["tracking_uri"] for j in jobs} == {server.uri}
        _check_one_view(server.uri, [1, 2, 3, 4], reference)
    assert _report_rows(tmp_path / "runs" / "four") == report


def test_slurm_code_path_in_process_debug_cluster(inline_four, tiny_bert_dir, tmp_path):
    reference, report = inline_four
    path = _suite(tmp_path, tiny_bert_dir, "four", [1, 2, 3, 4])
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    dry = _bench(path, tmp_path / "runs", uri, "--executor", "slurm", "--jobs", "3", "--executor-set",
                 "partition=gpu", "--executor-set", "additional.account=abc", "--dry-run", cwd=tmp_path)
    assert dry.returncode == 0, dry.stderr
    assert "slurm job array of 4 (cluster slurm, at most 3 at once, partition gpu" in dry.stdout
    assert "'account': 'abc'" in dry.stdout and not (tmp_path / "runs" / "four" / "submitit").exists()
    # a real cluster cannot reach a SQLite file on this machine: refused, with the way out
    refused = _bench(path, tmp_path / "runs", uri, "--executor", "slurm", cwd=tmp_path)
    assert refused.returncode == 2 and "relforge server --host 0.0.0.0" in refused.stderr
    assert "Traceback" not in refused.stderr and len(refused.stderr.strip().splitlines()) <= 3
    res = _bench(path, tmp_path / "runs", uri, "--executor", "slurm", "--executor-set", "cluster=debug", cwd=tmp_path)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "starting a tracking server" not in res.stdout and "View run" not in res.stdout
    _check_one_view(uri, [1, 2, 3, 4], reference)
    assert _report_rows(tmp_path / "runs" / "four") == report


def test_bad_executor_input_is_one_line(tiny_bert_dir, tmp_path):
    path = _suite(tmp_path, tiny_bert_dir, "four", [1])
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    for extra, expected in [(["--executor", "nope"], "nope"),
                            (["--executor", "local", "--executor-set", "jbos=2"], "jbos"),
                            (["--attach"], "no sweep recorded"),
                            (["--attach", "--jobs", "2"], "--attach")]:
        res = _bench(path, tmp_path / "runs", uri, *extra, cwd=tmp_path)
        assert res.returncode == 2, (extra, res.stdout, res.stderr)
        assert expected in res.stderr and "Traceback" not in res.stderr, (extra, res.stderr)


def _wait_for(predicate, timeout: float, what: str, proc: subprocess.Popen | None = None) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the driver ended (code {proc.returncode}) before {what}")
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return [int(x) for x in out.split()]


def test_slurm_local_cluster_requeues_a_preempted_cell_and_a_killed_driver_is_reattached(tiny_bert_dir, tmp_path):
    """submitit's local cluster (processes, signals and requeueing as on
    SLURM): cell 1 is preempted (SIGUSR2 to its task) after its first
    checkpoint and requeued, it resumes from the checkpoint; then the driver
    is killed, and `--attach` waits for the cells and writes the report."""
    seeds = [1, 2]
    path = _suite(tmp_path, tiny_bert_dir, "long", seeds, epochs=40)
    ref_uri = f"sqlite:///{tmp_path / 'inline.db'}"
    ref = _bench(path, tmp_path / "inline", ref_uri, cwd=tmp_path)
    assert ref.returncode == 0, ref.stderr[-3000:]
    reference = {s: runs[0].data.metrics[METRIC] for s, runs in _sweep_runs(ref_uri)[1].items()}

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    root = tmp_path / "runs" / "long"
    log = open(tmp_path / "driver.log", "w")  # noqa: SIM115 - closed below
    driver = subprocess.Popen([sys.executable, "-m", "relforge", "bench", str(path), "--output-dir",
                               str(tmp_path / "runs"), "--executor", "slurm", "--jobs", "2", "--executor-set",
                               "cluster=local"], env=_env(uri), cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT,
                              start_new_session=True)
    sweep: dict = {}
    try:
        first = root / "method=marker_classifier,seed=1"
        _wait_for(lambda: (first / "checkpoint" / "trainer_state.json").exists(), 300, "a first checkpoint", driver)

        def handles() -> dict:
            nonlocal sweep
            sweep = json.loads((root / "sweep.json").read_text())
            return sweep["handles"]

        _wait_for(lambda: len(handles()) == 2, 60, "both jobs submitted", driver)
        controller = int(sweep["handles"]["method=marker_classifier,seed=1"]["job_id"])
        tasks = _children(controller)
        assert tasks, "the job's task process was not found"
        os.kill(tasks[0], signal.SIGUSR2)  # what SLURM sends before preemption or the time limit
        _wait_for(lambda: [t for t in _children(controller) if t not in tasks], 120, "the requeued task", driver)
        os.kill(driver.pid, signal.SIGKILL)  # the driver dies; the jobs and its tracking server go on
        driver.wait(timeout=30)
        res = _bench(path, tmp_path / "runs", uri, "--attach", cwd=tmp_path)
        assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
        assert "2 cells handed to relforge.slurm" in res.stdout and "FINISHED" in res.stdout
        job_log = "".join(p.read_text(errors="replace") for p in (root / "submitit").rglob(f"{controller}_0_log.*"))
        assert "resuming from" in job_log and "requeued job" in job_log.lower(), job_log[-3000:]
        _check_one_view(uri, seeds, reference)
        assert _report_rows(root) == _report_rows(tmp_path / "inline" / "long")
        # the tracking server the dead driver left behind was stopped by --attach
        _wait_for(lambda: subprocess.run(["ps", "-p", str(sweep["server_pid"])], capture_output=True).returncode != 0,
                  30, "the orphaned tracking server to stop")
    finally:
        log.close()
        jobs = [int(h["job_id"]) for h in sweep.get("handles", {}).values()]
        for pid in [driver.pid, sweep.get("server_pid"), *jobs]:
            if pid:
                try:
                    os.killpg(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass


class _FakeRay:
    """Just enough of Ray's API to run CONTRIBUTING's executor recipe in
    this process (Ray itself is not a dependency): remote functions run when
    called, refs are their results."""

    class Ref:
        def __init__(self, value):
            self.value = value

        def hex(self):
            return f"{id(self):x}"

    def remote(self, **_options):
        def wrap(fn):
            return type("Remote", (), {"remote": staticmethod(lambda *a, **k: _FakeRay.Ref(fn(*a, **k)))})()
        return wrap

    def wait(self, refs):
        return refs[:1], refs[1:]

    def get(self, ref):
        return ref.value


def test_the_contributing_executor_recipe_runs(tiny_bert_dir, tmp_path, monkeypatch):
    import re
    import types

    text = (Path(__file__).resolve().parents[2] / "CONTRIBUTING.md").read_text(encoding="utf-8")
    section = text[text.index("Another executor (Ray"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    ray = types.ModuleType("ray")
    fake = _FakeRay()
    ray.remote, ray.wait, ray.get = fake.remote, fake.wait, fake.get
    monkeypatch.setitem(sys.modules, "ray", ray)
    namespace: dict = {}
    exec(compile(code, "CONTRIBUTING.md", "exec"), namespace)  # noqa: S102 - the documented recipe
    monkeypatch.chdir(tmp_path)
    reg = Registry().load(entry_points=False)
    reg.add_plugin(namespace["Plugin"](), "rayplugin")
    spec = _untracked_spec(tmp_path, tiny_bert_dir, "ray", [1])
    results = run_suite(spec, registry=reg, output_dir=tmp_path / "runs", executor="ray",
                        executor_settings={"num_gpus": 0})
    assert [r.status for r in results] == ["FINISHED"] and METRIC in results[0].metrics


def test_a_tracking_server_that_is_down_or_no_slurm_is_one_line(tiny_bert_dir, tmp_path):
    import shutil

    from relforge.tracking.server import free_port

    path = _suite(tmp_path, tiny_bert_dir, "four", [1])
    down = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    env = {**_env(down), "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}
    res = subprocess.run([sys.executable, "-m", "relforge", "bench", str(path), "--output-dir", str(tmp_path / "r")],
                         capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert res.returncode == 2 and f"MLflow ({down})" in res.stderr and "Traceback" not in res.stderr, res.stderr
    if shutil.which("sbatch") is None:
        res = subprocess.run([sys.executable, "-m", "relforge", "bench", str(path), "--output-dir",
                              str(tmp_path / "r"), "--executor", "slurm"], capture_output=True, text=True, env=env,
                             cwd=tmp_path, timeout=600)
        assert res.returncode == 2 and "cluster=local" in res.stderr and "Traceback" not in res.stderr, res.stderr


def test_a_server_for_other_machines_answers_this_machines_names():
    import socket

    from relforge.tracking.server import server_command

    local = server_command("sqlite:///x.db", port=5001)
    assert "--allowed-hosts" not in local  # loopback only: MLflow's default
    wide = server_command("postgresql://u@db/relforge", host="0.0.0.0", port=5001)
    hosts = wide[wide.index("--allowed-hosts") + 1].split(",")
    assert f"{socket.gethostname()}:5001" in hosts and "10.*" in hosts
    assert "--default-artifact-root" not in wide  # PostgreSQL: artifacts where --artifact-root says
    given = server_command("sqlite:///x.db", host="0.0.0.0", port=5001, allowed_hosts="login1",
                           artifacts_destination="/shared/art")
    assert given[given.index("--allowed-hosts") + 1] == "login1"
    assert given[given.index("--default-artifact-root") + 1] == "/shared/art"


class Forgetful(Executor):
    """A broken plugin executor: it runs nothing and reports nothing."""

    name = "forgetful"
    separate_processes = False

    def run(self, jobs, sweep):
        return iter(())


def test_a_cell_an_executor_never_reports_is_failed_not_dropped(tiny_bert_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    reg = _with_executor(Forgetful, "broken")
    spec = _untracked_spec(tmp_path, tiny_bert_dir, "lost", [1, 2])
    results = run_suite(spec, registry=reg, output_dir=tmp_path / "runs", executor="forgetful")
    assert [r.status for r in results] == ["FAILED", "FAILED"]
    assert all("returned no result" in r.error for r in results)
    assert json.loads((tmp_path / "runs" / "lost" / "sweep.json").read_text())["finished"] is True


def test_a_second_driver_is_refused_while_a_sweep_runs(tiny_bert_dir, tmp_path, monkeypatch):
    from relforge.bench.sweep import Sweep
    from relforge.config import ConfigError

    monkeypatch.chdir(tmp_path)
    spec = _untracked_spec(tmp_path, tiny_bert_dir, "busy", [1])
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        Sweep(root=str(tmp_path / "runs" / "busy"), suite="busy", executor="relforge.local",
              executor_settings={"jobs": 2}, parent_run_id=None, tracking_uri=None, tracking_store=None,
              driver_pid=sleeper.pid).save()
        with pytest.raises(ConfigError, match="still running.*--attach"):
            run_suite(spec, output_dir=tmp_path / "runs", executor="local")
    finally:
        sleeper.kill()
        sleeper.wait()
    # its driver gone and no job alive: the old record is closed and the sweep runs
    results = run_suite(spec, output_dir=tmp_path / "runs")
    assert [r.status for r in results] == ["FINISHED"]


def test_a_requeued_cell_continues_even_under_rerun():
    from relforge.bench.executors import CellTask
    from relforge.bench.sweep import CellJob

    job = CellJob(suite={"name": "s"}, cell_id="seed=1", config_hash="abc", root="/tmp/x", rerun=True)
    delayed = CellTask().checkpoint(job)
    assert delayed.args[0].rerun is False and delayed.args[0].cell_id == "seed=1"
    assert job.rerun is True  # the driver's job is left as it was


def test_jobs_without_an_executor_that_runs_cells_at_once_is_one_line(tiny_bert_dir, tmp_path):
    path = _suite(tmp_path, tiny_bert_dir, "four", [1])
    res = _bench(path, tmp_path / "runs", f"sqlite:///{tmp_path / 'm.db'}", "--jobs", "2", cwd=tmp_path)
    assert res.returncode == 2 and "--executor local" in res.stderr and "Traceback" not in res.stderr
