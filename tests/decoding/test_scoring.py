"""Exact and SuRE-style batched scoring against one-candidate-at-a-time references."""
import math

import torch

from relforge.decoding.scoring import decoder_start_id, encode, score_trie
from relforge.decoding.trie import LabelTrie

from .conftest import RELATIONS, SOURCES


def one_at_a_time(model, tok, trie, src_idx, enc):
    """label -> summed token log-probs, teacher forcing that label alone."""
    start = decoder_start_id(model)
    out = {}
    with torch.no_grad():
        for lab, seq in trie.sequences.items():
            dec = torch.tensor([[start, *seq[:-1]]])
            logits = model(input_ids=enc.input_ids[src_idx:src_idx + 1],
                           attention_mask=enc.attention_mask[src_idx:src_idx + 1], decoder_input_ids=dec).logits
            lp = torch.log_softmax(logits[0].float(), -1)
            out[lab] = float(lp[torch.arange(len(seq)), torch.tensor(seq)].sum())
    return out


def sure_reference(model, tok, trie, src_idx, enc, allowed):
    """SuRE-style: walk each allowed label's path and renormalise the next-token
    probability over the allowed children of every node, one node at a time."""
    start = decoder_start_id(model)
    out = {}
    with torch.no_grad():
        for lab in allowed:
            seq, total = trie.sequences[lab], 0.0
            for j in range(len(seq)):
                kids = sorted({trie.sequences[o][j] for o in allowed
                               if len(trie.sequences[o]) > j and trie.sequences[o][:j] == seq[:j]})
                if len(kids) == 1:
                    continue
                dec = torch.tensor([[start, *seq[:j]]])
                logits = model(input_ids=enc.input_ids[src_idx:src_idx + 1],
                               attention_mask=enc.attention_mask[src_idx:src_idx + 1], decoder_input_ids=dec).logits
                lp = torch.log_softmax(logits[0, -1].float(), -1)
                total += float(lp[seq[j]] - torch.logsumexp(lp[kids], 0))
            out[lab] = total
    return out


def test_exact_and_sure_scores_equal_per_candidate_references(seq2seq):
    model, tok = seq2seq
    trie = LabelTrie.from_texts(tok, {r: r for r in RELATIONS})
    subsets = [None, ["founder", "founder of", "founded by", "spouse"], ["no relation"],
               ["city of birth", "city of death", "country of birth", "children", "parents"]]
    enc = tok(SOURCES, return_tensors="pt", padding=True)
    lmask = trie.label_mask(subsets)
    # a small max_rows forces several chunks of examples
    scores = score_trie(model, trie, encode(model, enc.input_ids, enc.attention_mask), enc.attention_mask,
                        lmask, max_rows=20)
    for i, sub in enumerate(subsets):
        allowed = RELATIONS if sub is None else sub
        ref = one_at_a_time(model, tok, trie, i, enc)
        sure = sure_reference(model, tok, trie, i, enc, allowed)
        for j, lab in enumerate(trie.labels):
            if lab in allowed:
                assert math.isclose(float(scores.total[i, j]), ref[lab], rel_tol=1e-4, abs_tol=1e-3)
                assert math.isclose(float(scores.branch[i, j]), sure[lab], rel_tol=1e-4, abs_tol=1e-3)
            else:
                assert scores.total[i, j] == float("-inf") and scores.branch[i, j] == float("-inf")
    assert float(scores.branch[2, trie.label_index["no relation"]]) == 0.0  # a single candidate: certain
    pruned = score_trie(model, trie, encode(model, enc.input_ids, enc.attention_mask), enc.attention_mask, lmask,
                        exact=False)
    assert pruned.total is None
    assert torch.allclose(pruned.branch, scores.branch, atol=1e-5)


def test_sure_probabilities_sum_to_one_over_the_permitted_labels(tiny_t5):
    model, tok = tiny_t5
    trie = LabelTrie.from_texts(tok, {r: r for r in RELATIONS})
    enc = tok(SOURCES[:2], return_tensors="pt", padding=True)
    lmask = trie.label_mask([None, ["founder", "founder of", "member of"]])
    s = score_trie(model, trie, encode(model, enc.input_ids, enc.attention_mask), enc.attention_mask, lmask)
    assert torch.allclose(s.branch.exp().sum(1), torch.ones(2), atol=1e-5)
    assert bool((s.total.exp().sum(1) < 1).all())


