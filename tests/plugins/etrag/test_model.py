"""The ETRAG model on tiny random backbones: template, soft prompts, training, ranking, saving, analysis."""
import pytest
import torch

from relforge.config import load_config
from relforge.data import load_data
from relforge.data.example import Entity, Example
from relforge.engine.build import build_model, load_saved
from relforge.registry import get_registry


def _resolved(tiny_t5_dir, tiny_bert_dir, *extra):
    return load_config(overrides=[
        "method=etrag", "data.dataset=quickstart", "data.dataset.train_size=24", "data.dataset.dev_size=6",
        "data.dataset.test_size=6", f"model.backbone={tiny_t5_dir}",
        f"model.retriever_backbone={tiny_bert_dir}", "model.k=2", "model.pool_size=8",
        "model.retriever_max_length=64", "model.max_source_length=64", "model.max_target_length=16",
        "tracking.trackers=[]", *extra])


def _build(resolved, registry=None):
    registry = registry or get_registry()
    data = load_data(resolved.run.data, registry)
    words = {lab: data.verbalizer.words[lab] for lab in data.labels}
    torch.manual_seed(0)
    model = build_model(resolved, labels=data.labels, label_words=words, no_relation=data.no_relation,
                        registry=registry)
    return model, data


@pytest.fixture(scope="module")
def built(tiny_t5_dir, tiny_bert_dir):
    return _build(_resolved(tiny_t5_dir, tiny_bert_dir))


def _example(relations=("born_in",), head_type="PER", tail_type="LOC"):
    text = "Ada Quill was born in Norport ."
    return Example(id="x", text=text, tokens=text.split(),
                   head=Entity("Ada Quill", 0, 9, 0, 2, head_type), tail=Entity("Norport", 22, 29, 5, 6, tail_type),
                   relations=frozenset(relations))


def test_sure_template_source_targets_and_type_constraints(built):
    model, data = built
    model.features(data.splits["train"], training=True)  # learns the type constraints
    t = model.template
    r = t.render(_example(), model.label_words)
    assert r.source == ("The head entity is Ada Quill . The tail entity is Norport . The type of Ada Quill is per . "
                        "The type of Norport is loc . Ada Quill was born in Norport .")
    assert r.source[slice(*r.extra["head_span"])] == "Ada Quill"
    assert r.source[slice(*r.extra["tail_span"])] == "Norport"
    assert r.targets == [data.verbalizer.render("born_in", "Ada Quill", "Norport")]
    assert r.candidates["no_relation"] == "Ada Quill has no known relations to Norport"
    # PER-LOC pairs never hold works_for / founded / located_in in the training data
    assert set(r.candidates) == set(t.constraints["PER|LOC"]) | {"no_relation"}
    assert "works_for" not in r.candidates
    # an unseen type pair keeps every label
    assert set(t.render(_example((), "ORG", "PER"), model.label_words).candidates) == set(model.labels)
    with pytest.raises(KeyError, match="not in the label space"):
        t.render(_example(("nope",)), model.label_words)


def test_soft_prompts_change_length_and_mask_consistently(built):
    model, _ = built
    ids = torch.tensor([[5, 6, 7, 0], [5, 8, 0, 0]])
    att = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    prompts = torch.randn(2, 3, model.backbone.config.d_model)
    embeds, mask = model.insert_prompts(ids, att, prompts)
    plain = model.backbone.get_input_embeddings()(ids)
    assert embeds.shape[1] == mask.shape[1] == ids.shape[1] + 3
    assert torch.equal(embeds[:, 0], plain[:, 0])
    assert torch.equal(embeds[:, 1:4], prompts)
    assert torch.equal(embeds[:, 4:], plain[:, 1:])
    assert mask[:, 1:4].eq(1).all()
    assert torch.equal(mask[:, [0, 4, 5, 6]], att)
    assert int(mask.sum()) == int(att.sum()) + 6
    e2, m2 = model.insert_prompts(ids, att, None)
    assert torch.equal(e2, plain) and torch.equal(m2, att)


def test_prompt_count_is_one_plus_k_times_spans(built):
    model, data = built
    feats = model.features(data.splits["train"], training=True)
    batch = model.collate(feats[:4])
    model.train()
    prompts = model._train_prompts(batch)
    assert prompts.shape == (4, (1 + model.settings.k) * 3, model.backbone.config.d_model)


