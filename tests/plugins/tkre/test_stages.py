"""The generation and pretraining stages on a tiny random BERT, and the `tkre` method through the pipeline."""
from __future__ import annotations

import json

import pytest
import torch
from mlflow.tracking import MlflowClient

from relforge.config import load_config
from relforge.data.loading import load_data
from relforge.engine.build import build_model
from relforge.engine.pipeline import train_run
from relforge.registry import get_registry

from .fake_openai import FakeOpenAI

SMALL = ["data.dataset=quickstart", "data.dataset.train_size=24", "data.dataset.dev_size=8",
         "data.dataset.test_size=8", "train.batch_size=8", "train.eval_batch_size=16",
         "model.max_source_length=48", "train.max_steps=2", "pretraining.1.max_steps=2",
         "pretraining.2.max_steps=2", "pretraining.1.batch_size=8", "pretraining.2.batch_size=8"]


class FakeRun:
    def __init__(self, folder):
        self.output_dir = folder
        self.metrics = {}
        self.artifacts = []
        self.state = {}
        self.tags = {}

    def log_metrics(self, metrics, step=None):
        self.metrics.update(metrics)

    def log_artifact(self, path, artifact_path=None):
        self.artifacts.append(path)

    def set_tags(self, tags):
        self.tags.update(tags)


def setup(backbone, *overrides):
    resolved = load_config([], ["method=tkre", f"model.backbone={backbone}", *SMALL, *overrides])
    registry = get_registry()
    data = load_data(resolved.run.data, registry)
    model = build_model(resolved, labels=data.labels, no_relation=data.no_relation, registry=registry,
                        label_words={lab: data.verbalizer.words[lab] for lab in data.labels})
    return resolved, registry, data, model


def stage(resolved, registry, i):
    name, settings = resolved.components[f"pretraining.{i}"]
    return registry.create("pretraining_stage", name, settings)


def context(resolved, registry, data, run):
    from relforge.components import StageContext

    return StageContext(train_examples=data.splits["train"], seed=13, output_dir=run.output_dir / "pretraining",
                        run_dir=run.output_dir, run=run, resolved=resolved, registry=registry)


def test_generation_then_both_stages_with_an_openai_compatible_llm(tiny_bert_dir, tmp_path):
    with FakeOpenAI() as server:
        llm = f"{{backend: openai, base_url: '{server.base_url}', model: re-llm, max_retries: 0}}"
        resolved, registry, data, model = setup(tiny_bert_dir, f"pretraining.0.llm={llm}",
                                                f"pretraining.0.cache_path={tmp_path / 'cache.jsonl'}",
                                                "pretraining.0.synthetic_rounds=2",
                                                "pretraining.2.entity_positives=true")
        run = FakeRun(tmp_path / "run")
        ctx = context(resolved, registry, data, run)
        train = data.splits["train"]
        n_train = len(train)
        related = [(ex, rel) for ex in train for rel in ex.relations]
        result = stage(resolved, registry, 0).run(model, ctx)
        assert result.model is None
        folder = run.output_dir / "tkre-knowledge"
        explanations = [json.loads(x) for x in (folder / "explanations.jsonl").read_text().splitlines()]
        assert len(explanations) == len(related)
        report = json.loads((folder / "validation.json").read_text())
        kept = report["synthetic_kept"]
        assert kept > 0 and report["validation"]["rejected"]["wrong relation"] > 0
        assert report["validation"]["rejected"]["unparseable line"] > 0
        # the second round repeats the demonstrations it drew before: those repeats are rejected as duplicates
        assert "duplicate text" in report["validation"]["rejected"]
        # kept synthetic examples are handed to the pipeline, which adds them to the training split
        assert len(result.added_examples) == kept and len(data.splits["train"]) == n_train
        assert all(ex.meta.get("tkre_synthetic") and ex.check() == [] for ex in result.added_examples)
        data.splits["train"] = train + result.added_examples
        ctx = context(resolved, registry, data, run)
        assert run.metrics["tkre/generate/synthetic_kept"] == kept
        sent = len(server.requests)
        # a rerun is answered from the cache: no request reaches the server
        resolved2, registry2, data2, model2 = setup(tiny_bert_dir, f"pretraining.0.llm={llm}",
                                                    f"pretraining.0.cache_path={tmp_path / 'cache.jsonl'}",
                                                    "pretraining.0.synthetic_rounds=2")
        run2 = FakeRun(tmp_path / "run2")
        stage(resolved2, registry2, 0).run(model2, context(resolved2, registry2, data2, run2))
        assert len(server.requests) == sent
        assert json.loads((run2.output_dir / "tkre-knowledge" / "validation.json").read_text())["synthetic_kept"] == kept

    before = {k: v.detach().clone() for k, v in model.encoder.state_dict().items()}
    head_before = {k: v.detach().clone() for k, v in model.classifier.state_dict().items()}
    for i in (1, 2):
        assert stage(resolved, registry, i).run(model, ctx).model is None
    after = model.encoder.state_dict()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert any("word_embeddings" in k for k in changed) and any("encoder.layer" in k for k in changed)
    assert all(torch.equal(v, model.classifier.state_dict()[k]) for k, v in head_before.items())
    usage = json.loads((run.output_dir / "tkre-knowledge" / "usage.json").read_text())
    assert usage["mslm"]["explanations"] == len(explanations) and usage["mslm"]["synthetic"] == kept
    assert usage["mslm_scl"]["generated_knowledge"].startswith("explanations=")
    assert "pretraining/mslm_scl/scl" in run.metrics and "pretraining/mslm/mslm" in run.metrics


