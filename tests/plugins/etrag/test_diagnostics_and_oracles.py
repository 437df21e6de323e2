"""ETRAG's retriever diagnostics (logged while it trains) and the oracle
probes of issue #17, on tiny random backbones."""
import math

import pytest
import torch

from tests.plugins.etrag.test_model import _build, _resolved


def _train_batch(model, data, n=4):
    feats = model.features(data.splits["train"], training=True)
    return feats, model.collate(feats[:n])


def test_step_diagnostics_report_weights_agreement_and_gradient_norms(tiny_t5_dir, tiny_bert_dir):
    model, data = _build(_resolved(tiny_t5_dir, tiny_bert_dir))
    feats, batch = _train_batch(model, data)
    model.train()
    model(batch).loss.backward()
    diag = model.step_diagnostics()
    k, pool = model.settings.k, model.settings.pool_size
    # the soft weights over a pool of 8 (the query's own items hidden): between one row and all of them
    assert 0.0 < diag["retrieval/weight_entropy"] <= math.log(pool) + 1e-6
    assert 1.0 <= diag["retrieval/effective_rows"] <= pool + 1e-6
    assert pytest.approx(diag["retrieval/effective_rows"], rel=0.2) != 1.0
    assert 0.0 < diag["retrieval/top_weight"] <= 1.0
    assert 1 / k <= diag["retrieval/distinct_neighbours"] <= 1.0
    # agreement of the argmax neighbours with the batch's gold labels, recomputed from the last retrieval
    r = model.last_retrieval
    labels = [[model.memory_items[i]["label"] for i in row] for row in r["indices"].tolist()]
    expected = sum(lab[0] in g for lab, g in zip(labels, r["gold"])) / len(labels)
    assert diag["retrieval/agreement_top1"] == pytest.approx(expected)
    # gradients reach the retriever and the projection through the generation loss alone
    assert diag["retrieval/grad_norm_retriever"] > 0 and diag["retrieval/grad_norm_projection"] > 0
    groups = model.parameter_groups()
    norm = torch.stack([p.grad.pow(2).sum() for p in groups["projection"]]).sum().sqrt()
    assert diag["retrieval/grad_norm_projection"] == pytest.approx(float(norm), rel=1e-5)
    assert diag["retrieval/prompt_norm_ratio"] > 0
    # taken means reset: the next call has only the gradient norms
    again = model.step_diagnostics()
    assert "retrieval/weight_entropy" not in again and "retrieval/grad_norm_retriever" in again


def test_dev_ranking_gathers_eval_diagnostics_once(tiny_t5_dir, tiny_bert_dir):
    model, data = _build(_resolved(tiny_t5_dir, tiny_bert_dir))
    model.features(data.splits["train"], training=True)
    dev = data.splits["dev"]
    model.rank(dev, batch_size=4)
    diag = model.eval_diagnostics()
    from relforge_etrag.analysis import neighbour_label_agreement

    reference = neighbour_label_agreement(model, dev, batch_size=4)
    # batches of 4 and 2: the mean of per-batch shares; the analysis counts per query
    assert 0.0 <= diag["retrieval/agreement_top1"] <= 1.0
    assert set(diag) >= {"retrieval/agreement_top1", "retrieval/agreement_at_k", "retrieval/weight_entropy",
                         "retrieval/distinct_neighbours", "retrieval/prompt_norm_ratio"}
    if len(dev) % 4 == 0:
        assert diag["retrieval/agreement_top1"] == pytest.approx(reference["agreement_top1"])
    assert model.eval_diagnostics() == {}


def test_trainer_logs_the_models_diagnostics(tiny_t5_dir, tiny_bert_dir, tmp_path):
    from relforge.config import TrainConfig
    from relforge.engine.trainer import Trainer

    model, data = _build(_resolved(tiny_t5_dir, tiny_bert_dir))
    logged = []

    class Run:
        def log_metrics(self, metrics, step):
            logged.append((step, dict(metrics)))

        def set_tags(self, tags):
            pass

    feats = model.features(data.splits["train"], training=True)
    settings = TrainConfig(epochs=1, batch_size=8, log_every=1, max_steps=2)
    Trainer(model, feats, model.collate, settings, tmp_path, run=Run(), progress=False).train(resume=False)
    steps = [m for _, m in logged if "train/loss" in m]
    assert len(steps) == 2
    assert all(m["train/retrieval/grad_norm_retriever"] > 0 for m in steps)
    assert all(0 <= m["train/retrieval/agreement_top1"] <= 1 for m in steps)


