"""MSLM masking rates and roles, and the span-level InfoNCE loss."""
from __future__ import annotations

import math

import torch

from relforge_tkre.objectives import (BETWEEN, ENTITY, OTHER, SPECIAL, mean_pool, mslm_loss, mslm_mask,
                                      span_infonce, token_roles)


def test_token_roles_from_character_spans():
    text = "Alice was born in Paris ."
    offsets = [(0, 0), (0, 5), (6, 9), (10, 14), (15, 17), (18, 23), (24, 25), (0, 0)]
    special = [1, 0, 0, 0, 0, 0, 0, 1]
    roles = token_roles(offsets, special, (0, 5), (18, 23))
    assert text[0:5] == "Alice" and text[18:23] == "Paris"
    assert roles == [SPECIAL, ENTITY, BETWEEN, BETWEEN, BETWEEN, ENTITY, OTHER, SPECIAL]
    # tail before head: the span between them is still the relation span
    assert token_roles(offsets, special, (18, 23), (0, 5)) == roles
    # a mention missing from the text (an explanation): no relation span
    assert token_roles(offsets, special, (0, 5), None) == [SPECIAL, ENTITY] + [OTHER] * 5 + [SPECIAL]


def test_masking_rates_hold_on_long_inputs():
    n = 20000
    pattern = torch.tensor([SPECIAL] + [OTHER] * 3 + [ENTITY] * 2 + [BETWEEN] * 5 + [ENTITY] * 2 + [OTHER] * 3)
    roles = pattern.repeat(n // len(pattern) + 1)[:n].unsqueeze(0)
    ids = torch.randint(5, 1000, roles.shape)
    masked, labels = mslm_mask(ids, roles, mask_token_id=3, generator=torch.Generator().manual_seed(0))
    chosen = labels != -100
    for role, p in ((BETWEEN, 0.8), (ENTITY, 0.5), (OTHER, 0.2)):
        sel = roles == role
        count = int(sel.sum())
        rate = float(chosen[sel].float().mean())
        assert abs(rate - p) < 4 * math.sqrt(p * (1 - p) / count), (role, rate, p)
    assert not chosen[roles == SPECIAL].any()
    assert bool((masked[chosen] == 3).all()) and bool((masked[~chosen] == ids[~chosen]).all())
    assert bool((labels[chosen] == ids[chosen]).all())


def test_masking_rates_are_configurable():
    roles = torch.full((1, 5000), OTHER)
    _, labels = mslm_mask(torch.ones_like(roles), roles, 3, other=0.0, between=1.0)
    assert not (labels != -100).any()


def test_mslm_loss_is_zero_without_masked_positions_and_finite_otherwise():
    logits = torch.randn(2, 4, 10, requires_grad=True)
    none = torch.full((2, 4), -100)
    z = mslm_loss(logits, none)
    assert float(z.detach()) == 0.0 and z.requires_grad
    labels = none.clone()
    labels[0, 1] = 7
    assert float(mslm_loss(logits, labels).detach()) > 0


def test_mean_pool_averages_span_tokens():
    hidden = torch.arange(12, dtype=torch.float).view(1, 4, 3)
    masks = torch.tensor([[[False, True, True, False], [False, False, False, False]]])
    pooled = mean_pool(hidden, masks)
    assert torch.allclose(pooled[0, 0], (hidden[0, 1] + hidden[0, 2]) / 2)
    assert torch.allclose(pooled[0, 1], torch.zeros(3))


def test_scl_loss_lower_when_anchor_matches_positive():
    torch.manual_seed(0)
    h = 16
    positive = torch.randn(4, 1, h)
    negatives = torch.randn(4, 5, h)
    ones_p, ones_n = torch.ones(4, 1, dtype=torch.bool), torch.ones(4, 5, dtype=torch.bool)
    matched = span_infonce(positive[:, 0] + 0.05 * torch.randn(4, h), positive, ones_p, negatives, ones_n, 0.1)
    unrelated = span_infonce(torch.randn(4, h), positive, ones_p, negatives, ones_n, 0.1)
    toward_negative = span_infonce(negatives[:, 0], positive, ones_p, negatives, ones_n, 0.1)
    assert float(matched) < float(unrelated) < float(toward_negative)
    assert float(matched) < 0.01


def test_scl_loss_with_several_positives_and_padding():
    torch.manual_seed(1)
    anchor = torch.randn(2, 8, requires_grad=True)
    positives = torch.randn(2, 3, 8)
    negatives = torch.randn(2, 4, 8)
    pos_mask = torch.tensor([[True, True, False], [True, False, False]])
    neg_mask = torch.tensor([[True, True, True, True], [True, False, False, False]])
    loss = span_infonce(anchor, positives, pos_mask, negatives, neg_mask, 0.1)
    # the mean over the three valid positives, each against its own example's valid negatives
    a = torch.nn.functional.normalize(anchor, dim=-1)
    terms = []
    for b, p in ((0, 0), (0, 1), (1, 0)):
        sp = a[b] @ torch.nn.functional.normalize(positives[b, p], dim=-1) / 0.1
        sn = torch.nn.functional.normalize(negatives[b][neg_mask[b]], dim=-1) @ a[b] / 0.1
        terms.append(-(sp - torch.logsumexp(torch.cat([sp.view(1), sn]), 0)))
    assert torch.allclose(loss, torch.stack(terms).mean(), atol=1e-5)
    loss.backward()
    assert anchor.grad is not None and torch.isfinite(anchor.grad).all()


def test_scl_loss_without_valid_positive_is_zero_with_graph():
    anchor = torch.randn(1, 4, requires_grad=True)
    loss = span_infonce(anchor, torch.randn(1, 1, 4), torch.zeros(1, 1, dtype=torch.bool), torch.randn(1, 2, 4),
                        torch.ones(1, 2, dtype=torch.bool))
    assert float(loss) == 0.0 and loss.requires_grad


def test_lower_temperature_sharpens():
    anchor = torch.tensor([[1.0, 0.0]])
    pos = torch.tensor([[[1.0, 0.3]]])
    neg = torch.tensor([[[0.2, 1.0]]])
    one = torch.ones(1, 1, dtype=torch.bool)
    losses = [float(span_infonce(anchor, pos, one, neg, one, t)) for t in (0.1, 0.5, 1.0)]
    assert losses[0] < losses[1] < losses[2] < math.log(2)
