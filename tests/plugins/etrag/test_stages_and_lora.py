"""The retriever-only warm-up stage, LoRA through peft, and a whole tiny run."""
import pytest
import torch

from relforge.registry import get_registry
from tests.plugins.etrag.test_model import _build, _resolved


def test_warmup_trains_only_retriever_and_projection(tiny_t5_dir, tiny_bert_dir):
    model, data = _build(_resolved(tiny_t5_dir, tiny_bert_dir))
    stage = get_registry().create("pretraining_stage", "etrag.retriever_warmup",
                                  {"steps": 2, "batch_size": 4, "learning_rate": 1e-2})
    gen = {n: p.detach().clone() for n, p in model.backbone.named_parameters()}
    ret = {n: p.detach().clone() for n, p in model.span_encoder.named_parameters()}
    proj = model.projection.weight.detach().clone()
    from relforge.components import StageContext

    out = stage.run(model, StageContext(data.splits["train"], seed=0))
    assert out.model is None and out.added_examples == []
    assert all(torch.equal(p, gen[n]) for n, p in model.backbone.named_parameters())
    assert any(not torch.equal(p, ret[n]) for n, p in model.span_encoder.named_parameters())
    assert not torch.equal(model.projection.weight, proj)
    assert all(p.requires_grad for p in model.backbone.parameters())  # unfrozen again


def test_lora_generator(tiny_t5_dir, tiny_bert_dir, tmp_path):
    pytest.importorskip("peft")
    from relforge.engine.build import load_saved

    resolved = _resolved(tiny_t5_dir, tiny_bert_dir, "model.lora={r: 4, alpha: 8, target_modules: [q, v]}")
    model, data = _build(resolved)
    trainable = [n for n, p in model.backbone.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    feats = model.features(data.splits["train"], training=True)
    model.train()
    loss = model(model.collate(feats[:4])).loss
    loss.backward()
    assert any(p.grad is not None for n, p in model.backbone.named_parameters() if "lora_" in n)
    ranks = model.rank(data.splits["test"][:3])
    model.save(tmp_path / "m", {"config": resolved.data})
    assert (tmp_path / "m" / "lora").is_dir()
    loaded, _, _ = load_saved(tmp_path / "m")
    again = loaded.rank(data.splits["test"][:3])
    assert [[c.label for c in r] for r in ranks] == [[c.label for c in r] for r in again]


@pytest.mark.slow
def test_train_run_end_to_end(tiny_t5_dir, tiny_bert_dir, tmp_path):
    from relforge.engine.pipeline import train_run

    resolved = _resolved(tiny_t5_dir, tiny_bert_dir, "train.max_steps=3", "train.batch_size=4",
                         "pretraining.0.steps=1", f"output_dir={tmp_path}")
    out = train_run(resolved, progress=False)
    assert out.model_dir is not None and "micro_f1" in out.test_metrics
    from relforge_etrag.analysis import main

    main([str(out.model_dir), "--split", "test", "--output", str(tmp_path / "analysis.json")])
    import json

    result = json.loads((tmp_path / "analysis.json").read_text())
    for when in ("before", "after"):
        assert 0.0 <= result[when]["agreement_at_k"] <= 1.0 and result[when]["k"] == 2
        assert 1.0 <= result[when]["effective_rows"] <= result[when]["memory_rows"]


def test_lora_refuses_a_warm_started_generator(tiny_bert_dir):
    """A warm-started encoder-decoder's cross-attention is new: LoRA would keep it at its random start and
    the saved adapters could not restore it (a loaded model would differ from the trained one)."""
    from relforge.config import load_config
    from relforge.data.loading import load_data
    from relforge.engine.build import build_model
    from relforge.registry import get_registry

    reg = get_registry()
    cfg = load_config([], ["method=etrag", "data.dataset=quickstart", "data.dataset.train_size=8",
                           f"model.backbone={tiny_bert_dir}", f"model.retriever_backbone={tiny_bert_dir}",
                           "model.lora={r: 4, alpha: 8}"], registry=reg)
    data = load_data(cfg.run.data, reg)
    with pytest.raises(ValueError, match="warm-started as an encoder-decoder"):
        build_model(cfg, labels=data.labels, label_words={lab: data.verbalizer.words[lab] for lab in data.labels},
                    no_relation=data.no_relation, registry=reg)


def test_test_scoring_uses_the_selected_model_in_memory_and_predicts_what_the_saved_one_does(
        tiny_t5_dir, tiny_bert_dir, tmp_path, monkeypatch):
    """The final model is the selected one (eval_every: end): test is scored with the model in memory (not
    loaded again), and the saved model, loaded, ranks test the same to five decimals."""
    import json

    import relforge.engine.build as build
    import relforge.engine.pipeline as pipeline

    loads = []
    real = build.load_saved
    monkeypatch.setattr(build, "load_saved", lambda *a, **k: (loads.append(a), real(*a, **k))[1])
    resolved = _resolved(tiny_t5_dir, tiny_bert_dir, "train.max_steps=2", "train.batch_size=4",
                         "train.eval_every=end", "pretraining.0.steps=1", f"output_dir={tmp_path}")
    out = pipeline.train_run(resolved, progress=False)
    assert loads == [] and "micro_f1" in out.test_metrics
    logged = [json.loads(line) for line in (out.output_dir / "predictions-test.jsonl").read_text().splitlines()]
    saved, _, _ = real(out.model_dir)
    from relforge.data.loading import load_data

    test = load_data(resolved.run.data).splits["test"]
    again = saved.rank(test)
    assert [{c.label: round(c.score, 5) for c in r[:5]} for r in again] == [r["scores"] for r in logged]
