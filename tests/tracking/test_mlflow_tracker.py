"""The MLflow tracker receives params, tags, metrics and artifacts."""
from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient

from relforge.config import load_config
from relforge.registry import Registry
from relforge.run import Run

from tests.core.plugins_for_tests import ToyPlugin


@pytest.fixture
def reg():
    r = Registry().load(entry_points=False)  # builtins include the mlflow tracker
    r.add_plugin(ToyPlugin(), "toy")
    assert "mlflow" in r.plugins and not r.errors, r.errors
    return r


def test_mlflow_logs_params_tags_metrics_artifacts_and_status(reg, tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    cfg = load_config([], ["method=toy", "tracking.experiment=exp-a", "options.llm.api_key=sk-secret"],
                      registry=reg)
    with Run(cfg, registry=reg, output_dir=tmp_path / "run", tags={"dataset": "tiny", "seed": 42}) as run:
        run.log_metrics({"dev/micro_f1": 0.25}, step=1)
        run.log_metrics({"dev/micro_f1": 0.5}, step=2)
        art = tmp_path / "predictions.jsonl"
        art.write_text('{"id": "t1"}\n')
        run.log_artifact(art, "predictions")
        run.set_tags({"stage.generated": "12 examples"})
    client = MlflowClient(tracking_uri=uri)
    got = client.get_run(run.state["mlflow"]["run_id"])
    assert got.data.tags["stage.generated"] == "12 examples"
    assert got.info.status == "FINISHED"
    assert got.data.params["loss.name"] == "toy.scaled_mse"
    assert got.data.params["loss.scale"] == "2.0"
    assert got.data.params["options.llm.api_key"] == "***"
    assert "sk-secret" not in str(got.data.params) + str(got.data.tags)
    assert got.data.tags["dataset"] == "tiny" and got.data.tags["seed"] == "42"
    history = client.get_metric_history(got.info.run_id, "dev/micro_f1")
    assert [(m.step, m.value) for m in history] == [(1, 0.25), (2, 0.5)]
    paths = {a.path for a in client.list_artifacts(got.info.run_id)}
    assert {"config.yaml", "predictions"} <= paths
    assert [a.path for a in client.list_artifacts(got.info.run_id, "predictions")] == \
        ["predictions/predictions.jsonl"]
    assert client.get_experiment(got.info.experiment_id).name == "exp-a"


def test_failed_run_and_nesting_and_disabled(reg, tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    cfg = load_config([], ["method=toy"], registry=reg)
    with Run(cfg, registry=reg, output_dir=tmp_path / "parent") as parent:
        pass
    with pytest.raises(RuntimeError):
        with Run(cfg, registry=reg, output_dir=tmp_path / "child",
                 tags={"parent_run_id": parent.state["mlflow"]["run_id"]}) as child:
            raise RuntimeError("loss is nan")
    client = MlflowClient(tracking_uri=uri)
    got = client.get_run(child.state["mlflow"]["run_id"])
    assert got.info.status == "FAILED"
    assert got.data.tags["mlflow.parentRunId"] == parent.state["mlflow"]["run_id"]
    assert "loss is nan" in got.data.tags["relforge.error"]
    off = load_config([], ["method=toy", "tracking.trackers=[]"], registry=reg)
    with Run(off, registry=reg, output_dir=tmp_path / "off") as quiet:
        quiet.log_metrics({"x": 1.0})
    assert "mlflow" not in quiet.state


def test_resume_continues_the_same_mlflow_run_and_a_fresh_start_closes_the_interrupted_one(reg, tmp_path,
                                                                                             monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    cfg = load_config([], ["method=toy"], registry=reg)
    folder = tmp_path / "run"
    killed = Run(cfg, registry=reg, output_dir=folder, tags={"relforge.attempt": "fresh"})
    killed.__enter__()  # a process killed mid-run: on_run_end never comes
    first = killed.state["mlflow"]["run_id"]
    client = MlflowClient(tracking_uri=uri)
    assert client.get_run(first).info.status == "RUNNING"
    with Run(cfg, registry=reg, output_dir=folder, tags={"relforge.attempt": "resume"}) as resumed:
        resumed.log_metrics({"x": 1.0}, 1)
    assert resumed.state["mlflow"]["run_id"] == first  # the same run, continued
    assert client.get_run(first).info.status == "FINISHED"
    stale = Run(cfg, registry=reg, output_dir=folder, tags={"relforge.attempt": "fresh"})
    stale.__enter__()
    second = stale.state["mlflow"]["run_id"]
    with Run(cfg, registry=reg, output_dir=folder, tags={"relforge.attempt": "fresh"}) as fresh:
        pass
    assert fresh.state["mlflow"]["run_id"] not in (first, second)
    assert client.get_run(second).info.status == "KILLED"  # the interrupted attempt is closed ...
    assert client.get_run(fresh.state["mlflow"]["run_id"]).data.tags["relforge.previous_run_id"] == second  # linked


def test_concurrent_first_starts_on_a_fresh_store_all_record_their_runs(tmp_path):
    import subprocess
    import sys
    import textwrap

    uri = f"sqlite:///{tmp_path / 'fresh.db'}"
    script = textwrap.dedent(f"""
        import sys
        from relforge.config import load_config
        from relforge.run import Run
        cfg = load_config([], ["tracking.experiment=race", "tracking.tracking_uri={uri}"])
        with Run(cfg, output_dir=sys.argv[1], name=sys.argv[2]) as run:
            run.log_metrics({{"x": 1.0}}, 0)
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script, str(tmp_path / f"r{i}"), f"r{i}"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(4)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("race").experiment_id])
    assert sorted(r.info.run_name for r in runs) == ["r0", "r1", "r2", "r3"]
    assert {r.info.status for r in runs} == {"FINISHED"}


def test_more_metrics_than_one_mlflow_batch_holds_are_all_logged(reg, tmp_path, monkeypatch):
    """MLflow takes at most 1,000 metrics per batch; its client splits larger ones (RelForge does not)."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    cfg = load_config([], ["method=toy"], registry=reg)
    with Run(cfg, registry=reg, output_dir=tmp_path / "run") as run:
        run.log_metrics({f"per_label/l{i}/f1": i / 2500 for i in range(2500)}, step=1)
    got = MlflowClient(tracking_uri=uri).get_run(run.state["mlflow"]["run_id"]).data.metrics
    assert len([k for k in got if k.startswith("per_label/")]) == 2500 and got["per_label/l2499/f1"] == 2499 / 2500


def test_a_dataset_row_created_by_a_concurrent_cell_is_not_a_failure(reg, tmp_path, monkeypatch):
    """Two cells of a sweep logging the same split through one tracking
    server race to create the dataset row; the loser gets MLflow's UNIQUE
    constraint error. It is retried (and found); other errors still raise."""
    from mlflow.exceptions import MlflowException

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    real = MlflowClient.log_inputs
    calls = []

    def racing(self, run_id, datasets=None, models=None):
        calls.append(run_id)
        if len(calls) == 1:
            raise MlflowException("BAD_REQUEST: (sqlite3.IntegrityError) UNIQUE constraint failed: "
                                  "datasets.experiment_id, datasets.name, datasets.digest")
        return real(self, run_id, datasets=datasets, models=models)

    monkeypatch.setattr(MlflowClient, "log_inputs", racing)
    cfg = load_config([], ["method=toy"], registry=reg)
    with Run(cfg, registry=reg, output_dir=tmp_path / "run") as run:
        run.log_dataset("toy.tiny", "train", "abc123", "tiny", 3)
    got = MlflowClient(tracking_uri=uri).get_run(run.state["mlflow"]["run_id"])
    assert len(calls) == 2 and [d.dataset.name for d in got.inputs.dataset_inputs] == ["toy.tiny/train"]

    def broken(self, run_id, datasets=None, models=None):
        raise MlflowException("BAD_REQUEST: something else")

    monkeypatch.setattr(MlflowClient, "log_inputs", broken)
    with pytest.raises(MlflowException, match="something else"):
        with Run(cfg, registry=reg, output_dir=tmp_path / "run2") as run:
            run.log_dataset("toy.tiny", "train", "abc123", "tiny", 3)
