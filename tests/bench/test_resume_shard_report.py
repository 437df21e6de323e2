"""Resume after a killed `relforge bench`, sharding, and aggregation."""
from __future__ import annotations

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

from relforge.bench.report import aggregate, markdown
from relforge.bench.runner import parse_shard, shard_cells
from relforge.bench.suite import SuiteFile, expand


def test_aggregation_on_hand_made_rows():
    rows = [
        {"coordinates": {"method": "a", "data.sampling.k": 8, "seed": 1}, "metrics": {"test/f1": 0.5}},
        {"coordinates": {"method": "a", "data.sampling.k": 8, "seed": 2}, "metrics": {"test/f1": 0.7}},
        {"coordinates": {"method": "b", "data.sampling.k": 8, "seed": 1}, "metrics": {"test/f1": 0.65}},
        {"coordinates": {"method": "b", "data.sampling.k": 8, "seed": 2}, "metrics": {"test/f1": 0.65}},
        {"coordinates": {"method": "b", "data.sampling.k": 16, "seed": 1}, "metrics": {"test/f1": 0.8}},
        {"coordinates": {"method": "a", "data.sampling.k": 16, "seed": 1}, "metrics": {}},  # failed to log
    ]
    aggs = {(a.group["method"], a.group["data.sampling.k"]): a for a in aggregate(rows, ["test/f1"])}
    a8 = aggs[("a", 8)]
    assert a8.count == 2 and a8.mean == pytest.approx(0.6) and a8.std == pytest.approx(0.1414213562)
    assert aggs[("b", 8)].std == 0.0 and aggs[("b", 16)].count == 1
    assert ("a", 16) not in aggs
    md = markdown(list(aggs.values()), ["test/f1"], "t")
    # no significance known: nothing is bold; one seed is said plainly (no "± 0.0000")
    assert "| b | 0.6500 ± 0.0000 (n=2) | 0.8000 (1 seed) |" in md
    assert "| a | 0.6000 ± 0.1414 (n=2) |  |" in md and "| data set |" not in md
    # a cell whose lead is significant is bold
    bold = markdown(list(aggs.values()), ["test/f1"], "t", significant={("test/f1", "b", "k=8")})
    assert "| b | **0.6500 ± 0.0000 (n=2)** | 0.8000 (1 seed) |" in bold


def test_report_ranks_rows_per_data_set_by_the_metric_direction():
    from relforge.bench.report import best_and_runner_up, metric_direction

    rows = [{"coordinates": {"options.cell": c, "seed": 1}, "metrics": {"test/f1": v, "train/loss": 1 - v,
                                                                         "dev/tuned_threshold": v},
             "dataset": d}
            for c, v, d in [("nyt-x", 0.3, "nyt"), ("nyt-y", 0.2, "nyt"), ("wiki-x", 0.6, "wiki80"),
                            ("wiki-y", 0.7, "wiki80")]]
    aggs = aggregate(rows, ["test/f1", "train/loss", "dev/tuned_threshold"])
    # the best per data set (NYT's best is below both Wiki80 rows), by direction; a threshold is no score
    assert sorted(best_and_runner_up(aggs, "test/f1")) == [("test/f1", "nyt-x", "nyt-y", "nyt"),
                                                           ("test/f1", "wiki-y", "wiki-x", "wiki80")]
    assert sorted(b for _, b, _, _ in best_and_runner_up(aggs, "train/loss")) == ["nyt-x", "wiki-y"]
    assert best_and_runner_up(aggs, "dev/tuned_threshold") == []
    assert (metric_direction("test/micro_f1"), metric_direction("train/loss"),
            metric_direction("dev/tuned_threshold")) == (1, -1, 0)
    md = markdown(aggs, ["test/f1"], "t", significant={("test/f1", "wiki-y", "test/f1")})
    assert "| | data set | test/f1 |" in md
    assert "| nyt-x | nyt | 0.3000 (1 seed) |" in md  # best on NYT, but no test says the lead is real
    assert "| wiki-y | wiki80 | **0.7000 (1 seed)** |" in md


def test_a_cell_run_reports_its_final_metrics_not_its_curves():
    from types import SimpleNamespace

    from relforge.bench.store import metrics_of

    logged = {"test/micro_f1": 0.4, "final_dev/best_micro_f1": 0.5, "dev/tuned_threshold": 0.02,
              "dev/untuned_micro_f1": 0.3, "dev/micro_f1": 0.45, "train/loss": 2.0}
    run = SimpleNamespace(data=SimpleNamespace(metrics=logged))
    assert metrics_of(run) == {k: logged[k] for k in ("test/micro_f1", "final_dev/best_micro_f1",
                                                      "dev/tuned_threshold", "dev/untuned_micro_f1")}