def test_training_excludes_the_query_own_example(built):
    model, data = built
    feats = model.features(data.splits["train"], training=True)
    model.settings = model.settings.model_copy(update={"pool_size": len(model.memory_items)})
    model.train()
    for a in range(0, len(feats), 8):
        batch = model.collate(feats[a:a + 8])
        model._train_prompts(batch)
        r = model.last_retrieval
        own = torch.tensor([r["example"] for r in batch.rows])
        pool_example = torch.tensor([model.memory_items[i]["example"] for i in r["pool"].tolist()])
        same = pool_example[None, :] == own[:, None]  # (B, pool)
        assert float(r["weights"].masked_select(same[:, None, :].expand_as(r["weights"])).abs().max()) == 0.0
        for row, e in zip(r["indices"].tolist(), own.tolist()):
            assert all(model.memory_items[i]["example"] != e for i in row)
    model.settings = model.settings.model_copy(update={"pool_size": 8})


def test_memory_has_one_item_per_gold_target(built):
    model, data = built
    model.set_memory(data.splits["train"])
    expected = sum(max(1, len(ex.relations)) for ex in data.splits["train"])
    assert len(model.memory_items) == expected
    it = model.memory_items[0]
    ex = data.splits["train"][it["example"]]
    assert it["text"][slice(*it["summary"])] in model.render(ex)[1]


def test_few_steps_lower_the_loss_and_change_the_retriever(tiny_t5_dir, tiny_bert_dir):
    model, data = _build(_resolved(tiny_t5_dir, tiny_bert_dir))
    feats = model.features(data.splits["train"], training=True)
    batch = model.collate(feats[:4])
    groups = model.parameter_groups()
    assert {"backbone", "retriever", "projection"} <= set(groups)
    before = {n: p.detach().clone() for n, p in model.span_encoder.named_parameters()}
    opt = torch.optim.AdamW([{"params": groups["backbone"], "lr": 3e-3},
                             {"params": groups["retriever"], "lr": 1e-3},
                             {"params": groups["projection"], "lr": 3e-3}])
    model.train()
    losses = []
    for step in range(5):
        model._pool_gen.manual_seed(0)  # the same pool each step: a fixed objective
        loss = model(batch).loss
        loss.backward()
        if step == 0:  # the generation loss alone reaches the retriever encoder
            grads = [p.grad for p in model.span_encoder.parameters() if p.grad is not None]
            assert grads and sum(float(g.abs().sum()) for g in grads) > 0
        opt.step()
        opt.zero_grad()
        losses.append(float(loss.detach()))
    assert losses[-1] < losses[0]
    changed = [n for n, p in model.span_encoder.named_parameters() if not torch.equal(p, before[n])]
    assert changed


def test_rank_save_and_load_round_trip(tiny_t5_dir, tiny_bert_dir, tmp_path):
    resolved = _resolved(tiny_t5_dir, tiny_bert_dir)
    model, data = _build(resolved)
    model.features(data.splits["train"], training=True)
    test = data.splits["test"]
    ranks = model.rank(test)
    assert len(ranks) == len(test)
    for ex, r in zip(test, ranks):
        assert {c.label for c in r} == set(model.template.render(ex, model.label_words).candidates)
        assert all(a.score >= b.score for a, b in zip(r, r[1:]))
    model.save(tmp_path / "m", {"config": resolved.data})
    loaded, _, _ = load_saved(tmp_path / "m")
    assert len(loaded.memory_items) == len(model.memory_items)
    again = loaded.rank(test)
    for a, b in zip(ranks, again):
        assert [c.label for c in a] == [c.label for c in b]
        assert [c.score for c in a] == pytest.approx([c.score for c in b], abs=1e-4)


