"""The built-in MLflow tracker (registered as the plugin ``mlflow``).

It is active for a run when ``tracking.trackers`` names ``mlflow`` (the
default). The store is ``tracking.tracking_uri``, else ``MLFLOW_TRACKING_URI``,
else a SQLite database ``mlflow.db`` in the working directory (MLflow's own
default backend; the deprecated file store is never used). Each run logs the
flattened resolved configuration (secrets already redacted by
:class:`relforge.run.Run`) as params, its tags, metrics with their steps, and
artifacts. A run whose tags carry ``parent_run_id`` is nested under it.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

from relforge.config import flatten
from relforge.hookspecs import hookimpl

NAME = "mlflow"
#: MLflow limits (https://mlflow.org/docs/latest/tracking.html): param values are cut at this length
MAX_PARAM_VALUE = 6000


def default_tracking_uri(cwd: Path | None = None) -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{(cwd or Path.cwd()).resolve() / 'mlflow.db'}"


def artifact_location_for(uri: str) -> str | None:
    """For a local SQLite store, artifacts go to ``mlartifacts/`` beside the
    database (as ``mlflow server`` does), not into the working directory."""
    if uri.startswith("sqlite:///"):
        return (Path(uri.removeprefix("sqlite:///")).resolve().parent / "mlartifacts").as_uri()
    return None


def tracking_uri_for(config: dict) -> str:
    return (config.get("tracking") or {}).get("tracking_uri") or default_tracking_uri()


def _active(run) -> bool:
    trackers = (run.config.get("tracking") or {}).get("trackers", ["mlflow"])
    return NAME in trackers


def _client(run):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=run.state[NAME]["uri"])


#: in a run folder: the MLflow run that recorded it (a resumed run reopens it)
RUN_MARKER = "mlflow-run.json"


def store_lock(uri: str):
    """A lock around creating (and migrating) a local SQLite store and its
    experiments: concurrent first starts on a fresh ``mlflow.db`` otherwise
    race in MLflow's schema migration and lose a run. A no-op elsewhere."""
    import contextlib

    if not uri.startswith("sqlite:///"):
        return contextlib.nullcontext()
    from filelock import FileLock

    db = Path(uri.removeprefix("sqlite:///")).resolve()
    db.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(db) + ".lock", timeout=600)


def _previous(run, store: str) -> dict | None:
    """The MLflow run that recorded this folder, when it is in ``store``
    (a run logged through a tracking server records the store behind it, so
    a cell that ran through one server is continued through another, or
    straight in the store)."""
    import json

    marker = Path(run.output_dir) / RUN_MARKER
    try:
        prev = json.loads(marker.read_text(encoding="utf-8")) if marker.is_file() else None
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return prev if prev and (prev.get("store") or prev.get("uri")) == store and prev.get("run_id") else None


@hookimpl
def on_run_start(run):
    if not _active(run):
        return
    import json

    from mlflow.entities import Param, RunTag
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    uri = tracking_uri_for(run.config)
    # with a tracking server MLflow prints "View run ... at: http://..." as each run ends: a sweep's log
    # would show one per cell; the run's folder says where it is (mlflow-run.json)
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    exp_name = (run.config.get("tracking") or {}).get("experiment", "relforge")
    with store_lock(uri):
        client = MlflowClient(tracking_uri=uri)
        exp = client.get_experiment_by_name(exp_name)
        exp_id = exp.experiment_id if exp is not None else client.create_experiment(
            exp_name, artifact_location=artifact_location_for(uri))
    tags = {**{str(k): str(v) for k, v in ((run.config.get("tracking") or {}).get("tags") or {}).items()},
            **run.tags}
    parent = tags.pop("parent_run_id", None)
    if parent:
        tags["mlflow.parentRunId"] = parent
    resume = tags.pop("resume_run_id", None)
    attempt = tags.pop("relforge.attempt", None)
    # a sweep's cell logging through a tracking server names the store behind it
    store = tags.pop("relforge.tracking_store", None) or uri
    prev = _previous(run, store)
    if prev and resume is None:
        try:
            old = client.get_run(prev["run_id"])
        except MlflowException:
            old = None
        if old is not None and attempt == "resume":
            resume = prev["run_id"]  # the same MLflow run continues
        elif old is not None:
            # a fresh attempt in the folder: the interrupted run is closed, and linked
            if old.info.status == "RUNNING":
                client.set_tag(prev["run_id"], "relforge.error", "interrupted; a new run started in its folder")
                client.set_terminated(prev["run_id"], status="KILLED")
            tags["relforge.previous_run_id"] = prev["run_id"]
    if resume:  # continue an earlier run (a suite's parent run when the suite is re-run)
        mlrun = client.get_run(resume)
        client.update_run(resume, status="RUNNING")
        for k, v in tags.items():
            client.set_tag(resume, k, v)
    else:
        tags.setdefault("mlflow.runName", run.name)
        mlrun = client.create_run(exp_id, run_name=run.name, tags=tags)
    run.state[NAME] = {"uri": uri, "run_id": mlrun.info.run_id, "experiment_id": exp_id}
    marker = {"uri": uri, "store": store, "run_id": mlrun.info.run_id}
    (Path(run.output_dir) / RUN_MARKER).write_text(json.dumps(marker), encoding="utf-8")
    # params are immutable in MLflow: a resumed run keeps those it began with
    params = [] if resume else [Param(k[:250], str(v)[:MAX_PARAM_VALUE]) for k, v in flatten(run.config).items()]
    for i in range(0, len(params), 100):  # MLflow accepts at most 100 params per batch
        client.log_batch(mlrun.info.run_id, params=params[i:i + 100])
    client.log_batch(mlrun.info.run_id, tags=[RunTag("relforge.output_dir", str(run.output_dir))])
    client.log_artifact(mlrun.info.run_id, str(run.output_dir / "config.yaml"))


