"""The contrastive threshold loss: where it is zero or minimal, and which way its gradient points."""
import math

import pytest
import torch

from relforge_cptuning.losses import (ContrastiveThresholdLoss, ContrastiveThresholdSettings, smoothed_token_loss,
                                      threshold_terms)

TAU = torch.tensor(math.log(0.5))


def _masks(gold_cols, n=4):
    gold = torch.zeros(1, n, dtype=torch.bool)
    gold[0, list(gold_cols)] = True
    return gold, torch.ones(1, n, dtype=torch.bool)


def test_hinge_is_zero_exactly_when_gold_above_and_others_below():
    gold, valid = _masks([0, 2])
    ok = torch.tensor([[TAU + 0.3, TAU - 0.3, TAU + 0.2, TAU - 0.5]])
    assert threshold_terms(ok, gold, valid, TAU, form="hinge", margin=0.1).item() == 0.0
    # one gold candidate just below the threshold (+margin): positive loss
    bad_gold = ok.clone()
    bad_gold[0, 2] = TAU + 0.05
    assert threshold_terms(bad_gold, gold, valid, TAU, form="hinge", margin=0.1).item() > 0
    # one negative above the threshold: positive loss
    bad_neg = ok.clone()
    bad_neg[0, 1] = TAU + 0.01
    assert threshold_terms(bad_neg, gold, valid, TAU, form="hinge", margin=0.0).item() > 0


@pytest.mark.parametrize("form", ["anchor", "softplus"])
def test_smooth_forms_are_small_when_separated_and_large_when_inverted(form):
    gold, valid = _masks([0])
    separated = torch.tensor([[TAU + 1.0, TAU - 1.0, TAU - 1.0, TAU - 1.0]])
    inverted = torch.tensor([[TAU - 1.0, TAU + 1.0, TAU - 1.0, TAU - 1.0]])
    low = threshold_terms(separated, gold, valid, TAU, form=form, temperature=0.1).item()
    high = threshold_terms(inverted, gold, valid, TAU, form=form, temperature=0.1).item()
    assert low < 1e-3 < 1.0 < high


@pytest.mark.parametrize("form", ["anchor", "softplus", "hinge"])
def test_gradient_raises_gold_and_lowers_negatives(form):
    gold, valid = _masks([0, 1])
    # everything sits at the threshold: both sides are violated
    scores = torch.full((1, 4), float(TAU), requires_grad=True)
    threshold_terms(scores, gold, valid, TAU, form=form, temperature=0.1, margin=0.05).sum().backward()
    g = scores.grad[0]
    # gradient descent moves a score by -grad: gold up, negatives down
    assert (g[:2] < 0).all() and (g[2:] > 0).all()


def test_invalid_entries_are_ignored():
    gold = torch.tensor([[True, False, False]])
    valid = torch.tensor([[True, True, False]])
    scores = torch.tensor([[0.0, -5.0, float("-inf")]], requires_grad=True)
    for form in ("anchor", "softplus", "hinge"):
        loss = threshold_terms(scores, gold, valid, TAU, form=form).sum()
        assert torch.isfinite(loss)
        loss.backward()
        assert torch.isfinite(scores.grad).all()
        scores.grad = None


def test_learned_threshold_moves_between_gold_and_negatives():
    loss = ContrastiveThresholdLoss(ContrastiveThresholdSettings(learn_threshold=True, threshold=0.9,
                                                                 form="softplus"))
    gold, valid = _masks([0])
    # gold at p=0.6, negatives at p=0.1: a threshold of 0.9 is too high, the gradient lowers it
    scores = torch.tensor([[math.log(0.6), math.log(0.1), math.log(0.1), math.log(0.1)]])
    from relforge_cptuning.scoring import CandidateScores

    con = loss.contrastive(CandidateScores(scores, valid, gold, [["a", "b", "c", "d"]]))
    con.backward()
    assert loss.threshold_logit.grad.item() > 0
    assert list(dict(loss.named_parameters())) == ["threshold_logit"]


def test_label_smoothing_over_label_tokens():
    logits = torch.randn(2, 3, 10)
    labels = torch.tensor([[1, 2, -100], [3, -100, -100]])
    plain = smoothed_token_loss(logits, labels, 0.0)
    assert torch.allclose(plain, torch.nn.functional.cross_entropy(logits.reshape(-1, 10), labels.reshape(-1),
                                                                   ignore_index=-100))
    support = torch.tensor([1, 2, 3])
    eps = 0.2
    got = smoothed_token_loss(logits, labels, eps, support=support)
    logp = logits.log_softmax(-1)
    rows = [(0, 0, 1), (0, 1, 2), (1, 0, 3)]
    want = sum((1 - eps) * -logp[b, t, y] + eps * -logp[b, t, support].mean() for b, t, y in rows) / 3
    assert torch.allclose(got, want, atol=1e-6)
    # the uniform form is torch's own label smoothing
    assert torch.allclose(smoothed_token_loss(logits, labels, eps),
                          torch.nn.functional.cross_entropy(logits.reshape(-1, 10), labels.reshape(-1),
                                                            ignore_index=-100, label_smoothing=eps))


def test_settings_refuse_nothing_to_train_and_typos():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="nothing to train"):
        ContrastiveThresholdSettings(weight=0, generation_weight=0)
    with pytest.raises(ValidationError):
        ContrastiveThresholdSettings(treshold=0.5)
    with pytest.raises(ValidationError):
        ContrastiveThresholdSettings(threshold=1.5)