def test_k0_is_the_sure_baseline(tiny_t5_dir, tiny_bert_dir, tmp_path):
    resolved = _resolved(tiny_t5_dir, tiny_bert_dir, "model.k=0")
    model, data = _build(resolved)
    assert model.span_encoder is None and model.projection is None
    groups = model.parameter_groups()  # empty retriever groups: the method's group LRs still apply
    assert groups["retriever"] == [] and groups["projection"] == [] and groups["backbone"]
    feats = model.features(data.splits["train"], training=True)
    batch = model.collate(feats[:4])
    model.train()
    out = model(batch)
    assert torch.isfinite(out.loss)
    assert model.last_retrieval is None
    from relforge.engine.trainer import Trainer

    Trainer(model, feats, model.collate, resolved.run.train, tmp_path, progress=False)  # the method's group LRs
    # the same scores as the core's SuRE decoder on the plain backbone
    ours = model.rank(data.splits["test"])
    core = GenerativeRank(model).rank(data.splits["test"])
    for a, b in zip(ours, core):
        assert [c.label for c in a] == [c.label for c in b]
        assert [c.score for c in a] == pytest.approx([c.score for c in b], abs=1e-4)


class GenerativeRank:
    def __init__(self, model):
        self.m = model

    def rank(self, examples):
        m = self.m
        rendered = [m.template.render(ex, m.label_words) for ex in examples]
        return m.decoder.rank(m.backbone, m.tokenizer, [r.source for r in rendered], [r.candidates for r in rendered])


def test_search_candidates_and_hard_retriever(tiny_t5_dir, tiny_bert_dir):
    model, data = _build(_resolved(tiny_t5_dir, tiny_bert_dir, "retriever=etrag.topk",
                                   "model.search_candidates=5"))
    model.features(data.splits["train"], training=True)
    feats = model.features(data.splits["test"][:3], training=False)
    model.eval()
    sources, extras = [f["source"] for f in feats], [f["extra"] for f in feats]
    _, rows = model.retrieve_cached(sources, extras)
    # the top-5 prefilter then hard top-2 equals hard top-2 over the whole memory
    model.settings = model.settings.model_copy(update={"search_candidates": None})
    _, full = model.retrieve_cached(sources, extras)
    assert torch.equal(rows.cpu(), full.cpu())


def test_analysis_counts_label_agreement(built, monkeypatch):
    from relforge_etrag.analysis import neighbour_label_agreement

    model, data = built
    model.features(data.splits["train"], training=True)
    test = data.splits["test"]
    result = neighbour_label_agreement(model, test)
    assert 0.0 <= result["agreement_top1"] <= 1.0 and 0.0 <= result["agreement_at_k"] <= 1.0
    assert 0.0 < result["chance"] < 1.0
    # exact counts with a scripted retrieval: first neighbour shares the label, second does not
    by_label = {}
    for i, it in enumerate(model.memory_items):
        by_label.setdefault(it["label"], i)

    gold = {ex.text: sorted(ex.relations) or [model.no_relation] for ex in test}

    def scripted(sources, extras):
        rows = []
        for source, extra in zip(sources, extras):
            g = gold[source[slice(*extra["sentence_span"])]]
            same = by_label[g[0]]
            other = next(i for lab, i in by_label.items() if lab not in g)
            rows.append([same, other])
        return None, torch.tensor(rows)

    monkeypatch.setattr(model, "retrieve_cached", scripted)
    result = neighbour_label_agreement(model, test)
    assert result["agreement_top1"] == 1.0 and result["agreement_at_k"] == 0.5


def test_similarity_spread_sees_a_collapsed_space(built, monkeypatch):
    from relforge_etrag.analysis import similarity_spread

    model, data = built
    model.features(data.splits["train"], training=True)
    test = data.splits["test"]
    fine = similarity_spread(model, test)
    assert fine["memory_rows"] == len(model.memory_items) and 1.0 <= fine["effective_rows"] <= fine["memory_rows"]
    assert -1.0 <= fine["query_memory_similarity"] <= 1.0 and fine["query_similarity_std"] > 0
    # every span vector made alike (what end-to-end training did to the retriever): similarity 1, no spread
    model.ensure_cache()
    model.memory_cache = model.memory_cache[:1].expand_as(model.memory_cache).clone()
    # (monkeypatch: the model is the module's shared fixture, later tests need its own encode_queries)
    monkeypatch.setattr(model, "encode_queries",
                        lambda sources, extras: model.memory_cache[:1].expand(len(sources), -1, -1))
    collapsed = similarity_spread(model, test)
    assert collapsed["query_memory_similarity"] == pytest.approx(1.0, abs=1e-5)
    assert collapsed["memory_memory_similarity"] == pytest.approx(1.0, abs=1e-5)
    assert collapsed["query_similarity_std"] < 1e-5
    assert collapsed["effective_rows"] == pytest.approx(collapsed["memory_rows"], rel=1e-3)  # flat weights


