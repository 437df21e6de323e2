"""CPTuning's training objective: a label-smoothed generation loss plus a
contrastive threshold loss over every candidate relation of each example.

The contrastive term works on sequence scores ``s`` (length-normalised
log-probabilities of the verbalized candidates, see :mod:`.scoring`) and a
threshold ``tau = log(threshold)`` on the same scale, so that at inference a
candidate is kept when ``exp(s) >= threshold`` (the core's
``decision: {mode: threshold}`` compares exactly that). Three forms:

* ``anchor`` (default): the threshold is an anchor score in a softmax, as in
  adaptive-threshold losses: each gold candidate is contrasted with the
  threshold, ``-log sigmoid((s_g - tau - margin) / T)``, and the threshold with
  the set of negatives, ``-log(e^{tau/T} / (e^{tau/T} + sum_n e^{(s_n + margin)/T}))``;
* ``softplus``: every candidate on its own: ``T * softplus((tau + m - s_g) / T)``
  for gold and ``T * softplus((s_n - tau + m) / T)`` for negatives (means over
  each set);
* ``hinge``: the ``T -> 0`` limit of ``softplus``: ``relu(tau + m - s_g)`` and
  ``relu(s_n - tau + m)``; exactly zero when every gold candidate is at least
  ``m`` above the threshold and every other at least ``m`` below.

Negatives are all other candidates of the example (``negatives: all``) or
the ``num_hard`` highest-scoring ones (``hard``), found by exact scores of
every candidate without gradients, so only gold and hard candidates enter the
differentiable pass.
"""
from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator

from relforge.components import Ability, LearnsThreshold, Loss, Seq2SeqBatch, Seq2SeqOutput, Settings

from .scoring import CandidateScores, TargetCache, score_candidates, score_candidates_shared


class ContrastiveThresholdSettings(Settings):
    #: the threshold as a (per-token, geometric-mean) probability: tau = log(threshold)
    threshold: float = Field(0.5, gt=0, lt=1)
    #: learn the threshold (a parameter of the loss, saved with the model)
    learn_threshold: bool = False
    form: Literal["anchor", "softplus", "hinge"] = "anchor"
    #: temperature T of the anchor and softplus forms (scores are log-probabilities)
    temperature: float = Field(1.0, gt=0)
    #: how far above (gold) or below (negatives) the threshold a score must be
    margin: float = Field(0.0, ge=0)
    negatives: Literal["all", "hard"] = "all"
    #: negatives kept per example with ``negatives: hard``
    num_hard: int = Field(3, gt=0)
    #: weight of the contrastive term (0: plain label-smoothed generation loss)
    weight: float = Field(1.0, ge=0)
    #: weight of the token-level generation loss on the gold target
    generation_weight: float = Field(1.0, ge=0)
    #: label smoothing of the generation loss (0: none)
    label_smoothing: float = Field(0.1, ge=0, lt=1)
    #: "uniform": the smoothing mass over the whole vocabulary (standard);
    #: "label": over the tokens of the batch's verbalized candidate relations
    smoothing: Literal["uniform", "label"] = "label"
    #: sequence score: "mean" (length-normalised log-probability) or "sum"
    normalize: Literal["mean", "sum"] = "mean"
    #: how candidates are scored with gradients: "padded", one teacher-forced decoder row per (example,
    #: candidate) after the positions all candidates share (decoded once per example), in length buckets;
    #: "shared", the core's Trie walk (relforge.decoding.scoring.score_trie with grad=True): the same values
    #: and gradients, slower in training on the quickstart's and NYT's labels
    #: (benchmarks/results/cptuning-step-cpu-2026-12-04.md)
    scoring: Literal["padded", "shared"] = "padded"
    #: ``padded``: a candidate equal to the row's own target (the gold one the generation loss
    #: teacher-forces) takes its score from that pass instead of another decoder row
    gold_from_generation: bool = True

    @model_validator(mode="after")
    def _something_to_train(self):
        if self.weight == 0 and self.generation_weight == 0:
            raise ValueError("weight and generation_weight are both 0: nothing to train")
        return self


