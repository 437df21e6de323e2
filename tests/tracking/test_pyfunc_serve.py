"""Each run logs its selected model as an MLflow pyfunc model, which MLflow
loads and `mlflow models serve` serves over HTTP (a real server process on
127.0.0.1, a real request)."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

from relforge.engine.extractor import Extractor
from relforge.engine.pipeline import train_run
from tests.engine.test_pipeline import config
from tests.tracking.test_ui import free_port

PAIR = {"id": "a", "text": "Kalo Veri was born in Tormont .", "head": {"start": 0, "end": 9, "type": "PER"},
        "tail": {"start": 22, "end": 29, "type": "LOC"}}
MENTIONS = {"id": "m", "text": "Kalo Veri was born in Tormont .", "entities": [{"start": 0, "end": 9},
                                                                            {"start": 22, "end": 29}]}


@pytest.fixture(scope="module")
def logged(tiny_bert_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("pyfunc")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    old = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = uri
    try:
        cfg = config("marker_classifier", tiny_bert_dir, "train.max_steps=2", "data.dataset.train_size=16")
        out = train_run(cfg, output_dir=root / "run", progress=False)
    finally:
        if old is None:
            os.environ.pop("MLFLOW_TRACKING_URI")
        else:
            os.environ["MLFLOW_TRACKING_URI"] = old
    run_id = json.loads((root / "run" / "mlflow-run.json").read_text())["run_id"]
    return root, uri, run_id, out.model_dir


def test_the_run_logs_a_loadable_pyfunc_model(logged, monkeypatch):
    import mlflow.pyfunc

    root, uri, run_id, model_dir = logged
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    names = {f.path for f in MlflowClient(uri).list_artifacts(run_id, "model")}
    assert {"model/MLmodel", "model/artifacts"} <= names, names
    # in a local store the logged weights are the model folder's files (hard links), not a second copy
    art = Path(MlflowClient(uri).get_run(run_id).info.artifact_uri.removeprefix("file://")) / "model" / "artifacts"
    weights = next(art.iterdir()) / "model.safetensors"
    assert os.path.samefile(weights, Path(model_dir) / "model.safetensors")
    loaded = mlflow.pyfunc.load_model(f"runs:/{run_id}/model")
    expected = Extractor.from_pretrained(model_dir, device="cpu").predict([PAIR, MENTIONS])
    assert loaded.predict([PAIR, MENTIONS]) == expected
    assert [r["id"] for r in expected] == ["a", "m/0-1", "m/1-0"]


def test_log_model_false_logs_no_model(tiny_bert_dir, tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    cfg = config("marker_classifier", tiny_bert_dir, "train.max_steps=1", "data.dataset.train_size=16",
                 "tracking.log_model=false")
    train_run(cfg, output_dir=tmp_path / "run", progress=False)
    run_id = json.loads((tmp_path / "run" / "mlflow-run.json").read_text())["run_id"]
    assert "model" not in {f.path for f in MlflowClient(uri).list_artifacts(run_id)}


def test_mlflow_models_serve_answers_a_scoring_request(logged):
    root, uri, run_id, model_dir = logged
    mlflow_bin = Path(sys.executable).with_name("mlflow")
    cmd = [str(mlflow_bin)] if mlflow_bin.exists() else [shutil.which("mlflow") or "mlflow"]
    port = free_port()
    # the environment's scripts (uvicorn, which mlflow starts) on PATH, as in an activated environment
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "OMP_NUM_THREADS": "1",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    proc = subprocess.Popen(cmd + ["models", "serve", "-m", f"runs:/{run_id}/model", "--env-manager", "local",
                                   "-h", "127.0.0.1", "-p", str(port)], cwd=root, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline, up = time.time() + 300, False
        while time.time() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2):
                    up = True
                    break
            except OSError:
                time.sleep(1)
        assert up, proc.stdout.read().decode()[-3000:] if proc.poll() is not None else "no answer in 300 s"
        body = json.dumps({"dataframe_records": [PAIR, MENTIONS]}).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=body,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=120) as r:
            answer = json.loads(r.read().decode())
        expected = Extractor.from_pretrained(model_dir, device="cpu").predict([PAIR, MENTIONS])
        assert answer["predictions"] == expected
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)


def test_saving_the_pyfunc_model_prints_none_of_mlflows_nags(tmp_path):
    """issue 21: the 'add type hints' warning (at import), the CloudPickle note and the per-file progress bar
    were printed by every run; they are silenced where RelForge calls MLflow, not globally."""
    code = ("import relforge.tracking.pyfunc as p, pathlib, sys; d = pathlib.Path(sys.argv[1]); "
            "(d / 'f').mkdir(); (d / 'f' / 'x.txt').write_text('x'); p.save_pyfunc(d / 'f', d / 'model')")
    res = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "type hints" not in res.stderr and "CloudPickle" not in res.stderr, res.stderr
    assert "Downloading artifacts" not in res.stderr and (tmp_path / "model" / "MLmodel").is_file()


def _model_folder(root: Path) -> Path:
    folder = root / "best"
    (folder / "sub").mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(os.urandom(2 << 20))
    (folder / "sub" / "extra.bin").write_bytes(os.urandom(3 << 20))
    (folder / "config.json").write_text('{"a": 1}')
    (folder / "notes.json").write_text("x" * (2 << 20))  # large, but not a weight file: copied
    return folder


def test_the_logged_models_weights_are_links_to_the_model_folders_and_its_small_files_copies(tmp_path):
    from mlflow.models import Model

    from relforge.tracking import pyfunc

    folder = _model_folder(tmp_path)
    pyfunc.save_pyfunc(folder, tmp_path / "model")
    conf = Model.load(str(tmp_path / "model" / "MLmodel"))
    artifact = conf.flavors["python_function"]["artifacts"]["model"]
    saved = tmp_path / "model" / artifact["path"]
    for rel in ("model.safetensors", "sub/extra.bin"):
        assert os.path.samefile(saved / rel, folder / rel)
    for rel in ("config.json", "notes.json"):
        assert not os.path.samefile(saved / rel, folder / rel)
    assert (saved / "config.json").read_text() == '{"a": 1}'
    assert sorted(str(p.relative_to(saved)) for p in saved.rglob("*")) == sorted(
        str(p.relative_to(folder)) for p in folder.rglob("*"))
    # the MLmodel names the model folder and the whole model's size, as when MLflow copies everything
    assert artifact["uri"] == str(folder)
    import mlflow.pyfunc

    copied = tmp_path / "copied"  # what MLflow writes copying the whole folder
    mlflow.pyfunc.save_model(path=str(copied), python_model=pyfunc.RelForgePyfunc(), artifacts={"model": str(folder)},
                             pip_requirements=["torch"])
    assert conf.model_size_bytes == Model.load(str(copied / "MLmodel")).model_size_bytes > (5 << 20)


def test_where_no_link_can_be_made_the_weights_are_copied(tmp_path, monkeypatch):
    import errno

    from relforge.tracking import pyfunc

    def no_link(src, dst):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(pyfunc.os, "link", no_link)
    folder = _model_folder(tmp_path)
    pyfunc.save_pyfunc(folder, tmp_path / "model")
    saved = next((tmp_path / "model" / "artifacts").iterdir())
    assert not os.path.samefile(saved / "model.safetensors", folder / "model.safetensors")
    assert (saved / "model.safetensors").read_bytes() == (folder / "model.safetensors").read_bytes()


def test_saving_a_model_over_a_folder_with_linked_weights_leaves_the_logged_model_whole(logged, tmp_path):
    """Extractor.save_pretrained into a run's best/ (relforge push --local RUN/best) first gives the files
    that the logged MLflow model links to copies of their own."""
    from relforge.engine.checkpoint import detach_links

    root, uri, run_id, model_dir = logged
    folder = tmp_path / "best"
    shutil.copytree(model_dir, folder)
    linked = tmp_path / "logged.safetensors"
    os.link(folder / "model.safetensors", linked)
    before = linked.read_bytes()
    ex = Extractor.from_pretrained(folder, device="cpu")
    with torch.no_grad():
        for p in ex.model.parameters():
            p.add_(1.0)  # a different model saved over the folder
    ex.save_pretrained(folder)
    assert linked.read_bytes() == before and (folder / "model.safetensors").read_bytes() != before
    assert not os.path.samefile(linked, folder / "model.safetensors")
    assert detach_links(folder) == 0  # nothing linked any more