def test_shards_cover_every_cell_exactly_once():
    spec = SuiteFile(name="s", matrix={"method": ["generative_ce", "marker_classifier"], "seed": [1, 2, 3, 4, 5]})
    cells = expand(spec)
    for n in (1, 2, 3, 4, 7):
        seen = [c.cell_id for i in range(1, n + 1) for c in shard_cells(cells, (i, n))]
        assert sorted(seen) == sorted(c.cell_id for c in cells) and len(seen) == len(set(seen)) == 10
    with pytest.raises(ValueError, match="i/n"):
        parse_shard("2of3")
    with pytest.raises(ValueError, match="1 <= i <= n"):
        parse_shard("4/3")


def _suite(tmp_path, tiny_bert_dir):
    suite = {"name": "killme",
             "base": {"data": {"dataset": {"name": "quickstart", "train_size": 32, "dev_size": 8, "test_size": 8}},
                      "model": {"backbone": str(tiny_bert_dir), "max_source_length": 40},
                      "train": {"epochs": 2, "batch_size": 4, "save_every": 2}},
             "matrix": {"method": ["marker_classifier"], "seed": [1, 2]},
             "metrics": ["test/micro_f1"]}
    path = tmp_path / "killme.yaml"
    path.write_text(yaml.safe_dump(suite))
    return path


def _bench(path, tmp_path, *extra, wait=True):
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}", "COLUMNS": "200"}
    cmd = [sys.executable, "-m", "relforge", "bench", str(path), "--output-dir", str(tmp_path / "runs"), *extra]
    if wait:
        return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=900)
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=tmp_path,
                            start_new_session=True)


def test_killed_suite_resumes_skipping_finished_cells(tiny_bert_dir, tmp_path):
    path = _suite(tmp_path, tiny_bert_dir)
    runs = tmp_path / "runs" / "killme"
    proc = _bench(path, tmp_path, wait=False)
    try:
        deadline = time.time() + 600
        # kill it once the first cell is finished and the second has written a checkpoint
        while time.time() < deadline and proc.poll() is None:
            if (runs / "method=marker_classifier,seed=1" / "result.json").exists() and \
                    (runs / "method=marker_classifier,seed=2" / "checkpoint" / "trainer_state.json").exists():
                break
            time.sleep(0.2)
        assert proc.poll() is None, "the suite ended before it could be killed"
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert not (runs / "method=marker_classifier,seed=2" / "result.json").exists()
    res = _bench(path, tmp_path)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "finished earlier" in res.stdout and "skipped" in res.stdout
    assert "resuming from" in res.stdout  # the killed cell continued from its checkpoint
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = client.get_experiment_by_name("relforge")
    cells = client.search_runs([exp.experiment_id], "tags.`relforge.role` = 'cell'")
    by_seed = {}
    for r in cells:
        by_seed.setdefault(r.data.tags["cell.seed"], []).append(r.info.status)
    assert by_seed["1"] == ["FINISHED"]  # not run twice
    # issue 19: the killed attempt's MLflow run is continued by the resumed cell (it used to stay RUNNING)
    assert by_seed["2"] == ["FINISHED"]
    parents = client.search_runs([exp.experiment_id], "tags.`relforge.role` = 'suite'")
    assert len(parents) == 1  # the re-run continued the suite's parent run
    # the parent carries the arms' numbers (its experiment-page columns), not only artifacts
    assert parents[0].data.metrics["mean/method_marker_classifier/test_micro_f1_seeds"] == 2
    arts = {a.path for a in client.list_artifacts(parents[0].info.run_id, "report")}
    assert {"report/report.md", "report/report.csv", "report/bar-test_micro_f1.png"} <= arts
    # a third invocation has nothing left to do
    res = _bench(path, tmp_path)
    assert res.returncode == 0 and res.stdout.count("skipped") == 2
    report = subprocess.run([sys.executable, "-m", "relforge", "report", str(path), "--output-dir",
                             str(tmp_path / "runs")], capture_output=True, text=True, cwd=tmp_path,
                            env={**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"})
    assert report.returncode == 0, report.stderr
    assert "(n=2)" in report.stdout