def threshold_terms(scores: torch.Tensor, gold: torch.Tensor, valid: torch.Tensor, tau: torch.Tensor, *,
                    form: str = "anchor", temperature: float = 1.0, margin: float = 0.0) -> torch.Tensor:
    """(rows,) contrastive threshold loss of each row.

    ``scores`` (rows, candidates) sequence scores; ``gold``/``valid`` bool
    masks of the same shape (entries outside ``valid`` are ignored); ``tau``
    the threshold on the scores' scale (a scalar tensor). A row without gold
    or without negatives gets only the term it has."""
    neg = valid & ~gold
    pos = valid & gold
    s = torch.where(valid, scores, torch.zeros_like(scores))
    t = temperature
    if form == "anchor":
        pos_loss = F.softplus((tau + margin - s) / t)            # -log sigmoid((s - tau - m) / T)
        pos_term = (pos_loss * pos).sum(1)
        logits = torch.where(neg, (s + margin) / t, torch.full_like(s, float("-inf")))
        anchor = (tau / t).expand(s.shape[0], 1)
        both = torch.cat([anchor, logits], 1)
        neg_term = torch.logsumexp(both, 1) - anchor.squeeze(1)  # -log softmax of the anchor
        return pos_term + torch.where(neg.any(1), neg_term, torch.zeros_like(neg_term))
    if form == "softplus":
        pos_loss = t * F.softplus((tau + margin - s) / t)
        neg_loss = t * F.softplus((s - tau + margin) / t)
    elif form == "hinge":
        pos_loss = F.relu(tau + margin - s)
        neg_loss = F.relu(s - tau + margin)
    else:
        raise ValueError(f"unknown form {form!r}: anchor, softplus or hinge")
    pos_term = (pos_loss * pos).sum(1) / pos.sum(1).clamp(min=1)
    neg_term = (neg_loss * neg).sum(1) / neg.sum(1).clamp(min=1)
    return pos_term + neg_term


def smoothed_token_loss(logits: torch.Tensor, labels: torch.Tensor, smoothing: float, *,
                        support: torch.Tensor | None = None) -> torch.Tensor:
    """Token cross-entropy with label smoothing: ``(1 - eps) * NLL + eps *
    mean over the support of -log p``. ``support`` (token ids): where the
    smoothing mass goes; None: the whole vocabulary (standard smoothing)."""
    flat, lab = logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1)
    if support is None or smoothing == 0:
        return F.cross_entropy(flat, lab, ignore_index=-100, label_smoothing=smoothing)
    keep = lab != -100
    logp = torch.log_softmax(flat[keep], -1)
    nll = -logp.gather(1, lab[keep, None]).squeeze(1)
    prior = -logp[:, support].mean(1)
    return ((1 - smoothing) * nll + smoothing * prior).mean()


