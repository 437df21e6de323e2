"""Suites: expansion, exclusions, overrides, invalid cells, and a real tiny run."""
from __future__ import annotations

import json

import pytest
import yaml
from typer.testing import CliRunner

from relforge.bench.runner import run_suite
from relforge.bench.suite import SuiteFile, expand, read_suite
from relforge.cli import app
from relforge.config import ConfigError


def test_matrix_exclusions_and_overrides():
    spec = SuiteFile(name="t", base={"data": {"dataset": "quickstart"}},
                     matrix={"method": ["generative_ce", "marker_classifier"], "seed": [1, 2, 3]},
                     exclude=[{"method": "marker_classifier", "seed": 2}],
                     overrides=[{"when": {"method": "generative_ce"}, "set": {"decoder.num_beams": 3}}])
    cells = expand(spec)
    assert [c.cell_id for c in cells] == [
        "method=generative_ce,seed=1", "method=generative_ce,seed=2", "method=generative_ce,seed=3",
        "method=marker_classifier,seed=1", "method=marker_classifier,seed=3"]
    assert all(c.error is None for c in cells)
    assert cells[0].resolved.settings("decoder").num_beams == 3
    assert cells[3].resolved.run.seed == 1 and "decoder" not in cells[3].resolved.components
    assert len({c.config_hash for c in cells}) == 5


def test_when_and_exclude_take_a_list_of_values_and_typos_are_errors():
    spec = SuiteFile(name="t", base={"data": {"dataset": "quickstart"}, "method": "generative_ce"},
                     matrix={"options.cell": ["a", "b", "c"], "seed": [1]},
                     exclude=[{"options.cell": ["c"]}],
                     overrides=[{"when": {"options.cell": ["a", "b"]}, "set": {"decoder.num_beams": 3}},
                                {"when": {"options.cell": "b"}, "set": {"train.epochs": 7}}])
    cells = expand(spec)
    assert [c.coordinates["options.cell"] for c in cells] == ["a", "b"]
    assert [c.resolved.settings("decoder").num_beams for c in cells] == [3, 3]
    assert [c.resolved.run.train.epochs for c in cells] == [3, 7]
    typo = spec.model_copy(update={"overrides": [{"when": {"options.cell": ["a", "bb"]}, "set": {}}]})
    with pytest.raises(ConfigError, match=r"overrides names options.cell=\['a', 'bb'\]"):
        expand(SuiteFile.model_validate(typo.model_dump()))
    with pytest.raises(ConfigError, match="not matrix keys"):
        expand(SuiteFile.model_validate({**spec.model_dump(), "exclude": [{"methd": "x"}]}))


def test_all_methods_and_invalid_cells():
    spec = SuiteFile(name="t", matrix={"method": "all", "train.epochs": [1, "lots"]})
    cells = expand(spec)
    methods = {c.coordinates["method"] for c in cells}
    assert {"generative_ce", "marker_classifier"} <= methods
    bad = [c for c in cells if c.coordinates["train.epochs"] == "lots"]
    assert bad and all("train.epochs" in c.error for c in bad)


def test_suite_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="suite file not found"):
        read_suite(tmp_path / "nope.yaml")
    f = tmp_path / "s.yaml"
    f.write_text(yaml.safe_dump({"name": "x", "matrx": {}}))
    with pytest.raises(ConfigError, match="matrx: unknown key"):
        read_suite(f)


def test_tiny_suite_runs_records_a_failing_cell_and_goes_on(tiny_bert_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    spec = SuiteFile(name="tiny", base={"data": {"dataset": {"name": "quickstart", "train_size": 24, "dev_size": 8,
                                                             "test_size": 8}},
                                        "model": {"backbone": str(tiny_bert_dir), "max_source_length": 40},
                                        "train": {"epochs": 1, "batch_size": 8}},
                     matrix={"method": ["marker_classifier"], "model.dropout": [0.1, "oops"]},
                     metrics=["test/micro_f1"])
    results = run_suite(spec, output_dir=tmp_path / "bench")
    assert [r.status for r in results] == ["FINISHED", "FAILED"]
    assert "test/micro_f1" in results[0].metrics
    # the bad setting is refused when the cell's configuration is validated, before anything is built
    assert "model.dropout" in results[1].error and "valid number" in results[1].error
    summary = json.loads((tmp_path / "bench" / "tiny" / "summary-shard1of1.json").read_text())
    assert [s["status"] for s in summary] == ["FINISHED", "FAILED"]
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    runs = client.search_runs([client.get_experiment_by_name("relforge").experiment_id])
    parent = next(r for r in runs if r.data.tags.get("relforge.role") == "suite")
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(children) == 1 and children[0].info.status == "FINISHED"  # the invalid cell never started
    assert all(r.data.tags["cell.method"] == "marker_classifier" for r in children)


def test_bench_dry_run_cli():
    res = CliRunner().invoke(app, ["bench", "quickstart", "--dry-run"])
    assert res.exit_code == 0, res.output
    assert "method=generative_ce,seed=13" in res.stdout
    res = CliRunner().invoke(app, ["bench", "no-such-suite"])
    assert res.exit_code == 2 and "not found" in res.output


def test_a_changed_suite_cell_is_refused_not_resumed_in_its_old_folder(tmp_path):
    """Issue 19: a suite whose settings changed under the same output folder used to resume old
    checkpoints and log old metrics under new config hashes."""
    import yaml

    from relforge.config import redact
    from relforge.engine.pipeline import check_same_run

    old = SuiteFile(name="t", base={"data": {"dataset": "quickstart"}, "train": {"epochs": 1}},
                    matrix={"method": ["marker_classifier"], "seed": [1]})
    new = old.model_copy(update={"base": {"data": {"dataset": "quickstart"}, "train": {"epochs": 2}}})
    cell_old, cell_new = expand(old)[0], expand(new)[0]
    assert cell_old.cell_id == cell_new.cell_id and cell_old.config_hash != cell_new.config_hash
    folder = tmp_path / cell_old.cell_id
    (folder / "checkpoint").mkdir(parents=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(redact(cell_old.resolved.data)))
    check_same_run(folder, cell_old.resolved)  # the same cell resumes
    with pytest.raises(ConfigError, match=r"train.epochs: 1 -> 2.*--rerun"):
        check_same_run(folder, cell_new.resolved)
