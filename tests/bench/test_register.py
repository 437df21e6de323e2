"""A suite's `register:` makes the model of the cell best on a dev metric a
version of an MLflow registered model."""
from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient
from rich.console import Console

from relforge.bench.runner import run_suite
from relforge.bench.suite import SuiteFile


def _spec(tiny_bert_dir, **register):
    return SuiteFile(name="reg", base={"data": {"dataset": {"name": "quickstart", "train_size": 24, "dev_size": 8,
                                                             "test_size": 8}},
                                       "model": {"backbone": str(tiny_bert_dir), "max_source_length": 40},
                                       "train": {"max_steps": 2, "batch_size": 4},
                                       "tracking": {"experiment": "reg"}},
                     matrix={"method": ["marker_classifier"], "train.learning_rate": [1e-5, 1e-3]},
                     metrics=["final_dev/best_micro_f1"], register=register or None)


def test_the_best_cell_on_dev_is_registered(tiny_bert_dir, tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    console = Console(record=True, width=200)
    spec = _spec(tiny_bert_dir, name="quick-re", metric="final_dev/best_micro_f1")
    results = run_suite(spec, output_dir=tmp_path / "runs", console=console)
    assert [r.status for r in results] == ["FINISHED", "FINISHED"]
    client = MlflowClient(uri)
    versions = client.search_model_versions("name='quick-re'")
    assert len(versions) == 1
    v = versions[0]
    best = max(results, key=lambda r: r.metrics["final_dev/best_micro_f1"])  # ties: the first, as max() picks
    assert v.tags["relforge.cell"] == best.cell.cell_id
    assert float(v.tags["final_dev/best_micro_f1"]) == pytest.approx(best.metrics["final_dev/best_micro_f1"])
    assert v.source.endswith("/model") and client.get_run(v.run_id).data.tags["relforge.role"] == "cell"
    assert "registered quick-re v1" in console.export_text()
    # the registered model loads as a pyfunc model
    import mlflow.pyfunc

    model = mlflow.pyfunc.load_model("models:/quick-re/1")
    rows = model.predict([{"text": "Kalo Veri was born in Tormont .", "head": {"start": 0, "end": 9},
                           "tail": {"start": 22, "end": 29}}])
    assert rows[0]["head"] == "Kalo Veri"


def test_register_refuses_a_test_metric_and_says_when_nothing_qualifies(tiny_bert_dir, tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="tunes on test"):
        _spec(tiny_bert_dir, name="x", metric="test/micro_f1")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    spec = _spec(tiny_bert_dir, name="none-re", metric="final_dev/best_micro_f1")
    spec.base["tracking"]["log_model"] = False
    spec.matrix["train.learning_rate"] = [1e-3]
    console = Console(record=True, width=200)
    run_suite(spec, output_dir=tmp_path / "runs", console=console)
    said = console.export_text()
    assert "nothing registered as 'none-re'" in said and "tracking.log_model" in said