def test_settings_are_validated_with_the_configuration(tiny_t5_dir, tiny_bert_dir):
    from relforge.config import ConfigError

    with pytest.raises(ConfigError, match=r"model.pool_sise: unknown key; did you mean .pool_size.\? \(component etrag.rag\)"):
        _resolved(tiny_t5_dir, tiny_bert_dir, "model.pool_sise=3")


def test_cache_refresh_follows_training_steps(built, monkeypatch):
    model, data = built
    model.features(data.splits["train"], training=True)
    calls = []
    real = model.refresh_memory

    def counting():
        calls.append(model.train_steps)
        real()

    monkeypatch.setattr(model, "refresh_memory", counting)
    model.settings = model.settings.model_copy(update={"refresh_every": 3, "refresh_before_eval": False})
    model.memory_cache = None
    model.ensure_cache()
    model.ensure_cache()  # fresh: not re-encoded
    model.train_steps += 2
    model.ensure_cache()  # 2 steps old < 3
    model.train_steps += 1
    model.ensure_cache()  # 3 steps old: re-encoded
    assert len(calls) == 2 and calls[1] - calls[0] == 3
    model.settings = model.settings.model_copy(update={"refresh_before_eval": True})
    model.train_steps += 1
    model.ensure_cache()  # any step old before an evaluation
    assert len(calls) == 3
    model.settings = model.settings.model_copy(update={"refresh_every": 100})


def test_prompts_keep_the_source_positions_of_an_absolute_position_encoder(tiny_bert2bert_dir, tiny_bert_dir,
                                                                          built):
    # a BERT-to-BERT generator (as the default MiniLM one): learned absolute positions
    model, _ = _build(_resolved(tiny_bert2bert_dir, tiny_bert_dir))
    model.eval()
    enc = model.backbone.get_encoder()
    batch = model.tokenizer(["Ada Quill was born in Norport ."], return_tensors="pt")
    ids, att = batch["input_ids"], batch["attention_mask"]
    prompts = torch.randn(1, 3, enc.config.hidden_size)
    inputs = model._encoder_inputs(ids, att, prompts)
    t = ids.shape[1]
    assert inputs["position_ids"].tolist() == [[0, 0, 0, 0] + list(range(1, t))]
    # what the encoder's layers see at the source tokens is what they see without prompts
    with torch.no_grad():
        with_prompts = enc.embeddings(inputs_embeds=inputs["inputs_embeds"], position_ids=inputs["position_ids"])
        plain = enc.embeddings(input_ids=ids)
        keep = [0] + list(range(4, t + 3))
        assert torch.allclose(with_prompts[:, keep], plain, atol=1e-6)
        # and the whole model runs on them (training loss and ranking)
        out = model.backbone(**inputs, labels=model.tokenizer(["born in"], return_tensors="pt")["input_ids"])
        assert torch.isfinite(out.loss)
    # "shift": consecutive positions (no position_ids passed), every source token moves
    model.settings.prompt_positions = "shift"
    shifted = model._encoder_inputs(ids, att, prompts)
    assert "position_ids" not in shifted
    model.settings.prompt_positions = "keep"
    # no prompts, or a relative-position encoder (T5): nothing to pass
    assert "position_ids" not in model._encoder_inputs(ids, att, None)
    t5_model, _ = built
    assert t5_model.prompt_position_ids(ids, 3) is None