class ContrastiveThresholdLoss(Loss, LearnsThreshold, torch.nn.Module):
    """Label-smoothed generation loss + contrastive threshold loss over the
    batch's candidates (see the module docstring). Needs a generative model's
    outputs: token logits, and the encoder states with the attention mask the
    model used (``outputs.encoder_hidden``/``attention_mask``), over which it
    scores every candidate of ``batch.candidates`` against ``batch.gold``."""

    name = "contrastive_threshold"
    Settings = ContrastiveThresholdSettings
    settings: ContrastiveThresholdSettings
    requires = {"model": frozenset({Ability.TOKEN_TARGETS, Ability.ENCODER_STATES}),
                "template": frozenset({Ability.TEXT_TARGETS})}

    def __init__(self, settings: ContrastiveThresholdSettings | None = None) -> None:
        torch.nn.Module.__init__(self)
        Loss.__init__(self, settings)
        s = self.settings
        if s.learn_threshold:
            self.threshold_logit = torch.nn.Parameter(torch.tensor(math.log(s.threshold / (1 - s.threshold))))
        self._targets = TargetCache()
        #: the last call's parts, for logging and tests
        self.last: dict[str, float] = {}

    def log_threshold(self) -> torch.Tensor:
        """tau: the threshold on the log-probability scale (learned or fixed)."""
        if self.settings.learn_threshold:
            return F.logsigmoid(self.threshold_logit)
        return torch.tensor(math.log(self.settings.threshold))

    def threshold(self) -> float:
        return float(self.log_threshold().exp())

    def learned_log_threshold(self) -> float | None:
        return float(self.log_threshold()) if self.settings.learn_threshold else None

    def contrastive(self, scored: CandidateScores, weights: torch.Tensor | None = None) -> torch.Tensor:
        s = self.settings
        tau = self.log_threshold().to(scored.scores.device)
        per_row = threshold_terms(scored.scores, scored.gold, scored.valid, tau, form=s.form,
                                  temperature=s.temperature, margin=s.margin)
        if weights is None:
            return per_row.mean()
        weights = weights.to(per_row.device)
        return (per_row * weights).sum() / weights.sum().clamp(min=1e-12)

    def __call__(self, outputs: Seq2SeqOutput, batch: Seq2SeqBatch) -> torch.Tensor:
        s = self.settings
        model = outputs.model
        tok = model.tokenizer
        total = outputs.logits.new_zeros((), dtype=torch.float32)
        candidates, gold = batch.candidates, batch.gold
        if s.generation_weight > 0:
            support = None
            if s.smoothing == "label" and s.label_smoothing > 0:
                texts = sorted({t for cand in candidates for t in cand.values()})
                ids = sorted({i for seq in self._targets.ids(tok, texts) for i in seq})
                support = torch.tensor(ids, device=outputs.logits.device)
            gen = smoothed_token_loss(outputs.logits, batch.labels, s.label_smoothing, support=support)
            self.last["generation"] = float(gen.detach())
            total = total + s.generation_weight * gen
        if s.weight > 0:
            # the encoder states and the mask the model really used (with any inserted positions)
            hidden = outputs.encoder_hidden
            att = outputs.attention_mask.to(hidden.device)
            keep = self.hard_negatives(model, hidden, att, candidates, gold) if s.negatives == "hard" else None
            if s.scoring == "shared":
                scored = score_candidates_shared(model.backbone, tok, hidden, att, candidates, gold,
                                                 normalize=s.normalize, keep=keep,
                                                 max_target_length=model.max_target_length)
            else:
                counts: dict[str, int] = {}
                reuse = (outputs.logits, batch.labels) if s.gold_from_generation else None
                scored = score_candidates(model.backbone, tok, hidden, att, candidates, gold, cache=self._targets,
                                          normalize=s.normalize, keep=keep, max_target_length=model.max_target_length,
                                          reuse=reuse, counts=counts)
                self.last.update({f"candidates_{k}": float(v) for k, v in counts.items()})
            # the engine makes one training row per gold target of an example: each row carries
            # 1/|gold| of the example's contrastive term, so every example counts once per epoch
            weights = torch.tensor([1.0 / max(1, len(g)) for g in gold])
            con = self.contrastive(scored, weights)
            self.last["contrastive"] = float(con.detach())
            total = total + s.weight * con
        self.last["threshold"] = self.threshold()
        return total

    @torch.no_grad()
    def hard_negatives(self, model, hidden, att, candidates, gold) -> list[list[str]]:
        """Per row: its gold labels and the ``num_hard`` best-scoring others,
        scored exactly (full-vocabulary log-probabilities, the same scores the
        loss and the exact decoder use) without gradients, by the padded
        scorer: in training it is faster than the core's Trie walk on the
        quickstart's and NYT's labels (``benchmarks/results/cptuning-step-cpu-2026-12-04.md``)."""
        sc = score_candidates(model.backbone, model.tokenizer, hidden.detach(), att, candidates, gold,
                              cache=self._targets, normalize=self.settings.normalize,
                              max_target_length=model.max_target_length)
        value = sc.scores.cpu()
        keep = []
        for i in range(len(candidates)):
            g = set(gold[i])
            labels = sc.labels[i]
            order = [labels[j] for j in torch.argsort(value[i, :len(labels)], descending=True, stable=True).tolist()]
            negs = [lab for lab in order if lab not in g][: self.settings.num_hard]
            keep.append([lab for lab in candidates[i] if lab in g or lab in negs])
        return keep
