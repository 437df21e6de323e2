"""The registered decoders end to end."""
import math

import pytest

from relforge.components import ScoredCandidate
from relforge.registry import Registry

from .conftest import RELATIONS, SOURCES

CANDS = {r.replace(" ", "_"): r for r in RELATIONS}
SUBSET = {k: CANDS[k] for k in ("founder", "founder_of", "no_relation")}


@pytest.fixture(scope="module")
def registry():
    return Registry().load(entry_points=False)


def test_decoders_are_registered_through_the_hook(registry):
    names = {c.name for c in registry.components("decoder")}
    assert {"trie-beam", "exact", "sure"} <= names
    with pytest.raises(Exception, match="num_beam"):
        registry.create("decoder", "trie-beam", {"num_beam": 2})


def test_exact_and_sure_rank_every_permitted_candidate(registry, seq2seq):
    model, tok = seq2seq
    cands = [CANDS, SUBSET, CANDS]
    for name in ("exact", "sure"):
        dec = registry.create("decoder", name, {"batch_size": 2})
        ranked = dec.rank(model, tok, SOURCES[:3], cands)
        for r, c in zip(ranked, cands):
            assert sorted(x.label for x in r) == sorted(c)
            assert all(isinstance(x, ScoredCandidate) for x in r)
            assert [x.score for x in r] == sorted((x.score for x in r), reverse=True)
        if name == "sure":
            assert math.isclose(sum(math.exp(x.score) for x in ranked[1]), 1.0, rel_tol=1e-4)
            assert all(x.total_logprob is None for x in ranked[0])
            with_total = registry.create("decoder", name, {"exact_total": True}).rank(model, tok, SOURCES[:3], cands)
            exact = registry.create("decoder", "exact").rank(model, tok, SOURCES[:3], cands)
            for w, e, r in zip(with_total, exact, ranked):
                totals = {x.label: x.total_logprob for x in e}
                assert all(math.isclose(x.total_logprob, totals[x.label], rel_tol=1e-5, abs_tol=1e-4) for x in w)
                assert all(math.isclose(a.score, b.score, abs_tol=1e-5) for a, b in zip(w, r))
        else:
            assert all(math.isclose(x.score, x.total_logprob / x.num_tokens, rel_tol=1e-6) for x in ranked[0])


def test_beam_decoder_agrees_with_exact_scoring(registry, seq2seq):
    model, tok = seq2seq
    cands = [CANDS, SUBSET, CANDS, {"spouse": "spouse"}]
    exact = registry.create("decoder", "exact", {"normalize": "mean"}).rank(model, tok, SOURCES, cands)
    for k in (1, 3):
        beam = registry.create("decoder", "trie-beam", {"num_beams": k, "batch_size": 3}).rank(
            model, tok, SOURCES, cands)
        for b, e, c in zip(beam, exact, cands):
            assert 1 <= len(b) <= k and {x.label for x in b} <= set(c)
            ex = {x.label: x for x in e}
            for x in b:  # every beam's total log-prob is the candidate's exact one
                assert math.isclose(x.total_logprob, ex[x.label].total_logprob, rel_tol=1e-4, abs_tol=1e-3)
            if k == 3:  # beam search with length normalisation finds the exact best here
                assert b[0].label == e[0].label
    assert [x.label for x in beam[3]] == ["spouse"]


def test_examples_without_candidates_get_empty_rankings(registry, tiny_t5):
    model, tok = tiny_t5
    for name in ("exact", "sure", "trie-beam"):
        out = registry.create("decoder", name).rank(model, tok, SOURCES[:2], [{}, SUBSET])
        assert out[0] == [] and len(out[1]) >= 1