def test_sure_walk_is_pruned_to_branching_nodes_and_their_ancestors():
    from relforge.decoding.scoring import trie_internal_nodes, trie_sure_nodes

    trie = LabelTrie({"a": [5, 6, 7, 1], "b": [5, 8, 1], "c": [9, 1]}, pad_token_id=0, end_token_id=1)
    node = lambda seq: int(trie.walk(torch.tensor([seq]))[0])  # noqa: E731
    sure = {n for n in range(trie.num_nodes) if trie_sure_nodes(trie)[n]}
    assert sure == {trie.root, node([5])}
    internal = {n for n in range(trie.num_nodes) if trie_internal_nodes(trie)[n]}
    assert internal == {trie.root, node([5]), node([5, 6]), node([5, 6, 7]), node([5, 8]), node([9])}


def test_scoring_passes_the_cache_under_the_backbones_own_name(seq2seq, recwarn, caplog):
    """transformers 5.2x renamed ``past_key_values`` to ``cache`` and warns on
    every call with the old name (it was printed on every decode of every
    run); scoring uses whichever name the backbone's forward takes."""
    import inspect
    import logging

    from relforge.decoding.scoring import cache_argument

    model, tok = seq2seq
    expected = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    assert cache_argument(model) == expected
    trie = LabelTrie.from_texts(tok, {r: r for r in RELATIONS})
    enc = tok(SOURCES[:2], return_tensors="pt", padding=True)
    once = getattr(logging.Logger, "warning_once", None)  # transformers says it once per process
    if hasattr(once, "cache_clear"):
        once.cache_clear()
    with caplog.at_level(logging.WARNING, logger="transformers"):
        scores = score_trie(model, trie, encode(model, enc.input_ids, enc.attention_mask), enc.attention_mask)
    assert torch.isfinite(scores.total).all()
    assert not [w for w in recwarn if "past_key_values" in str(w.message)]
    assert "past_key_values" not in caplog.text


def test_shared_prefix_scores_carry_the_gradients_of_teacher_forcing_each_candidate(seq2seq):
    """issue 20: score_trie(grad=True) decodes each shared prefix once per example; its candidate
    log-likelihoods and their gradients (to the encoder states and the decoder's weights) equal one
    teacher-forced pass per candidate."""
    from transformers.modeling_outputs import BaseModelOutput

    model, tok = seq2seq
    trie = LabelTrie.from_texts(tok, {r: r for r in RELATIONS})
    enc = tok(SOURCES[:2], return_tensors="pt", padding=True)
    allowed = [RELATIONS, ["founder", "founder of", "founded by", "spouse"]]
    mask = trie.label_mask(allowed)
    weight = next(p for n, p in model.named_parameters() if "decoder" in n and p.dim() == 2)

    def grads(loss, hidden):
        model.zero_grad()
        g_hidden, = torch.autograd.grad(loss, hidden, retain_graph=True)
        loss.backward()
        return g_hidden, weight.grad.detach().clone()

    hidden = encode(model, enc.input_ids, enc.attention_mask).detach().requires_grad_(True)
    shared = score_trie(model, trie, hidden, enc.attention_mask, mask, grad=True)
    assert shared.total.requires_grad
    coef = torch.linspace(0.5, 1.5, len(trie.labels))  # a different weight per label, as a loss gives
    loss_shared = (torch.where(mask, shared.total, 0.0) * coef).sum()
    g_shared = grads(loss_shared, hidden)

    hidden_ref = hidden.detach().clone().requires_grad_(True)
    start = decoder_start_id(model)
    ref = torch.zeros(2, len(trie.labels))
    terms = []
    for i in range(2):
        for j, lab in enumerate(trie.labels):
            if not mask[i, j]:
                continue
            seq = trie.sequences[lab]
            out = model(encoder_outputs=BaseModelOutput(last_hidden_state=hidden_ref[i:i + 1]),
                        attention_mask=enc.attention_mask[i:i + 1],
                        decoder_input_ids=torch.tensor([[start, *seq[:-1]]]))
            lp = torch.log_softmax(out.logits[0].float(), -1)[torch.arange(len(seq)), torch.tensor(seq)].sum()
            ref[i, j] = lp.detach()
            terms.append(lp * coef[j])
    g_ref = grads(torch.stack(terms).sum(), hidden_ref)
    assert torch.allclose(torch.where(mask, shared.total, 0.0).detach(), ref, atol=1e-4)
    assert torch.allclose(g_shared[0], g_ref[0], atol=1e-4, rtol=1e-3)
    assert torch.allclose(g_shared[1], g_ref[1], atol=1e-4, rtol=1e-3)
    # without grad (the default) nothing is recorded
    assert not score_trie(model, trie, hidden, enc.attention_mask, mask).total.requires_grad
    model.zero_grad()  # the fixture's model is shared with other tests
