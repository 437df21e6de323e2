"""The two pretraining objectives: masked span language modelling and span-level contrastive learning.

Both work on subword tokens whose role comes from character spans:
``OTHER`` (0), ``ENTITY`` (1, inside the head or tail mention), ``BETWEEN``
(2, strictly between the two mentions: the relation-related span) and
``SPECIAL`` (-1, [CLS]/[SEP]/padding: never masked, never pooled).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from relforge.engine.precision import full_precision

OTHER, ENTITY, BETWEEN, SPECIAL = 0, 1, 2, -1


@dataclass
class PretrainText:
    """One pretraining text: a sentence, an explanation or a synthetic
    example. ``head``/``tail``: character spans, None when the mention is
    not in the text (an explanation that paraphrases it)."""

    text: str
    head: tuple[int, int] | None
    tail: tuple[int, int] | None
    relation: str | None
    source: str


def token_roles(offsets: Sequence[tuple[int, int]], special: Sequence[int], head: tuple[int, int] | None,
                tail: tuple[int, int] | None) -> list[int]:
    """The role of each token from its character offsets."""
    between = None
    if head is not None and tail is not None:
        first, second = sorted([head, tail])
        if first[1] <= second[0]:
            between = (first[1], second[0])
    roles = []
    for (s, e), sp in zip(offsets, special):
        if sp or e <= s:
            roles.append(SPECIAL)
        elif any(span is not None and s < span[1] and e > span[0] for span in (head, tail)):
            roles.append(ENTITY)
        elif between is not None and s >= between[0] and e <= between[1]:
            roles.append(BETWEEN)
        else:
            roles.append(OTHER)
    return roles


def mask_probabilities(roles: torch.Tensor, between: float, entity: float, other: float) -> torch.Tensor:
    probs = torch.zeros(roles.shape, dtype=torch.float)
    probs[roles == OTHER] = other
    probs[roles == ENTITY] = entity
    probs[roles == BETWEEN] = between
    return probs


def mslm_mask(input_ids: torch.Tensor, roles: torch.Tensor, mask_token_id: int, *, between: float = 0.8,
              entity: float = 0.5, other: float = 0.2, generator: torch.Generator | None = None,
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Masked inputs and MLM labels (-100 where not masked). Each token is
    masked independently with its role's probability and replaced by the
    mask token (the paper's formulation; no 80/10/10 split)."""
    probs = mask_probabilities(roles, between, entity, other)
    chosen = torch.rand(probs.shape, generator=generator) < probs
    labels = torch.where(chosen, input_ids, torch.full_like(input_ids, -100))
    masked = torch.where(chosen, torch.full_like(input_ids, mask_token_id), input_ids)
    return masked, labels


def mslm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over masked positions; zero (with a graph) when nothing is masked."""
    if not bool((labels != -100).any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1), ignore_index=-100)


def mean_pool(hidden: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """``hidden`` (B, L, H), ``masks`` (B, S, L) booleans -> (B, S, H) span means."""
    m = masks.float()
    summed = torch.einsum("bsl,blh->bsh", m, hidden)
    return summed / m.sum(-1, keepdim=True).clamp(min=1.0)


def span_infonce(anchor: torch.Tensor, positives: torch.Tensor, pos_mask: torch.Tensor, negatives: torch.Tensor,
                 neg_mask: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """InfoNCE of each positive against the example's negatives, with the
    relation anchor as the query and cosine similarity over ``temperature``:
    ``-log exp(s(a,p)/t) / (exp(s(a,p)/t) + sum_n exp(s(a,n)/t))``, averaged
    over the valid positives of the batch. ``anchor`` (B, H), ``positives``
    (B, P, H) with ``pos_mask`` (B, P), ``negatives`` (B, N, H) with
    ``neg_mask`` (B, N). Zero (with a graph) when no positive is valid."""
    with full_precision(anchor):  # float32 similarities under a bf16 training step's autocast too
        a = F.normalize(anchor.float(), dim=-1)
        sp = torch.einsum("bh,bph->bp", a, F.normalize(positives.float(), dim=-1)) / temperature
        sn = torch.einsum("bh,bnh->bn", a, F.normalize(negatives.float(), dim=-1)) / temperature
    sn = sn.masked_fill(~neg_mask, float("-inf"))
    neg_lse = torch.logsumexp(sn, dim=-1, keepdim=True)                 # -inf without negatives
    per_pos = -(sp - torch.logaddexp(sp, neg_lse.expand_as(sp)))
    valid = pos_mask & torch.isfinite(per_pos)
    if not bool(valid.any()):
        return (anchor.sum() + positives.sum()) * 0.0
    return per_pos[valid].mean()