def test_prompt_attention_measures_the_decoder_reading_the_prompts(built):
    from relforge_etrag.analysis import prompt_attention

    model, data = built
    model.features(data.splits["train"], training=True)
    memory = list(model.memory_items)
    out = prompt_attention(model, data.splits["test"][:4], batch_size=2)
    assert model.memory_items == memory  # the analysis leaves the model's memory as it was
    assert 0.0 < out["cross_attention_on_prompts"] < 1.0
    assert 0.0 < out["prompt_share_of_positions"] < 1.0 and 0.0 < out["cross_attention_flatness"] <= 1.0 + 1e-6
    # prompt positions masked out of the encoder input get no cross-attention at all
    original = model._encoder_inputs

    def masked(input_ids, attention_mask, prompts):
        inputs = original(input_ids, attention_mask, prompts)
        p = (1 + model.settings.k) * 3
        inputs["attention_mask"][:, 1:1 + p] = 0
        return inputs

    model._encoder_inputs = masked
    assert prompt_attention(model, data.splits["test"][:4], batch_size=2)["cross_attention_on_prompts"] < 1e-6


def test_pool_without_gradients_reads_the_cache_and_trains_through_the_queries(built, monkeypatch):
    """``pool_gradients: false`` (issue #20, a departure for speed): the
    step's pool comes from the memory cache, which is re-encoded every
    ``refresh_every`` steps, not per step; the retriever still gets gradients,
    through the queries only."""
    model, data = built
    feats = model.features(data.splits["train"], training=True)
    old = model.settings
    model.settings = old.model_copy(update={"pool_gradients": False, "refresh_every": 3})
    try:
        model.train()
        batch = model.collate(feats[:4])
        calls = []
        real = model.encode_memory
        monkeypatch.setattr(model, "encode_memory", lambda rows: calls.append(len(rows)) or real(rows))
        model.train_steps = 0
        model.memory_cache = None
        model.span_encoder.zero_grad()
        prompts = model._train_prompts(batch)
        first = model._cache_step
        assert first == 0 and model.memory_cache is not None
        pool = model.last_retrieval["pool"]
        weights = model.last_retrieval["weights"]  # (B, k, pool)
        neighbours = torch.einsum("bkp,psh->bksh", weights, model.memory_cache[pool])
        expected = model.make_prompts(model.encode_queries(batch.sources, [r["extra"] for r in batch.rows]),
                                      neighbours)
        # the neighbours' prompts (after the query's 3 vectors, which dropout makes differ per pass) are the
        # retriever's weights over the cached pool vectors
        assert torch.allclose(prompts[:, 3:], expected[:, 3:], atol=1e-5)
        prompts.pow(2).sum().backward()
        grads = [p.grad for p in model.span_encoder.parameters() if p.grad is not None]
        assert grads and any(float(g.abs().sum()) > 0 for g in grads)  # through the queries
        n_cache = len(calls)  # the refresh encoded the memory in chunks
        model.train_steps = 2
        model._train_prompts(batch)
        assert len(calls) == n_cache and model._cache_step == first  # 2 steps old: read, not re-encoded
        model.train_steps = 3
        model._train_prompts(batch)
        assert model._cache_step == 3 and len(calls) > n_cache  # refresh_every reached
    finally:
        model.settings = old
        model.train_steps = 0


def test_a_cache_refreshed_inside_a_bf16_step_is_full_precision(built):
    """With ``pool_gradients: false`` the memory is re-encoded inside a training step, which a
    bf16 run computes under autocast: the cache (what evaluation retrieves from and the saved model
    keeps) is still encoded in float32, equal to one refreshed outside it."""
    model, data = built
    model.features(data.splits["train"], training=True)
    old = model.settings
    model.settings = old.model_copy(update={"pool_gradients": False, "refresh_every": 3})
    try:
        model.refresh_memory()
        outside = model.memory_cache.clone()
        model.memory_cache = None
        with torch.autocast("cpu", dtype=torch.bfloat16):
            model.ensure_cache(for_training=True)
        assert model.memory_cache.dtype == torch.float32
        torch.testing.assert_close(model.memory_cache, outside, rtol=1e-5, atol=1e-5)
    finally:
        model.settings = old


def test_pool_with_gradients_encodes_the_pool_every_step(built, monkeypatch):
    model, data = built
    feats = model.features(data.splits["train"], training=True)
    model.train()
    batch = model.collate(feats[:4])
    calls = []
    real = model.encode_memory
    monkeypatch.setattr(model, "encode_memory", lambda rows: calls.append(len(rows)) or real(rows))
    model._train_prompts(batch)
    model._train_prompts(batch)
    assert calls == [model.settings.pool_size] * 2  # the paper's: the pool with gradients, each step