@hookimpl
def on_metrics(run, metrics, step):
    if NAME not in run.state:
        return
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    ms = [Metric(k, float(v), now, int(step or 0)) for k, v in metrics.items()]
    _client(run).log_batch(run.state[NAME]["run_id"], metrics=ms)  # the client splits it into MLflow's batch limits


@hookimpl
def on_tags(run, tags):
    if NAME not in run.state:
        return
    from mlflow.entities import RunTag

    _client(run).log_batch(run.state[NAME]["run_id"], tags=[RunTag(k, v[:5000]) for k, v in tags.items()])


@hookimpl
def on_artifact(run, path, artifact_path):
    if NAME not in run.state:
        return
    _client(run).log_artifact(run.state[NAME]["run_id"], str(path), artifact_path)


@hookimpl
def on_dataset(run, name, split, digest, source, examples):
    if NAME not in run.state:
        return
    from mlflow.entities import Dataset, DatasetInput, InputTag

    dataset = Dataset(name=f"{name}/{split}", digest=digest, source_type="relforge", source=source,
                      profile=f'{{"examples": {int(examples)}}}')
    from mlflow.exceptions import MlflowException

    inputs = [DatasetInput(dataset, tags=[InputTag("mlflow.data.context", split)])]
    for attempt in range(3):
        try:
            _client(run).log_inputs(run.state[NAME]["run_id"], datasets=inputs)
            return
        except MlflowException as exc:
            # two cells of a sweep logging the same split at once (through one tracking server) race to
            # create the experiment's dataset row; the loser finds it there on a second try
            if "UNIQUE constraint" not in str(exc) or attempt == 2:
                raise
            time.sleep(0.2 * (attempt + 1))


@hookimpl
def on_model(run, folder):
    """The selected model as an MLflow pyfunc model under ``model`` (unless
    ``tracking.log_model`` is false)."""
    if NAME not in run.state or not (run.config.get("tracking") or {}).get("log_model", True):
        return
    import shutil
    import tempfile

    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
    from mlflow.store.artifact.local_artifact_repo import LocalArtifactRepository

    from relforge.engine.checkpoint import write_atomically
    from relforge.tracking.pyfunc import save_pyfunc

    client, run_id = _client(run), run.state[NAME]["run_id"]
    repo = get_artifact_repository(client.get_run(run_id).info.artifact_uri)
    if isinstance(repo, LocalArtifactRepository):
        # written in place (atomically, replacing a model logged by an earlier attempt), so that the
        # weights are hard links to the model folder's (save_pyfunc) instead of a second copy
        def write(tmp: Path) -> None:
            tmp.rmdir()  # MLflow writes a model into a folder that does not exist yet
            try:
                save_pyfunc(Path(folder), tmp)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)  # no half-written folder left among the run's artifacts
                raise

        write_atomically(Path(repo.artifact_dir) / "model", write)
        return
    with tempfile.TemporaryDirectory(prefix="relforge-pyfunc-") as tmp:
        save_pyfunc(Path(folder), Path(tmp) / "model")
        client.log_artifacts(run_id, str(Path(tmp) / "model"), "model")


@hookimpl
def on_run_end(run, status, error):
    if NAME not in run.state:
        return
    client = _client(run)
    if error is not None:
        client.set_tag(run.state[NAME]["run_id"], "relforge.error", f"{type(error).__name__}: {error}"[:5000])
    client.set_terminated(run.state[NAME]["run_id"], status=status)
