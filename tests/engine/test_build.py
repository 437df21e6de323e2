"""Building models from a configuration: ``model.freeze_embeddings``."""
from __future__ import annotations

import torch

from relforge.config import load_config
from relforge.data.loading import load_data
from relforge.engine.build import build_model
from relforge.registry import get_registry


def build(method, backbone, *extra):
    cfg = load_config([], [f"method={method}", "data.dataset=quickstart", f"model.backbone={backbone}",
                           "data.dataset.train_size=16", "data.dataset.dev_size=4", "data.dataset.test_size=4",
                           "model.max_source_length=48", *extra])
    data = load_data(cfg.run.data)
    words = {lab: data.verbalizer.words[lab] for lab in data.labels}
    model = build_model(cfg, labels=data.labels, label_words=words, no_relation=data.no_relation,
                        registry=get_registry())
    return model, data


def token_embeddings(model):
    return {id(m.weight): m.weight for m in model.modules()
            if isinstance(m, torch.nn.Embedding) and m.num_embeddings >= 100}


def one_step(model, data):
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    batch = model.collate(model.features(data.splits["train"][:4], training=True))
    model(batch).loss.backward()
    opt.step()


def test_freeze_embeddings_keeps_seq2seq_token_embeddings_fixed_and_trains_the_rest(tiny_t5_dir):
    model, data = build("generative_ce", tiny_t5_dir, "model.freeze_embeddings=true")
    emb = token_embeddings(model)
    assert emb and all(not w.requires_grad for w in emb.values())
    # the tied output projection is the same matrix, hence frozen too
    out = model.backbone.get_output_embeddings().weight
    assert not out.requires_grad
    others = [p for p in model.parameters() if id(p) not in emb and p is not out]
    assert others and all(p.requires_grad for p in others)
    before = {k: w.detach().clone() for k, w in emb.items()}
    body = next(p for p in others if p.ndim == 2)
    body_before = body.detach().clone()
    one_step(model, data)
    assert all(torch.equal(before[k], w) for k, w in emb.items())
    assert not torch.equal(body_before, body)


def test_freeze_embeddings_off_by_default_and_for_the_classifier(tiny_bert_dir):
    model, _ = build("marker_classifier", tiny_bert_dir)
    assert all(w.requires_grad for w in token_embeddings(model).values())
    model, data = build("marker_classifier", tiny_bert_dir, "model.freeze_embeddings=true")
    word = model.encoder.get_input_embeddings().weight
    assert not word.requires_grad
    # position and token-type embeddings are not token embeddings: they still train
    assert model.encoder.embeddings.position_embeddings.weight.requires_grad
    head = model.classifier[0].weight.detach().clone()
    one_step(model, data)
    assert not torch.equal(head, model.classifier[0].weight)


def test_pairs_beyond_max_source_length_are_windowed_never_scored_from_the_cls_state(tiny_bert_dir):
    """Issue 19: two pairs at the end of one long text got byte-identical scores (both markers truncated
    away, both scored from [CLS])."""
    import pytest

    from relforge.data.example import Entity, Example

    model, data = build("marker_classifier", tiny_bert_dir, "model.max_source_length=32")
    model.eval()
    filler = " ".join(["the committee met again"] * 30)
    text = f"{filler} Ann Lee visited Rome and Bob Kay founded Acme ."

    def entity(source, mention, etype):
        start = source.index(mention)
        first = len(source[:start].split())
        return Entity(mention, start, start + len(mention), first, first + len(mention.split()), etype)

    def pair(i, head, tail):
        return Example(f"long{i}", text, text.split(), entity(text, head, "PER"), entity(text, tail, "LOC"),
                       frozenset())

    far = f"Zed Moe said {filler} that Acme grew ."
    apart = Example("far", far, far.split(), entity(far, "Zed Moe", "PER"), entity(far, "Acme", "ORG"), frozenset())
    examples = [pair(1, "Ann Lee", "Rome"), pair(2, "Bob Kay", "Acme"), apart]
    feats = model._render_features(examples)
    for f in feats:
        enc = model.tokenizer(f["source"], truncation=True, max_length=32, return_offsets_mapping=True)
        starts = [a for a, b in enc["offset_mapping"] if b > a]
        assert f["head_start"] in starts and f["tail_start"] in starts  # both markers are encoded
    assert " ... " in feats[2]["source"]  # entities further apart than the length: two windows
    ranks = model.rank(examples)
    assert [c.score for c in ranks[0]] != [c.score for c in ranks[1]]
    assert model.take_counts() == {"windowed_examples": 3.0}
    strict, _ = build("marker_classifier", tiny_bert_dir, "model.max_source_length=32", "model.truncation=error")
    with pytest.raises(ValueError, match="longer than model.max_source_length"):
        strict.rank(examples[:1])


def test_generative_sources_cut_at_max_source_length_are_counted_and_said(tiny_t5_dir, capsys):
    model, data = build("generative_ce", tiny_t5_dir, "model.max_source_length=8")
    examples = data.splits["train"][:6]
    model.features(examples, training=True)
    assert "source(s) longer than max_source_length (8 tokens) are cut" in capsys.readouterr().out
    counts = model.take_counts()
    assert counts["truncated_sources"] == len({model.template.render(ex, model.label_words).source
                                               for ex in examples})
    assert model.take_counts() == {}  # taken: counted once
