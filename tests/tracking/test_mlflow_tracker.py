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
