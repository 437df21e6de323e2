"""The decision rule and the dev-tuned threshold, on hand-built rankings."""
from __future__ import annotations

import math

import pytest

from relforge.components import ScoredCandidate
from relforge.config import ConfigError, DecisionSettings, load_config
from relforge.engine.decision import decide, tune_threshold


def ranking(**probs):
    return [ScoredCandidate(label=lab, score=math.log(p)) for lab, p in
            sorted(probs.items(), key=lambda kv: -kv[1])]


def micro_f1(gold):
    def evaluate(preds):
        tp = sum(len(g & p) for g, p in zip(gold, preds))
        n_pred, n_gold = sum(map(len, preds)), sum(map(len, gold))
        prec, rec = tp / n_pred if n_pred else 0.0, tp / n_gold if n_gold else 0.0
        return {"micro_f1": 2 * prec * rec / (prec + rec) if prec + rec else 0.0}
    return evaluate


def test_dev_threshold_replaces_the_configured_one():
    r = ranking(a=0.3, b=0.2, c=0.01)
    cfg = DecisionSettings(mode="threshold", threshold=0.5)
    assert decide(r, None, cfg) == {"a"}  # none passes 0.5: the top one
    assert decide(r, None, cfg.model_copy(update={"dev_threshold": 0.15})) == {"a", "b"}


def test_tuned_threshold_lets_second_relations_through_when_dev_rewards_it():
    # every pair's two best candidates are gold and score ~0.2-0.3; the third is wrong at <= 0.05
    rankings = [ranking(a=0.3, b=0.2, c=0.05), ranking(b=0.25, c=0.22, a=0.01), ranking(c=0.28, a=0.21, b=0.04)]
    gold = [{"a", "b"}, {"b", "c"}, {"c", "a"}]
    cfg = DecisionSettings(mode="threshold", threshold=0.5)
    t, value, tried = tune_threshold(rankings, micro_f1(gold), "micro_f1", None, cfg)
    assert value == pytest.approx(1.0)
    assert 0.05 < t <= 0.2 + 1e-9  # keeps the two gold candidates, drops the third
    assert tried[0.5] == pytest.approx(2 * 0.5 / 1.5)  # fixed 0.5: top-1 only, P 1 R 0.5
    assert all(decide(r, None, cfg.model_copy(update={"dev_threshold": t})) == g for r, g in zip(rankings, gold))


def test_tuning_keeps_the_configured_threshold_on_a_tie_and_drops_no_relation():
    # single-label dev data with confident tops: every threshold up to 0.5 gives the same sets
    rankings = [ranking(a=0.9, b=0.01), ranking(no_relation=0.8, a=0.01)]
    gold = [{"a"}, set()]
    cfg = DecisionSettings(mode="threshold", threshold=0.5)
    t, value, _ = tune_threshold(rankings, micro_f1(gold), "micro_f1", "no_relation", cfg)
    assert value == pytest.approx(1.0) and t == 0.5


def test_tuning_errors_are_clear():
    cfg = DecisionSettings(mode="threshold")
    with pytest.raises(KeyError, match="no 'macro_f1'"):
        tune_threshold([ranking(a=0.5)], micro_f1([{"a"}]), "macro_f1", None, cfg)
    with pytest.raises(ValueError, match="needs dev rankings"):
        tune_threshold([], micro_f1([]), "micro_f1", None, cfg)
    with pytest.raises(ValueError, match="decision.mode: threshold"):
        tune_threshold([ranking(a=0.5)], micro_f1([{"a"}]), "micro_f1", None, DecisionSettings())
    with pytest.raises(ConfigError, match="tune_on_dev"):
        load_config([], ["method=generative_ce", "decision.tune_on_dev=true"])