@pytest.mark.parametrize("oracle", ["gold", "gold-one", "random", "self"])
def test_oracle_probes_choose_neighbours_by_the_gold_labels(tiny_t5_dir, tiny_bert_dir, oracle):
    model, data = _build(_resolved(tiny_t5_dir, tiny_bert_dir, f"model.oracle={oracle}"))
    feats, batch = _train_batch(model, data, n=6)
    if oracle != "self":
        rows = model.oracle_rows(feats[:6])
        assert rows.shape == (6, model.settings.k)
        for f, picked in zip(feats[:6], rows.tolist()):
            items = [model.memory_items[i] for i in picked]
            assert all(it["example"] != f["example"] for it in items)  # never the query's own example
            if oracle in ("gold", "gold-one"):
                assert all(it["label"] in f["gold"] for it in items)
            if oracle == "gold-one":  # one item, k times
                assert len(set(picked)) == 1
    model.train()
    loss = model(batch).loss
    loss.backward()
    assert torch.isfinite(loss)
    assert model.step_diagnostics()["retrieval/grad_norm_projection"] > 0
    # evaluation uses the same rule, with the scored examples' gold labels
    ranked = model.rank(data.splits["dev"], batch_size=4)
    assert len(ranked) == len(data.splits["dev"])


def test_the_self_oracle_feeds_the_querys_own_gold_summary(tiny_t5_dir, tiny_bert_dir):
    model, data = _build(_resolved(tiny_t5_dir, tiny_bert_dir, "model.oracle=self"))
    feats, _ = _train_batch(model, data)
    model.eval()
    with torch.no_grad():
        got = model._oracle_neighbours(feats[:2], training=False)
        own = [it for it in model.memory_items if it["example"] == feats[0]["example"]
               and it["label"] == feats[0]["gold"][0]][0]
        expected = model.encode_memory([model.memory_items.index(own)])
    assert torch.allclose(got[0, 0], expected[0], atol=1e-5)
    assert torch.equal(got[0, 0], got[0, 1])


def test_an_oracle_needs_neighbours(tiny_t5_dir, tiny_bert_dir):
    from relforge.config import ConfigError

    with pytest.raises(ConfigError, match="model.oracle=gold needs neighbours"):
        _resolved(tiny_t5_dir, tiny_bert_dir, "model.oracle=gold", "model.k=0")


def test_the_gold_oracle_falls_back_to_random_items_never_the_querys_own(tiny_t5_dir, tiny_bert_dir):
    model, data = _build(_resolved(tiny_t5_dir, tiny_bert_dir, "model.oracle=gold"))
    feats, _ = _train_batch(model, data)
    # a label only the query's own example holds: no item to give, so random ones, counted
    row = {**feats[0], "gold": ["only-mine"]}
    own = [i for i, it in enumerate(model.memory_items) if it["example"] == row["example"]]
    for i in own:
        model.memory_items[i]["label"] = "only-mine"
    model._label_rows = None
    picked = model.oracle_rows([row] * 20)
    assert model.oracle_fallbacks == 20
    assert not set(picked.reshape(-1).tolist()) & set(own)


def test_an_oracle_ranking_depends_on_the_weights_and_examples_only(tiny_t5_dir, tiny_bert_dir):
    """Inference's oracle draws are re-seeded at every rank(): ranking twice, or after training steps have
    drawn from the training generator, gives the same ranking (a model in memory and the same model loaded
    rank alike); training's draws are not moved by a ranking."""
    model, data = _build(_resolved(tiny_t5_dir, tiny_bert_dir, "model.oracle=random"))
    feats, batch = _train_batch(model, data, n=6)
    test = data.splits["test"]

    def labels(ranking):
        return [[(c.label, round(c.score, 5)) for c in r] for r in ranking]

    first = labels(model.rank(test))
    train_state = model._oracle_gen.get_state()
    assert labels(model.rank(test)) == first
    assert torch.equal(model._oracle_gen.get_state(), train_state)
    model.oracle_rows(feats[:6])  # a training step's draws
    model.eval()
    assert labels(model.rank(test)) == first
