"""Every hook exercised: one ``test_hook_<name>`` per hook (see test_hookspecs)."""
from __future__ import annotations

import torch
import yaml

from relforge import hookimpl
from relforge.config import load_config
from relforge.registry import Registry
from relforge.run import Run

from tests.core.plugins_for_tests import ToyPlugin


def toy_registry(*extra):
    reg = Registry().load(builtins=False, entry_points=False)
    reg.add_plugin(ToyPlugin(), "toy")
    for obj, name in extra:
        reg.add_plugin(obj, name)
    return reg


def test_hook_register_templates():
    reg = toy_registry()
    ex = reg.create("dataset", "tiny").read("train")[0]
    out = reg.create("template", "echo", {"prefix": ">> "}).render(ex, {"NA": "none", "visited": "visited"})
    assert out.source == ">> Ann visited Rome ." and out.targets == ["visited"]


def test_hook_register_decoders():
    ranked = toy_registry().create("decoder", "shortest").rank(None, None, ["s"], [{"a": "xx", "b": "x"}])
    assert [c.label for c in ranked[0]] == ["b", "a"]


def test_hook_register_retrievers():
    memory = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.7, 0.7]])
    hit = toy_registry().create("retriever", "dot_topk").retrieve(torch.tensor([[0.0, 2.0]]), memory, k=2)
    assert hit.indices.tolist() == [[1, 2]]
    assert torch.allclose(hit.neighbours[0], memory[[1, 2]])


def test_hook_register_losses():
    from relforge.components import ModelOutput

    from tests.core.plugins_for_tests import ToyBatch

    loss = toy_registry().create("loss", "mse", {"scale": 2.0})
    x = torch.zeros(2, 1)
    value = loss(ModelOutput(logits=torch.tensor([1.0, 3.0])),
                 ToyBatch(input_ids=x, attention_mask=x, gold=[[], []], target=torch.tensor([0.0, 3.0])))
    assert float(value) == 1.0


def test_hook_register_pretraining_stages():
    from types import SimpleNamespace

    from relforge.components import StageContext, StageResult

    stage = toy_registry().create("pretraining_stage", "counting", {"steps": 3})
    model = SimpleNamespace()
    assert isinstance(stage.run(model, StageContext(train_examples=[1, 2])), StageResult)
    assert model.seen == 6


def test_hook_register_models():
    from relforge.engine.build import build_model

    reg = toy_registry()
    resolved = load_config([], ["method=toy"], registry=reg)
    model = build_model(resolved, labels=["NA", "visited"], label_words={"NA": "none", "visited": "visited"},
                        no_relation="NA", registry=reg)
    assert type(model).name == "linear" and reg.get("model", "toy.linear").factory is type(model)
    examples = reg.create("dataset", "tiny").read("train")
    batch = model.collate(model.features(examples))
    out = model(batch)
    assert out.loss is not None and out.loss.requires_grad
    out.loss.backward()
    assert model.weight.grad is not None and float(model.weight.grad.abs()) > 0
    assert [c.label for c in model.rank(examples, labels=["visited"])[0]] == ["visited"]


def test_hook_register_datasets():
    data = toy_registry().create("dataset", "toy.tiny")
    ex = data.read("train")[0]
    assert ex.head.text == ex.text[ex.head.start:ex.head.end] == "Ann"
    assert ex.relations == {"visited"} and data.labels() == ["NA", "visited"]


def test_hook_register_methods():
    cfg = load_config([], ["method=toy"], registry=toy_registry())
    assert cfg.component_name("retriever") == "toy.dot_topk"
    assert cfg.settings("loss").scale == 2.0


class Recorder:
    def __init__(self):
        self.events = []

    @hookimpl
    def on_run_start(self, run):
        self.events.append(("start", run.name, (run.output_dir / "config.yaml").exists()))

    @hookimpl
    def on_metrics(self, run, metrics, step):
        self.events.append(("metrics", metrics, step))

    @hookimpl
    def on_artifact(self, run, path, artifact_path):
        self.events.append(("artifact", path.name, artifact_path))

    @hookimpl
    def on_tags(self, run, tags):
        self.events.append(("tags", tags))

    @hookimpl
    def on_run_end(self, run, status, error):
        self.events.append(("end", status, type(error).__name__ if error else None))


def _run(tmp_path, rec, fail=False):
    reg = toy_registry((rec, "recorder"))
    cfg = load_config([], ["method=toy", "options.llm.api_key=sk-secret"], registry=reg)
    try:
        with Run(cfg, registry=reg, output_dir=tmp_path / "run") as run:
            run.log_metrics({"dev/micro_f1": 0.5}, step=3)
            art = tmp_path / "preds.jsonl"
            art.write_text("{}\n")
            run.log_artifact(art, "predictions")
            run.set_tags({"stage.note": "ok", "count": 3})
            if fail:
                raise RuntimeError("diverged")
    except RuntimeError:
        pass
    return run


def test_hook_on_run_start(tmp_path):
    rec = Recorder()
    run = _run(tmp_path, rec)
    assert rec.events[0] == ("start", "toy", True)
    saved = yaml.safe_load((run.output_dir / "config.yaml").read_text())
    assert saved["options"]["llm"]["api_key"] == "***"  # secrets never saved
    assert saved["loss"]["name"] == "toy.scaled_mse"


def test_hook_on_metrics(tmp_path):
    rec = Recorder()
    _run(tmp_path, rec)
    assert ("metrics", {"dev/micro_f1": 0.5}, 3) in rec.events


def test_hook_on_artifact(tmp_path):
    rec = Recorder()
    _run(tmp_path, rec)
    assert ("artifact", "preds.jsonl", "predictions") in rec.events


def test_hook_on_tags(tmp_path):
    rec = Recorder()
    run = _run(tmp_path, rec)
    assert ("tags", {"stage.note": "ok", "count": "3"}) in rec.events
    assert run.tags["count"] == "3"


def test_hook_on_run_end(tmp_path):
    rec = Recorder()
    _run(tmp_path, rec)
    assert rec.events[-1] == ("end", "FINISHED", None)
    rec = Recorder()
    _run(tmp_path, rec, fail=True)
    assert rec.events[-1] == ("end", "FAILED", "RuntimeError")


def test_hook_on_dataset(tmp_path, monkeypatch):
    class Seen:
        def __init__(self):
            self.calls = []

        @hookimpl
        def on_dataset(self, run, name, split, digest, source, examples):
            self.calls.append((name, split, digest, examples))

    seen = Seen()
    reg = toy_registry((seen, "seen"))
    cfg = load_config([], ["method=toy", "tracking.trackers=[]"], registry=reg)
    with Run(cfg, registry=reg, output_dir=tmp_path / "run") as run:
        run.log_dataset("toy.tiny", "train", "abc123", "toy.tiny", 1)
    assert seen.calls == [("toy.tiny", "train", "abc123", 1)]


def test_hook_on_model(tmp_path):
    import pytest

    class Models:
        def __init__(self):
            self.folders = []

        @hookimpl
        def on_model(self, run, folder):
            self.folders.append((run.name, folder.name, (folder / "weights.bin").read_text()))

    seen = Models()
    reg = toy_registry((seen, "models"))
    cfg = load_config([], ["method=toy"], registry=reg)
    folder = tmp_path / "best"
    folder.mkdir()
    (folder / "weights.bin").write_text("w")
    with Run(cfg, registry=reg, output_dir=tmp_path / "run") as run:
        run.log_model(folder)
        with pytest.raises(FileNotFoundError, match="does not exist"):
            run.log_model(tmp_path / "nope")
    assert seen.folders == [(run.name, "best", "w")]