def test_stage_refuses_a_model_without_an_encoder(tiny_bert_dir, tmp_path):
    resolved, registry, data, _ = setup(tiny_bert_dir)
    with pytest.raises(TypeError, match="needs a model with a bare encoder"):
        stage(resolved, registry, 1).run(torch.nn.Linear(2, 2), context(resolved, registry, data, FakeRun(tmp_path)))
    # and the configuration is refused before anything is built: the seq2seq model has no bare encoder
    from relforge.config import ConfigError

    with pytest.raises(ConfigError, match=r"pretraining.1: pretraining_stage tkre.mslm needs a bare encoder"):
        load_config([], ["method=generative_ce", "data.dataset=quickstart",
                         "pretraining=[tkre.generate, tkre.mslm, tkre.mslm_scl]"])


def test_without_llm_the_stages_pretrain_on_sentences_and_say_so(tiny_bert_dir, tmp_path):
    resolved, registry, data, model = setup(tiny_bert_dir)
    run = FakeRun(tmp_path / "run")
    ctx = context(resolved, registry, data, run)
    n = len(data.splits["train"])
    for i in (0, 1):
        result = stage(resolved, registry, i).run(model, ctx)
        assert result.model is None and result.added_examples == []
    assert len(data.splits["train"]) == n
    usage = json.loads((run.output_dir / "tkre-knowledge" / "usage.json").read_text())
    assert usage["mslm"] == {"sentences": n, "explanations": 0, "synthetic": 0,
                             "generated_knowledge": "none (pretrained on the task's own sentences only)"}
    assert run.metrics["tkre/generate/explanations"] == 0 and run.metrics["tkre/mslm/explanations"] == 0


@pytest.mark.slow
def test_tkre_without_llm_runs_and_records_that_no_generated_knowledge_was_used(tiny_bert_dir, tmp_path,
                                                                                   monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    resolved = load_config([], ["method=tkre", f"model.backbone={tiny_bert_dir}", *SMALL,
                                "tracking.experiment=tkre-test"])
    out = train_run(resolved, output_dir=tmp_path / "run", progress=False)
    assert "micro_f1" in out.test_metrics
    usage = json.loads((tmp_path / "run" / "tkre-knowledge" / "usage.json").read_text())
    assert usage["mslm"]["explanations"] == 0 and usage["mslm"]["sentences"] == 24
    tags = MlflowClient(tracking_uri=uri).get_run(out.tracking["run_id"]).data.tags
    assert tags["tkre.llm"] == "none"
    assert tags["tkre.mslm.generated_knowledge"].startswith("none")
    assert tags["tkre.mslm_scl.generated_knowledge"].startswith("none")
